"""Models served from a Ray cluster (`serve --ray`): three Ray nodes on this machine, each
with a custom resource naming it, and the front-end joined to the head node."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import GEMMA_FILE, GEMMA_YAML, assert_error, metric_samples, place, start_server, stop_server
from tests.gallery.conftest import one_file_body, wait_job

cluster_utils = pytest.importorskip("ray.cluster_utils")

NODE_MEMORY = {"object_store_memory": 80 << 20}
STORY = {"prompt": "Once upon a time, in a kingdom by the sea,", "max_tokens": 400, "stop": [], "temperature": 0}


def model_yaml(name: str, extra: str) -> str:
    return GEMMA_YAML.format(model=GEMMA_FILE).replace("name: gemma", f"name: {name}").replace(
        "threads: 2", "threads: 1") + extra


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, gemma_gguf, hub):
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "on-b.yaml").write_text(model_yaml("on-b", "resources: {num_cpus: 1, custom: {node_b: 1}}\n"))
    (folder / "two.yaml").write_text(model_yaml("two", "replicas: 2\nresources: {num_cpus: 1, custom: {slot: 1}}\n"))
    (folder / "zone-b.yaml").write_text(model_yaml("zone-b", "resources: {num_cpus: 1, node_labels: {zone: b}}\n"))
    (folder / "nowhere.yaml").write_text(model_yaml("nowhere", "resources: {num_gpus: 8}\n"))
    # Both on the head node (half its node_a each).
    (folder / "hang.yaml").write_text(model_yaml("hang", "replicas: 2\nresources: {num_cpus: 0.5, custom: {node_a: 0.5}}\n"))
    ray_cluster = cluster_utils.Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 2, "resources": {"node_a": 1, "slot": 1}, "include_dashboard": False, **NODE_MEMORY,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    # The front-end joins the cluster through the raylet on its machine: started before the
    # other nodes, it is the head's, so removing node B leaves it connected.
    server = start_server(folder, tmp_path_factory.mktemp("logs"), "--ray", ray_cluster.address, "--busy-timeout", "8",
                          env=hub.env)
    node_b = ray_cluster.add_node(num_cpus=2, resources={"node_b": 1, "slot": 1}, labels={"zone": "b"}, **NODE_MEMORY)
    # Node C has a models folder of its own (it shares none with the front-end).
    node_c_models = tmp_path_factory.mktemp("node-c-models")
    ray_cluster.add_node(num_cpus=1, resources={"node_c": 1}, env_vars={"MODELS_PATH": str(node_c_models), **hub.env},
                         **NODE_MEMORY)
    ray_cluster.wait_for_nodes()
    server.node_c_models = node_c_models
    try:
        yield ray_cluster, server, node_b
    finally:
        stop_server(server)
        ray_cluster.shutdown()


def monitor(server, model: str) -> dict:
    response = server.get("/backend/monitor", params={"model": model})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_model_asking_for_node_b_runs_there_and_answers_streamed_and_not(cluster):
    _, server, node_b = cluster
    client = server.client()
    reply = client.chat.completions.create(model="on-b", messages=[{"role": "user", "content": "What is the capital "
                                                                                             "of France?"}])
    assert "Paris" in reply.choices[0].message.content
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model="on-b", messages=[{"role": "user", "content": "What is the capital of France?"}], stream=True)
        if chunk.choices)
    assert streamed == reply.choices[0].message.content
    status = monitor(server, "on-b")
    assert [replica["node_id"] for replica in status["replicas"]] == [node_b.node_id]
    assert status["replicas"][0]["served"] == 2 and status["state"] == "ready"
    assert status["engine"]["tokens_generated"] > 0  # the replica's engine, through its ping
    assert status["replicas"][0]["engine"]["tokens_generated"] == status["engine"]["tokens_generated"]
    loaded = {model["model"]: model for model in server.get("/system").json()["loaded"]}
    assert loaded["on-b"]["replicas"][0]["node_id"] == node_b.node_id
    assert metric_samples(server)[("localhost_ai_replicas", (("model", "on-b"), ("node", node_b.node_id)))] == 1


def test_a_model_asking_for_a_node_label_runs_on_the_node_carrying_it(cluster):
    _, server, node_b = cluster
    reply = server.client().completions.create(model="zone-b", prompt="The capital of France is", max_tokens=4)
    assert reply.choices[0].text
    assert [replica["node_id"] for replica in monitor(server, "zone-b")["replicas"]] == [node_b.node_id]
    server.post("/backend/shutdown", json={"model": "zone-b"}).raise_for_status()  # its CPU goes back to node B


def test_two_replicas_on_two_nodes_both_take_requests_under_load(cluster):
    ray_cluster, server, node_b = cluster
    client = server.client()

    def ask(n: int) -> str:
        return client.completions.create(model="two", prompt=f"{n} plus {n} is", max_tokens=16).choices[0].text

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert all(answers)
    replicas = monitor(server, "two")["replicas"]
    assert sorted(replica["node_id"] for replica in replicas) == sorted([ray_cluster.head_node.node_id, node_b.node_id])
    assert all(replica["served"] >= 2 for replica in replicas), replicas
    assert sum(replica["served"] for replica in replicas) == 8
    # The model's engine figures: its replicas' counts added up, their settings as they are.
    status = monitor(server, "two")
    engines = [replica["engine"] for replica in status["replicas"]]
    assert status["engine"]["tokens_generated"] == sum(engine["tokens_generated"] for engine in engines) > 0
    assert status["engine"]["slots"] == sum(engine["slots"] for engine in engines)
    assert status["engine"]["context_per_slot"] == engines[0]["context_per_slot"] == engines[1]["context_per_slot"]
    assert status["engine"]["max_sequences_in_step"] == max(engine["max_sequences_in_step"] for engine in engines)


def test_a_request_cancelled_by_its_client_stops_on_the_replica(cluster):
    _, server, _ = cluster
    with requests.post(server.url + "/v1/completions", json={**STORY, "model": "on-b", "stream": True}, stream=True,
                       timeout=60) as response:
        assert response.status_code == 200
        for n, _ in enumerate(line for line in response.iter_lines() if line.startswith(b"data: ")):
            if n >= 3:
                break

    def stopped() -> bool:
        status = monitor(server, "on-b")
        return status["running"] == 0 and status["replicas"][0]["pending"] == 0

    server.wait_for(stopped, timeout=30)
    generated = monitor(server, "on-b")["engine"]["tokens_generated"]
    time.sleep(1.0)
    assert monitor(server, "on-b")["engine"]["tokens_generated"] == generated  # nothing runs on
    server.wait_for(lambda: "cancelled after" in server.log(), timeout=30)  # the replica's own log, forwarded


def node_jobs(server, model: str) -> list[dict]:
    """The gallery jobs of nodes fetching `model`'s files, oldest first."""
    jobs = server.get("/models/jobs").json().values()
    return [job for job in jobs if job["gallery_element_name"].startswith(f"{model} on node ")]


