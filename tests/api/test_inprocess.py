"""Handlers, manager and worker client in this process (pytest-aiohttp's client), with
a fake backend: the OpenAI shapes each surface renders from the contract's events."""

from __future__ import annotations

import asyncio
import json
import struct
import base64

import pytest

from tests.conftest import assert_schema
from tests.inprocess import PLUGINS, ThreadWorker, app_for, fake_models

USER = [{"role": "user", "content": "hello there world"}]
TOOL = {"type": "function", "function": {"name": "Echo", "parameters": {"type": "object", "properties": {
    "text": {"type": "string"}}}}}


@pytest.fixture(params=["process", "threads"])
async def client(request, aiohttp_client, tmp_path, monkeypatch):
    """The app over a fake model whose worker is a child process (the real client) or
    runs on threads here (a second placement behind the same interface)."""
    monkeypatch.setenv("PYTHONPATH", PLUGINS)
    monkeypatch.setenv("LOCALHOST_AI_BACKENDS", "fake_backend")
    placement = ThreadWorker if request.param == "threads" else None
    return await aiohttp_client(app_for(fake_models(tmp_path / "models", embeddings=True), placement))


async def sse(response) -> list[dict]:
    assert response.status == 200, await response.text()
    text = await response.text()
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


async def test_chat_renders_text_events_in_openais_shape(client):
    response = await client.post("/v1/chat/completions", json={"model": "fake", "messages": USER, "n": 2})
    body = await response.json()
    assert response.status == 200, body
    assert_schema(body, "CreateChatCompletionResponse")
    assert [c["message"]["content"] for c in body["choices"]] == ["hello there world "] * 2
    assert {c["finish_reason"] for c in body["choices"]} == {"stop"}
    assert body["usage"] == {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20,
                             "prompt_tokens_details": {"cached_tokens": 0}}


async def test_a_streamed_chat_opens_each_choice_then_deltas_finish_and_usage(client):
    chunks = await sse(await client.post("/chat/completions", json={
        "model": "fake", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}))
    for chunk in chunks:
        assert_schema(chunk, "CreateChatCompletionStreamResponse")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "hello there world "
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 20


async def test_tool_calls_render_as_tools_legacy_functions_and_nexa(client):
    current = await (await client.post("/v1/chat/completions", json={
        "model": "fake", "messages": USER, "tools": [TOOL]})).json()
    assert_schema(current, "CreateChatCompletionResponse")
    choice = current["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "call_0", "type": "function", "function": {
        "name": "Echo", "arguments": '{"text": "hello there world"}'}}]

    legacy = await (await client.post("/v1/chat/completions", json={
        "model": "fake", "messages": USER, "functions": [TOOL["function"]]})).json()
    choice = legacy["choices"][0]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    assert choice["message"]["function_call"] == {"name": "Echo", "arguments": '{"text": "hello there world"}'}

    nexa = await (await client.post("/v1/function-calling", json={"model": "fake", "messages": USER,
                                                                  "tools": [TOOL]})).json()
    message = nexa["choices"][0]["message"]
    assert message["function_call"] == message["tool_calls"][0]["function"]


async def test_streamed_tool_calls_announce_the_call_then_its_arguments(client):
    chunks = await sse(await client.post("/v1/chat/completions", json={
        "model": "fake", "messages": USER, "tools": [TOOL], "tool_choice": {"type": "function", "function": {
            "name": "Echo"}}, "stream": True}))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert deltas[1]["tool_calls"][0]["function"] == {"name": "Echo", "arguments": ""}
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:] if d.get("tool_calls"))
    assert arguments == '{"text": "hello there world"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_backends_error_keeps_its_status_param_and_code(client):
    response = await client.post("/v1/completions", json={"model": "fake", "prompt": "fail"})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == "prompt" and error["code"] == "fake_refusal"
    fine = await (await client.post("/v1/completions", json={"model": "fake", "prompt": ["a", "b"]})).json()
    assert_schema(fine, "CreateCompletionResponse")
    assert [(c["text"], c["finish_reason"]) for c in fine["choices"]] == [("a", "length"), ("b", "length")]


