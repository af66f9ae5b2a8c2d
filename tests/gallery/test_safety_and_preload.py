"""Unsafe inputs are refused at once and write nothing outside the models folder;
PRELOAD_MODELS; a restart mid-download resumes; the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from tests.conftest import assert_error
from tests.gallery.conftest import blob, files_under, gallery_env, one_file_body, sha, wait_job


@pytest.fixture
def tiny(hub):
    data = blob(50_000, seed=20)
    uri = hub.hf("acme/tiny", "tiny.gguf", data)
    entry = {"name": "tiny", "config_file": "backend: llama-cpp\nparameters:\n  model: tiny.gguf\n",
             "files": [{"filename": "tiny.gguf", "uri": uri, "sha256": sha(data)}]}
    index = hub.github("acme/gallery", "index.yaml", yaml.safe_dump([entry]))
    return data, uri, index


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": "x", "name": "a/b"}, "name"),
        ({"id": "x", "name": "../up"}, "name"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"config_url": "ftp://example.com/x.yaml"}, "config_url"),
        ({"config_url": "github:acme/defs/c.yaml", "files": [{"filename": "../escape.gguf", "uri": "huggingface://a/b/c"}]}, "files[0].filename"),
        ({"config_url": "github:acme/defs/c.yaml", "files": [{"filename": "/tmp/abs.gguf", "uri": "huggingface://a/b/c"}]}, "files[0].filename"),
        ({"config_url": "github:acme/defs/c.yaml", "files": [{"filename": "x.gguf", "uri": "file:///etc/passwd"}]}, "files[0].uri"),
        ({"config_url": "github:acme/defs/c.yaml", "files": [{"filename": "x.gguf", "uri": "huggingface://a/../b"}]}, "files[0].uri"),
        ({"config_url": "github:acme/defs/c.yaml", "files": [{"filename": "x.gguf", "uri": "huggingface://a/b/c", "sha256": "abc"}]}, "files[0].sha256"),
        ({"name": "only-a-name"}, "id"),
        ({"id": 5}, "id"),
    ],
)
def test_unsafe_or_malformed_apply_is_refused_at_once(tmp_path, hub, tiny, make_server, body, param):
    models = tmp_path / "models"
    server = make_server(models, env=gallery_env(hub, tiny[2]))
    assert_error(server.post("/models/apply", json=body), 400, param)
    assert server.get("/models/jobs").json() == {}
    assert files_under(tmp_path) - {f for f in files_under(tmp_path) if f.startswith("server-")} == set()


def test_unknown_id_is_404_and_malformed_json_400(tmp_path, hub, tiny, make_server):
    server = make_server(tmp_path / "models", env=gallery_env(hub, tiny[2]))
    error = assert_error(server.post("/models/apply", json={"id": "nope"}), 404, "id")
    assert "test@tiny" in error["message"]
    assert_error(server.post("/models/apply", data=b"{"), 400)


def test_a_gallery_config_cannot_point_outside_the_models_folder(tmp_path, hub, make_server):
    config = hub.github("acme/defs", "evil.yaml", "name: evil\nparameters:\n  model: ../../etc/passwd\n")
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    job = wait_job(server, server.post("/models/apply", json={"config_url": config}).json()["uuid"])
    assert "parameters.model" in job["error"]
    assert files_under(models) == set()


def test_a_symlink_out_of_the_models_folder_is_not_followed(tmp_path, hub, make_server):
    models = tmp_path / "models"
    outside = tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    os.symlink(outside, models / "link")
    data = blob(100, seed=21)
    body = {"config_url": hub.github("acme/defs", "c.yaml", "name: l\nparameters:\n  model: link/x.gguf\n"),
            "files": [{"filename": "link/x.gguf", "uri": hub.hf("acme/l", "x.gguf", data)}]}
    server = make_server(models, env=hub.env)
    response = server.post("/models/apply", json=body)
    if response.status_code == 200:
        assert wait_job(server, response.json()["uuid"])["error"]
    else:
        assert_error(response, 400)
    assert list(outside.iterdir()) == []


def test_file_uris_work_only_when_allowed(tmp_path, make_server):
    source = tmp_path / "weights.gguf"
    data = blob(5000, seed=22)
    source.write_bytes(data)
    config = tmp_path / "config.yaml"
    config.write_text("name: local\nparameters:\n  model: local.gguf\n")
    body = {"config_url": f"file://{config}", "files": [{"filename": "local.gguf", "uri": f"file://{source}", "sha256": sha(data)}]}
    closed = make_server(tmp_path / "m1")
    assert_error(closed.post("/models/apply", json=body), 400, "config_url")
    models = tmp_path / "m2"
    opened = make_server(models, "--allow-file-uris")
    assert wait_job(opened, opened.post("/models/apply", json=body).json()["uuid"])["error"] is None
    assert (models / "local.gguf").read_bytes() == data


def test_preload_models_before_ready_and_no_second_download(tmp_path, hub, tiny, make_server):
    models = tmp_path / "models"
    slow = blob(1_500_000, seed=23)
    slow_uri = hub.hf("acme/slow", "slow.gguf", slow, delay=0.02)
    preload = json.dumps([
        {"id": "test@tiny"},
        {"config_url": hub.github("acme/defs", "s.yaml", "name: slow\nparameters:\n  model: slow.gguf\n"),
         "files": [{"filename": "slow.gguf", "uri": slow_uri, "sha256": sha(slow)}]},
        {"id": "test@missing"},
    ])
    env = gallery_env(hub, tiny[2], PRELOAD_MODELS=preload)
    server = make_server(models, env=env)
    assert_error(server.get("/readyz"), 503)
    server.wait_for(lambda: server.get("/readyz").status_code == 200, timeout=60)
    assert server.get("/readyz").json() == {"status": "ready"}  # open without a key: nothing more
    assert any("missing" in e for e in server.get("/system").json()["preload_errors"])
    assert {"tiny", "slow"} <= {m["id"] for m in server.get("/v1/models").json()["data"]}
    downloads = len(hub.requests_for(".gguf"))
    server.process.terminate()
    server.process.wait(timeout=30)

    again = make_server(models, env=env)
    again.wait_for(lambda: again.get("/readyz").status_code == 200, timeout=60)
    assert len(hub.requests_for(".gguf")) == downloads, "installed and verified files are not fetched again"


def test_preload_from_a_yaml_file(tmp_path, hub, tiny, make_server):
    listing = tmp_path / "preload.yaml"
    listing.write_text(yaml.safe_dump([{"id": "tiny", "name": "from-file"}]))
    server = make_server(tmp_path / "models", "--preload-models-config", str(listing), env=gallery_env(hub, tiny[2]))
    server.wait_for(lambda: server.get("/readyz").status_code == 200, timeout=60)
    assert "from-file" in [m["id"] for m in server.get("/v1/models").json()["data"]]


def test_a_restart_mid_download_resumes(tmp_path, hub, make_server):
    data = blob(3_000_000, seed=24)
    uri = hub.hf("acme/restart", "restart.gguf", data, delay=0.03)
    models = tmp_path / "models"
    body = one_file_body(hub, "r", "restart.gguf", uri, sha(data))
    server = make_server(models, env=hub.env)
    uuid = server.post("/models/apply", json=body).json()["uuid"]
    server.wait_for(lambda: server.get(f"/models/jobs/{uuid}").json()["downloaded_size"] > 1_100_000)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    kept = (models / "restart.gguf.partial").stat().st_size
    assert kept > 0 and not (models / "r.yaml").exists()

    hub.behaviour["/acme/restart/resolve/main/restart.gguf"].delay = 0
    again = make_server(models, env=hub.env)
    job = wait_job(again, again.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] is None
    assert hub.requests_for("restart.gguf")[-1].range == f"bytes={kept}-"
    assert (models / "restart.gguf").read_bytes() == data


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localhost_ai", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_cli_install_list_remove_and_gallery_list(tmp_path, hub, tiny):
    models = tmp_path / "models"
    env = gallery_env(hub, tiny[2])
    listing = run_cli("gallery", "list", env=env)
    assert listing.returncode == 0 and "test@tiny" in listing.stdout

    installed = run_cli("models", "install", "test@tiny", "--models-path", str(models), env=env)
    assert installed.returncode == 0, installed.stderr
    assert "tiny.gguf" in installed.stderr and "100%" in installed.stderr  # the progress bar
    assert (models / "tiny.gguf").read_bytes() == tiny[0]

    models_list = run_cli("models", "list", "--models-path", str(models), env=env)
    assert "installed:\n  tiny\tllama-cpp" in models_list.stdout
    assert "test@tiny (installed)" in models_list.stdout

    bad = run_cli("models", "install", "nope", "--models-path", str(models), env=env)
    assert bad.returncode == 1 and "nope" in bad.stderr

    removed = run_cli("models", "remove", "tiny", "--models-path", str(models), env=env)
    assert removed.returncode == 0
    assert files_under(models) == set()


def test_delete_removes_only_what_the_install_fetched(tmp_path, hub, make_server):
    models = tmp_path / "models"
    models.mkdir()
    (models / "other.yaml").write_text("name: other\nparameters:\n  model: other.gguf\n")
    (models / "other.gguf").write_bytes(b"GGUF")
    data = blob(1000, seed=30)
    body = {"config_url": hub.github("acme/defs", "e.yaml", "name: evil\nparameters:\n  model: e.gguf\n"),
            "files": [{"filename": "e.gguf", "uri": hub.hf("acme/e", "e.gguf", data)}],
            "overrides": {"installed_files": ["other.yaml", "other.gguf"]}}
    server = make_server(models, env=hub.env)
    assert wait_job(server, server.post("/models/apply", json=body).json()["uuid"])["error"] is None
    assert yaml.safe_load((models / "evil.yaml").read_text())["installed_files"] == ["e.gguf"]
    server.post("/models/delete/evil")
    assert files_under(models) == {"other.yaml", "other.gguf"}


def test_the_same_file_installed_twice_at_once_stays_whole(tmp_path, hub, make_server):
    data = blob(1_500_000, seed=31)
    uri = hub.hf("acme/twice", "twice.gguf", data, delay=0.01)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = one_file_body(hub, "twice", "twice.gguf", uri)
    uuids = [server.post("/models/apply", json=body).json()["uuid"] for _ in range(2)]
    assert all(wait_job(server, u)["error"] is None for u in uuids)
    assert (models / "twice.gguf").read_bytes() == data
    assert files_under(models) == {"twice.gguf", "twice.yaml"}
