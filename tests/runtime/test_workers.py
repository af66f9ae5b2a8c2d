"""Every model in its own worker process: crashes, hangs, unloading, queues, shutdown."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import GEMMA_FILE, GEMMA_YAML, assert_error, metric_samples

PLUGINS = str(Path(__file__).parent.parent / "plugins")
LONG = {"prompt": "Once upon a time, in a kingdom by the sea,", "max_tokens": 600, "stop": []}


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "State:\tZ" not in status.read()
    except FileNotFoundError:
        return False


def worker_pid(server, model: str = "gemma") -> int | None:
    return server.get(f"/backend/monitor?model={model}").json()["pid"]


def add_second_model(folder: Path, name: str = "second") -> None:
    (folder / f"{name}.yaml").write_text(GEMMA_YAML.format(model=GEMMA_FILE).replace("name: gemma", f"name: {name}"))


def complete(server, model: str = "gemma", **extra):
    return server.post("/v1/completions", json={"model": model, "prompt": "Hello", "max_tokens": 2, **extra})


def test_a_worker_killed_mid_stream_fails_the_stream_and_is_started_again(models_dir, make_server):
    server = make_server(models_dir)
    with requests.post(server.url + "/v1/completions", json={"model": "gemma", **LONG, "stream": True},
                       stream=True, timeout=60) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith(b"data: "))
        pid = worker_pid(server)
        os.kill(pid, signal.SIGKILL)
        rest = [line[6:] for line in lines if line.startswith(b"data: ")]
    context = f"events: {rest[-3:]}\nlog:\n{server.log()[-3000:]}"
    assert rest[-1] == b"[DONE]", context
    error = json.loads(rest[-2])["error"]
    assert "gemma" in error["message"] and "SIGKILL" in error["message"], context
    assert error["code"] == "worker_died"

    reply = complete(server)
    assert reply.status_code == 200, reply.text + context
    assert worker_pid(server) != pid
    samples = metric_samples(server)
    assert samples[("localhost_ai_worker_restarts_total", (("model", "gemma"),))] == 1, context
    assert samples[("localhost_ai_worker_deaths_total", (("model", "gemma"),))] == 1, context


def test_a_worker_that_dies_during_a_plain_request_gives_500_naming_the_model(tmp_path, make_server):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"x")
    (folder / "hang.yaml").write_text("name: hang\nbackend: test-hang\nparameters:\n  model: weights.bin\n")
    server = make_server(folder, env={"PYTHONPATH": PLUGINS, "LOCALHOST_AI_BACKENDS": "hang_backend"})
    error = assert_error(server.post("/v1/completions", json={"model": "hang", "prompt": "crash"}), 500)
    assert "hang" in error["message"] and "SIGABRT" in error["message"]
    assert server.get("/healthz").status_code == 200


def test_a_hung_worker_is_killed_after_the_busy_timeout(tmp_path, make_server):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"x")
    (folder / "hang.yaml").write_text("name: hang\nbackend: test-hang\nparameters:\n  model: weights.bin\n")
    server = make_server(folder, "--busy-timeout", "2s", env={"PYTHONPATH": PLUGINS, "LOCALHOST_AI_BACKENDS": "hang_backend"})
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.post, "/v1/completions", json={"model": "hang", "prompt": "hang"})
        server.wait_for(lambda: worker_pid(server, "hang") is not None)
        pid = worker_pid(server, "hang")
        response = pending.result(timeout=60)
    error = assert_error(response, 500)
    assert "hang" in error["message"] and "busy-timeout" in error["message"]
    assert not pid_alive(pid)
    assert server.get("/backend/monitor?model=hang").json()["state"] == "unloaded"


def test_least_recently_used_model_is_unloaded_beyond_max_loaded_models(models_dir, make_server):
    add_second_model(models_dir)
    server = make_server(models_dir, "--max-loaded-models", "1")
    assert complete(server, "gemma").status_code == 200
    first = worker_pid(server, "gemma")
    assert complete(server, "second").status_code == 200
    assert worker_pid(server, "gemma") is None
    assert not pid_alive(first)
    assert [m["model"] for m in server.get("/system").json()["loaded"]] == ["second"]
    assert "to make room for second" in server.log()


def test_an_idle_model_is_unloaded_after_the_idle_timeout(models_dir, make_server):
    server = make_server(models_dir, "--idle-timeout", "2s")
    assert complete(server).status_code == 200
    pid = worker_pid(server)
    assert pid_alive(pid)
    server.wait_for(lambda: not pid_alive(pid), timeout=20)
    assert server.get("/backend/monitor?model=gemma").json()["state"] == "unloaded"
    assert complete(server).status_code == 200  # and it comes back on the next request


def test_concurrent_first_requests_load_the_model_once(models_dir, make_server):
    server = make_server(models_dir)
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: complete(server), range(6)))
    assert all(r.status_code == 200 for r in replies)
    assert server.log().count("started; loading") == 1
    assert metric_samples(server)[("localhost_ai_model_loads_total", (("model", "gemma"), ("outcome", "ok")))] == 1


def test_a_failed_load_reaches_every_waiting_request_and_is_retried_after_a_while(models_dir, make_server):
    (models_dir / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 4096)
    (models_dir / "broken.yaml").write_text("name: broken\nparameters:\n  model: broken.gguf\n")
    server = make_server(models_dir)
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: complete(server, "broken"), range(4)))
    for reply in replies:
        assert "broken" in assert_error(reply, 500)["message"]
    failed_once = metric_samples(server)[("localhost_ai_model_loads_total", (("model", "broken"), ("outcome", "failed")))]
    assert failed_once == 1
    at_once = complete(server, "broken")  # within the back-off: the same answer, no new worker
    assert assert_error(at_once, 500) == replies[0].json()["error"] and at_once.headers["Retry-After"] == "2"
    time.sleep(2.1)
    assert_error(complete(server, "broken"), 500)
    assert metric_samples(server)[("localhost_ai_model_loads_total", (("model", "broken"), ("outcome", "failed")))] == 2


def test_a_full_queue_answers_429_with_retry_after(models_dir, make_server):
    with (models_dir / "gemma.yaml").open("a") as config:
        config.write("parallel: 1\n")  # one running call, so that the next one queues
    server = make_server(models_dir, "--max-queue", "1")
    assert complete(server).status_code == 200
    with requests.post(server.url + "/v1/completions", json={"model": "gemma", **LONG, "stream": True},
                       stream=True, timeout=60) as running:
        lines = running.iter_lines()  # kept: dropping the iterator would close the stream
        next(line for line in lines if line.startswith(b"data: "))
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(complete, server)
            server.wait_for(lambda: server.get("/backend/monitor?model=gemma").json()["queue_length"] == 1)
            response = complete(server)
            error = assert_error(response, 429)
            assert error["code"] == "queue_full" and "gemma" in error["message"]
            assert int(response.headers["Retry-After"]) >= 1
    assert waiting.result(timeout=60).status_code == 200


def test_monitor_and_shutdown_endpoints(models_dir, make_server):
    server = make_server(models_dir)
    assert server.get("/backend/monitor?model=gemma").json()["state"] == "unloaded"
    assert complete(server).status_code == 200
    status = requests.get(server.url + "/backend/monitor", json={"model": "gemma"}, timeout=10).json()
    assert status["state"] == "ready" and status["queue_length"] == 0
    assert status["memory"]["rss"] > 100 * 1024 * 1024  # the weights are in there
    assert status["uptime_seconds"] > 0 and pid_alive(status["pid"])
    with requests.post(server.url + "/v1/completions", json={"model": "gemma", **LONG, "stream": True},
                       stream=True, timeout=60) as running:
        lines = running.iter_lines()
        next(line for line in lines if line.startswith(b"data: "))
        assert server.get("/backend/monitor?model=gemma").json()["state"] == "busy"
    shut = server.post("/backend/shutdown", json={"model": "gemma"}).json()
    assert shut == {"model": "gemma", "unloaded": True}
    server.wait_for(lambda: not pid_alive(status["pid"]))
    assert server.get("/system").json()["loaded"] == []
    assert_error(server.get("/backend/monitor?model=nope"), 404, "model")
    assert_error(server.post("/backend/shutdown", json={}), 400, "model")


def test_metrics_parse_and_count(models_dir, make_server):
    server = make_server(models_dir)
    assert complete(server, max_tokens=3).status_code == 200
    assert_error(complete(server, "nope"), 404)
    samples = metric_samples(server)
    assert samples[("localhost_ai_requests_total", (("endpoint", "/v1/completions"), ("method", "POST"), ("status", "200")))] == 1
    assert samples[("localhost_ai_requests_total", (("endpoint", "/v1/completions"), ("method", "POST"), ("status", "404")))] == 1
    assert samples[("localhost_ai_generated_tokens_total", (("model", "gemma"),))] == 3
    assert samples[("localhost_ai_prompt_tokens_total", (("model", "gemma"),))] >= 2
    assert samples[("localhost_ai_loaded_models", ())] == 1
    assert samples[("localhost_ai_queue_length", (("model", "gemma"),))] == 0
    assert samples[("localhost_ai_request_duration_seconds_count", (("endpoint", "/v1/completions"),))] == 2


def test_sigterm_lets_a_running_stream_finish_and_leaves_no_child(models_dir, make_server):
    server = make_server(models_dir)
    assert complete(server).status_code == 200
    pid = worker_pid(server)
    body = {"model": "gemma", "prompt": "Once upon a time,", "max_tokens": 40, "stop": [], "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=60) as running:
        lines = running.iter_lines()
        next(line for line in lines if line.startswith(b"data: "))
        server.process.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line.startswith(b"data: ")]
    assert rest[-1] == b"data: [DONE]"
    assert json.loads(rest[-2][6:])["choices"][0]["finish_reason"] == "length"
    assert server.process.wait(timeout=30) == 0
    assert not pid_alive(pid)
    with pytest.raises(requests.ConnectionError):
        server.get("/healthz", timeout=2)


def test_a_server_killed_outright_leaves_no_worker_behind(models_dir, make_server):
    server = make_server(models_dir)
    assert complete(server).status_code == 200
    pid = worker_pid(server)
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_the_server_stays_small_because_the_weights_live_in_the_worker(models_dir, make_server):
    server = make_server(models_dir)
    complete(server, "nope")  # warm the request path without a model
    before = rss(server.process.pid)
    assert complete(server, max_tokens=8).status_code == 200
    after = rss(server.process.pid)
    worker = rss(worker_pid(server))
    assert after - before < 30 * 1024 * 1024, (before, after)
    assert worker > 150 * 1024 * 1024
