"""Installing models from galleries, definition URLs and config URLs, through a loopback hub."""

from __future__ import annotations

import time

import yaml

from tests.conftest import GEMMA_FILE, assert_error
from tests.gallery.conftest import blob, files_under, gallery_env, one_file_body, sha, wait_job

CHAT_TEMPLATE = "{% for m in messages %}Question: {{ m.content }}\n{% endfor %}Answer:"


def gemma_index(hub, gemma_gguf, **entry_extra) -> str:
    uri = hub.hf("google/gemma-3-270m-GGUF", GEMMA_FILE, gemma_gguf)
    entry = {
        "name": "gemma-hub",
        "description": "Gemma from the loopback hub",
        "license": "gemma",
        "tags": ["llm"],
        "config_file": yaml.safe_dump({
            "backend": "llama-cpp",
            "parameters": {"model": GEMMA_FILE, "temperature": 0, "max_tokens": 8},
            "context_size": 1024,
            "stopwords": ["\nQuestion:"],
            "template": {"chat": CHAT_TEMPLATE},
        }),
        "files": [{"filename": GEMMA_FILE, "uri": uri, "sha256": sha(gemma_gguf.read_bytes())}],
        **entry_extra,
    }
    return hub.github("acme/gallery", "index.yaml", yaml.safe_dump([entry]))


