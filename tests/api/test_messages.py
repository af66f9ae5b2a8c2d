"""Anthropic's Messages API on the real server and Gemma 3 270M, through the real `anthropic`
client: text, stop reasons, the event stream, tool_use blocks (streamed too) whose input
validates against its schema, a tool result's round trip, token counting, keys sent as
`x-api-key`, and bad input answered in Anthropic's own error shape."""

from __future__ import annotations

import json
from typing import Iterator

import anthropic
import jsonschema
import pytest
import requests

from tests.api.doors import WEATHER, probed, start
from tests.conftest import Server, stop_server

QUESTION = "What is the capital of France?"
TOOL = {"name": "get_weather", "description": "The current weather in a city", "input_schema": WEATHER}


@pytest.fixture(scope="module")
def server(tmp_path_factory, gemma_gguf) -> Iterator[Server]:
    server = start(tmp_path_factory, gemma_gguf)
    yield server
    stop_server(server)


def client(server: Server, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)


def assert_anthropic_error(response: requests.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"], body
    return body["error"]["message"]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_text_and_its_stop_reasons(server):
    answer = client(server).messages.create(model="gemma", max_tokens=16, messages=user(QUESTION),
                                            system="Answer in one word.")
    assert answer.type == "message" and answer.role == "assistant" and answer.content[0].type == "text"
    assert "Paris" in answer.content[0].text and answer.stop_reason == "end_turn" and answer.stop_sequence is None
    assert answer.usage.input_tokens + answer.usage.cache_read_input_tokens > 5 and answer.usage.output_tokens > 0
    cut = client(server).messages.create(model="gemma", max_tokens=2, messages=user("Tell me a long story."))
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2
    stopped = client(server).messages.create(model="gemma", max_tokens=16, messages=user(QUESTION),
                                             system="Answer in one word.", stop_sequences=["ari"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "ari"
    assert stopped.content[0].text == answer.content[0].text.split("ari")[0]


def test_the_stream_in_anthropics_order_assembles_to_the_plain_answer(server):
    body = {"model": "gemma", "max_tokens": 16, "messages": user(QUESTION), "system": "Answer in one word."}
    plain = client(server).messages.create(**body)
    with requests.post(server.url + "/v1/messages", json={**body, "stream": True}, stream=True, timeout=60) as raw:
        lines = [line for line in raw.iter_lines(decode_unicode=True) if line]
    events = []
    for name, data in zip(lines[::2], lines[1::2]):
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("content_block_delta")
    assert kinds == ["message_start", "ping", "content_block_start"] + ["content_block_delta"] * deltas + [
        "content_block_stop", "message_delta", "message_stop"]
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == plain.content[0].text
    assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    with client(server).messages.stream(**body) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens and final.stop_reason == "end_turn"


def test_tool_use_blocks_validate_streamed_or_not(server):
    answer = client(server).messages.create(model="gemma", max_tokens=96, messages=user("Weather in Paris?"),
                                            tools=[TOOL], tool_choice={"type": "any"})
    (block,) = [b for b in answer.content if b.type == "tool_use"]
    assert answer.stop_reason == "tool_use" and block.name == "get_weather"
    jsonschema.validate(block.input, WEATHER)
    with client(server).messages.stream(model="gemma", max_tokens=96, messages=user("Weather in Paris?"),
                                        tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    (streamed,) = [b for b in final.content if b.type == "tool_use"]
    jsonschema.validate(streamed.input, WEATHER)


def test_a_tool_result_round_trip(server):
    first = client(server).messages.create(model="gemma", max_tokens=96, messages=user("Weather in Paris?"),
                                           tools=[TOOL], tool_choice={"type": "any"})
    block = next(b for b in first.content if b.type == "tool_use")
    conversation = user("Weather in Paris?") + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "21 C and sunny"},
                                     {"type": "text", "text": "And tomorrow?"}]}]
    probe = requests.post(server.url + "/v1/messages", json={"model": "probe", "max_tokens": 16, "tools": [TOOL],
                                                             "system": "Be brief.", "messages": conversation}, timeout=60)
    messages, tools = probed(assert_anthropic_error(probe, 400, "invalid_request_error"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[2]["tool_calls"][0]["id"] == block.id
    assert messages[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": block.input}
    assert messages[3] == {"role": "tool", "tool_call_id": block.id, "content": "21 C and sunny"}
    assert messages[4]["content"] == "And tomorrow?" and tools[0]["function"]["parameters"] == WEATHER
    answer = client(server).messages.create(model="gemma", max_tokens=24, messages=conversation, tools=[TOOL],
                                            tool_choice={"type": "none"})
    assert answer.content and answer.content[0].type == "text" and answer.stop_reason in ("end_turn", "max_tokens")


def test_count_tokens_matches_what_a_message_reads(server):
    body = {"model": "gemma", "messages": user(QUESTION), "system": "Answer in one word.", "tools": [TOOL]}
    counted = client(server).messages.count_tokens(**body)
    answer = client(server).messages.create(max_tokens=8, **body)
    assert counted.input_tokens == answer.usage.input_tokens + answer.usage.cache_read_input_tokens
    # What a count does not read is left unread, whatever it holds.
    extra = requests.post(server.url + "/v1/messages/count_tokens", json={**body, "stop_sequences": 5,
                                                                          "temperature": "hot"}, timeout=60)
    assert extra.status_code == 200 and extra.json() == {"input_tokens": counted.input_tokens}


def test_max_tokens_is_a_ceiling_and_a_prefill_is_continued(server):
    # Coding tools ask for far more than a small local context holds: the answer ends where it ends.
    with client(server).messages.stream(model="gemma", max_tokens=100_000, messages=user(QUESTION),
                                        system="Answer in one word.") as stream:
        answer = stream.get_final_message()
    assert answer.stop_reason == "end_turn" and "Paris" in answer.content[0].text
    # A last assistant message is the start of the answer, which goes on from it.
    prefilled = client(server).messages.create(model="gemma", max_tokens=8, system="Answer in one word.", messages=user(
        QUESTION) + [{"role": "assistant", "content": '{"capital": "'}])
    assert prefilled.content[0].text.startswith('Paris"')  # the JSON goes on; the prefill is not repeated


def test_keys_come_as_x_api_key_and_their_errors_in_anthropics_shape(tmp_path_factory, gemma_gguf):
    keyed = start(tmp_path_factory, gemma_gguf, "--api-keys", "sesame")
    try:
        assert client(keyed, api_key="sesame").messages.count_tokens(model="gemma", messages=user("Hi")).input_tokens
        wrong = requests.post(keyed.url + "/v1/messages/count_tokens", headers={"x-api-key": "wrong"},
                              json={"model": "gemma", "messages": user("Hi")}, timeout=30)
        assert_anthropic_error(wrong, 401, "authentication_error")
        with pytest.raises(anthropic.AuthenticationError):
            client(keyed, api_key="wrong").messages.create(model="gemma", max_tokens=4, messages=user("Hi"))
    finally:
        stop_server(keyed)


@pytest.mark.parametrize("body, status, kind, says", [
    ({"messages": user(QUESTION)}, 400, "invalid_request_error", "max_tokens"),
    ({"max_tokens": 8, "messages": []}, 400, "invalid_request_error", "messages"),
    ({"max_tokens": 8, "messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error", "role"),
    ({"max_tokens": 8, "messages": user(QUESTION), "thinking": {"type": "enabled", "budget_tokens": 1024}}, 400,
     "invalid_request_error", "thinking"),
    ({"max_tokens": 8, "messages": user(QUESTION), "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     400, "invalid_request_error", "web_search_20250305"),
    ({"max_tokens": 8, "messages": user(QUESTION), "tools": [{"name": "f", "input_schema": {"type": "nonsense"}}]},
     400, "invalid_request_error", "tools[0].input_schema"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]},
     400, "invalid_request_error", "document"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]},
     400, "invalid_request_error", "messages[0].content[1]"),
    ({"max_tokens": 8, "messages": user(QUESTION), "tool_choice": {"type": "any"}}, 400, "invalid_request_error",
     "tool_choice"),
    ({"model": "nope", "max_tokens": 8, "messages": user(QUESTION)}, 404, "not_found_error", "nope"),
])
def test_bad_input_is_answered_in_anthropics_error_shape(server, body, status, kind, says):
    response = requests.post(server.url + "/v1/messages", json={"model": "gemma", **body}, timeout=60)
    assert says in assert_anthropic_error(response, status, kind)
