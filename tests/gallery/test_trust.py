"""An install never reaches what is not its own: internal services, by name, by address or
by redirect; and what it fetches never comes back in its errors."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest

from localhost_ai.gallery import netguard
from tests.gallery.conftest import files_under, wait_job

SECRET = "SECRET-NAME-FROM-INTERNAL-API"


def internal_service(host: str = "127.0.0.1", redirect_to: str | None = None):
    """A loopback HTTP server playing a service inside the network: it answers anything
    with text holding a secret, or redirects there."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = {"/bad.yaml": f"name: x\n\t{SECRET} value=42\n", "/name.yaml": f"name: '{SECRET} value=42'\n"}.get(
                self.path, f"name: leak\nparameters:\n  model: {SECRET}.gguf\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


@pytest.fixture
def service():
    server, url = internal_service()
    yield url
    server.shutdown()


@pytest.mark.parametrize("form", ["{url}/config.yaml", "{localhost}/config.yaml", "{v6}/config.yaml"])
def test_an_install_from_an_internal_address_is_refused(tmp_path, make_server, service, form):
    port = service.rsplit(":", 1)[1]
    config_url = form.format(url=service, localhost=f"http://localhost:{port}", v6=f"http://[::ffff:127.0.0.1]:{port}")
    models = tmp_path / "models"
    server = make_server(models)
    job = wait_job(server, server.post("/models/apply", json={"config_url": config_url}).json()["uuid"])
    assert "not public" in job["error"] and "--allow-private-urls" in job["error"]
    assert SECRET not in job["error"] and files_under(models) == set()


def test_nothing_fetched_comes_back_in_an_error(tmp_path, make_server, service):
    server = make_server(tmp_path / "models", "--allow-private-urls")
    for path, says in [("/bad.yaml", "not valid YAML (line 2"), ("/name.yaml", "model name is not valid"),
                       ("/missing-port", "connection")]:
        url = service + path if path != "/missing-port" else "http://127.0.0.1:9/x.yaml"
        job = wait_job(server, server.post("/models/apply", json={"config_url": url}).json()["uuid"])
        assert says in job["error"] and SECRET not in job["error"] and "value=42" not in job["error"], job["error"]


async def test_every_redirect_is_checked(monkeypatch):
    inside, inside_url = internal_service("127.0.0.2")
    outside, outside_url = internal_service("127.0.0.1", redirect_to=inside_url + "/config.yaml")
    monkeypatch.setattr(netguard, "is_public", lambda address: address == "127.0.0.1")  # plays the internet
    try:
        async with netguard.guarded_session(False) as session:
            async with session.get(inside_url + "/direct") as response:  # the service itself: no
                pytest.fail(f"fetched {response.status}")
    except netguard.PrivateAddressError:
        pass
    try:
        async with netguard.guarded_session(False) as session:
            with pytest.raises(netguard.PrivateAddressError):
                async with session.get(outside_url + "/config.yaml"):
                    pass
            async with netguard.guarded_session(True) as open_session:  # --allow-private-urls
                async with open_session.get(outside_url + "/config.yaml") as response:
                    assert SECRET in await response.text()
    finally:
        inside.shutdown()
        outside.shutdown()


@pytest.mark.parametrize(("address", "public"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False), ("fe80::1", False),
    ("fd00::1", False), ("::ffff:10.0.0.1", False), ("224.0.0.1", False), ("8.8.8.8", True),
    ("2606:4700:4700::1111", True), ("not an address", False), ("127.1", False), ("2130706433", False),
    ("0177.0.0.1", False), ("0", False), ("::127.0.0.1", False), ("64:ff9b::7f00:1", False),
    ("2002:7f00:1::", False), ("fec0::1", False), ("64:ff9b::808:808", True),
])
def test_public_addresses(address, public):
    assert netguard.is_public(address) is public


async def test_a_name_resolving_to_loopback_is_refused():
    resolver = netguard.PublicResolver()
    try:
        with pytest.raises(netguard.PrivateAddressError):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    assert issubclass(netguard.PrivateAddressError, aiohttp.ClientError)


# -- ownership -----------------------------------------------------------------------------

VICTIM = "name: victim\nbackend: llama-cpp\nparameters:\n  model: victim.gguf\n"


def _folder_with_a_victim(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "victim.yaml").write_text(VICTIM)
    (models / "victim.gguf").write_bytes(b"the victim's weights")
    (models / "mine.gguf").write_bytes(b"a user's own weights")
    return models


def _snapshot(models):
    return {str(path.relative_to(models)): path.read_bytes() for path in models.rglob("*") if path.is_file()}


