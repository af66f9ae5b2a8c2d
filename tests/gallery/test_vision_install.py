"""A model that reads images, installed from a gallery with one /models/apply: its weights
and its projector (`mmproj`) come down together, checked against their sha256, and the
installed model answers about an image.  The hub is the loopback one; the builtin
gallery's VLM entries are checked for the same shape."""

from __future__ import annotations

import base64
import io
from importlib.resources import files

import numpy as np
import yaml
from PIL import Image

from tests.conftest import GEMMA_FILE
from tests.gallery.conftest import files_under, gallery_env, sha, wait_job
from tests.gallery.test_install import CHAT_TEMPLATE
from tests.mmproj_fixture import build_vision_projector

MMPROJ = "mmproj-tiny-vision.gguf"


def test_a_vlm_entry_installs_weights_and_projector_and_reads_images(tmp_path, hub, gemma_gguf, make_server):
    projector = build_vision_projector(tmp_path / MMPROJ)
    entry = {
        "name": "tiny-vlm", "description": "Gemma with a tiny projector", "license": "gemma", "tags": ["vision"],
        "config_file": yaml.safe_dump({
            "backend": "llama-cpp", "mmproj": MMPROJ, "context_size": 1024,
            "parameters": {"model": GEMMA_FILE, "temperature": 0, "max_tokens": 8},
            "template": {"chat": CHAT_TEMPLATE},
        }),
        "files": [
            {"filename": MMPROJ, "uri": hub.hf("acme/tiny-vlm", MMPROJ, projector), "sha256": sha(projector.read_bytes())},
            {"filename": GEMMA_FILE, "uri": hub.hf("acme/tiny-vlm", GEMMA_FILE, gemma_gguf),
             "sha256": sha(gemma_gguf.read_bytes())},
        ],
    }
    index = hub.github("acme/gallery", "index.yaml", yaml.safe_dump([entry]))
    server = make_server(tmp_path / "models", env=gallery_env(hub, index))
    job = wait_job(server, server.post("/models/apply", json={"id": "test@tiny-vlm"}).json()["uuid"])
    assert job["error"] is None, job
    assert {MMPROJ, GEMMA_FILE, "tiny-vlm.yaml"} <= files_under(tmp_path / "models")
    server.wait_for(lambda: "tiny-vlm" in [m["id"] for m in server.get("/v1/models").json()["data"]])
    model = next(m for m in server.get("/v1/models").json()["data"] if m["id"] == "tiny-vlm")
    assert "vision" in model["capabilities"]
    picture = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(picture, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    chat = server.client().chat.completions.create(model="tiny-vlm", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert chat.usage.prompt_tokens > 16  # the image's 16 tokens and the question's
    # Deleting it removes the projector with the weights.
    assert server.post("/models/delete/tiny-vlm").json()["deleted"] is True
    assert files_under(tmp_path / "models") == set()


def test_the_builtin_gallery_offers_vlms_with_checked_projectors(tmp_path, make_server):
    server = make_server(tmp_path / "models")
    available = {m["name"]: m for m in server.get("/models/available").json()}
    for name in ("smolvlm-256m-instruct", "smolvlm-500m-instruct"):
        assert name in available
    entries = {e["name"]: e for e in yaml.safe_load(files("localhost_ai.gallery").joinpath("index.yaml").read_bytes())}
    for name in ("smolvlm-256m-instruct", "smolvlm-500m-instruct"):
        entry = entries[name]
        config = {**yaml.safe_load(entry["config_file"]), **(entry.get("overrides") or {})}
        names = {f["filename"] for f in entry["files"]}
        assert config["mmproj"] in names and config["parameters"]["model"] in names
        assert all(len(f["sha256"]) == 64 for f in entry["files"])
