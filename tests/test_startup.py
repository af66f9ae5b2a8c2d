"""`serve` starts with no heavy library loaded; models are loaded on first use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("llama_cpp", "torch", "diffusers", "whisper", "sentence_transformers", "faster_whisper", "numpy")


def test_importing_the_server_loads_no_heavy_library():
    code = (
        "import sys, localhost_ai.cli, localhost_ai.api.app, localhost_ai.registry;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def libllama_mapped(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "libllama" in maps.read()


def test_a_model_is_loaded_on_its_first_use_only(models_dir, make_server):
    server = make_server(models_dir)
    assert server.get("/v1/models").json()["data"][0]["id"] == "gemma"
    assert not libllama_mapped(server.process.pid)
    assert server.get("/system").json()["models"][0]["loaded"] is False
    server.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 1})
    system = server.get("/system").json()
    assert system["models"][0]["loaded"] is True
    worker_pid = system["loaded"][0]["pid"]
    assert worker_pid != server.process.pid
    assert libllama_mapped(worker_pid), "the weights live in the worker process"
    assert not libllama_mapped(server.process.pid), "and never in the server"
    assert "listening on http://127.0.0.1:" in server.log()
    assert "1 model(s): gemma" in server.log()
