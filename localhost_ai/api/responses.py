"""OpenAI's Responses API: POST /v1/responses (streamed as its typed events when asked),
GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, and POST
/v1/responses/input_tokens.  A request's input items (and those of the responses it
continues) are read into a chat body and run by the chat route's code (api/chat.py);
the result is rendered back as output items.  What the API has and this server does not
do (hosted tools, background runs, reasoning summaries ...) is a 400 naming the field."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Callable

from aiohttp import web

from localhost_ai.api import chat, limits, openapi
from localhost_ai.api.chat import token_logprob
from localhost_ai.api.generation import PendingLogprobs, created, generate, new_id, stream
from localhost_ai.api.keys import RESPONSES
from localhost_ai.api.response_store import Stored
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.schemas import AUDIO_FORMATS, FUNCTION_NAME, SAMPLING_VALUES
from localhost_ai.api.schemas import nullable as _nullable
from localhost_ai.api.sse import EventStream
from localhost_ai.api.translate import Renames, function_tool, image_part, text_part, tool_call
from localhost_ai.api.validation import read_json
from localhost_ai.config import ModelConfig
from localhost_ai.config.sampling import MAX_TOKENS_SCHEMA
from localhost_ai.contract.events import (
    Event,
    Logprobs as LogprobsEvent,
    TextDelta,
    TokenLogprob,
    ToolArgumentsDelta,
    ToolCallStart,
    Usage,
)
from localhost_ai.contract.generate import ChatRequest
from localhost_ai.contract.results import GenerationResult
from localhost_ai.errors import APIError, InvalidRequest
from localhost_ai.settings import Settings



_STRING = {"type": "string"}
_PART_SHAPES = {
    "input_text": {"required": ["text"], "properties": {"text": _STRING}},
    "output_text": {"required": ["text"], "properties": {"text": _STRING}},
    "refusal": {"required": ["refusal"], "properties": {"refusal": _STRING}},
    "input_image": {"properties": {"image_url": _nullable({"type": "string", "minLength": 1}),
                                   "file_id": _nullable(_STRING),
                                   "detail": _nullable({"enum": ["auto", "low", "high", "original"]})}},
    "input_audio": {"required": ["input_audio"], "properties": {"input_audio": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "string", "minLength": 1}, "format": {"enum": AUDIO_FORMATS}}}}},
    "input_file": {},
}
_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": list(_PART_SHAPES)}},
    "allOf": [{"if": {"properties": {"type": {"const": kind}}}, "then": shape} for kind, shape in _PART_SHAPES.items()],
}
_CONTENT = {"anyOf": [_STRING, {"type": "array", "items": _PART}]}
_ITEM_SHAPES = {
    "message": {"required": ["role", "content"], "properties": {
        "role": {"enum": ["user", "assistant", "system", "developer"]}, "content": _CONTENT}},
    "function_call": {"required": ["call_id", "name", "arguments"], "properties": {
        "call_id": {"type": "string", "minLength": 1}, "name": FUNCTION_NAME, "arguments": _STRING}},
    "function_call_output": {"required": ["call_id", "output"], "properties": {
        "call_id": {"type": "string", "minLength": 1}, "output": _CONTENT}},
}
_ITEM = {
    "type": "object",
    "properties": {"type": {"type": "string", "minLength": 1}, "id": _nullable(_STRING)},
    "allOf": [{"if": {"not": {"required": ["type"]}}, "then": _ITEM_SHAPES["message"]}]
    + [{"if": {"required": ["type"], "properties": {"type": {"const": kind}}}, "then": shape}
       for kind, shape in _ITEM_SHAPES.items()],
}
_TOOL = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": _STRING},
    "allOf": [{"if": {"properties": {"type": {"const": "function"}}}, "then": {
        "required": ["name"],
        "properties": {"name": FUNCTION_NAME, "description": _nullable(_STRING), "parameters": _nullable({"type": "object"}),
                       "strict": _nullable({"type": "boolean"})}}}],
}
_FORMAT = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}},
    "allOf": [{"if": {"properties": {"type": {"const": "json_schema"}}}, "then": {
        "required": ["name", "schema"],
        "properties": {"name": FUNCTION_NAME, "schema": {"type": "object"}, "description": _STRING,
                       "strict": _nullable({"type": "boolean"})}}}],
}
_BODY_FIELDS: dict[str, Any] = {
    **SAMPLING_VALUES,
    "model": _nullable(_STRING),
    "stream": _nullable({"type": "boolean"}),
    "user": _nullable(_STRING),
    "input": {"anyOf": [_STRING, {"type": "array", "items": _ITEM}]},
    "instructions": _nullable(_STRING),
    "tools": _nullable({"type": "array", "items": _TOOL}),
    "tool_choice": _nullable({"anyOf": [{"enum": ["none", "auto", "required"]},
                                        {"type": "object", "required": ["type"],
                                         "properties": {"type": _STRING, "name": _STRING}}]}),
    "parallel_tool_calls": _nullable({"type": "boolean"}),
    "text": _nullable({"type": "object", "properties": {
        "format": _FORMAT, "verbosity": _nullable({"enum": ["low", "medium", "high"]})}}),
    "max_output_tokens": _nullable(MAX_TOKENS_SCHEMA),
    "previous_response_id": _nullable({"type": "string", "minLength": 1}),
    "store": _nullable({"type": "boolean"}),
    "metadata": _nullable({"type": "object", "maxProperties": 16,
                           "additionalProperties": {"type": "string", "maxLength": 512}}),
    "truncation": _nullable({"enum": ["auto", "disabled"]}),
    "reasoning": _nullable({"type": "object"}),
    "include": _nullable({"type": "array", "items": _STRING}),
    "background": _nullable({"type": "boolean"}),
    "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 20}),
    "stream_options": _nullable({"type": "object"}),
}
RESPONSE_BODY = {"type": "object", "required": ["input"], "properties": _BODY_FIELDS}
INPUT_TOKENS_BODY = {"type": "object", "properties": {**_BODY_FIELDS, "input": _nullable(_BODY_FIELDS["input"])}}
_LIST_QUERY = {"limit": {"type": "integer", "minimum": 1, "maximum": 100}, "order": {"enum": ["asc", "desc"]},
               "after": _STRING}

# What the API has that this server does not do: refused, never dropped in silence.
_NOT_SERVED = {
    "background": "background responses are not served here: send the request and read its answer (or stream it)",
    "conversation": "conversations are not served here: continue a response with previous_response_id",
    "prompt": "stored prompts are not served here: send the instructions and input",
}


def _limits(body: dict[str, Any], settings: Settings) -> None:
    """The chat route's cheap limits, in this API's terms, before the schema walks the body."""
    items = body.get("input") if isinstance(body.get("input"), list) else []
    limits.refuse("input items", len(items), settings.max_messages, "--max-messages", "input", "too_many_messages")
    parts = sum(len(i["content"]) for i in items if isinstance(i, dict) and isinstance(i.get("content"), list))
    limits.refuse("content parts", parts, settings.max_content_parts, "--max-content-parts", "input", "too_many_parts")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    limits.refuse("tools", len(tools), settings.max_tools, "--max-tools", "tools", "too_many_tools")


def _refuse_unserved(body: dict[str, Any]) -> None:
    for key, why in _NOT_SERVED.items():
        if body.get(key) not in (None, False):
            raise InvalidRequest(f"'{key}': {why}.", param=key, code="unsupported_parameter")
    if body.get("truncation") == "auto":
        raise InvalidRequest("'truncation': \"auto\" (dropping the start of a conversation that does not fit) is not "
                             "served here; a conversation too long for the model is refused.", param="truncation",
                             code="unsupported_parameter")
    reasoning = body.get("reasoning") or {}
    for key in ("effort", "summary", "generate_summary"):
        if reasoning.get(key) is not None:
            raise InvalidRequest(f"'reasoning.{key}': reasoning settings and summaries are not served here.",
                                 param=f"reasoning.{key}", code="unsupported_parameter")
    others = [item for item in body.get("include") or [] if item != LOGPROBS_INCLUDE]
    if others:
        raise InvalidRequest(f"'include': {others[0]!r} is not served here; only {LOGPROBS_INCLUDE!r} is.",
                             param="include", code="unsupported_parameter")
    verbosity = ((body.get("text") or {}).get("verbosity"))
    if verbosity not in (None, "medium"):
        raise InvalidRequest(f"'text.verbosity': {verbosity!r} is not served here (only \"medium\").",
                             param="text.verbosity", code="unsupported_parameter")
    for i, tool in enumerate(body.get("tools") or []):
        if tool["type"] != "function":
            raise InvalidRequest(f"'tools[{i}]': tools of type '{tool['type']}' (hosted by OpenAI) are not served "
                                 "here; declare your own as type 'function'.", param=f"tools[{i}].type",
                                 code="unsupported_tool")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice["type"] != "function":
        raise InvalidRequest(f"'tool_choice': type '{choice['type']}' is not served here; use \"auto\", \"none\", "
                             "\"required\" or {\"type\": \"function\", \"name\": ...}.", param="tool_choice.type",
                             code="unsupported_tool")
    if isinstance(choice, dict) and not choice.get("name"):
        raise InvalidRequest("'tool_choice.name' is required with type 'function'.", param="tool_choice.name",
                             code="missing_required_parameter")


# -- input items: normalised (ids, typed parts), then read as chat messages ------------------

def _parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "input_text", "text": content}] if isinstance(content, str) else copy.deepcopy(content)


def normalise(input_value: Any) -> list[dict[str, Any]]:
    """The request's input as the items the API lists: each typed, with an id and its content
    as parts."""
    items = [{"role": "user", "content": input_value}] if isinstance(input_value, str) else input_value
    out = []
    for raw in items:
        kind = raw.get("type", "message")
        item = {**copy.deepcopy(raw), "type": kind}
        if kind == "message":
            item["content"] = _parts(raw["content"])
            item.setdefault("status", "completed")
        item["id"] = raw.get("id") or new_id({"message": "msg", "function_call": "fc"}.get(kind, "item"), "_")
        out.append(item)
    return out


def _chat_content(parts: list[dict[str, Any]], where: str, chat_where: str, renames: Renames) -> Any:
    content = []
    for p, part in enumerate(parts):
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            content.append(text_part(part["text"]))
        elif kind == "refusal":
            content.append(text_part(part["refusal"]))
        elif kind == "input_image":
            if not part.get("image_url"):
                raise InvalidRequest(f"'{where}.content[{p}]': images by file_id are not served here (there is no "
                                     "files API); send the image_url (a data URL or an http(s) URL).",
                                     param=f"{where}.content[{p}]", code="unsupported_content")
            content.append(image_part(part["image_url"], part.get("detail")))
        elif kind == "input_audio":
            content.append({"type": "input_audio", "input_audio": part["input_audio"]})
        else:
            raise InvalidRequest(f"'{where}.content[{p}]': parts of type '{kind}' are not served here (there is no "
                                 "files API).", param=f"{where}.content[{p}]", code="unsupported_content")
        own = where if where == "previous_response_id" else f"{where}.content[{p}]"  # no path into a stored one
        renames.add(f"{chat_where}.content[{len(content) - 1}]", own)
    return content


def chat_messages(items: list[dict[str, Any]], instructions: str | None, carried: int,
                  renames: Renames) -> list[dict[str, Any]]:
    """The conversation's items as chat messages: function calls in a row become one
    assistant message's tool calls, their outputs tool messages.  `carried`: how many of the
    items came from stored responses (named `previous_response_id` in errors)."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
        renames.add("messages[0]", "instructions")
    for i, item in enumerate(items):
        where = f"input[{i - carried}]" if i >= carried else "previous_response_id"
        chat_where = f"messages[{len(messages)}]"
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _chat_content(item["content"], where, chat_where, renames)})
        elif kind == "function_call":
            call = tool_call(item["call_id"], item["name"], item["arguments"])
            before = items[i - 1] if i > 0 else None
            # Calls right after the assistant's text, or after other calls, are that turn's.
            if before is not None and (before["type"] == "function_call" or before["type"] == "message"
                                       and before["role"] == "assistant") and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
                continue
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            content = output if isinstance(output, str) else _chat_content(output, where, chat_where, renames)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        else:
            raise InvalidRequest(f"'{where}': items of type '{kind}' are not served here; send messages, function_call "
                                 "and function_call_output items.", param=f"{where}.type", code="unsupported_item")
        renames.add(chat_where, where)
    return messages


