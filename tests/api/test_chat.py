"""POST /v1/chat/completions against the real Gemma 3 270M."""

from __future__ import annotations

import json

from tests.conftest import assert_error, assert_schema, sse_events

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_openai_client_chat_returns_a_real_answer(gemma_server):
    client = gemma_server.client()
    reply = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=8)
    assert_schema(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
    assert reply.object == "chat.completion"
    assert reply.model == "gemma"
    assert isinstance(reply.created, int)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_raw_response_matches_openai_schema(gemma_server):
    response = gemma_server.post("/v1/chat/completions", json={"model": "gemma", "messages": QUESTION, "max_tokens": 4})
    assert response.status_code == 200
    assert_schema(response.json(), "CreateChatCompletionResponse")


def test_streamed_chat_equals_plain_chat_and_ends_with_done(gemma_server):
    body = {"model": "gemma", "messages": QUESTION, "max_tokens": 10, "stream": True}
    response = gemma_server.post("/v1/chat/completions", json=body)
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_schema(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["object"] == "chat.completion.chunk"
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) >= 2, "text must arrive piece by piece"

    plain = gemma_server.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert streamed == plain["choices"][0]["message"]["content"]


def test_openai_client_streaming_with_usage(gemma_server):
    client = gemma_server.client()
    stream = client.chat.completions.create(
        model="gemma", messages=QUESTION, max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 5 and usage.completion_tokens >= 1
    assert all(c.usage is None for c in chunks[:-1])
    plain = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=6)
    assert usage.model_dump() == plain.usage.model_dump()


def test_max_tokens_gives_finish_reason_length_and_exact_count(gemma_server):
    reply = gemma_server.client().chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "Write a long story about a dragon."}], max_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3


def test_text_parts_content_is_read_like_a_string(gemma_server):
    client = gemma_server.client()
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of "}, {"type": "text", "text": "France?"}]}]
    with_parts = client.chat.completions.create(model="gemma", messages=parts, max_tokens=6)
    plain = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=6)
    assert with_parts.choices[0].message.content == plain.choices[0].message.content
    assert with_parts.usage.prompt_tokens == plain.usage.prompt_tokens


def test_yaml_stopword_ends_the_answer_before_the_next_question(gemma_server):
    reply = gemma_server.client().chat.completions.create(
        model="gemma", messages=QUESTION, max_tokens=60
    )
    content = reply.choices[0].message.content
    assert "Question:" not in content
    assert reply.choices[0].finish_reason == "stop"


def test_request_stop_word_cuts_the_text(gemma_server):
    client = gemma_server.client()
    full = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=8).choices[0].message.content
    assert "Paris" in full
    cut = client.chat.completions.create(model="gemma", messages=QUESTION, max_tokens=8, stop=["Paris"])
    assert cut.choices[0].message.content == full[: full.index("Paris")]
    assert cut.choices[0].finish_reason == "stop"


def test_same_seed_same_text_at_high_temperature(gemma_server):
    client = gemma_server.client()
    prompt = [{"role": "user", "content": "Tell me about the sea."}]
    a = client.chat.completions.create(model="gemma", messages=prompt, max_tokens=12, temperature=1.5, seed=7)
    b = client.chat.completions.create(model="gemma", messages=prompt, max_tokens=12, temperature=1.5, seed=7)
    others = {
        client.chat.completions.create(model="gemma", messages=prompt, max_tokens=12, temperature=1.5, seed=s)
        .choices[0].message.content
        for s in (1, 2, 3)
    }
    assert a.choices[0].message.content == b.choices[0].message.content
    assert len(others | {a.choices[0].message.content}) > 1


def test_n_gives_several_choices(gemma_server):
    reply = gemma_server.client().chat.completions.create(
        model="gemma", messages=QUESTION, max_tokens=4, n=2
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.choices[0].message.content == reply.choices[1].message.content  # temperature 0 in the YAML


def test_image_content_is_refused_with_its_param(gemma_server):
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
    response = gemma_server.post("/v1/chat/completions", json={"model": "gemma", "messages": messages})
    error = assert_error(response, 400)
    assert error["param"].startswith("messages[0].content")