def test_an_install_never_writes_what_is_not_its_own(tmp_path, hub, make_server):
    from tests.gallery.conftest import sha

    models = _folder_with_a_victim(tmp_path)
    (models / "squat.yaml").write_text("name: real\nbackend: llama-cpp\nparameters:\n  model: victim.gguf\n")
    server = make_server(models, env=hub.env)
    before = _snapshot(models)
    evil = b"attacker's bytes"
    config = hub.github("acme/defs", "evil.yaml", "name: evil\nparameters:\n  model: evil.gguf\n")
    uri = hub.hf("acme/evil", "x.bin", evil)
    refused_at_once = server.post("/models/apply", json={"config_url": config, "files": [
        {"filename": "victim.yaml", "uri": uri, "sha256": sha(evil)}]})
    assert refused_at_once.status_code == 400 and refused_at_once.json()["error"]["param"] == "files[0].filename"
    for filename, says in [("victim.gguf", "belongs to model"), ("mine.gguf", "overwrite")]:
        job = wait_job(server, server.post("/models/apply", json={"config_url": config, "files": [
            {"filename": filename, "uri": uri, "sha256": sha(evil)}]}).json()["uuid"])
        assert says in job["error"], job
    for name, says in [("victim", "did not install"), ("squat", "defines model 'real'")]:  # a user's YAMLs
        job = wait_job(server, server.post("/models/apply", json={"config_url": config, "name": name}).json()["uuid"])
        assert job["error"] and says in job["error"], job
    assert _snapshot(models) == before
    job = wait_job(server, server.post("/models/apply", json={"config_url": config, "overwrite": True, "files": [
        {"filename": "mine.gguf", "uri": uri, "sha256": sha(evil)}]}).json()["uuid"])
    assert job["error"] is None and (models / "mine.gguf").read_bytes() == evil  # asked for, and nobody's


def test_delete_leaves_a_file_the_install_did_not_write(tmp_path, hub, make_server):
    models = _folder_with_a_victim(tmp_path)
    server = make_server(models, env=hub.env)
    config = hub.github("acme/defs", "uses.yaml", "name: uses\nparameters:\n  model: mine.gguf\n")
    uri = hub.hf("acme/any", "mine.gguf", b"other bytes")
    job = wait_job(server, server.post("/models/apply", json={"config_url": config, "files": [
        {"filename": "mine.gguf", "uri": uri}]}).json()["uuid"])  # no checksum: the file in place is used
    assert job["error"] is None
    assert server.post("/models/delete/uses").json()["removed_files"] == ["uses.yaml"]
    assert (models / "mine.gguf").read_bytes() == b"a user's own weights"


