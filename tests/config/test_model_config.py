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


def test_mmproj_names_a_projector_whose_metadata_says_what_it_reads(folder):
    from localhost_ai.config.model_config import ModelConfig
    from localhost_ai.config.options import BackendOptions
    from tests.mmproj_fixture import build_audio_projector, build_vision_projector

    build_vision_projector(folder / "mmproj-v.gguf")
    build_audio_projector(folder / "mmproj-a.gguf")
    vision = load_yaml_config(write(folder, "parameters:\n  model: w.gguf\nmmproj: mmproj-v.gguf\n"), folder, BACKENDS)
    assert vision.mmproj == folder / "mmproj-v.gguf" and vision.media == ("image",)
    assert {"chat", "vision"} <= vision.capabilities and "audio" not in vision.capabilities
    hears = load_yaml_config(write(folder, "parameters:\n  model: w.gguf\nmmproj: mmproj-a.gguf\n"), folder, BACKENDS)
    assert hears.media == ("audio",) and "audio" in hears.capabilities
    # Across the process boundary and back.
    assert ModelConfig.from_wire(vision.to_wire(), BackendOptions) == vision


@pytest.mark.parametrize("setup, message", [
    (lambda f: None, "does not exist"),
    (lambda f: (f / "p.gguf").write_bytes(b"not a gguf at all"), "not a GGUF file"),
    (lambda f: (f / "p.gguf").write_bytes((f / "text.gguf").read_bytes()), "not a projector"),
])
def test_a_bad_mmproj_leaves_the_file_out_naming_the_field(folder, setup, message):
    import gguf

    writer = gguf.GGUFWriter(str(folder / "text.gguf"), "llama")  # a GGUF without clip.* metadata
    writer.add_uint32("llama.context_length", 16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    setup(folder)
    with pytest.raises(ConfigError) as caught:
        load_yaml_config(write(folder, "parameters:\n  model: w.gguf\nmmproj: p.gguf\n"), folder, BACKENDS)
    assert caught.value.field == "mmproj" and message in caught.value.reason, caught.value.reason
    with pytest.raises(ConfigError) as caught:
        load_yaml_config(write(folder, "parameters:\n  model: w.gguf\nmmproj: ../p.gguf\n"), folder, BACKENDS)
    assert caught.value.field == "mmproj"
