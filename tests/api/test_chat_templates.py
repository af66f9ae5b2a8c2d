"""Where the chat prompt comes from: the YAML's template, else the GGUF's own, else the fallback."""

from __future__ import annotations

import subprocess
import sys

import pytest

GGUF_TEMPLATE = "{{ bos_token }}{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def templated_gguf(tmp_path_factory, gemma_gguf):
    """A copy of the Gemma file whose metadata carries a chat template."""
    target = tmp_path_factory.mktemp("templated") / "templated.gguf"
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(gemma_gguf), str(target),
         "--chat-template", GGUF_TEMPLATE, "--force"],
        check=True, capture_output=True, timeout=300,
    )
    return target


def prompt_tokens(gguf, text: str) -> int:
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return len(vocab.tokenize(text.encode(), add_bos=False, special=True))


def test_the_gguf_chat_template_is_used_when_the_yaml_has_none(tmp_path, templated_gguf, make_server):
    from tests.conftest import place

    folder = tmp_path / "models"
    folder.mkdir()
    place(templated_gguf, folder / "templated.gguf")
    (folder / "t.yaml").write_text("name: t\nparameters:\n  model: templated.gguf\n  temperature: 0\n")
    server = make_server(folder)
    reply = server.client().chat.completions.create(model="t", messages=MESSAGES, max_tokens=6)
    expected = prompt_tokens(templated_gguf, "<bos>Q: What is the capital of France?\nA:")
    assert reply.usage.prompt_tokens == expected
    assert "Paris" in reply.choices[0].message.content

    # The bare file is served with the same template.
    assert "templated.gguf" not in [m.id for m in server.client().models.list().data]  # claimed by t.yaml
    (folder / "t.yaml").unlink()
    server.wait_for(lambda: "templated.gguf" in [m.id for m in server.client().models.list().data])
    bare = server.client().chat.completions.create(model="templated.gguf", messages=MESSAGES, max_tokens=2)
    assert bare.usage.prompt_tokens == expected


def test_the_yaml_template_wins_over_the_gguf_one(tmp_path, templated_gguf, make_server):
    from tests.conftest import place

    folder = tmp_path / "models"
    folder.mkdir()
    place(templated_gguf, folder / "templated.gguf")
    (folder / "t.yaml").write_text(
        "name: t\nparameters:\n  model: templated.gguf\ntemplate:\n"
        "  chat: \"{% for m in messages %}Question: {{ m.content }}\\n{% endfor %}Answer:\"\n"
    )
    server = make_server(folder)
    reply = server.client().chat.completions.create(model="t", messages=MESSAGES, max_tokens=2)
    assert reply.usage.prompt_tokens == 1 + prompt_tokens(templated_gguf, "Question: What is the capital of France?\nAnswer:")


def test_the_fallback_transcript_and_its_stop_word(tmp_path, gemma_gguf, make_server):
    from tests.conftest import place

    folder = tmp_path / "models"
    folder.mkdir()
    place(gemma_gguf, folder / "plain.gguf")
    server = make_server(folder)
    messages = [{"role": "system", "content": "Be brief."}, *MESSAGES]
    reply = server.client().chat.completions.create(model="plain.gguf", messages=messages, max_tokens=40, temperature=0)
    expected = 1 + prompt_tokens(gemma_gguf, "Be brief.\n\nUser: What is the capital of France?\nAssistant:")
    assert reply.usage.prompt_tokens == expected
    assert "User:" not in reply.choices[0].message.content


def test_system_prompt_from_the_yaml_is_used_when_the_chat_has_none(tmp_path, gemma_gguf, make_server):
    from tests.conftest import place

    folder = tmp_path / "models"
    folder.mkdir()
    place(gemma_gguf, folder / "g.gguf")
    (folder / "s.yaml").write_text("name: s\nsystem_prompt: Be brief.\nparameters:\n  model: g.gguf\n")
    server = make_server(folder)
    with_default = server.client().chat.completions.create(model="s", messages=MESSAGES, max_tokens=1)
    own_system = server.client().chat.completions.create(
        model="s", messages=[{"role": "system", "content": "Answer in French."}, *MESSAGES], max_tokens=1
    )
    assert with_default.usage.prompt_tokens == 1 + prompt_tokens(gemma_gguf, "Be brief.\n\nUser: What is the capital of France?\nAssistant:")
    assert own_system.usage.prompt_tokens == 1 + prompt_tokens(gemma_gguf, "Answer in French.\n\nUser: What is the capital of France?\nAssistant:")
