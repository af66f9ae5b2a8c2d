"""Every field of LocalAI's model config is acted on, ignored with a warning, or refused naming
the field; the README's table is this server's own; LocalAI's file shapes (a list of models, Go's
\\' escape, -1 and 0 meaning "all") read as LocalAI reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from localhost_ai.backends import backend_options
from localhost_ai.config import ConfigError, load_yaml_config, load_yaml_file
from localhost_ai.config import localai_fields
from localhost_ai.config.go_prompts import DEFAULT_MULTIMODAL, multimodal_content
from localhost_ai.config.localai_fields import FIELDS, IGNORED, NOT_A_FIELD, REFUSED, USED
from tests.conftest import GEMMA_FILE, place

ROOT = Path(__file__).parents[2]
LOCALAI_PATHS = [line for line in (Path(__file__).parent / "localai" / "config_fields.txt").read_text().splitlines()
                 if line and not line.startswith("#")]


def _classified_by(path: str) -> str | None:
    """The entry that says what happens to `path`: its own, or a whole block's above it."""
    if path in FIELDS:
        return path
    for end in (m.start() for m in re.finditer(r"\.|\[\]| →", path)):
        block = path[:end]
        if block in FIELDS and FIELDS[block].whole:
            return block
    return None


def test_every_key_path_of_localai_s_config_is_acted_on_ignored_or_refused():
    assert len(LOCALAI_PATHS) == 373
    unclassified = [path for path in LOCALAI_PATHS if _classified_by(path) is None]
    assert unclassified == []
    # and nothing is classified that LocalAI does not have (a typo here would hide a field)
    assert sorted(set(FIELDS) - set(LOCALAI_PATHS)) == []
    statuses = {FIELDS[_classified_by(path)].status for path in LOCALAI_PATHS}
    assert statuses == {USED, IGNORED, REFUSED}


def test_the_readme_table_is_the_one_the_server_acts_by():
    readme = (ROOT / "README.md").read_text()
    assert localai_fields.table_markdown() in readme


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    return tmp_path


def load(folder: Path, data: dict | list | str, name: str = "m.yaml"):
    (folder / name).write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return load_yaml_config(folder / name, folder, backend_options())


def test_ignored_fields_are_listed_with_why_and_empty_or_switched_off_ones_are_not(folder):
    config = load(folder, {
        "parameters": {"model": "w.gguf", "tempreature": 0.2},
        "f16": True, "gpu_layers": 99, "cuda": False, "flash_attention": "", "tensor_split": None,
        "options": ["use_jinja:true"], "function": {"json_regex_match": ["x"], "grammar": {"mixed_mode": True}},
        "pipeline": {"llm": "other", "tts": "voice"}, "roles": {"user": "User:"},
    })
    ignored = dict(config.ignored_fields)
    assert set(ignored) == {"parameters.tempreature", "f16", "gpu_layers", "function.json_regex_match",
                            "function.grammar.mixed_mode", "pipeline"}
    assert ignored["gpu_layers"] == FIELDS["gpu_layers"].note and "CPU" in ignored["gpu_layers"]
    assert ignored["parameters.tempreature"] == NOT_A_FIELD
    # use_jinja is what this server does anyway; any other option is said to be ignored
    assert "options" in dict(load(folder, {"parameters": {"model": "w.gguf"},
                                           "options": ["use_jinja:true", "cache_reuse:256"]}).ignored_fields)
    # this server's own fields, and a backend's, are no warning
    assert load(folder, {"parameters": {"model": "w.gguf", "xtc_probability": 0.1}, "parallel": 2,
                         "memory_limit": "1GiB"}).ignored_fields == ()


@pytest.mark.parametrize("data, field", [
    ({"disabled": True}, "disabled"),
    ({"alias": "other-model"}, "alias"),
    ({"lora_adapter": "adapter.bin"}, "lora_adapter"),
    ({"mcp": {"stdio": '{"mcpServers": {"x": {"command": "rm"}}}'}}, "mcp"),
    ({"pii": {"enabled": True}}, "pii"),
    ({"router": {"candidates": [{"model": "other"}]}}, "router"),
    ({"proxy": {"api_key_file": "/etc/shadow"}}, "proxy"),
    ({"parameters": {"model": "w.gguf", "pooling": "decayed_mean"}}, "parameters.pooling"),
    ({"backend": "diffusers", "diffusers": {"pipeline_type": "StableDiffusionXLPipeline"}}, "diffusers.pipeline_type"),
    ({"parameters": {"model": "w.gguf", "tfz": 0.9}}, "parameters.tfz"),
])
def test_a_refused_field_leaves_the_file_out_naming_it(folder, data, field):
    data = {**data, "parameters": {"model": "w.gguf", **data.get("parameters", {})}}
    with pytest.raises(ConfigError) as caught:
        load(folder, data)
    assert caught.value.field == field, caught.value
    # the same fields switched off are accepted
    assert load(folder, {"parameters": {"model": "w.gguf"}, "disabled": False, "pii": {"enabled": False},
                         "router": {"candidates": []}, "mcp": {"remote": ""}}).name == "m"


def test_localai_spellings_read_as_localai_reads_them(folder, gemma_gguf):
    config = load(folder, {"parameters": {"model": "w.gguf", "max_tokens": 0, "mirostat_tau": 4.0},
                           "mirostat": 2, "mirostat_tau": 3.0, "mirostat_eta": 0.2,
                           "known_usecases": ["FLAG_RERANK"]})
    assert config.parameters["mirostat"] == 2 and config.parameters["mirostat_eta"] == 0.2
    assert config.parameters["mirostat_tau"] == 4.0  # parameters.* win over the top level
    assert "max_tokens" not in config.parameters  # 0: no default budget
    assert config.known_usecases == ("rerank",)
    place(gemma_gguf, folder / GEMMA_FILE)
    assert load(folder, {"parameters": {"model": GEMMA_FILE}, "context_size": -1}).context_size == 32768
    with pytest.raises(ConfigError, match="does not say") as caught:
        load(folder, {"parameters": {"model": "w.gguf"}, "context_size": -1})
    assert caught.value.field == "context_size"
    with pytest.raises(ConfigError) as caught:
        load(folder, {"parameters": {"model": "w.gguf"}, "context_size": 0})
    assert caught.value.field == "context_size"