# What `include` may ask for: the output text's log-probabilities.
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def wants_logprobs(body: dict[str, Any]) -> bool:
    """Asked with `include`, or by asking for alternatives (`top_logprobs`), which is acted on too."""
    return LOGPROBS_INCLUDE in (body.get("include") or []) or body.get("top_logprobs") is not None


def chat_body(body: dict[str, Any], items: list[dict[str, Any]], carried: int) -> tuple[dict[str, Any], Renames]:
    """The request as a chat body, and where each of its parts came from."""
    renames = Renames({"messages": "input", "max_tokens": "max_output_tokens", "response_format": "text.format"})
    out: dict[str, Any] = {key: body[key] for key in (*SAMPLING_VALUES, "model") if body.get(key) is not None}
    out["messages"] = chat_messages(items, body.get("instructions"), carried, renames)
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    tools = body.get("tools") or []
    if tools:
        out["tools"] = [function_tool(t["name"], t.get("description"), t.get("parameters")) for t in tools]
        for i in range(len(tools)):
            renames.add(f"tools[{i}].function", f"tools[{i}]")
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = choice if isinstance(choice, str) else {"type": "function",
                                                                      "function": {"name": choice["name"]}}
        renames.add("tool_choice", "tool_choice")
    if body.get("parallel_tool_calls") is not None:
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if wants_logprobs(body):
        out["logprobs"], out["top_logprobs"] = True, body.get("top_logprobs") or 0
    text_format = (body.get("text") or {}).get("format") or {"type": "text"}
    if text_format["type"] == "json_schema":
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": text_format["name"], "schema": text_format["schema"], "strict": text_format.get("strict")}}
        renames.add("response_format.json_schema.schema", "text.format.schema")
        renames.add("response_format.json_schema", "text.format")
    elif text_format["type"] == "json_object":
        out["response_format"] = {"type": "json_object"}
    return out, renames


