"""OpenAI's Responses API on the real server and Gemma 3 270M, through the real `openai`
client and the OpenAI Agents SDK: text, structured output, a function tool's round trip
(through previous_response_id and through a resent item list), the typed event stream, the
stored responses, token counting, and bad input; every object and event checked against
OpenAI's own schemas."""

from __future__ import annotations

import json
from typing import Iterator

import jsonschema
import pytest
import requests

from tests.api.doors import WEATHER, probed, start
from tests.api.test_tools import USER_DETAIL
from tests.conftest import Server, assert_error, assert_schema, stop_server

QUESTION = "What is the capital of France?"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
                "parameters": WEATHER}


@pytest.fixture(scope="module")
def server(tmp_path_factory, gemma_gguf) -> Iterator[Server]:
    server = start(tmp_path_factory, gemma_gguf, "--responses-store", "3")
    yield server
    stop_server(server)


def create(server: Server, **body) -> dict:
    response = server.post("/v1/responses", json={"model": "gemma", **body})
    assert response.status_code == 200, response.text
    assert_schema(response.json(), "Response")
    return response.json()


def events(server: Server, **body) -> list[dict]:
    """The typed SSE stream, each event checked against OpenAI's schema and its `event:` line."""
    with requests.post(server.url + "/v1/responses", json={"model": "gemma", "stream": True, **body}, stream=True,
                       timeout=120) as response:
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
    out = []
    for name, data in zip(lines[::2], lines[1::2]):
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        assert_schema(event, "ResponseStreamEvent")
        out.append(event)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def test_text_through_the_openai_client(server):
    answer = server.client().responses.create(model="gemma", input=QUESTION, instructions="Answer in one word.")
    assert "Paris" in answer.output_text
    assert answer.status == "completed" and answer.usage.input_tokens > 5 and answer.usage.output_tokens > 0
    raw = create(server, input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}])
    assert raw["output"][0]["type"] == "message" and "Paris" in raw["output"][0]["content"][0]["text"]
    assert raw["id"].startswith("resp_") and raw["model"] == "gemma"


def test_json_schema_output_validates(server):
    answer = server.client().responses.create(
        model="gemma", input="Tom is 30 years old. Extract the user.",
        text={"format": {"type": "json_schema", "name": "user", "schema": USER_DETAIL, "strict": True}})
    jsonschema.validate(json.loads(answer.output_text), USER_DETAIL)
    assert answer.text.format.type == "json_schema"


def test_logprobs_of_the_output_text(server):
    body = {"input": QUESTION, "temperature": 0, "seed": 3, "max_output_tokens": 8, "top_logprobs": 2,
            "include": ["message.output_text.logprobs"]}
    part = create(server, **body)["output"][0]["content"][0]
    assert part["logprobs"] and all(len(entry["top_logprobs"]) == 2 for entry in part["logprobs"])
    assert "".join(entry["token"] for entry in part["logprobs"]).strip() == part["text"].strip()
    # The same tokens as on the chat route, and streamed with each delta.
    chat = server.post("/v1/chat/completions", json={
        "model": "gemma", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0, "seed": 3,
        "max_tokens": 8, "logprobs": True, "top_logprobs": 2}).json()
    assert chat["choices"][0]["logprobs"]["content"] == part["logprobs"]
    streamed = events(server, **body)
    deltas = [entry for e in streamed if e["type"] == "response.output_text.delta" for entry in e["logprobs"]]
    assert [(d["token"], d["logprob"]) for d in deltas] == [(p["token"], p["logprob"]) for p in part["logprobs"]]
    done = next(e for e in streamed if e["type"] == "response.completed")["response"]
    assert done["output"][0]["content"][0]["logprobs"] == part["logprobs"] and done["top_logprobs"] == 2
    # top_logprobs alone asks for them too (0: the tokens' own only).
    alone = create(server, input=QUESTION, max_output_tokens=3, top_logprobs=0)["output"][0]["content"][0]
    assert alone["logprobs"] and all(entry["top_logprobs"] == [] for entry in alone["logprobs"])