def test_install_by_id_then_chat_without_restart(tmp_path, hub, gemma_gguf, make_server):
    index = gemma_index(hub, gemma_gguf)
    server = make_server(tmp_path / "models", env=gallery_env(hub, index))
    available = server.get("/models/available").json()
    assert [(m["id"], m["installed"]) for m in available] == [("test@gemma-hub", False)]

    reply = server.post("/models/apply", json={"id": "test@gemma-hub"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == f"{server.url}/models/jobs/{body['uuid']}"
    job = wait_job(server, body["uuid"])
    assert job["error"] is None and job["progress"] == 100 and job["message"] == "completed"
    assert job["gallery_element_name"] == "test@gemma-hub"
    assert job["file_size"] == gemma_gguf.stat().st_size == job["downloaded_size"]

    server.wait_for(lambda: "gemma-hub" in [m["id"] for m in server.get("/v1/models").json()["data"]])
    chat = server.client().chat.completions.create(
        model="gemma-hub", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert "Paris" in chat.choices[0].message.content
    assert server.get("/models/available").json()[0]["installed"] is True
    assert sorted(server.get("/models/jobs").json()) == [body["uuid"]]


def test_bare_name_and_name_and_overrides(tmp_path, hub, gemma_gguf, make_server):
    index = gemma_index(hub, gemma_gguf)
    models = tmp_path / "models"
    server = make_server(models, env=gallery_env(hub, index))
    uuid = server.post("/models/apply", json={
        "id": "gemma-hub", "name": "renamed", "overrides": {"parameters": {"max_tokens": 3}, "context_size": 512},
    }).json()["uuid"]
    assert wait_job(server, uuid)["error"] is None
    config = yaml.safe_load((models / "renamed.yaml").read_text())
    assert config["name"] == "renamed"
    assert config["parameters"] == {"model": GEMMA_FILE, "temperature": 0, "max_tokens": 3}
    assert config["context_size"] == 512 and config["installed_files"] == [GEMMA_FILE]
    server.wait_for(lambda: "renamed" in [m["id"] for m in server.get("/v1/models").json()["data"]])
    reply = server.post("/v1/completions", json={"model": "renamed", "prompt": "Once upon a time"}).json()
    assert reply["usage"]["completion_tokens"] == 3


def test_install_by_definition_url_and_by_config_url(tmp_path, hub, make_server):
    data = blob(300_000, seed=1)
    file_uri = hub.hf("acme/tiny", "tiny.gguf", data)
    definition = hub.github("acme/defs", "tiny.yaml", yaml.safe_dump({
        "name": "tiny-def",
        "config_file": "backend: llama-cpp\nparameters:\n  model: tiny.gguf\n",
        "files": [{"filename": "tiny.gguf", "uri": file_uri, "sha256": sha(data)}],
    }))
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    job = wait_job(server, server.post("/models/apply", json={"url": definition, "name": "by-url"}).json()["uuid"])
    assert job["error"] is None, job
    assert (models / "tiny.gguf").read_bytes() == data
    assert yaml.safe_load((models / "by-url.yaml").read_text())["parameters"]["model"] == "tiny.gguf"

    config = hub.github("acme/defs", "config.yaml", "name: by-config\nbackend: llama-cpp\nparameters:\n  model: other.gguf\n")
    other = hub.hf("acme/tiny", "other.gguf", data[:1000])
    body = {"config_url": config, "files": [{"filename": "other.gguf", "uri": other, "sha256": sha(data[:1000])}]}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] is None, job
    assert yaml.safe_load((models / "by-config.yaml").read_text())["name"] == "by-config"
    assert (models / "other.gguf").stat().st_size == 1000


def test_localai_go_templates_are_kept_and_the_model_is_served_with_them(tmp_path, hub, make_server):
    data = blob(1000, seed=2)
    uri = hub.hf("acme/x", "x.gguf", data)
    definition = hub.github("acme/defs", "chatml.yaml", yaml.safe_dump({
        "name": "chatml",
        "config_file": "backend: llama-cpp\ntemplate:\n  chat_message: |\n    <|im_start|>{{.RoleName}}\n    {{.Content}}<|im_end|>\n  chat: |\n    {{.Input -}}\n    <|im_start|>assistant\n",
    }))
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = {"url": definition, "name": "localai-style", "files": [{"filename": "x.gguf", "uri": uri, "sha256": sha(data)}]}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] is None, job
    config = yaml.safe_load((models / "localai-style.yaml").read_text())
    assert config["template"]["chat_message"] == "<|im_start|>{{.RoleName}}\n{{.Content}}<|im_end|>\n"
    assert config["parameters"]["model"] == "x.gguf"
    system = server.get("/system").json()
    assert "localai-style" in [m["id"] for m in system["models"]], system["invalid"]


def test_progress_rises_while_a_slow_file_downloads(tmp_path, hub, make_server):
    data = blob(2_000_000, seed=3)
    uri = hub.hf("acme/slow", "slow.gguf", data, delay=0.05)
    server = make_server(tmp_path / "models", env=hub.env)
    body = one_file_body(hub, "slow", "slow.gguf", uri, sha(data))
    uuid = server.post("/models/apply", json=body).json()["uuid"]
    seen = []
    while True:
        job = server.get(f"/models/jobs/{uuid}").json()
        if job["processed"]:
            break
        if job["downloaded_size"]:
            seen.append((job["progress"], job["downloaded_size"]))
        time.sleep(0.1)
    assert job["error"] is None
    assert len({size for _, size in seen}) >= 3, seen
    assert seen == sorted(seen)
    assert 0 < seen[0][0] < seen[-1][0] < 100
    assert job["file_name"] == "slow.gguf" and job["file_size"] == len(data)


def test_a_cut_connection_resumes_with_range(tmp_path, hub, make_server):
    data = blob(1_500_000, seed=4)
    uri = hub.hf("acme/cut", "cut.gguf", data, cut_after=600_000)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = one_file_body(hub, "cut", "cut.gguf", uri, sha(data))
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] is None, job
    ranges = [r.range for r in hub.requests_for("cut.gguf")]
    assert ranges[0] is None and ranges[-1] == "bytes=600000-", ranges
    assert (models / "cut.gguf").read_bytes() == data


def test_transient_errors_are_retried(tmp_path, hub, make_server):
    data = blob(10_000, seed=5)
    uri = hub.hf("acme/flaky", "flaky.gguf", data, fail_times=2)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = one_file_body(hub, "flaky", "flaky.gguf", uri, sha(data))
    assert wait_job(server, server.post("/models/apply", json=body).json()["uuid"])["error"] is None
    assert len(hub.requests_for("flaky.gguf")) == 3


def test_a_wrong_checksum_fails_and_leaves_nothing(tmp_path, hub, make_server):
    data = blob(200_000, seed=6)
    uri = hub.hf("acme/bad", "bad.gguf", data)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = one_file_body(hub, "bad", "bad.gguf", uri, "0" * 64)
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert "sha256" in job["error"] and job["message"] == "error"
    assert files_under(models) == set()
    assert "bad" not in [m["id"] for m in server.get("/v1/models").json()["data"]]