# -- output: items built from the generation's events ----------------------------------------

class Output:
    """The response's output items, built as the events arrive; each step gives the stream
    events it makes (unused when the answer is not streamed)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.sequence = 0
        self.pending = PendingLogprobs()  # the next text's tokens' log-probabilities
        self.entries: list[TokenLogprob] = []  # the open message's

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        payload = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return payload

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self.close("completed")
        self.items.append(item)
        self.open = item
        return events + [self.event("response.output_item.added", output_index=len(self.items) - 1,
                                    item=copy.deepcopy(item))]

    def text(self, delta: str) -> list[dict[str, Any]]:
        events = []
        if self.open is None or self.open["type"] != "message":
            events += self._add({"id": new_id("msg", "_"), "type": "message", "status": "in_progress", "role": "assistant",
                                 "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self.open["content"].append(part)
            events.append(self.event("response.content_part.added", item_id=self.open["id"],
                                     output_index=len(self.items) - 1, content_index=0, part=copy.deepcopy(part)))
        if delta:
            entries = self.pending.take(0)
            part = self.open["content"][0]
            part["text"] += delta
            part["logprobs"] += [token_logprob(e) for e in entries]
            self.entries += entries
            events.append(self.event("response.output_text.delta", item_id=self.open["id"],
                                     output_index=len(self.items) - 1, content_index=0, delta=delta,
                                     logprobs=[token_logprob(e, with_bytes=False) for e in entries]))
        return events

    def call(self, call_id: str, name: str) -> list[dict[str, Any]]:
        self.pending.take(0)  # a call's tokens: the Responses API has no place for their log-probabilities
        return self._add({"id": new_id("fc", "_"), "type": "function_call", "status": "in_progress", "call_id": call_id,
                          "name": name, "arguments": ""})

    def arguments(self, delta: str) -> list[dict[str, Any]]:
        assert self.open is not None and self.open["type"] == "function_call"
        self.open["arguments"] += delta
        return [self.event("response.function_call_arguments.delta", item_id=self.open["id"],
                           output_index=len(self.items) - 1, delta=delta)]

    def close(self, status: str) -> list[dict[str, Any]]:
        """The open item's closing events; `status`: completed, or incomplete (cut short)."""
        item, self.open = self.open, None
        if item is None:
            return []
        index = len(self.items) - 1
        item["status"] = status
        events = []
        if item["type"] == "message":
            part = item["content"][0]
            rest = self.pending.take(0)
            part["logprobs"] += [token_logprob(e) for e in rest]
            entries, self.entries = self.entries + rest, []
            events.append(self.event("response.output_text.done", item_id=item["id"], output_index=index,
                                     content_index=0, text=part["text"],
                                     logprobs=[token_logprob(e, with_bytes=False) for e in entries]))
            events.append(self.event("response.content_part.done", item_id=item["id"], output_index=index,
                                     content_index=0, part=copy.deepcopy(part)))
        else:
            events.append(self.event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                     name=item["name"], arguments=item["arguments"]))
        return events + [self.event("response.output_item.done", output_index=index, item=copy.deepcopy(item))]

    def take(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, LogprobsEvent):
            self.pending.add(event)
            return []
        if isinstance(event, TextDelta) and event.text:
            return self.text(event.text)
        if isinstance(event, ToolCallStart):
            return self.call(event.id, event.name)
        if isinstance(event, ToolArgumentsDelta):
            return self.arguments(event.text)
        return []

    def finish(self, status: str) -> list[dict[str, Any]]:
        """Every item closed; an answer with nothing in it is one empty message."""
        events = self.text("") if not self.items else []
        return events + self.close(status)