def test_use_tokenizer_template_turns_the_tool_grammar_off_as_in_localai(folder):
    config = load(folder, {"parameters": {"model": "w.gguf"}, "template": {"use_tokenizer_template": True},
                           "function": {"grammar": {"parallel_calls": True}}})
    assert config.function["grammar"] == {"parallel_calls": True, "disable": True}


def test_a_whisper_cpp_file_is_refused_for_the_openai_whisper_backend(folder):
    (folder / "ggml-base.en.bin").write_bytes(b"lmgg" + bytes(64))
    with pytest.raises(ConfigError, match="whisper.cpp") as caught:
        load(folder, {"backend": "whisper", "parameters": {"model": "ggml-base.en.bin"}})
    assert caught.value.field == "parameters.model"


def test_a_file_listing_several_models_serves_each_and_names_a_bad_one(folder):
    (folder / "many.yaml").write_text(yaml.safe_dump([
        {"name": "one", "parameters": {"model": "w.gguf"}},
        {"name": "two", "parameters": {"model": "missing.gguf"}},
        {"parameters": {"model": "w.gguf"}},
    ]))
    one, two, three = load_yaml_file(folder / "many.yaml", folder, backend_options())
    assert one.name == "one"
    assert isinstance(two, ConfigError) and two.field == "[1].parameters.model"
    assert isinstance(three, ConfigError) and three.field == "[2].name"
    with pytest.raises(ConfigError, match="lists 3 models"):
        load_yaml_config(folder / "many.yaml", folder, backend_options())
    for bad in ("[]", "[1, 2]", "just text"):
        with pytest.raises(ConfigError, match="mapping"):
            load(folder, bad)


def test_go_s_backslash_apostrophe_escape_reads_as_in_localai_s_gallery(folder):
    text = 'parameters:\n  model: w.gguf\nfunction:\n  replace_function_results:\n  - key: "\\\'"\n    value: "\'"\n'
    config = load(folder, text)
    assert config.raw["function"]["replace_function_results"] == [{"key": "'", "value": "'"}]
    with pytest.raises(ConfigError, match="escape"):
        load(folder, 'parameters:\n  model: "w\\q.gguf"\n')


def test_the_multimodal_template_places_media_and_only_its_own_markers_count():
    images, audios = ["img0", "img1"], ["aud0"]
    default = multimodal_content(None, "Look <__media__>", images, audios, 3, 0, "<M>")
    assert default.content == "<M><M><M>Look <__media__>"  # the text's own sentinel stays text
    assert default.media == ("aud0", "img0", "img1")  # audio first, as LocalAI's default
    after = multimodal_content("{{.Text}}\n{{ range .Images }}[{{.ID}}]<__media__>{{end}}{{ range .Audio }}<__media__>{{end}}",
                               "Hi", images, audios, 3, 0, "<M>")
    assert after.content == "Hi\n[3]<M>[4]<M><M>" and after.media == ("img0", "img1", "aud0")
    # one that changes the text, or writes the wrong number of markers, gives way to the default
    for broken in ("{{ .Text | upper }}{{ range .Images }}<__media__>{{end}}{{ range .Audio }}<__media__>{{end}}",
                   "{{ range .Images }}<|image_{{ add1 .ID }}|>{{end}}{{.Text}}", "{{ .Missing.Field }}"):
        assert multimodal_content(broken, "Hi", images, audios, 0, 0, "<M>") == \
            multimodal_content(DEFAULT_MULTIMODAL, "Hi", images, audios, 0, 0, "<M>")


def test_a_multimodal_template_that_does_not_compile_is_refused_with_its_position(folder):
    with pytest.raises(ConfigError, match="line 1") as caught:
        load(folder, {"parameters": {"model": "w.gguf"}, "template": {"multimodal": "{{ range .Images }}"}})
    assert caught.value.field == "template.multimodal"


def test_the_model_s_own_tmpl_file_is_its_chat_completion_and_edit_template_byte_for_byte(folder):
    (folder / "sub").mkdir()
    (folder / "sub" / "w.gguf").write_bytes(b"GGUF")
    (folder / "sub" / "w.gguf.tmpl").write_bytes(b"{{.Input}}\r\nASSISTANT:")
    config = load(folder, {"parameters": {"model": "sub/w.gguf"}})
    assert config.templates == {kind: "{{.Input}}\r\nASSISTANT:" for kind in ("chat", "completion", "edit")}
    assert config.template_syntax["chat"] == "go"
    given = load(folder, {"parameters": {"model": "sub/w.gguf"}, "template": {"chat": "{{ messages }}"}})
    assert given.templates["chat"] == "{{ messages }}" and given.templates["edit"] == "{{.Input}}\r\nASSISTANT:"


def test_a_draft_model_is_a_file_in_the_models_folder(folder):
    assert load(folder, {"parameters": {"model": "w.gguf"}, "draft_model": "w.gguf"}).options.draft_model == "w.gguf"
    for bad in ("missing.gguf", "../w.gguf", "/etc/passwd"):
        with pytest.raises(ConfigError) as caught:
            load(folder, {"parameters": {"model": "w.gguf"}, "draft_model": bad})
        assert caught.value.field == "draft_model", bad
