"""Function calling and structured output on the real Gemma 3 270M, a base model that
would not write a valid call unaided: the grammar makes every call valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import jsonschema
import pytest
import yaml

from tests.conftest import GEMMA_FILE, Server, assert_error, assert_schema, place, sse_events, start_server, stop_server

USER_DETAIL = {
    "properties": {
        "name": {"description": "The user's name", "type": "string"},
        "age": {"description": "The user's age", "type": "integer"},
    },
    "required": ["name", "age"],
    "type": "object",
}
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}


def tool(name: str, parameters: dict, description: str = "") -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


USER_TOOL = tool("UserDetail", USER_DETAIL, "Record a user's name and age")
WEATHER_TOOL = tool("get_weather", WEATHER, "The current weather in a city")

TRANSCRIPT = (
    "{% for m in messages %}{% if m.role == 'user' %}Question: {{ m.content }}\n"
    "{% elif m.role == 'assistant' %}Answer: {{ m.content }}\n"
    "{% else %}{{ m.content }}\n{% endif %}{% endfor %}Answer:"
)


def examples(tom: str, ann: str) -> str:
    """A few worked examples, so that the base model writes calls of its own accord."""
    return (f"Q: Extract Tom is 30\nA: {tom}\nQ: Extract Ann is 41\nA: {ann}\n"
            "Q: {{ messages[-1].content }}\nA:")


def model(name: str, temperature: float = 0.7, settings: dict | None = None, **templates: str) -> dict:
    """The sampled default (0.7) shows that the guarantee does not rest on greedy decoding."""
    config = {
        "name": name, "backend": "llama-cpp", "context_size": 2048, "threads": 2,
        "parameters": {"model": GEMMA_FILE, "temperature": temperature, "max_tokens": 96},
        "stopwords": ["\nQuestion:", "\nQ:"],
        "template": {"chat": TRANSCRIPT, **templates},
    }
    if settings:
        config["function"] = settings
    return config


FREE_CALL = '{"name": "UserDetail", "arguments": {"name": "%s", "age": %d}}'
MODELS = [
    model("gemma"),
    model("gemma-parallel", settings={"grammar": {"parallel_calls": True}}),
    model("gemma-must-call", settings={"disable_no_action": True}),
    model("gemma-free", 0.0, {"grammar": {"disable": True}},
          function=examples(FREE_CALL % ("Tom", 30), FREE_CALL % ("Ann", 41))),
    model("gemma-regex", 0.0, {"grammar": {"disable": True},
                               "response_regex": [r"CALL (?P<name>\w+) (?P<arguments>\{.*?\})"]},
          function=examples('CALL UserDetail {"name": "Tom", "age": 30}', 'CALL UserDetail {"name": "Ann", "age": 41}')),
    # Templates that report what they were given, by failing with it.
    {**model("gemma-knows-tools", chat=(
        "{% if tools %}{{ raise_exception('tools: ' ~ (tools | map(attribute='function') | map(attribute='name')"
        " | join(',')) ~ ' / system: ' ~ messages[0].content) }}{% endif %}" + TRANSCRIPT)),
     "system_prompt": "Be brief."},
    model("gemma-probe", settings={
        "no_action_function_name": "reply",
        "prompt": "{{ raise_exception('prompt: ' ~ (tools | map(attribute='name') | join(',')) ~ ' / ' ~ no_action) }}"}),
]


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    for config in MODELS:
        (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config))
    server = start_server(folder, tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


PEOPLE = [
    "Extract Jason is 25 years old", "Maria turned 31 last week.", "My grandfather Tomasz is 88.",
    "Record the user: Aiko, age 19.", "Lee, forty-two years old, signed up today.", "Please save Olufemi (57).",
    "I am Sven and I am 23 years old.", "Name: Priya; Age: 36", "The new intern, Carlos, is only 20.",
    "Add a user called Fatima who is 45.", "Our oldest customer, Edith, is 101 years old.",
    "Noah will be 7 next month, he is 6 now.", "Hello! Chen Wei here, 28.", "Store this person: Ana Lucia, 33 years.",
    "Gustav is a 64 year old engineer.", "Twelve-year-old Mia won the contest.", "Who: Dmitri. How old: 50.",
    "The patient, Hannah, aged 72, arrived.", "Kwame celebrated his 40th birthday yesterday.", "Register Zoe, she's 27.",
]


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def arguments_of(call, schema: dict) -> dict:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, schema)
    return arguments


def test_required_tool_calls_are_valid_for_twenty_prompts(tools_server):
    client = tools_server.client()
    names = []
    for seed, prompt in enumerate(PEOPLE):
        # Sampled at the model's 0.7, seeded so that a failure can be replayed.
        reply = client.chat.completions.create(model="gemma", messages=ask(prompt), tools=[USER_TOOL],
                                               tool_choice="required", seed=seed)
        assert_schema(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == "UserDetail"
        names.append(arguments_of(call, USER_DETAIL)["name"])
    # The calls carry what the prompts said, not one answer repeated.
    assert len(set(names)) >= 15, names


def test_tool_choice_naming_a_function_calls_that_one(tools_server):
    client = tools_server.client()
    for name, schema in (("get_weather", WEATHER), ("UserDetail", USER_DETAIL)):
        reply = client.chat.completions.create(
            model="gemma", messages=ask("Extract Jason is 25 years old"), tools=[USER_TOOL, WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": name}})
        [call] = reply.choices[0].message.tool_calls
        assert call.function.name == name
        arguments_of(call, schema)


def test_auto_can_answer_in_text_or_call(tools_server):
    client = tools_server.client()
    text = client.chat.completions.create(model="gemma", messages=ask("What is the capital of France?"),
                                          tools=[WEATHER_TOOL], tool_choice="auto", temperature=0, seed=1)
    assert text.choices[0].finish_reason == "stop"
    assert text.choices[0].message.tool_calls is None
    assert text.choices[0].message.content.strip()
    call = client.chat.completions.create(model="gemma", messages=ask("Extract Jason is 25 years old"),
                                          tools=[USER_TOOL], temperature=0, seed=1)  # auto is the default
    assert call.choices[0].finish_reason == "tool_calls"
    assert arguments_of(call.choices[0].message.tool_calls[0], USER_DETAIL) == {"name": "Jason", "age": 25}


def test_none_means_plain_text(tools_server):
    reply = tools_server.client().chat.completions.create(
        model="gemma", messages=ask("Extract Jason is 25 years old"), tools=[USER_TOOL], tool_choice="none")
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_streamed_tool_calls_assemble_into_the_same_calls(tools_server):
    client = tools_server.client()
    # Seeded, so that both are decoded afresh (a reused cached prefix can change the last bits).
    request = dict(model="gemma", messages=ask("Extract Jason is 25 years old"), tools=[USER_TOOL, WEATHER_TOOL],
                   tool_choice="required", temperature=0, seed=3)
    plain = client.chat.completions.create(**request).choices[0]
    with client.chat.completions.stream(**request) as stream:
        for _ in stream:
            pass
        streamed = stream.get_final_completion().choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls] == \
        [(c.function.name, c.function.arguments) for c in plain.message.tool_calls]
    # The arguments arrive in pieces, after one delta that carries the id and name.
    events = sse_events(tools_server.post("/v1/chat/completions", json={**request, "stream": True}))
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_schema(chunk, "CreateChatCompletionStreamResponse")
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"]["name"] == "UserDetail"
    assert len(deltas) > 3 and all(d["index"] == 0 and "id" not in d for d in deltas[1:])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_json_schema_response_validates_against_a_nested_schema(tools_server):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
            "kind": {"enum": ["capital", "port", "village"]},
            "landmarks": {
                "type": "array", "minItems": 1, "maxItems": 3,
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "year": {"type": "integer"}},
                          "required": ["name"]},
            },
            "population": {
                "type": "object",
                "properties": {"count": {"type": "integer"}, "trend": {"type": "string", "enum": ["rising", "falling"]}},
                "required": ["count", "trend"],
            },
        },
        "required": ["city", "kind", "landmarks", "population"],
        "additionalProperties": False,
    }
    client = tools_server.client()
    # Seeded: a sampled answer now and then writes a string on and on, past any token budget.
    for question in ("Describe Paris.", "Tell me about Lisbon.", "Describe a small fishing village."):
        reply = client.chat.completions.create(
            model="gemma", messages=ask(question), max_tokens=200, seed=11,
            response_format={"type": "json_schema", "json_schema": {"name": "City", "schema": schema, "strict": True}})
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
    plain_json = client.chat.completions.create(model="gemma", messages=ask("Describe the sun as JSON."),
                                                response_format={"type": "json_object"}, seed=11)
    assert isinstance(json.loads(plain_json.choices[0].message.content), dict)


def test_recursive_and_shared_definitions(tools_server):
    tree = {
        "type": "object",
        "$defs": {"Item": {"type": "object", "properties": {"label": {"type": "string"},
                                                            "children": {"type": "array", "maxItems": 2,
                                                                         "items": {"$ref": "#/$defs/Item"}}},
                           "required": ["label"]}},
        "properties": {"root": {"$ref": "#/$defs/Item"}},
        "required": ["root"],
    }
    # A second tool whose own $defs/Item means something else.
    other = {"type": "object", "$defs": {"Item": {"type": "integer"}},
             "properties": {"count": {"$ref": "#/$defs/Item"}}, "required": ["count"]}
    client = tools_server.client()
    for name, schema in (("outline", tree), ("tally", other)):
        reply = client.chat.completions.create(
            model="gemma", messages=ask("Outline a book about birds."), max_tokens=96,
            tools=[tool("outline", tree), tool("tally", other)], tool_choice={"type": "function", "function": {"name": name}})
        choice = reply.choices[0]
        if choice.finish_reason == "tool_calls":
            arguments_of(choice.message.tool_calls[0], schema)


def test_the_tool_result_round_trip_renders_and_answers(tools_server):
    client = tools_server.client()
    first = client.chat.completions.create(model="gemma", messages=ask("Extract Jason is 25 years old"),
                                           tools=[USER_TOOL], tool_choice="required", temperature=0)
    call = first.choices[0].message.tool_calls[0]
    history = ask("Extract Jason is 25 years old") + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Saved user Jason (25) with id 7."},
        {"role": "user", "content": "What id did Jason get?"},
    ]
    answer = client.chat.completions.create(model="gemma", messages=history, temperature=0)
    assert "7" in answer.choices[0].message.content
    # The call and its result are part of the prompt the model read.
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens - 120 + 25
    again = client.chat.completions.create(model="gemma", messages=history, tools=[USER_TOOL], temperature=0)
    assert again.choices[0].finish_reason in ("stop", "tool_calls")


def test_parallel_calls_where_the_model_allows_them(tools_server):
    client = tools_server.client()
    request = dict(model="gemma-parallel", messages=ask("Extract Jason is 25 and Maria is 31"), tools=[USER_TOOL],
                   tool_choice="required", temperature=0, max_tokens=60)
    many = client.chat.completions.create(**request).choices[0]
    assert len(many.message.tool_calls) >= 2
    assert len({c.id for c in many.message.tool_calls}) == len(many.message.tool_calls)
    for call in many.message.tool_calls[:-1] if many.finish_reason == "length" else many.message.tool_calls:
        arguments_of(call, USER_DETAIL)
    single = client.chat.completions.create(**request, parallel_tool_calls=False).choices[0]
    assert single.finish_reason == "tool_calls" and len(single.message.tool_calls) == 1


def test_without_the_no_action_function_auto_must_call(tools_server):
    reply = tools_server.client().chat.completions.create(
        model="gemma-must-call", messages=ask("What is the capital of France?"), tools=[WEATHER_TOOL], temperature=0)
    assert reply.choices[0].finish_reason == "tool_calls"
    arguments_of(reply.choices[0].message.tool_calls[0], WEATHER)


def test_grammar_off_reads_calls_the_model_writes(tools_server):
    client = tools_server.client()
    for model in ("gemma-free", "gemma-regex"):
        reply = client.chat.completions.create(model=model, messages=ask("Extract Jason is 25"), tools=[USER_TOOL])
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", (model, choice)
        assert arguments_of(choice.message.tool_calls[0], USER_DETAIL) == {"name": "Jason", "age": 25}


def test_auto_text_answers_stream_as_they_are_written(tools_server):
    body = {"model": "gemma", "messages": ask("What is the capital of France?"), "tools": [WEATHER_TOOL],
            "temperature": 0, "seed": 1, "stream": True}
    chunks = [json.loads(e) for e in sse_events(tools_server.post("/v1/chat/completions", json=body))[:-1]]
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(texts) > 2, texts
    assert chunks[0]["choices"][0]["delta"]["content"] is None  # with tools, content starts as null
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_schema_corners(tools_server):
    client = tools_server.client()
    loose = {"type": "object", "properties": {"any": True, "list": {"type": "array", "items": True, "maxItems": 2}},
             "required": ["any", "list"]}
    reply = client.chat.completions.create(model="gemma", messages=ask("Give me anything."), tools=[tool("Loose", loose)],
                                           tool_choice="required", temperature=0, max_tokens=60)
    if reply.choices[0].finish_reason == "tool_calls":
        arguments_of(reply.choices[0].message.tool_calls[0], loose)
    # With tools given, function_call (legacy) does not turn them off.
    mixed = tools_server.post("/v1/chat/completions", json={
        "model": "gemma", "messages": ask("Extract Jason is 25 years old"), "tools": [USER_TOOL],
        "function_call": "auto", "tool_choice": "required", "temperature": 0}).json()
    assert mixed["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "UserDetail"
    # A model without a grammar takes keywords that only a grammar could not enforce.
    bounded = tool("UserDetail", {**USER_DETAIL, "properties": {**USER_DETAIL["properties"],
                                                                "age": {"type": "integer", "minimum": 0}}})
    free = client.chat.completions.create(model="gemma-free", messages=ask("Extract Jason is 25"), tools=[bounded])
    assert free.choices[0].finish_reason == "tool_calls"


def test_templates_and_prompts_are_given_the_tools(tools_server):
    body = {"model": "gemma-knows-tools", "messages": ask("hi"), "tools": [USER_TOOL, WEATHER_TOOL]}
    error = assert_error(tools_server.post("/v1/chat/completions", json=body), 400)
    assert "tools: UserDetail,get_weather,answer / system: Be brief." in error["message"]
    assert tools_server.post("/v1/chat/completions", json={**body, "tools": None}).status_code == 200
    error = assert_error(tools_server.post("/v1/chat/completions", json={**body, "model": "gemma-probe"}), 400)
    assert "prompt: UserDetail,get_weather / reply" in error["message"]


def test_legacy_functions_answer_with_function_call(tools_server):
    body = {"model": "gemma", "messages": ask("Extract Jason is 25 years old"), "temperature": 0,
            "functions": [USER_TOOL["function"]], "function_call": {"name": "UserDetail"}}
    reply = tools_server.post("/v1/chat/completions", json=body).json()
    assert_schema(reply, "CreateChatCompletionResponse")
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["function_call"]["name"] == "UserDetail"
    jsonschema.validate(json.loads(choice["message"]["function_call"]["arguments"]), USER_DETAIL)
    events = sse_events(tools_server.post("/v1/chat/completions", json={**body, "stream": True}))
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    streamed = "".join(d.get("function_call", {}).get("arguments", "") for d in deltas)
    # The same arguments; not always the same spacing: a lone greedy request is drafted for,
    # and llama.cpp's logits for a row depend a little on the rows decoded with it, which
    # can turn a near-tie ('{ "' or '{"') the other way.
    assert json.loads(streamed) == json.loads(choice["message"]["function_call"]["arguments"])


def test_nexa_function_calling_endpoint(tools_server):
    body = {"messages": [{"role": "user", "content": "Extract Jason is 25 years old"}],
            "tools": [tool("UserDetail", USER_DETAIL)], "tool_choice": "auto", "model": "gemma", "temperature": 0}
    response = tools_server.post("/v1/function-calling", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert_schema(reply, "CreateChatCompletionResponse")
    assert reply["object"] == "chat.completion"
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "UserDetail"
    assert json.loads(call["function"]["arguments"]) == {"name": "Jason", "age": 25}
    assert message["function_call"] == call["function"]
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
    assert_error(tools_server.post("/v1/function-calling", json={"messages": body["messages"]}), 400, "tools")


INVALID = [
    ("not a schema", {"tools": [tool("T", {"type": "strang"})]}, "tools[0].function.parameters"),
    ("unenforceable keyword", {"tools": [tool("T", {"type": "object", "properties": {"a": {"type": "number", "minimum": 3}}})]},
     "tools[0].function.parameters"),
    ("integer bounds no integer meets", {"tools": [tool("T", {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 3.5, "exclusiveMaximum": 4}}})]}, "tools[0].function.parameters"),
    ("not keyword", {"tools": [tool("T", {"type": "object", "properties": {"a": {"not": {"type": "string"}}}})]},
     "tools[0].function.parameters"),
    ("root not an object", {"tools": [tool("T", {"type": "string"})]}, "tools[0].function.parameters"),
    ("root without a type", {"tools": [tool("T", {"anyOf": [{"type": "string"}, {"type": "object"}]})]},
     "tools[0].function.parameters"),
    ("false schema", {"tools": [tool("T", {"type": "object", "properties": {"a": False}})]},
     "tools[0].function.parameters"),
    ("remote ref", {"tools": [tool("T", {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}})]},
     "tools[0].function.parameters"),
    ("dangling ref", {"tools": [tool("T", {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}})]},
     "tools[0].function.parameters"),
    ("bad regex", {"tools": [tool("T", {"type": "object", "properties": {"a": {"type": "string", "pattern": "(open"}}})]},
     "tools[0].function.parameters"),
    ("regex beyond grammars", {"tools": [tool("T", {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(?=a)b$"}}})]},
     "tools"),
    ("second tool at fault", {"tools": [USER_TOOL, tool("T", {"type": "object", "properties": {"a": {"uniqueItems": True}}})]},
     "tools[1].function.parameters"),
    ("unknown named function", {"tools": [USER_TOOL], "tool_choice": {"type": "function", "function": {"name": "Nope"}}},
     "tool_choice"),
    ("repeated names", {"tools": [USER_TOOL, USER_TOOL]}, "tools"),
    ("bad function name", {"tools": [tool("bad name!", USER_DETAIL)]}, "tools[0].function.name"),
    ("choice without tools", {"tool_choice": "required"}, "tool_choice"),
    ("tools and functions", {"tools": [USER_TOOL], "functions": [USER_TOOL["function"]]}, "functions"),
    ("unenforceable but not chosen", {"tools": [tool("T", {"type": "object", "properties": {"a": {"minimum": 1}}})],
                                      "tool_choice": "none"}, "tools[0].function.parameters"),
    ("legacy function", {"functions": [{"name": "F", "parameters": {"type": "object", "properties": {"a": {"maximum": 1}}}}]},
     "functions[0].parameters"),
    ("response schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
     "response_format.json_schema.schema"),
    ("response schema missing", {"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ("response schema keyword", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "array", "contains": {"type": "integer"}}}}}, "response_format.json_schema.schema"),
    ("tool message without id", {"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
]


@pytest.mark.parametrize("case,fields,param", INVALID, ids=[case[0] for case in INVALID])
def test_every_invalid_schema_case_gets_its_400(tools_server, case, fields, param):
    body = {"model": "gemma", "messages": ask("Extract Jason is 25 years old"), **fields}
    error = assert_error(tools_server.post("/v1/chat/completions", json=body), 400, param)
    if param.startswith(("tools[", "functions[")) and "name" not in param:
        assert "'T'" in error["message"] or "'F'" in error["message"], error
    # The server is still well.
    assert tools_server.get("/healthz").status_code == 200