def test_max_output_tokens_is_a_ceiling(server):
    raw = create(server, input=QUESTION, instructions="Answer in one word.", max_output_tokens=100_000)
    assert raw["status"] == "completed" and "Paris" in raw["output"][0]["content"][0]["text"]


def test_a_cut_answer_is_incomplete_with_its_reason(server):
    raw = create(server, input="Tell me a long story about a dragon.", max_output_tokens=3)
    assert raw["status"] == "incomplete" and raw["incomplete_details"] == {"reason": "max_output_tokens"}
    assert raw["usage"]["output_tokens"] == 3 and raw["output"][0]["status"] == "incomplete"
    streamed = events(server, input="Tell me a long story about a dragon.", max_output_tokens=3)
    assert streamed[-1]["type"] == "response.incomplete"


def test_a_function_call_round_trip_through_previous_response_id_and_through_resent_items(server):
    client = server.client()
    first = client.responses.create(model="gemma", input="What is the weather in Paris?", tools=[WEATHER_TOOL],
                                    tool_choice="required")
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER)
    result = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature": 21}'}
    # The probe shows what the model would read: the same conversation both ways.
    by_id = server.post("/v1/responses", json={"model": "probe", "previous_response_id": first.id, "input": [result],
                                               "tools": [WEATHER_TOOL]})
    resent = server.post("/v1/responses", json={"model": "probe", "store": False, "tools": [WEATHER_TOOL], "input": [
        {"role": "user", "content": "What is the weather in Paris?"}, call.model_dump(), result]})
    assert by_id.status_code == resent.status_code == 400
    messages, tools = probed(by_id.json()["error"]["message"])
    assert probed(resent.json()["error"]["message"]) == (messages, tools)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": json.loads(call.arguments)}
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": '{"temperature": 21}'}
    assert tools[0]["function"]["name"] == "get_weather"
    # And the model answers after the result.
    second = client.responses.create(model="gemma", previous_response_id=first.id, input=[result],
                                     tools=[WEATHER_TOOL], tool_choice="none")
    assert second.output[0].type == "message" and second.previous_response_id == first.id


def test_the_stream_arrives_in_order_and_assembles_to_the_plain_answer(server):
    body = {"input": QUESTION, "instructions": "Answer in one word."}
    plain = create(server, **body)
    streamed = events(server, **body)
    kinds = [e["type"] for e in streamed]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * deltas + [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    text = "".join(e["delta"] for e in streamed if e["type"] == "response.output_text.delta")
    final = streamed[-1]["response"]
    assert text == final["output"][0]["content"][0]["text"] == plain["output"][0]["content"][0]["text"]
    assert streamed[0]["response"]["status"] == "in_progress" and final["status"] == "completed"
    # The openai client's own stream helper assembles the same.
    with server.client().responses.stream(model="gemma", input=QUESTION, instructions="Answer in one word.") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == text


def test_a_streamed_function_call(server):
    streamed = events(server, input="What is the weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required")
    kinds = [e["type"] for e in streamed]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in streamed if e["type"] == "response.function_call_arguments.done")
    arguments = "".join(e["delta"] for e in streamed if e["type"] == "response.function_call_arguments.delta")
    assert done["arguments"] == arguments and done["name"] == "get_weather"
    jsonschema.validate(json.loads(arguments), WEATHER)
    assert streamed[-1]["response"]["output"][-1]["arguments"] == arguments