def test_cancel_removes_partial_files(tmp_path, hub, make_server):
    data = blob(3_000_000, seed=7)
    uri = hub.hf("acme/slow", "cancel.gguf", data, delay=0.05)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = one_file_body(hub, "c", "cancel.gguf", uri, sha(data))
    uuid = server.post("/models/apply", json=body).json()["uuid"]
    server.wait_for(lambda: server.get(f"/models/jobs/{uuid}").json()["downloaded_size"] > 0)
    assert (models / "cancel.gguf.partial").exists()
    job = server.post(f"/models/jobs/{uuid}/cancel").json()
    assert job["cancelled"] is True and job["processed"] is True and job["cancellable"] is False
    assert files_under(models) == set()
    # DELETE is the other spelling; on a finished job it changes nothing
    assert server.post(f"/models/jobs/{uuid}/cancel").status_code == 200
    assert_error(server.get("/models/jobs/no-such-job"), 404)


def test_two_jobs_run_at_once(tmp_path, hub, make_server):
    first, second = blob(1_000_000, seed=8), blob(1_000_000, seed=9)
    uris = [hub.hf("acme/two", f"{n}.gguf", d, delay=0.03) for n, d in (("a", first), ("b", second))]
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    uuids = []
    for name, uri, data in zip("ab", uris, (first, second)):
        config = hub.github("acme/defs", f"{name}.yaml", f"name: {name}\nparameters:\n  model: {name}.gguf\n")
        uuids.append(server.post("/models/apply", json={"config_url": config, "files": [
            {"filename": f"{name}.gguf", "uri": uri, "sha256": sha(data)}]}).json()["uuid"])
    overlap = False
    while not overlap:
        states = [server.get(f"/models/jobs/{u}").json() for u in uuids]
        if all(s["processed"] for s in states):
            break
        overlap = all(0 < s["downloaded_size"] < 1_000_000 for s in states)
        time.sleep(0.02)
    assert overlap, "both files were downloading at the same time"
    assert all(wait_job(server, u)["error"] is None for u in uuids)


def test_delete_removes_the_yaml_and_files_no_other_model_uses(tmp_path, hub, make_server):
    shared, own = blob(1000, seed=10), blob(1000, seed=11)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    for name, files in (("one", ["shared.gguf", "own.gguf"]), ("two", ["shared.gguf"])):
        body = {"config_url": hub.github("acme/defs", f"{name}.yaml", f"name: {name}\nparameters:\n  model: {files[0]}\n"),
                "files": [{"filename": f, "uri": hub.hf("acme/d", f, shared if f == "shared.gguf" else own)} for f in files]}
        assert wait_job(server, server.post("/models/apply", json=body).json()["uuid"])["error"] is None
    reply = server.post("/models/delete/one").json()
    assert reply["deleted"] is True and sorted(reply["removed_files"]) == ["one.yaml", "own.gguf"]
    assert files_under(models) == {"shared.gguf", "two.yaml"}
    assert_error(server.post("/models/delete/one"), 404)


def test_galleries_can_be_listed_added_and_removed(tmp_path, hub, gemma_gguf, make_server):
    server = make_server(tmp_path / "models", env=hub.env)
    assert [g["name"] for g in server.get("/models/galleries").json()] == ["localhost-ai"]
    builtin = {m["name"] for m in server.get("/models/available").json()}
    assert {"gemma-3-270m-it-qat", "qwen2.5-0.5b-instruct", "whisper-tiny.en"} <= builtin
    index = gemma_index(hub, gemma_gguf)
    listed = server.post("/models/galleries", json={"name": "extra", "url": index}).json()
    assert [g["name"] for g in listed] == ["localhost-ai", "extra"]
    assert "extra@gemma-hub" in {m["id"] for m in server.get("/models/available").json()}
    assert [g["name"] for g in requests_delete(server, "/models/galleries", {"name": "extra"})] == ["localhost-ai"]
    assert_error(server.post("/models/galleries", json={"name": "f", "url": "file:///etc/passwd"}), 400, "url")


def requests_delete(server, path, body):
    import requests

    return requests.delete(server.url + path, json=body, timeout=10).json()