def _usage(counts: Usage) -> dict[str, Any]:
    return {"input_tokens": counts.prompt_tokens,
            "input_tokens_details": {"cached_tokens": counts.cached_tokens or 0, "cache_write_tokens": 0},
            "output_tokens": counts.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counts.prompt_tokens + counts.completion_tokens}


class Answer:
    """One response: the fields it echoes from the request, and its state."""

    def __init__(self, body: dict[str, Any], config: ModelConfig, call: ChatRequest, store: bool) -> None:
        sampling = call.generation.sampling.resolve(config)
        text_format = (body.get("text") or {}).get("format") or {"type": "text"}
        self.fields: dict[str, Any] = {
            "id": new_id("resp", "_"), "object": "response", "created_at": created(), "status": "in_progress",
            "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": config.name, "output": [], "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "service_tier": "default", "store": store, "temperature": sampling["temperature"],
            "text": {"format": text_format, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": [{"type": "function", "name": t["name"], "description": t.get("description"),
                       "parameters": t.get("parameters"), "strict": t.get("strict")} for t in body.get("tools") or []],
            "top_p": sampling["top_p"], "top_logprobs": body.get("top_logprobs"), "truncation": "disabled",
            "metadata": body.get("metadata") or {},
        }
        if body.get("user") is not None:
            self.fields["user"] = body["user"]
        self.output = Output()

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({**self.fields, "output": self.output.items})

    def complete(self, result: GenerationResult) -> list[dict[str, Any]]:
        """The closing events, and the response's final state."""
        cut = result.reason(0) == "length"
        events = self.output.finish("incomplete" if cut else "completed")
        self.fields.update(status="incomplete" if cut else "completed", usage=_usage(result.usage),
                           incomplete_details={"reason": "max_output_tokens"} if cut else None,
                           completed_at=None if cut else created())
        return events + [self.output.event("response.incomplete" if cut else "response.completed",
                                           response=self.snapshot())]