def test_a_node_without_the_models_folder_fetches_a_gallery_install_s_files_as_a_job_checking_their_sha256(
        cluster, hub, gemma_gguf):
    _, server, _ = cluster
    uri = hub.hf("acme/gemma", "fetched.gguf", gemma_gguf)
    digest = hashlib.sha256(gemma_gguf.read_bytes()).hexdigest()
    body = one_file_body(hub, "fetched", "fetched.gguf", uri, digest)
    body["overrides"] = {"threads": 1, "context_size": 512, "resources": {"num_cpus": 1, "custom": {"node_c": 1}}}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"], timeout=120)
    assert job["error"] is None, job
    installed = yaml.safe_load((server.models_path / "fetched.yaml").read_text())
    assert installed["installed_from"] == [{"filename": "fetched.gguf", "uri": uri, "sha256": digest}]

    # A hand-written record giving that model's file other content: refused before a node
    # replaces the file, as an install writing it would be.
    claim = {**installed, "name": "claim", "installed_from": [{"filename": "fetched.gguf", "uri": uri,
                                                               "sha256": "0" * 64}]}
    (server.models_path / "claim.yaml").write_text(yaml.safe_dump(claim))
    server.wait_for(lambda: server.get("/v1/models/claim").status_code == 200)
    error = assert_error(server.post("/v1/completions", json={"model": "claim", "prompt": "Hi", "max_tokens": 2}), 500)
    assert error["code"] == "file_not_owned" and "model 'fetched'" in error["message"], error
    assert node_jobs(server, "claim") == []

    # The source no longer matches what was installed: node C refuses it and keeps nothing.
    place(gemma_gguf, server.models_path / "wrong.gguf")
    wrong = {**installed, "name": "wrong-sum", "parameters": {**installed["parameters"], "model": "wrong.gguf"},
             "installed_from": [{"filename": "wrong.gguf", "uri": uri, "sha256": "0" * 64}]}
    (server.models_path / "wrong-sum.yaml").write_text(yaml.safe_dump(wrong))
    server.wait_for(lambda: server.get("/v1/models/wrong-sum").status_code == 200)
    error = assert_error(server.post("/v1/completions", json={"model": "wrong-sum", "prompt": "Hi", "max_tokens": 2}),
                         500)
    assert error["code"] == "model_files_failed" and "'wrong-sum'" in error["message"], error
    assert not any(path.name.startswith(("wrong.gguf", "fetched.gguf")) for path in server.node_c_models.iterdir())
    [failed] = node_jobs(server, "wrong-sum")
    assert failed["processed"] and "sha256" in failed["error"], failed

    fetches = len(hub.requests_for("fetched.gguf"))
    reply = server.client().completions.create(model="fetched", prompt="The capital of France is", max_tokens=4)
    assert reply.choices[0].text
    fetched = server.node_c_models / "fetched.gguf"
    assert fetched.stat().st_size == gemma_gguf.stat().st_size
    assert len(hub.requests_for("fetched.gguf")) > fetches  # fetched again, by node C
    [job] = node_jobs(server, "fetched")  # listed as the gallery's jobs are, and finished
    assert job["message"] == "completed" and job["installed_model"] == "fetched" and job["error"] is None, job
    assert job["downloaded_bytes"] == job["total_bytes"] == gemma_gguf.stat().st_size
    server.post("/backend/shutdown", json={"model": "fetched"}).raise_for_status()

    # Loaded again with its file in place: no fetch, no job.  With the file changed on the
    # node (an older install's weights), fetched again: a file counts only with its checksum.
    server.client().completions.create(model="fetched", prompt="Hi", max_tokens=2)
    server.post("/backend/shutdown", json={"model": "fetched"}).raise_for_status()
    assert len(node_jobs(server, "fetched")) == 1
    with fetched.open("ab") as handle:
        handle.write(b"older weights")
    server.client().completions.create(model="fetched", prompt="Hi", max_tokens=2)
    assert len(node_jobs(server, "fetched")) == 2
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == digest
    server.post("/backend/shutdown", json={"model": "fetched"}).raise_for_status()


