"""The web page's files as the server serves them (in this process): a strict CSP, no inline
script, only the package's own files, open without a key while the API is not, and off with
--disable-webui. The page in a real browser is tested in tests/webui."""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest
import tomllib
from yarl import URL

from localhost_ai.gallery.install import FileSpec
from localhost_ai.gallery import jobs
from localhost_ai.gallery.jobs import Job
from tests.inprocess import PLUGINS, app_for, fake_models

WEBUI = Path(__file__).parents[2] / "localhost_ai" / "webui"


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", PLUGINS)
    monkeypatch.setenv("LOCALHOST_AI_BACKENDS", "fake_backend")
    return fake_models(tmp_path / "models")


async def test_the_page_and_every_file_it_names_are_served_under_a_strict_csp(aiohttp_client, models):
    client = await aiohttp_client(app_for(models))
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = await response.text()
    # Nothing that runs inline: every script is a file, no event-handler attribute, no style attribute.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert not re.search(r"\son[a-z]+\s*=", html) and not re.search(r"\sstyle\s*=", html)
    named = re.findall(r'(?:src|href)="(/webui/[^"]+)"', html)
    assert len(named) >= 5
    kinds = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in named:
        file = await client.get(path)
        assert file.status == 200, path
        assert file.content_type == kinds[Path(path).suffix], path
        assert file.headers["Content-Security-Policy"] == csp


@pytest.mark.parametrize("path", ["/webui/../pyproject.toml", "/webui/%2e%2e/api/app.py", "/webui/vendor/../../api/keys.py",
                                  "/webui/nothing.js", "/webui/vendor/SHA256SUMS", "/webui/" + "a" * 300,
                                  "/webui//etc/passwd", "/webui/%00.js"])
async def test_only_the_pages_own_files_are_served(aiohttp_client, models, path):
    client = await aiohttp_client(app_for(models))
    # Sent as written: the client neither decodes %2e nor removes dot segments.
    response = await client.session.get(URL(str(client.make_url("/")).rstrip("/") + path, encoded=True))
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "unknown_url"


async def test_the_page_is_open_without_a_key_and_the_api_is_not(aiohttp_client, models):
    client = await aiohttp_client(app_for(models, api_keys=["sekrit"]))
    assert (await client.get("/")).status == 200
    assert (await client.get("/webui/app.js")).status == 200
    settings = await client.get("/webui/settings.json")
    assert (await settings.json())["api_key_required"] is True
    for path in ("/system", "/v1/models", "/metrics", "/models/available"):
        assert (await client.get(path)).status == 401, path
    assert (await client.get("/system", headers={"Authorization": "Bearer sekrit"})).status == 200


async def test_disable_webui_serves_no_page_and_the_same_api(aiohttp_client, models):
    client = await aiohttp_client(app_for(models, disable_webui=True))
    for path in ("/", "/webui/app.js", "/webui/settings.json"):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "unknown_url"
    assert (await client.get("/v1/models")).status == 200


async def test_system_reports_the_version_and_each_models_state_and_load_loads(aiohttp_client, models):
    client = await aiohttp_client(app_for(models))
    system = await (await client.get("/system")).json()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", system["version"])
    (fake,) = system["models"]
    assert (fake["state"], fake["memory"], fake["queue_length"]) == ("unloaded", None, 0)
    loaded = await client.post("/backend/load", json={"model": "fake"})
    assert loaded.status == 200 and (await loaded.json())["state"] == "ready"
    (fake,) = (await (await client.get("/system")).json())["models"]
    assert fake["state"] == "ready" and fake["memory"] > 0
    missing = await client.post("/backend/load", json={"model": "nope"})
    assert missing.status == 404


async def test_load_of_a_model_that_cannot_load_answers_its_error(aiohttp_client, models):
    (models / "broken.gguf").write_bytes(b"GGUF" + bytes(64))
    (models / "broken.yaml").write_text("name: broken\nbackend: llama-cpp\nparameters:\n  model: broken.gguf\n")
    client = await aiohttp_client(app_for(models))
    response = await client.post("/backend/load", json={"model": "broken"})
    assert response.status == 500, await response.text()
    assert "broken" in (await response.json())["error"]["message"]
    states = {m["id"]: m["state"] for m in (await (await client.get("/system")).json())["models"]}
    assert states["broken"] == "unloaded"


def test_a_job_reports_bytes_speed_and_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    job = Job("u", "test@x")
    spec = FileSpec(filename="x.gguf", uri="https://example.invalid/x.gguf")
    job.on_progress(spec, 200, 1000)  # resumed from a .partial: those bytes did not arrive now
    assert (job.as_dict()["bytes_per_second"], job.as_dict()["eta_seconds"]) == (0, None)
    clock[0] += 1.0
    job.on_progress(spec, 600, 1000)
    status = job.as_dict()
    assert (status["downloaded_bytes"], status["total_bytes"]) == (600, 1000)
    assert (status["bytes_per_second"], status["eta_seconds"]) == (400, 1.0)
    clock[0] += 1.0
    job.on_progress(spec, 0, 1000)  # the server ignored Range: a new start, never a negative speed
    assert (job.as_dict()["bytes_per_second"], job.as_dict()["eta_seconds"]) == (200, 5.0)
    clock[0] += 10.0  # nothing arrived for longer than the window
    assert (job.as_dict()["bytes_per_second"], job.as_dict()["eta_seconds"]) == (0, None)
    job.processed = True
    assert job.as_dict()["bytes_per_second"] is None


def test_the_shipped_libraries_are_the_pinned_ones_and_packaged():
    vendor = WEBUI / "vendor"
    sums = dict(line.split()[::-1] for line in (vendor / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {p.name for p in vendor.glob("*.js")} == {"alpine-csp.min.js", "marked.umd.js", "purify.min.js"}
    for name, digest in sums.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, f"{name} differs from SHA256SUMS"
        assert (vendor / (name.split(".")[0] + ".LICENSE")).stat().st_size > 50
    versions = (vendor / "VERSIONS").read_text()
    assert "@alpinejs/csp@" in versions and "marked@" in versions and "dompurify@" in versions
    # Every file of the page is in the package (pyproject's package-data).
    patterns = tomllib.loads((WEBUI.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for file in WEBUI.rglob("*"):
        if file.is_file() and "__pycache__" not in file.parts:
            relative = file.relative_to(WEBUI.parent).as_posix()
            assert any(fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns["localhost_ai"]), relative