def _error_events(answer: Answer, renames: Renames) -> Callable[[APIError], list[dict[str, Any]]]:
    """After the first event an error is an `error` event, then `response.failed`, so that a
    client waiting for the response's end sees it."""
    def render(error: APIError) -> list[dict[str, Any]]:
        renames.apply(error)
        output = answer.output
        events = [output.event("error", code=error.code, message=error.message, param=error.param)]
        events += output.finish("incomplete")
        answer.fields.update(status="failed", error={"code": "server_error", "message": error.message})
        return events + [output.event("response.failed", response=answer.snapshot())]
    return render


async def _conversation(request: web.Request, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The items the model reads (the stored conversation it continues, then its own
    input), and its own input as items."""
    own = normalise(body["input"]) if body.get("input") is not None else []
    previous = body.get("previous_response_id")
    carried = request.app[RESPONSES].conversation(previous, "previous_response_id") if previous else []
    return carried + own, own


async def _prepare(request: web.Request, body: dict[str, Any]) -> tuple[Any, ...]:
    _refuse_unserved(body)
    items, own = await _conversation(request, body)
    if not items:
        raise InvalidRequest("'input' is required (or 'previous_response_id' with it).", param="input",
                             code="missing_required_parameter")
    chat_request, renames = chat_body(body, items, len(items) - len(own))  # its errors name this API's fields
    config, call, _ = await chat.prepare(request, chat_request, renames, fit_max_tokens=True)
    return config, call, own, renames


@OPENAI.post("/responses")
@openapi.document("A model response (OpenAI's Responses API), streamed as typed events when asked",
                  body=RESPONSE_BODY, json=openapi.ANY_OBJECT, stream=True)
async def create_response(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, RESPONSE_BODY, _limits)
    config, call, own, renames = await _prepare(request, body)
    size = len(await request.read())  # the body as it came (read already)
    # Kept unless asked not to, or the store keeps none (--responses-store 0) or none so large.
    store = body.get("store") is not False and request.app[RESPONSES].takes(size)
    answer = Answer(body, config, call, store)

    def keep(result: GenerationResult) -> None:
        if store:
            response = answer.snapshot()
            request.app[RESPONSES].put(Stored(response, own, body.get("previous_response_id"),
                                              size + sum(len(json.dumps(i)) for i in response["output"])))

    if body.get("stream"):
        output = answer.output

        def last(result: GenerationResult) -> list[dict[str, Any]]:
            events = answer.complete(result)
            keep(result)
            return events

        first = [output.event("response.created", response=answer.snapshot()),
                 output.event("response.in_progress", response=answer.snapshot())]
        events = EventStream(request, typed=True, error_event=_error_events(answer, renames))
        try:
            return await stream(request, config, call, output.take, first_chunks=first, last_chunks=last,
                                events=events)
        except APIError as exc:
            raise renames.apply(exc)
    try:
        result = await generate(request, config, call)
    except APIError as exc:
        raise renames.apply(exc)
    answer.output.pending.add(LogprobsEvent(0, result.logprobs.get(0, [])))  # the message's text takes them
    for event in _replay(result):
        answer.output.take(event)
    answer.complete(result)
    keep(result)
    return web.json_response(answer.snapshot())


def _replay(result: GenerationResult) -> list[Event]:
    """The result's text, then its calls, as the events that would have streamed it."""
    events: list[Event] = [TextDelta(0, result.text(0))] if result.text(0) else []
    for c, found in enumerate(result.calls.get(0) or []):
        events += [ToolCallStart(0, c, found.id, found.name), ToolArgumentsDelta(0, c, found.arguments)]
    return events


@OPENAI.post("/responses/input_tokens")
@openapi.document("The input tokens a Responses API request would read", body=INPUT_TOKENS_BODY,
                  json=openapi.obj(object={"const": "response.input_tokens"}, input_tokens=openapi.INTEGER))
async def input_tokens(request: web.Request) -> web.Response:
    body = await read_json(request, INPUT_TOKENS_BODY, _limits)
    config, call, _, renames = await _prepare(request, body)
    try:
        result = await generate(request, config, _counting(call))
    except APIError as exc:
        raise renames.apply(exc)
    return web.json_response({"object": "response.input_tokens", "input_tokens": result.usage.prompt_tokens})


def _counting(call: ChatRequest) -> ChatRequest:
    return dataclasses.replace(call, count_only=True)


@OPENAI.get("/responses/{response_id}")
@openapi.document("A stored response", json=openapi.ANY_OBJECT)
async def get_response(request: web.Request) -> web.Response:
    return web.json_response(request.app[RESPONSES].find(request.match_info["response_id"]).response)


@OPENAI.delete("/responses/{response_id}")
@openapi.document("Delete a stored response", json=openapi.obj(id=openapi.STRING, object={"const": "response"},
                                                                 deleted=openapi.BOOLEAN))
async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    request.app[RESPONSES].find(response_id)
    request.app[RESPONSES].delete(response_id)
    return web.json_response({"id": response_id, "object": "response", "deleted": True})


@OPENAI.get("/responses/{response_id}/input_items")
@openapi.document("A stored response's input items", query=_LIST_QUERY, json=openapi.ANY_OBJECT)
async def input_items(request: web.Request) -> web.Response:
    stored = request.app[RESPONSES].find(request.match_info["response_id"])
    query = request.query
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit", code="invalid_value")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be \"asc\" or \"desc\".", param="order", code="invalid_value")
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"'after': no input item '{after}' in this response.", param="after",
                                 code="invalid_value")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})