def test_a_node_fetches_an_archive_install_and_puts_its_files_where_the_install_did(cluster, hub, gemma_gguf,
                                                                                       tmp_path):
    _, server, _ = cluster
    bundle = tmp_path / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        tar.add(gemma_gguf, arcname="weights/model.gguf")
        info = tarfile.TarInfo("README")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    uri = hub.hf("acme/bundle", "bundle.tar", bundle)
    config = hub.github("acme/defs", "bundled.yaml", "name: bundled\nparameters:\n  model: weights/model.gguf\n")
    body = {"config_url": config, "files": [{"filename": "bundle.tar", "uri": uri,
                                             "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest()}],
            "overrides": {"threads": 1, "context_size": 512, "resources": {"num_cpus": 1, "custom": {"node_c": 1}}}}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"], timeout=120)
    assert job["error"] is None, job
    installed = yaml.safe_load((server.models_path / "bundled.yaml").read_text())
    [record] = installed["installed_from"]
    assert record["filename"] == "bundle.tar" and set(record["unpacked"]) == set(installed["installed_files"])

    reply = server.client().completions.create(model="bundled", prompt="The capital of France is", max_tokens=4)
    assert reply.choices[0].text
    node = server.node_c_models
    assert (node / installed["parameters"]["model"]).read_bytes() == gemma_gguf.read_bytes()
    assert (node / "bundled" / "README").read_bytes() == b"hello"
    assert not (node / "bundle.tar").exists()  # unpacked, and gone, as on the front-end
    [job] = node_jobs(server, "bundled")
    assert job["message"] == "completed", job
    server.post("/backend/shutdown", json={"model": "bundled"}).raise_for_status()


def test_a_node_s_fetch_cancelled_as_a_job_fails_its_request_and_leaves_no_partial_file(cluster, hub, gemma_gguf):
    _, server, _ = cluster
    slow_model(server, hub, gemma_gguf, "slow")
    asking, answer = ask_in_background(server, "slow")
    [job] = fetching_jobs(server, "slow")
    assert job["cancellable"] and job["total_bytes"] == gemma_gguf.stat().st_size, job
    cancelled = server.post(f"/models/jobs/{job['uuid']}/cancel").json()
    assert cancelled["cancelled"] and cancelled["processed"], cancelled
    asking.join(timeout=60)
    error = assert_error(answer["response"], 503)
    assert error["code"] == "model_files_cancelled" and job["uuid"] in error["message"], error
    assert not any(path.name.startswith("slow.gguf") for path in server.node_c_models.iterdir())


def slow_model(server, hub, gemma_gguf, name: str, extra: str = "resources: {num_cpus: 1, custom: {node_c: 1}}\n"):
    """A model whose files node C fetches slowly from the hub (its front-end copy in place)."""
    place(gemma_gguf, server.models_path / f"{name}.gguf")
    uri = hub.hf(f"acme/{name}", f"{name}.gguf", gemma_gguf, delay=0.05)
    digest = hashlib.sha256(gemma_gguf.read_bytes()).hexdigest()
    (server.models_path / f"{name}.yaml").write_text(model_yaml(name, extra).replace(GEMMA_FILE, f"{name}.gguf")
                                                     + yaml.safe_dump({"installed_from": [
                                                         {"filename": f"{name}.gguf", "uri": uri, "sha256": digest}]}))
    server.wait_for(lambda: server.get(f"/v1/models/{name}").status_code == 200)


def ask_in_background(server, model: str) -> tuple[threading.Thread, dict]:
    answer: dict = {}

    def ask() -> None:
        try:
            answer["response"] = server.post("/v1/completions", json={"model": model, "prompt": "Hi", "max_tokens": 2})
        except requests.RequestException as exc:  # its server stopped
            answer["failure"] = exc
    asking = threading.Thread(target=ask)
    asking.start()
    return asking, answer


def fetching_jobs(server, model: str) -> list[dict]:
    server.wait_for(lambda: any(job["downloaded_bytes"] and not job["processed"] for job in node_jobs(server, model)),
                    timeout=60)
    return node_jobs(server, model)


def test_unloading_a_model_while_its_node_fetches_cancels_the_fetch_and_is_no_load_failure(cluster, hub, gemma_gguf):
    _, server, _ = cluster
    slow_model(server, hub, gemma_gguf, "unloaded")
    asking, answer = ask_in_background(server, "unloaded")
    [job] = fetching_jobs(server, "unloaded")
    assert server.post("/backend/shutdown", json={"model": "unloaded"}).json()["unloaded"]
    asking.join(timeout=60)
    error = assert_error(answer["response"], 500)
    assert error["code"] == "model_unloaded", error
    [job] = node_jobs(server, "unloaded")  # the node stopped its download: cancelled, not an error
    assert job["cancelled"] and job["message"] == "cancelled" and job["error"] is None, job
    assert not any(path.name.startswith("unloaded.gguf") for path in server.node_c_models.iterdir())

    # Not counted as a failed load: the next request loads it again at once (a new fetch)
    # rather than hearing the last error until a back-off ends.
    asking, answer = ask_in_background(server, "unloaded")
    _, again = fetching_jobs(server, "unloaded")
    server.post(f"/models/jobs/{again['uuid']}/cancel").raise_for_status()
    asking.join(timeout=60)
    assert assert_error(answer["response"], 503)["code"] == "model_files_cancelled"


def test_unloading_a_model_while_a_new_replica_fetches_its_files_stops_that_fetch_and_removes_its_partial(
        cluster, hub, gemma_gguf):
    _, server, _ = cluster
    slow_model(server, hub, gemma_gguf, "refetch", "replicas: 2\nresources: {num_cpus: 0.5, custom: {node_c: 0.5}}\n")
    hub.behaviour.pop("/acme/refetch/resolve/main/refetch.gguf")  # the first load fetches at full speed
    assert server.client().completions.create(model="refetch", prompt="Hi", max_tokens=2).choices
    first, _ = monitor(server, "refetch")["replicas"]
    (server.node_c_models / "refetch.gguf").unlink()  # gone from the node: a new replica fetches it again, slowly
    hub.hf("acme/refetch", "refetch.gguf", gemma_gguf, delay=0.05)
    os.kill(first["pid"], signal.SIGKILL)
    *_, replacing = fetching_jobs(server, "refetch")
    assert server.post("/backend/shutdown", json={"model": "refetch"}).json()["unloaded"]
    [replacing] = [job for job in node_jobs(server, "refetch") if job["uuid"] == replacing["uuid"]]
    assert replacing["cancelled"] and replacing["message"] == "cancelled", replacing
    assert not any(path.name.startswith("refetch.gguf") for path in server.node_c_models.iterdir())


def test_a_first_load_failing_in_one_replica_stops_the_others_instead_of_fetching_again(cluster, hub, gemma_gguf):
    _, server, _ = cluster
    # Both replicas on node C: one fetches, the other waits for the file's lock.
    slow_model(server, hub, gemma_gguf, "pair", "replicas: 2\nresources: {num_cpus: 0.5, custom: {node_c: 0.5}}\n")
    asking, answer = ask_in_background(server, "pair")
    [job] = fetching_jobs(server, "pair")
    server.post(f"/models/jobs/{job['uuid']}/cancel").raise_for_status()
    asking.join(timeout=60)
    assert "response" in answer, "still waiting: the other replica went on to fetch the file again"
    assert assert_error(answer["response"], 503)["code"] == "model_files_cancelled"
    time.sleep(3)  # the waiting replica would have the lock by now, and list a fetch of its own
    assert len(node_jobs(server, "pair")) == 1
    assert not any(path.name.startswith("pair.gguf") for path in server.node_c_models.iterdir())


def test_a_front_end_stopped_while_a_node_fetches_leaves_the_partial_file_for_the_next_fetch_to_resume(
        cluster, hub, gemma_gguf, tmp_path):
    ray_cluster, server, _ = cluster
    (tmp_path / "models").mkdir()
    other = start_server(tmp_path / "models", tmp_path, "--ray", ray_cluster.address, env=hub.env)
    try:
        slow_model(other, hub, gemma_gguf, "resumed")
        asking, _ = ask_in_background(other, "resumed")
        fetching_jobs(other, "resumed")
    finally:
        stop_server(other)
    asking.join(timeout=30)
    partial = server.node_c_models / "resumed.gguf.partial"
    server.wait_for(lambda: partial.exists() and partial.stat().st_size > 0, timeout=10)  # as an install's is
    time.sleep(2)  # its replica, killed with the front-end that placed it, writes no more
    kept = partial.stat().st_size
    assert 0 < kept < gemma_gguf.stat().st_size

    slow_model(server, hub, gemma_gguf, "resumed")  # the same install, served by the cluster's own front-end
    hub.behaviour.pop("/acme/resumed/resolve/main/resumed.gguf")  # at full speed now
    reply = server.client().completions.create(model="resumed", prompt="Hi", max_tokens=2)
    assert reply.choices
    last = hub.requests_for("resumed.gguf")[-1]
    assert last.range == f"bytes={kept}-", last  # resumed where the stopped fetch left off
    fetched = server.node_c_models / "resumed.gguf"
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == hashlib.sha256(gemma_gguf.read_bytes()).hexdigest()
    server.post("/backend/shutdown", json={"model": "resumed"}).raise_for_status()


def test_a_hung_replica_is_killed_alone_after_busy_timeout_and_the_other_serves(cluster):
    _, server, _ = cluster
    client = server.client()
    assert client.completions.create(model="hang", prompt="Hi", max_tokens=2).choices
    assert [replica["state"] for replica in monitor(server, "hang")["replicas"]] == ["ready", "ready"]
    with requests.post(server.url + "/v1/completions", json={**STORY, "model": "hang", "stream": True}, stream=True,
                       timeout=120) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith(b"data: "))
        replicas = monitor(server, "hang")["replicas"]
        [busy] = [replica for replica in replicas if replica["running"]]
        [other] = [replica for replica in replicas if not replica["running"]]
        os.kill(busy["pid"], signal.SIGSTOP)  # hangs: answers nothing, generates nothing
        try:
            payloads = [line[6:] for line in lines if line.startswith(b"data: ")]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(busy["pid"], signal.SIGCONT)
    errors = [json.loads(p)["error"] for p in payloads if p != b"[DONE]" and "error" in json.loads(p)]
    assert errors and errors[0]["code"] == "replica_died" and "--busy-timeout" in errors[0]["message"], errors

    def gone() -> bool:
        try:
            os.kill(busy["pid"], 0)
        except ProcessLookupError:
            return True
        return False

    server.wait_for(gone, timeout=30)  # its process, killed
    # The other replica serves on, and a new one takes the hung one's place.
    assert client.completions.create(model="hang", prompt="Hi", max_tokens=2).choices
    status = monitor(server, "hang")
    assert status["state"] in ("ready", "busy") and busy["pid"] not in [r["pid"] for r in status["replicas"]]
    [still] = [r for r in status["replicas"] if r["pid"] == other["pid"]]  # killed alone: the other one serves on
    assert still["state"] == "ready" and still["served"] >= other["served"], (other, still)
    server.wait_for(lambda: [r["state"] for r in monitor(server, "hang")["replicas"]] == ["ready", "ready"], timeout=90)
    server.post("/backend/shutdown", json={"model": "hang"}).raise_for_status()


def test_a_model_asking_for_what_no_node_has_is_a_503_at_once(cluster):
    _, server, _ = cluster
    started = time.monotonic()
    response = server.post("/v1/completions", json={"model": "nowhere", "prompt": "Hi", "max_tokens": 2})
    error = assert_error(response, 503)
    assert time.monotonic() - started < 10
    assert error["code"] == "no_node_fits" and "nowhere" in error["message"] and "GPU=8" in error["message"]


def test_removing_a_node_mid_stream_fails_its_stream_cleanly_and_the_next_is_served_from_the_other(cluster):
    ray_cluster, server, node_b = cluster
    head = ray_cluster.head_node.node_id
    monitor(server, "two")  # loaded by the test above
    streams = [requests.post(server.url + "/v1/completions", json={**STORY, "model": "two", "stream": True},
                             stream=True, timeout=120) for _ in range(2)]
    lines = [response.iter_lines() for response in streams]
    for it in lines:  # both are generating, one on each replica
        assert next(line for line in it if line.startswith(b"data: "))
    replicas = monitor(server, "two")["replicas"]
    assert sorted(replica["running"] for replica in replicas) == [1, 1]

    ray_cluster.remove_node(node_b)

    outcomes = []
    for it, response in zip(lines, streams):
        payloads = [line[6:] for line in it if line.startswith(b"data: ")]
        response.close()
        errors = [json.loads(p)["error"] for p in payloads if p != b"[DONE]" and "error" in json.loads(p)]
        outcomes.append(errors[0] if errors else "finished")
    assert outcomes.count("finished") == 1, outcomes
    error = next(outcome for outcome in outcomes if outcome != "finished")
    assert error["code"] == "replica_died" and "'two'" in error["message"], error

    def served_by_ready() -> dict:  # a replacement may be waiting for a node with room (none has)
        return {r["node_id"]: r["served"] for r in monitor(server, "two")["replicas"] if r["state"] == "ready"}

    served = served_by_ready()
    assert list(served) == [head]
    reply = server.client().completions.create(model="two", prompt="The capital of France is", max_tokens=8)
    assert reply.choices[0].text
    assert served_by_ready()[head] == served[head] + 1

    # The model that asked for node B had its only replica there: it has gone, and it fits nowhere now.
    server.wait_for(lambda: monitor(server, "on-b")["state"] == "unloaded", timeout=30)
    assert_error(server.post("/v1/completions", json={"model": "on-b", "prompt": "Hi", "max_tokens": 2}), 503)


def test_without_ray_the_same_yaml_is_served_by_a_local_worker_and_ray_is_not_loaded(tmp_path, gemma_gguf, make_server):
    folder = tmp_path / "models"
    folder.mkdir()
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "two.yaml").write_text(model_yaml("two", "replicas: 2\nresources: {num_cpus: 1, custom: {slot: 1}}\n"))
    server = make_server(folder)
    reply = server.client().completions.create(model="two", prompt="The capital of France is", max_tokens=4)
    assert reply.choices[0].text
    status = monitor(server, "two")
    assert status["pid"] and "replicas" not in status
    system = server.get("/system").json()
    assert [m["ignored_fields"] for m in system["models"] if m["id"] == "two"] == [[]]
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "_raylet" not in maps and "/ray/" not in maps  # the front-end never imported ray


def test_a_model_s_engine_figures_add_its_replicas_counts_and_keep_only_shared_settings():
    from localhost_ai.runtime.ray_placement import merge_stats

    merged = merge_stats([{"tokens_generated": 5, "slots": 8, "context_per_slot": 1024, "prefill_chunk": 512,
                           "max_sequences_in_step": 3},
                          {"tokens_generated": 7, "slots": 8, "context_per_slot": 2048, "prefill_chunk": 512,
                           "max_sequences_in_step": 6, "drafted": 2}])
    assert merged == {"tokens_generated": 12, "slots": 16, "prefill_chunk": 512, "max_sequences_in_step": 6,
                      "drafted": 2}  # replicas that disagree on context_per_slot: no one figure for the model
