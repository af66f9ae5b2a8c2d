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
