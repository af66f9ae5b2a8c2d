"""POST /v1/completions and /v1/edits against the real Gemma 3 270M."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_schema, sse_events

PROMPT = "Question: What is the capital of France?\nAnswer:"


def test_openai_client_completion(gemma_server):
    reply = gemma_server.client().completions.create(model="gemma", prompt=PROMPT, max_tokens=6)
    assert_schema(reply.model_dump(exclude_unset=True), "CreateCompletionResponse")
    assert reply.object == "text_completion"
    assert "Paris" in reply.choices[0].text
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_prompt_tokens_are_counted_by_the_model_tokenizer(gemma_server, gemma_gguf):
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(gemma_gguf), vocab_only=True, verbose=False)
    expected = len(vocab.tokenize(PROMPT.encode(), add_bos=True, special=True))
    reply = gemma_server.client().completions.create(model="gemma", prompt=PROMPT, max_tokens=2)
    assert reply.usage.prompt_tokens == expected
    assert reply.usage.completion_tokens == 2


def test_streamed_completion_framing_and_text(gemma_server):
    response = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 8, "stream": True})
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks[:-1]:
        # As OpenAI streams it: finish_reason is null until the last chunk, although its
        # schema (shared by streamed and plain responses) lists only the final values.
        assert chunk["choices"][0]["finish_reason"] is None
        assert_schema({**chunk, "choices": [{**chunk["choices"][0], "finish_reason": "stop"}]}, "CreateCompletionResponse")
    assert_schema(chunks[-1], "CreateCompletionResponse")
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    plain = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 8}).json()
    assert streamed == plain["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


def test_openai_client_streamed_completion_with_usage(gemma_server):
    stream = gemma_server.client().completions.create(
        model="gemma", prompt=PROMPT, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "Paris" in "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices == []
    plain = gemma_server.client().completions.create(model="gemma", prompt=PROMPT, max_tokens=5)
    assert chunks[-1].usage.model_dump() == plain.usage.model_dump()
    assert 1 <= plain.usage.completion_tokens <= 5


def test_list_prompt_gives_one_choice_per_prompt(gemma_server):
    prompts = [PROMPT, "Question: What is the capital of Japan?\nAnswer:"]
    reply = gemma_server.client().completions.create(model="gemma", prompt=prompts, max_tokens=5)
    assert [c.index for c in reply.choices] == [0, 1]
    assert "Paris" in reply.choices[0].text
    assert "Tokyo" in reply.choices[1].text
    single = gemma_server.client().completions.create(model="gemma", prompt=prompts[0], max_tokens=5)
    assert reply.usage.prompt_tokens > single.usage.prompt_tokens


def test_echo_puts_the_prompt_first(gemma_server):
    reply = gemma_server.client().completions.create(model="gemma", prompt=PROMPT, max_tokens=4, echo=True)
    assert reply.choices[0].text.startswith(PROMPT)
    assert len(reply.choices[0].text) > len(PROMPT)


def test_yaml_max_tokens_is_the_default_and_the_request_overrides_it(gemma_server):
    story = "Once upon a time, in a land far away,"
    default = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": story}).json()
    assert default["usage"]["completion_tokens"] == 24  # parameters.max_tokens in the YAML
    assert default["choices"][0]["finish_reason"] == "length"
    override = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": story, "max_tokens": 4}).json()
    assert override["usage"]["completion_tokens"] == 4


def test_yaml_temperature_is_the_default_and_the_request_overrides_it(gemma_server):
    story = "The weather today is"
    runs = {gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": story, "max_tokens": 10}).json()["choices"][0]["text"] for _ in range(2)}
    assert len(runs) == 1, "temperature 0.0 from the YAML must be deterministic"
    hot = {
        gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": story, "max_tokens": 10,
                                                  "temperature": 1.8, "seed": s}).json()["choices"][0]["text"]
        for s in (1, 2, 3)
    }
    assert len(hot) > 1


@pytest.mark.parametrize("alias", [{"max_new_tokens": 3}, {"max_tokens": 3}])
def test_nexa_max_new_tokens_alias(gemma_server, alias):
    reply = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": "Once upon a time", **alias}).json()
    assert reply["usage"]["completion_tokens"] == 3


def test_stop_and_nexa_stop_words_cut_the_text(gemma_server):
    full = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 6}).json()["choices"][0]["text"]
    assert "Paris" in full
    for field in ("stop", "stop_words"):
        cut = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 6, field: ["aris"]}).json()
        assert cut["choices"][0]["text"] == full[: full.index("aris")]
        assert cut["choices"][0]["finish_reason"] == "stop"


def test_edit_follows_the_instruction_template(gemma_server):
    response = gemma_server.post("/v1/edits", json={
        "model": "gemma", "instruction": "Fix the spelling.", "input": "The captial of France is Paris.", "max_tokens": 8,
    })
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "edit"
    assert isinstance(body["choices"][0]["text"], str) and body["choices"][0]["text"]
    assert body["usage"]["prompt_tokens"] > 10
    assert body["usage"]["completion_tokens"] <= 8


def test_routes_answer_without_the_v1_prefix(gemma_server):
    with_prefix = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 3}).json()
    without = gemma_server.post("/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 3}).json()
    assert without["choices"][0]["text"] == with_prefix["choices"][0]["text"]
    assert gemma_server.get("/models").json()["data"][0]["id"] == "gemma"
    assert gemma_server.post("/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).status_code == 200
    assert gemma_server.post("/edits", json={"instruction": "Say hi", "max_tokens": 2}).status_code == 200
