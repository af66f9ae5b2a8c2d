"""LocalAI's own model files, served as they are: the `config_file` of LocalAI's
gallery/gemma.yaml (Go templates) on Gemma 3 270M, its prompt what Go renders; Go and
Jinja templates told apart per file; bad Go templates refused with file, field and position."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.config.test_gotemplate import GOLDEN, CONVERSATIONS
from tests.conftest import GEMMA_FILE, place

CONFIG_FILE = Path(__file__).parents[1] / "config" / "gotemplate" / "localai_gemma_config_file.yaml"


@pytest.fixture(scope="module")
def localai_server(tmp_path_factory, gemma_gguf):
    from tests.conftest import start_server, stop_server

    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    # LocalAI's file unchanged, but for the model file it names.
    (folder / "gemma.yaml").write_text(CONFIG_FILE.read_text() + f"parameters:\n  model: {GEMMA_FILE}\n")
    (folder / "chatml.tmpl").write_text("{{.Input}}\n<|im_start|>assistant\n")
    (folder / "by-file.yaml").write_text(yaml.safe_dump({
        "backend": "llama-cpp", "parameters": {"model": GEMMA_FILE, "max_tokens": 4},
        "template": {"chat": "chatml", "chat_message": "<|im_start|>{{ .RoleName }}\n{{ .Content }}<|im_end|>"}}))
    (folder / "bad-go.yaml").write_text(yaml.safe_dump({
        "backend": "llama-cpp", "parameters": {"model": GEMMA_FILE},
        "template": {"chat": "{{.Input}}\n{{ if .SystemPrompt }}\n{{ readFile \"/etc/passwd\" }}{{ end }}"}}))
    (folder / "unclosed.yaml").write_text(yaml.safe_dump({
        "backend": "llama-cpp", "parameters": {"model": GEMMA_FILE},
        "template": {"chat_message": "<|{{ .RoleName }}|>\n{{ .Content"}}))
    # LocalAI's fields with no effect here, a list of two models, and a refused field.
    (folder / "warned.yaml").write_text(yaml.safe_dump({
        "backend": "llama-cpp", "parameters": {"model": GEMMA_FILE, "max_tokens": 0}, "f16": True, "gpu_layers": 99,
        "cuda": False, "options": ["use_jinja:true"], "tempreature": 0.3, "mirostat": 2}))
    (folder / "two.yaml").write_text(yaml.safe_dump([
        {"name": "first", "parameters": {"model": GEMMA_FILE}},
        {"name": "second", "parameters": {"model": GEMMA_FILE}, "lora_adapter": "adapter.bin"}]))
    server = start_server(folder, tmp_path_factory.mktemp("logs"), "--log-level", "DEBUG")
    yield server
    stop_server(server)


def logged_prompts(server) -> list[str]:
    return [json.loads(m) for m in re.findall(r"model \S+: chat prompt (\".*\")$", server.log(), re.M)]


def test_localai_gemma_config_file_answers_and_its_prompt_is_what_go_renders(localai_server):
    messages = CONVERSATIONS["plain"]["messages"]
    reply = localai_server.client().chat.completions.create(model="gemma", messages=messages, max_tokens=12,
                                                            temperature=0)
    assert reply.choices[0].message.content.strip()
    golden = {r["name"]: r for r in json.loads(GOLDEN.read_text())}
    expected = golden["conversation/gemma@plain"]["output"]  # rendered by Go's text/template and sprig
    assert expected == "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    assert logged_prompts(localai_server)[-1] == expected


def test_a_template_names_a_tmpl_file_in_the_models_folder(localai_server):
    localai_server.client().chat.completions.create(model="by-file", messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=2)
    assert logged_prompts(localai_server)[-1] == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_bad_go_templates_are_refused_with_file_field_and_position(localai_server):
    invalid = {bad["file"]: bad for bad in localai_server.get("/system").json()["invalid"]}
    assert invalid["bad-go.yaml"]["field"] == "template.chat"
    assert "line 3, column 4" in invalid["bad-go.yaml"]["error"] and "readFile" in invalid["bad-go.yaml"]["error"]
    assert invalid["unclosed.yaml"]["field"] == "template.chat_message"
    assert "line 2, column 1" in invalid["unclosed.yaml"]["error"] and "unclosed action" in invalid["unclosed.yaml"]["error"]


def test_tools_go_through_localai_function_template_as_go_renders_it(localai_server):
    conversation = CONVERSATIONS["tools"]
    weather = conversation["functions"][0]
    messages = [dict(m) for m in conversation["messages"]]
    for message, call_id in zip([m for m in messages if m["role"] == "tool"], ("call_1", "call_2")):
        message["tool_call_id"] = call_id  # OpenAI's shape; LocalAI's templates read `name`
    localai_server.client().chat.completions.create(
        model="gemma", messages=messages, max_tokens=16, temperature=0,
        tools=[{"type": "function", "function": {k: weather[k] for k in ("name", "description", "parameters")}}])
    golden = {r["name"]: r for r in json.loads(GOLDEN.read_text())}
    expected = golden["conversation/gemma@tools"]["output"]
    assert expected.startswith("<start_of_turn>system\nYou have access to functions.")
    assert logged_prompts(localai_server)[-1] == expected


def test_completion_goes_through_localai_completion_template(localai_server):
    localai_server.client().completions.create(model="gemma", prompt="Paris is", max_tokens=2)
    prompts = [json.loads(m) for m in re.findall(r"model gemma: completion prompt (\".*\")$", localai_server.log(), re.M)]
    assert prompts[-1] == "Paris is\n"  # LocalAI's `completion: |` block: {{.Input}} and a newline


def test_localai_fields_with_no_effect_are_listed_in_system_and_the_log(localai_server):
    system = localai_server.get("/system").json()
    models = {m["id"]: m for m in system["models"]}
    ignored = {f["field"]: f["reason"] for f in models["warned"]["ignored_fields"]}
    assert set(ignored) == {"f16", "gpu_layers", "tempreature"}, ignored  # not cuda: false, not use_jinja
    assert "CPU" in ignored["gpu_layers"]
    assert "model warned (warned.yaml): field 'gpu_layers' is ignored" in localai_server.log()
    assert models["gemma"]["ignored_fields"] == []
    # one file, two models: the good one served, the other left out naming its field
    assert "first" in models and "second" not in models
    invalid = {(bad["file"], bad["field"]) for bad in system["invalid"]}
    assert ("two.yaml", "[1].lora_adapter") in invalid