async def test_a_bad_embedding_request_fails_alone(client):
    inputs = [["one"], ["bad"], ["three", "four"]] + [["x" * n] for n in range(1, 6)]
    responses = await asyncio.gather(*(client.post("/v1/embeddings", json={
        "model": "fake-embed", "input": i}) for i in inputs))
    assert [r.status for r in responses] == [200, 400] + [200] * 6
    body = await responses[2].json()
    assert_schema(body, "CreateEmbeddingResponse")
    assert [item["embedding"][0] for item in body["data"]] == [5.0, 4.0]
    encoded = await (await client.post("/v1/embeddings", json={"model": "fake-embed", "input": "four",
                                                               "encoding_format": "base64"})).json()
    assert struct.unpack("<2f", base64.b64decode(encoded["data"][0]["embedding"]))[0] == 4.0


async def test_capabilities_come_from_the_one_table(client):
    system = await (await client.get("/system")).json()
    assert {m["id"]: m["capabilities"] for m in system["models"]} == {
        "fake": ["chat", "completion", "speech"], "fake-embed": ["embeddings"]}
    response = await client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert response.status == 400 and (await response.json())["error"]["code"] == "model_not_supported"


async def test_every_openai_route_is_served_with_and_without_v1(client):
    for path in ("/v1/models", "/models"):
        body = await (await client.get(path)).json()
        assert sorted(m["id"] for m in body["data"]) == ["fake", "fake-embed"]
    assert (await client.get("/v1/models/fake")).status == 200
    assert (await client.get("/models/available")).status == 200  # the gallery's, not a model named "available"


async def test_a_backend_that_yields_no_event_fails_that_call_alone(client, caplog):
    assert (await client.post("/v1/completions", json={"model": "fake", "prompt": "load"})).status == 200
    before = await (await client.get("/backend/monitor?model=fake")).json()
    response = await client.post("/v1/completions", json={"model": "fake", "prompt": "junk"})
    error = (await response.json())["error"]
    assert response.status == 500 and error["code"] == "backend_failed" and "log" in error["message"]
    assert "not one of the contract's events" in caplog.text  # the log has what the client is not told
    assert (await client.post("/v1/completions", json={"model": "fake", "prompt": "fine"})).status == 200
    after = await (await client.get("/backend/monitor?model=fake")).json()
    assert after["state"] == "ready" and after["pid"] == before["pid"] and after["uptime_seconds"] > 0


async def test_server_routes_answer_head_as_get(client):
    assert (await client.head("/healthz")).status == 200
    assert (await client.head("/v1/models")).status == 200


async def test_speech_goes_out_sentence_by_sentence_and_a_failure_midway_is_not_a_whole_file(client):
    import aiohttp

    response = await client.post("/v1/audio/speech", json={"model": "fake", "input": "one two three",
                                                           "response_format": "pcm"})
    assert response.status == 200 and response.headers["Content-Type"] == "audio/pcm"
    assert await response.read() == b"onetwothree"
    response = await client.post("/v1/audio/speech", json={"model": "fake", "input": "one fail",
                                                           "response_format": "pcm"})
    assert response.status == 200  # the first sentence was out before the failure
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()  # the body ends unfinished, not as if the audio were complete
    response = await client.post("/v1/audio/speech", json={"model": "fake", "input": "one fail",
                                                           "stream_format": "sse"})
    events = [json.loads(line[6:]) for line in (await response.text()).splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["speech.audio.delta", "error"]
    assert "broke down" in events[-1]["error"]["message"]


async def test_a_failure_mid_answer_ends_each_apis_stream_in_its_own_shape(client):
    """After the first byte the status is sent: each API says the answer failed in its own
    events (and the Responses API ends the response as failed)."""
    from tests.conftest import assert_schema

    ask = "one fail"
    response = await client.post("/v1/responses", json={"model": "fake", "input": ask, "stream": True})
    events = [json.loads(line[6:]) for line in (await response.text()).splitlines() if line.startswith("data: ")]
    for event in events:
        assert_schema(event, "ResponseStreamEvent")
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["response.output_item.done", "response.failed"] and "error" in kinds
    assert "broke down" in events[kinds.index("error")]["message"]
    assert events[-1]["response"]["status"] == "failed" and "broke down" in events[-1]["response"]["error"]["message"]
    response = await client.post("/v1/messages", json={"model": "fake", "max_tokens": 8, "stream": True,
                                                       "messages": [{"role": "user", "content": ask}]})
    events = [json.loads(line[6:]) for line in (await response.text()).splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and "broke down" in events[-1]["error"]["message"]
    response = await client.post("/api/chat", json={"model": "fake", "messages": [{"role": "user", "content": ask}]})
    lines = [json.loads(line) for line in (await response.text()).splitlines() if line]
    assert lines[0]["message"]["content"] == "one " and "broke down" in lines[-1]["error"]