def test_two_files_with_one_name_are_both_left_out(tmp_path, make_server):
    from tests.inprocess import PLUGINS, fake_models

    models = fake_models(tmp_path / "models")
    (models / "another.yaml").write_text("name: fake\nbackend: test-fake\nparameters:\n  model: fake.bin\n")
    server = make_server(models, env={"PYTHONPATH": PLUGINS, "LOCALHOST_AI_BACKENDS": "fake_backend"})
    invalid = {bad["file"]: bad["error"] for bad in server.get("/system").json()["invalid"]}
    assert set(invalid) == {"another.yaml", "fake.yaml"} and "neither is served" in invalid["fake.yaml"]
    assert server.post("/v1/chat/completions", json={"model": "fake", "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 404
    (models / "another.yaml").unlink()
    server.wait_for(lambda: server.post("/v1/chat/completions", json={"model": "fake", "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 200)


# -- partial files -------------------------------------------------------------------------

def test_cancelling_a_waiting_duplicate_leaves_the_running_job_alone(tmp_path, hub, make_server):
    from tests.gallery.conftest import blob, sha

    data = blob(400_000, seed=3)
    uri = hub.hf("acme/slow", "slow.gguf", data, delay=0.05, chunk=16 * 1024)
    body = {"config_url": hub.github("acme/defs", "slow.yaml", "name: slow\nparameters:\n  model: slow.gguf\n"),
            "files": [{"filename": "slow.gguf", "uri": uri, "sha256": sha(data)}]}
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    running = server.post("/models/apply", json=body).json()["uuid"]
    server.wait_for(lambda: server.get(f"/models/jobs/{running}").json()["downloaded_size"] > 0)
    waiting = server.post("/models/apply", json=body).json()["uuid"]
    assert server.post(f"/models/jobs/{waiting}/cancel").status_code == 200
    assert wait_job(server, waiting)["cancelled"]
    job = wait_job(server, running)
    assert job["error"] is None, job
    assert (models / "slow.gguf").read_bytes() == data and not list(models.glob("*.partial*"))


def test_a_partial_file_that_is_a_link_is_not_followed(tmp_path, hub, make_server):
    from tests.gallery.conftest import sha

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the server's to write")
    models = tmp_path / "models"
    models.mkdir()
    (models / "linked.gguf.partial").symlink_to(outside)
    data = b"weights" * 1000
    body = {"config_url": hub.github("acme/defs", "linked.yaml", "name: linked\nparameters:\n  model: linked.gguf\n"),
            "files": [{"filename": "linked.gguf", "uri": hub.hf("acme/l", "linked.gguf", data), "sha256": sha(data)}]}
    server = make_server(models, env=hub.env)
    assert wait_job(server, server.post("/models/apply", json=body).json()["uuid"])["error"] is None
    assert outside.read_bytes() == b"not the server's to write" and (models / "linked.gguf").read_bytes() == data


@pytest.fixture
def small_disk(tmp_path):
    """A models folder on a 1 MiB tmpfs: a full disk for real."""
    import subprocess

    folder = tmp_path / "models"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root: " + mounted.stderr.decode(errors="replace").strip())
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("length_known", [True, False])
def test_a_full_disk_leaves_no_partial_and_the_next_install_works(small_disk, hub, make_server, length_known):
    from tests.gallery.conftest import blob, sha

    big, small = blob(2_000_000, seed=4), blob(100_000, seed=5)
    server = make_server(small_disk, env=hub.env)
    body = {"config_url": hub.github("acme/defs", "big.yaml", "name: big\nparameters:\n  model: big.gguf\n"),
            "files": [{"filename": "big.gguf", "uri": hub.hf("acme/b", "big.gguf", big, no_length=not length_known),
                       "sha256": sha(big)}]}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] and ("free" in job["error"] if length_known else "full" in job["error"]), job
    assert sorted(p.name for p in small_disk.iterdir()) == []
    body = {"config_url": hub.github("acme/defs", "small.yaml", "name: small\nparameters:\n  model: small.gguf\n"),
            "files": [{"filename": "small.gguf", "uri": hub.hf("acme/s", "small.gguf", small), "sha256": sha(small)}]}
    assert wait_job(server, server.post("/models/apply", json=body).json()["uuid"])["error"] is None
    assert (small_disk / "small.gguf").read_bytes() == small


def test_max_download_size(tmp_path, hub, make_server):
    from tests.gallery.conftest import blob

    data = blob(300_000, seed=6)
    server = make_server(tmp_path / "models", "--max-download-size", "100KiB", env=hub.env)
    for no_length in (False, True):
        body = {"config_url": hub.github("acme/defs", "m.yaml", "name: m\nparameters:\n  model: m.gguf\n"),
                "files": [{"filename": "m.gguf", "uri": hub.hf("acme/m", f"m{no_length}.gguf", data,
                                                               no_length=no_length)}]}
        job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
        assert "--max-download-size" in job["error"], job
        assert not list((tmp_path / "models").glob("*.partial*"))


# -- the server's own surface --------------------------------------------------------------

def test_a_stalled_body_is_answered_and_closed_after_the_read_timeout(tmp_path, make_server):
    import socket
    import time

    from tests.inprocess import PLUGINS, fake_models

    server = make_server(fake_models(tmp_path / "models"), "--read-timeout", "1s",
                         env={"PYTHONPATH": PLUGINS, "LOCALHOST_AI_BACKENDS": "fake_backend"})
    port = int(server.url.rsplit(":", 1)[1])
    for path, kind in [("/v1/chat/completions", "application/json"),
                       ("/v1/audio/transcriptions", "multipart/form-data; boundary=xyz")]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                         "Content-Length: 100000\r\n\r\n".encode() + b"--xyz\r\n" + b"x" * 10)
            started = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):  # ends when the server closes the connection
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408") and b"--read-timeout" in answer, answer[:300]
            assert 0.5 < time.monotonic() - started < 5
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # headers that never end
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert sock.recv(65536) == b"" and 0.5 < time.monotonic() - started < 5


async def test_a_status_url_never_comes_from_an_unchecked_host(aiohttp_client, tmp_path):
    from tests.inprocess import app_for, fake_models

    folder = fake_models(tmp_path / "models")
    client = await aiohttp_client(app_for(folder, host="0.0.0.0", port=8080))
    response = await client.post("/models/apply", json={"config_url": "http://127.0.0.1:9/x.yaml"},
                                 headers={"Host": "attacker.example"})
    assert (await response.json())["status"].startswith("http://127.0.0.1:8080/models/jobs/")
    named = await aiohttp_client(app_for(folder, host="0.0.0.0", port=8080, allowed_hosts=["box.lan"]))
    response = await named.post("/models/apply", json={"config_url": "http://127.0.0.1:9/x.yaml"},
                                headers={"Host": "box.lan:8080"})
    assert (await response.json())["status"].startswith("http://box.lan:8080/models/jobs/")


def test_binding_beyond_loopback_needs_a_key_or_says_so(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "localhost_ai", "serve", "--models-path", str(tmp_path),
                          "--address", "0.0.0.0:18999"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--api-keys" in run.stderr and "--insecure-no-key" in run.stderr
    run = subprocess.run([sys.executable, "-m", "localhost_ai", "serve", "--models-path", str(tmp_path), "--cors"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--cors-allow-origins" in run.stderr


def test_resource_fields_are_bounded_by_the_model_and_the_machine(tmp_path, gemma_gguf, make_server):
    import os

    from tests.conftest import GEMMA_FILE, place

    models = tmp_path / "models"
    models.mkdir()
    place(gemma_gguf, models / GEMMA_FILE)
    base = f"backend: llama-cpp\nparameters:\n  model: {GEMMA_FILE}\n"
    (models / "huge-context.yaml").write_text(f"name: huge-context\n{base}context_size: 1000000\n")
    (models / "threads.yaml").write_text(f"name: threads\n{base}threads: {4 * (os.cpu_count() or 1) + 1}\n")
    (models / "parallel.yaml").write_text(f"name: parallel\n{base}parallel: 1000\n")
    server = make_server(models)
    invalid = {bad["file"]: (bad["field"], bad["error"]) for bad in server.get("/system").json()["invalid"]}
    assert invalid["threads.yaml"][0] == "threads" and "cores" in invalid["threads.yaml"][1]
    assert invalid["parallel.yaml"][0] == "parallel"
    response = server.post("/v1/completions", json={"model": "huge-context", "prompt": "Hi", "max_tokens": 1})
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "context_size" and "32,768" in error["message"], error



@pytest.mark.parametrize("filename", ["evil.yaml/", "evil.yml/.", "./victim.gguf", "victim.gguf/", "a//b.gguf"])
def test_only_the_canonical_spelling_of_a_file_name_is_taken(tmp_path, hub, make_server, filename):
    server = make_server(_folder_with_a_victim(tmp_path), env=hub.env)
    response = server.post("/models/apply", json={"config_url": hub.github("acme/defs", "e.yaml", "name: e\n"),
                                                  "files": [{"filename": filename, "uri": hub.hf("acme/e", "e", b"x")}]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_filename"


def test_files_inside_another_models_folder_and_a_second_definition_are_refused(tmp_path, hub, make_server):
    models = _folder_with_a_victim(tmp_path)
    (models / "encoder").mkdir()
    (models / "encoder" / "model.bin").write_bytes(b"the encoder's weights")
    (models / "encoder.yaml").write_text("name: encoder\nbackend: sentence-transformers\nparameters:\n  model: encoder\n")
    (models / "mine.yml").write_text("name: foo\nbackend: llama-cpp\nparameters:\n  model: mine.gguf\n")
    server = make_server(models, env=hub.env)
    before = _snapshot(models)
    config = hub.github("acme/defs", "in.yaml", "name: inside\nparameters:\n  model: encoder/extra.json\n")
    job = wait_job(server, server.post("/models/apply", json={"config_url": config, "overwrite": True, "files": [
        {"filename": "encoder/extra.json", "uri": hub.hf("acme/i", "extra.json", b"{}")}]}).json()["uuid"])
    assert "belongs to model 'encoder'" in job["error"], job
    job = wait_job(server, server.post("/models/apply", json={"config_url": config, "name": "foo"}).json()["uuid"])
    assert "already defined by mine.yml" in job["error"], job
    assert _snapshot(models) == before and not (models / "encoder" / "extra.json").exists()


def test_a_model_installed_without_files_can_be_installed_again(tmp_path, hub, gemma_gguf, make_server):
    from tests.conftest import GEMMA_FILE, place

    models = tmp_path / "models"
    models.mkdir()
    place(gemma_gguf, models / GEMMA_FILE)
    config = hub.github("acme/defs", "again.yaml", f"name: again\nparameters:\n  model: {GEMMA_FILE}\n")
    server = make_server(models, env=hub.env)
    for _ in range(2):  # as PRELOAD_MODELS does at every start
        assert wait_job(server, server.post("/models/apply", json={"config_url": config}).json()["uuid"])["error"] is None
    assert server.post("/models/delete/again").json()["removed_files"] == ["again.yaml"]
    assert (models / GEMMA_FILE).exists()


def test_the_servers_default_context_is_capped_at_what_the_model_was_trained_for(tmp_path, gemma_gguf, make_server):
    from tests.conftest import GEMMA_FILE, place

    models = tmp_path / "models"
    models.mkdir()
    place(gemma_gguf, models / GEMMA_FILE)
    (models / "g.yaml").write_text(f"name: g\nparameters:\n  model: {GEMMA_FILE}\nparallel: 1\n")
    server = make_server(models, "--context-size", "40000")
    response = server.post("/v1/completions", json={"model": "g", "prompt": "Hi", "max_tokens": 1})
    assert response.status_code == 200, response.text
