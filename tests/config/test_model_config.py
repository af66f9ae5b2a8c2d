"""The model file schema and loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from localhost_ai.config import ConfigError, load_yaml_config

BACKENDS = ["llama-cpp"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    return tmp_path


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_name_defaults_to_the_file_stem_and_backend_to_the_weights_kind(folder):
    config = load_yaml_config(write(folder, "parameters:\n  model: w.gguf\n", "my-model.yaml"), folder, BACKENDS)
    assert config.name == "my-model" and config.backend == "llama-cpp"
    assert config.model_path == folder / "w.gguf"


def test_sampling_defaults_and_fields(folder):
    text = "name: x\nparameters:\n  model: w.gguf\n  temperature: 0.3\n  top_k: 5\nstopwords: ['END']\ncontext_size: 512\n"
    config = load_yaml_config(write(folder, text), folder, BACKENDS)
    assert config.sampling_defaults == {"temperature": 0.3, "top_k": 5}
    assert config.stopwords == ("END",) and config.context_size == 512


def test_localai_extra_fields_are_accepted(folder):
    text = "name: x\nf16: true\ngpu_layers: 99\nparameters:\n  model: w.gguf\n"
    assert load_yaml_config(write(folder, text), folder, BACKENDS).name == "x"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: x\n", "parameters.model"),
        ("parameters:\n  model: w.gguf\n  temperature: hot\n", "parameters.temperature"),
        ("parameters:\n  model: w.gguf\nstopwords: END\n", "stopwords"),
        ("name: 'bad name with spaces'\nparameters:\n  model: w.gguf\n", "name"),
        ("parameters:\n  model: /etc/passwd\n", "parameters.model"),
        ("parameters:\n  model: weights.bin\n", "parameters.model"),
        ("- a list\n", None),
    ],
)
def test_bad_files_name_the_field(folder, text, field):
    with pytest.raises(ConfigError) as caught:
        load_yaml_config(write(folder, text), folder, BACKENDS)
    assert caught.value.field == field
    assert "m.yaml" in str(caught.value)


def test_a_backend_that_cannot_be_told_is_required(folder):
    (folder / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError) as caught:
        load_yaml_config(write(folder, "parameters:\n  model: weights.bin\n"), folder, BACKENDS)
    assert caught.value.field == "backend"
