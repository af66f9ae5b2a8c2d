"""GET /v1/models, the models folder as routing table, and changes while the server runs."""

from __future__ import annotations

import os
import shutil
import time

from tests.conftest import GEMMA_FILE, GEMMA_YAML, assert_error, assert_schema, place


def model_ids(server) -> list[str]:
    return [m["id"] for m in server.get("/v1/models").json()["data"]]


def test_models_list_and_get_in_openai_shape(gemma_server):
    listing = gemma_server.client().models.list()
    assert [m.id for m in listing.data] == ["gemma"]
    raw = gemma_server.get("/v1/models").json()
    assert_schema(raw, "ListModelsResponse")
    one = gemma_server.get("/v1/models/gemma").json()
    assert_schema(one, "Model")
    assert one["id"] == "gemma"
    assert gemma_server.client().models.retrieve("gemma").id == "gemma"


def test_unknown_model_is_404_naming_the_models_there_are(gemma_server):
    error = assert_error(gemma_server.get("/v1/models/nope"), 404, "model")
    assert "gemma" in error["message"]
    response = gemma_server.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "Hi"}]})
    error = assert_error(response, 404, "model")
    assert "nope" in error["message"] and "gemma" in error["message"]
    assert error["code"] == "model_not_found"


def test_the_only_model_is_used_when_none_is_named(gemma_server):
    reply = gemma_server.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12})
    assert reply.status_code == 200
    assert reply.json()["model"] == "gemma"
    assert "Paris" in reply.json()["choices"][0]["message"]["content"]


def test_bare_gguf_is_served_under_its_file_name(tmp_path, gemma_gguf, make_server):
    folder = tmp_path / "bare"
    folder.mkdir()
    place(gemma_gguf, folder / "tiny.gguf")
    server = make_server(folder)
    assert model_ids(server) == ["tiny.gguf"]
    reply = server.client().completions.create(model="tiny.gguf", prompt="Question: What is the capital of France?\nAnswer:", max_tokens=4, temperature=0)
    assert "Paris" in reply.choices[0].text
    # the fallback chat template is a plain transcript
    chat = server.client().chat.completions.create(model="tiny.gguf", messages=[{"role": "user", "content": "Hello"}], max_tokens=3)
    assert chat.choices[0].message.content is not None


def test_a_bad_yaml_is_left_out_and_the_rest_served(models_dir, make_server):
    (models_dir / "syntax.yaml").write_text("name: broken\nparameters: [unclosed\n")
    (models_dir / "backend.yaml").write_text(f"name: b\nbackend: no-such-backend\nparameters:\n  model: {GEMMA_FILE}\n")
    (models_dir / "types.yaml").write_text(f"name: t\ncontext_size: large\nparameters:\n  model: {GEMMA_FILE}\n")
    (models_dir / "missing.yaml").write_text("name: m\nparameters:\n  model: not-here.gguf\n")
    (models_dir / "escape.yaml").write_text("name: e\nparameters:\n  model: ../../etc/passwd\n")
    (models_dir / "template.yml").write_text(f"name: tp\nparameters:\n  model: {GEMMA_FILE}\ntemplate:\n  chat: '{{{{ unclosed'\n")
    server = make_server(models_dir)
    assert model_ids(server) == ["gemma"]
    invalid = {bad["file"]: bad for bad in server.get("/system").json()["invalid"]}
    assert set(invalid) == {"syntax.yaml", "backend.yaml", "types.yaml", "missing.yaml", "escape.yaml", "template.yml"}
    assert invalid["backend.yaml"]["field"] == "backend"
    assert "no-such-backend" in invalid["backend.yaml"]["error"]
    assert invalid["types.yaml"]["field"] == "context_size"
    assert invalid["missing.yaml"]["field"] == "parameters.model"
    assert invalid["escape.yaml"]["field"] == "parameters.model"
    assert invalid["template.yml"]["field"] == "template.chat"
    assert "line" in invalid["syntax.yaml"]["error"]
    log = server.log()
    for name, field in [("backend.yaml", "backend"), ("types.yaml", "context_size"), ("missing.yaml", "parameters.model")]:
        assert any(name in line and field in line for line in log.splitlines()), (name, log)
    reply = server.client().chat.completions.create(model="gemma", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert reply.choices[0].message.content is not None


def test_files_added_changed_and_removed_while_running(models_dir, make_server):
    server = make_server(models_dir)
    assert model_ids(server) == ["gemma"]

    (models_dir / "second.yaml").write_text(GEMMA_YAML.format(model=GEMMA_FILE).replace("name: gemma", "name: second"))
    server.wait_for(lambda: "second" in model_ids(server))
    first = server.post("/v1/completions", json={"model": "second", "prompt": "Once upon a time"}).json()
    assert first["usage"]["completion_tokens"] == 24

    # change max_tokens: the model is reloaded on its next use with the new definition
    changed = GEMMA_YAML.format(model=GEMMA_FILE).replace("name: gemma", "name: second").replace("max_tokens: 24", "max_tokens: 5")
    time.sleep(0.01)
    (models_dir / "second.yaml").write_text(changed)
    os.utime(models_dir / "second.yaml", ns=(time.time_ns(), time.time_ns() + 10**9))

    def picked_up() -> bool:
        reply = server.post("/v1/completions", json={"model": "second", "prompt": "Once upon a time"}).json()
        return reply["usage"]["completion_tokens"] == 5

    server.wait_for(picked_up, timeout=20)
    assert "second: changed" in server.log()

    (models_dir / "second.yaml").unlink()
    server.wait_for(lambda: "second" not in model_ids(server))
    response = server.post("/v1/completions", json={"model": "second", "prompt": "x"})
    assert_error(response, 404, "model")


def test_a_missing_models_folder_is_not_ready_but_healthy(tmp_path, make_server):
    server = make_server(tmp_path / "not-yet")
    assert server.get("/healthz").status_code == 200
    assert_error(server.get("/readyz"), 503)
    (tmp_path / "not-yet").mkdir()
    assert server.get("/readyz").status_code == 200


def test_models_list_command_shows_models_and_bad_files(models_dir):
    import subprocess
    import sys

    (models_dir / "bad.yaml").write_text("backend: nope\n")
    out = subprocess.run([sys.executable, "-m", "localhost_ai", "models", "list", "--installed-only", "--models-path", str(models_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("installed:\n  gemma\tllama-cpp")
    assert "bad.yaml" in out.stderr and "backend" in out.stderr
    shutil.rmtree(models_dir)