def test_stored_responses_are_read_listed_deleted_and_bounded(server):
    answer = create(server, input=[{"role": "user", "content": QUESTION}], metadata={"run": "1"})
    assert server.get(f"/v1/responses/{answer['id']}").json() == answer
    items = server.get(f"/v1/responses/{answer['id']}/input_items").json()
    assert items["object"] == "list" and items["has_more"] is False
    assert items["data"][0]["content"] == [{"type": "input_text", "text": QUESTION}]
    assert items["first_id"] == items["data"][0]["id"]
    deleted = requests.delete(f"{server.url}/v1/responses/{answer['id']}", timeout=30)
    assert deleted.json() == {"id": answer["id"], "object": "response", "deleted": True}
    assert_error(server.get(f"/v1/responses/{answer['id']}"), 404, "response_id")
    unstored = create(server, input=QUESTION, store=False)
    assert unstored["store"] is False
    assert_error(server.get(f"/v1/responses/{unstored['id']}"), 404, "response_id")
    # At most three are kept (--responses-store 3): the oldest goes, and cannot be continued.
    ids = [create(server, input=QUESTION, max_output_tokens=2)["id"] for _ in range(4)]
    assert_error(server.get(f"/v1/responses/{ids[0]}"), 404, "response_id")
    assert server.get(f"/v1/responses/{ids[-1]}").status_code == 200
    assert_error(server.post("/v1/responses", json={"model": "gemma", "input": "Go on.", "previous_response_id": ids[0]}),
                 400, "previous_response_id")


def test_input_tokens_match_what_a_response_reads(server):
    body = {"input": QUESTION, "instructions": "Answer in one word.", "tools": [WEATHER_TOOL]}
    counted = server.post("/v1/responses/input_tokens", json={"model": "gemma", **body})
    assert counted.status_code == 200 and counted.json()["object"] == "response.input_tokens"
    assert counted.json()["input_tokens"] == create(server, **body)["usage"]["input_tokens"]


def test_an_agent_with_one_function_tool_runs_to_completion(server):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # nothing leaves this machine
    calls: list[dict] = []

    @function_tool
    def get_weather(city: str, unit: str) -> str:
        """The current weather in a city.

        Args:
            city: The city.
            unit: celsius or fahrenheit.
        """
        calls.append({"city": city, "unit": unit})
        return f"It is 21 degrees {unit} and sunny in {city}."

    model = OpenAIResponsesModel(model="gemma", openai_client=AsyncOpenAI(base_url=server.url + "/v1", api_key="x"))
    agent = Agent(name="weather", instructions="Answer questions about the weather.", tools=[get_weather], model=model,
                  model_settings=ModelSettings(tool_choice="get_weather"), tool_use_behavior="stop_on_first_tool")
    result = Runner.run_sync(agent, "What is the weather in Paris?", max_turns=3)
    assert len(calls) == 1 and isinstance(calls[0]["city"], str) and calls[0]["city"]
    assert result.final_output == f"It is 21 degrees {calls[0]['unit']} and sunny in {calls[0]['city']}."


@pytest.mark.parametrize("body, param", [
    ({"input": QUESTION, "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": QUESTION, "background": True}, "background"),
    ({"input": QUESTION, "include": ["reasoning.encrypted_content"]}, "include"),
    ({"input": QUESTION, "top_logprobs": 21}, "top_logprobs"),
    ({"input": QUESTION, "reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"input": QUESTION, "truncation": "auto"}, "truncation"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                             {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]},
     "input[0].content[1]"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": QUESTION, "tools": [{"type": "function", "name": "f", "parameters": {"type": "nonsense"}}]},
     "tools[0].parameters"),
    ({"input": QUESTION, "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"input": QUESTION, "tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER_TOOL]}, "tool_choice"),
    ({"input": [{"type": "", "role": "user", "content": "x"}]}, "input[0].type"),
    ({"input": [{"type": None}]}, "input[0].type"),
    ({"input": QUESTION, "previous_response_id": "resp_unknown"}, "previous_response_id"),
    ({"instructions": "Be brief."}, "input"),
    ({"input": QUESTION, "model": "nope"}, "model"),
])
def test_bad_input_is_a_400_naming_the_field(server, body, param):
    status = 404 if param == "model" else 400
    error = assert_error(server.post("/v1/responses", json={"model": "gemma", **body}), status, param)
    assert "messages[" not in error["message"]  # the chat route's paths do not leak
