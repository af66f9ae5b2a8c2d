"""Anthropic's Messages API: POST /v1/messages (streamed in Anthropic's event order when
asked) and POST /v1/messages/count_tokens, with Anthropic's error shape on both.  The
request is read into a chat body and run by the chat route's code (api/chat.py); the
result is rendered back as content blocks.  Keys come as `x-api-key` or a bearer token."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp import web

from localhost_ai.api import chat, limits, openapi
from localhost_ai.api.generation import generate, new_id, stream
from localhost_ai.api.middlewares import REQUEST_ID, errors_as
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.schemas import FUNCTION_NAME, SAMPLING_VALUES, nullable
from localhost_ai.api.sse import EventStream
from localhost_ai.api.translate import Renames, arguments_object, function_tool, image_part, text_part, tool_call
from localhost_ai.api.validation import read_json
from localhost_ai.config.sampling import MAX_TOKENS_SCHEMA
from localhost_ai.contract.events import Event, TextDelta, ToolArgumentsDelta, ToolCallStart, Usage
from localhost_ai.contract.results import GenerationResult
from localhost_ai.errors import APIError, InvalidRequest
from localhost_ai.settings import Settings

_STRING = {"type": "string"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
                504: "timeout_error"}


ANTHROPIC_ERROR = openapi.obj(["type", "error"], type={"const": "error"},
                              error=openapi.obj(["type", "message"], type=_STRING, message=_STRING))


def anthropic_error(error: APIError) -> dict[str, Any]:
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.  It has no
    `param`: the field at fault leads the message, as Anthropic writes it, when not named in it."""
    kind = _ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    return {"type": "error", "error": {"type": kind, "message": message}}


_SOURCE = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["base64", "url"]}, "media_type": _STRING,
                   "data": {"type": "string", "minLength": 1}, "url": {"type": "string", "minLength": 1}},
    "allOf": [{"if": {"properties": {"type": {"const": "base64"}}}, "then": {"required": ["media_type", "data"]}},
              {"if": {"properties": {"type": {"const": "url"}}}, "then": {"required": ["url"]}}],
}
_INNER_SHAPES = {
    "text": {"required": ["text"], "properties": {"text": _STRING}},
    "image": {"required": ["source"], "properties": {"source": _SOURCE}},
}
_BLOCK_SHAPES = {
    **_INNER_SHAPES,
    "tool_use": {"required": ["id", "name", "input"], "properties": {
        "id": {"type": "string", "minLength": 1}, "name": FUNCTION_NAME, "input": {"type": "object"}}},
    "tool_result": {"required": ["tool_use_id"], "properties": {
        "tool_use_id": {"type": "string", "minLength": 1}, "is_error": {"type": "boolean"},
        "content": {"anyOf": [_STRING, {"type": "array", "items": {
            "type": "object", "required": ["type"], "properties": {"type": {"enum": list(_INNER_SHAPES)}},
            "allOf": [{"if": {"properties": {"type": {"const": k}}}, "then": v} for k, v in _INNER_SHAPES.items()]}}]}}},
}
_BLOCK = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": _STRING},
    "allOf": [{"if": {"properties": {"type": {"const": kind}}}, "then": shape} for kind, shape in _BLOCK_SHAPES.items()],
}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {"role": {"enum": ["user", "assistant"]},
                   "content": {"anyOf": [_STRING, {"type": "array", "items": _BLOCK}]}},
}
_TOOL = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": FUNCTION_NAME, "description": _STRING, "input_schema": {"type": "object"},
                   "type": nullable(_STRING)},
}
_FIELDS: dict[str, Any] = {
    **SAMPLING_VALUES,
    "model": nullable(_STRING),
    "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
    "system": nullable({"anyOf": [_STRING, {"type": "array", "items": {
        "type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": _STRING}}}]}),
    "max_tokens": MAX_TOKENS_SCHEMA,
    "stop_sequences": nullable({"type": "array", "items": _STRING}),
    "stream": nullable({"type": "boolean"}),
    "tools": nullable({"type": "array", "items": _TOOL}),
    "tool_choice": nullable({"type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["auto", "any", "tool", "none"]}, "name": FUNCTION_NAME,
        "disable_parallel_tool_use": {"type": "boolean"}},
        "if": {"properties": {"type": {"const": "tool"}}}, "then": {"required": ["name"]}}),
    "thinking": nullable({"type": "object", "required": ["type"], "properties": {"type": _STRING}}),
    "metadata": nullable({"type": "object"}),
}
MESSAGES_BODY = {"type": "object", "required": ["messages", "max_tokens"], "properties": _FIELDS}
COUNT_BODY = {"type": "object", "required": ["messages"],
              "properties": {key: _FIELDS[key] for key in ("model", "messages", "system", "tools", "tool_choice",
                                                           "thinking")}}
# Fields of the API this server does not serve: refused, never dropped in silence.
_NOT_SERVED = {"mcp_servers": "MCP servers", "container": "containers"}


def _limits(body: dict[str, Any], settings: Settings) -> None:
    """The chat route's cheap limits, in this API's terms, before the schema walks the body."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    limits.refuse("messages", len(messages), settings.max_messages, "--max-messages", "messages", "too_many_messages")
    blocks = sum(len(m["content"]) for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list))
    limits.refuse("content blocks", blocks, settings.max_content_parts, "--max-content-parts", "messages",
                  "too_many_parts")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    limits.refuse("tools", len(tools), settings.max_tools, "--max-tools", "tools", "too_many_tools")
    stops = body.get("stop_sequences") if isinstance(body.get("stop_sequences"), list) else []
    limits.refuse("stop sequences", len(stops), settings.max_stop_words, "--max-stop-words", "stop_sequences",
                  "too_many_stop_words")


def _refuse_unserved(body: dict[str, Any]) -> None:
    for key, what in _NOT_SERVED.items():
        if body.get(key):
            raise InvalidRequest(f"{key}: {what} are not served here.", param=key, code="unsupported_parameter")
    if (body.get("thinking") or {}).get("type", "disabled") != "disabled":
        raise InvalidRequest("thinking: extended thinking is not served here; leave 'thinking' out or disable it.",
                             param="thinking", code="unsupported_parameter")
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequest(f"tools.{i}: tools of type '{tool['type']}' (run by Anthropic) are not served here; "
                                 "declare your own with name, description and input_schema.", param=f"tools[{i}].type",
                                 code="unsupported_tool")
        if "input_schema" not in tool:
            raise InvalidRequest(f"tools.{i}.input_schema: Field required", param=f"tools[{i}].input_schema",
                                 code="missing_required_parameter")


# -- the request as a chat body --------------------------------------------------------------

def _image(source: dict[str, Any]) -> dict[str, Any]:
    if source["type"] == "base64":
        return image_part(f"data:{source['media_type']};base64,{source['data']}")
    return image_part(source["url"])


def _parts(blocks: list[tuple[int, dict[str, Any]]], where: str, chat_where: str, renames: Renames,
           parts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Text and image blocks (each with its index) as chat parts, after `parts`."""
    parts = list(parts or [])
    for b, block in blocks:
        parts.append(text_part(block["text"]) if block["type"] == "text" else _image(block["source"]))
        renames.add(f"{chat_where}.content[{len(parts) - 1}]", f"{where}.content[{b}]")
    return parts


def chat_messages(body: dict[str, Any], renames: Renames) -> list[dict[str, Any]]:
    """A user message's tool results become tool messages (before its other blocks), an
    assistant message's tool_use blocks its tool calls."""
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": system if isinstance(system, str)
                    else "\n\n".join(block["text"] for block in system)})
        renames.add("messages[0]", "system")
    for m, message in enumerate(body["messages"]):
        where = f"messages[{m}]"
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        kept: list[tuple[int, dict[str, Any]]] = []
        calls = []
        for b, block in enumerate(blocks):
            kind = block["type"]
            if kind in ("text", "image"):
                kept.append((b, block))
            elif kind == "tool_use" and message["role"] == "assistant":
                calls.append(tool_call(block["id"], block["name"], json.dumps(block["input"], ensure_ascii=False)))
            elif kind == "tool_result" and message["role"] == "user":
                result = block.get("content") or ""
                chat_where = f"messages[{len(out)}]"
                error = [text_part("Error: ")] if block.get("is_error") else []  # the chat API has no such flag
                parts = error + [text_part(result)] if isinstance(result, str) else \
                    _parts(list(enumerate(result)), f"{where}.content[{b}]", chat_where, renames, error)
                out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": parts})
                renames.add(chat_where, f"{where}.content[{b}]")
            else:
                raise InvalidRequest(f"{where}.content.{b}: blocks of type '{kind}' are not served here"
                                     + (" in this role" if kind in ("tool_use", "tool_result") else "") + ".",
                                     param=f"{where}.content[{b}].type", code="unsupported_content")
        if not kept and not calls and blocks and all(b["type"] == "tool_result" for b in blocks):
            continue
        chat_where = f"messages[{len(out)}]"
        parts = _parts(kept, where, chat_where, renames)
        chat_message: dict[str, Any] = {"role": message["role"], "content": parts or (None if calls else "")}
        if calls:
            chat_message["tool_calls"] = calls
        out.append(chat_message)
        renames.add(chat_where, where)
    return out


def chat_body(body: dict[str, Any]) -> tuple[dict[str, Any], Renames]:
    renames = Renames({"stop": "stop_sequences"})
    out: dict[str, Any] = {key: body[key] for key in (*SAMPLING_VALUES, "model") if body.get(key) is not None}
    out["messages"] = chat_messages(body, renames)
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    tools = body.get("tools") or []
    if tools:
        out["tools"] = [function_tool(t["name"], t.get("description"), t["input_schema"]) for t in tools]
        for i in range(len(tools)):
            renames.add(f"tools[{i}].function.parameters", f"tools[{i}].input_schema")
            renames.add(f"tools[{i}].function", f"tools[{i}]")
    choice = body.get("tool_choice")
    if choice is not None:
        kind = choice["type"]
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif tools or kind != "auto":  # "any" with no tools is the chat route's 400; "auto" is nothing to do
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    return out, renames


# -- the answer --------------------------------------------------------------------------------

def _stop(result: GenerationResult, stop_sequences: list[str]) -> tuple[str, str | None]:
    reason = result.reason(0)
    if reason == "tool_calls":
        return "tool_use", None
    if reason == "length":
        return "max_tokens", None
    matched = result.stops.get(0)
    return ("stop_sequence", matched) if matched in stop_sequences else ("end_turn", None)


def _usage(counts: Usage) -> dict[str, Any]:
    """Anthropic counts prompt tokens read from the cache apart from the others."""
    cached = counts.cached_tokens or 0
    return {"input_tokens": counts.prompt_tokens - cached, "output_tokens": counts.completion_tokens,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


class Blocks:
    """Content blocks as the events arrive, with the stream events each step makes."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.open = False

    def _start(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self.close()
        self.blocks.append(block)
        self.open = True
        return events + [{"type": "content_block_start", "index": len(self.blocks) - 1, "content_block": block}]

    def close(self) -> list[dict[str, Any]]:
        if not self.open:
            return []
        self.open = False
        return [{"type": "content_block_stop", "index": len(self.blocks) - 1}]

    def take(self, event: Event) -> list[dict[str, Any]]:
        index = len(self.blocks) - 1
        if isinstance(event, TextDelta) and event.text:
            events = []
            if not self.open or self.blocks[-1]["type"] != "text":
                events = self._start({"type": "text", "text": ""})
                index += 1
            return events + [{"type": "content_block_delta", "index": index,
                              "delta": {"type": "text_delta", "text": event.text}}]
        if isinstance(event, ToolCallStart):
            return self._start({"type": "tool_use", "id": event.id, "name": event.name, "input": {}})
        if isinstance(event, ToolArgumentsDelta) and event.text:
            return [{"type": "content_block_delta", "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": event.text}}]
        return []


def _content(result: GenerationResult) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": result.text(0)}] if result.text(0) else []
    return content + [{"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(c.arguments)}
                      for c in result.calls.get(0) or []]


async def _prepare(request: web.Request, body: dict[str, Any]) -> tuple[Any, ...]:
    _refuse_unserved(body)
    translated, renames = chat_body(body)
    config, call, _ = await chat.prepare(request, translated, renames, fit_max_tokens=True)
    return config, dataclasses.replace(call, prefill=True), renames


@OPENAI.post("/messages")
@errors_as(anthropic_error, ANTHROPIC_ERROR)
@openapi.document("A message from a model (Anthropic's Messages API), streamed in its events when asked",
                  body=MESSAGES_BODY, json=openapi.ANY_OBJECT, stream=True)
async def create_message(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, MESSAGES_BODY, _limits)
    config, call, renames = await _prepare(request, body)
    stops = body.get("stop_sequences") or []
    message = {"id": new_id("msg", "_"), "type": "message", "role": "assistant", "model": config.name}
    try:
        if body.get("stream"):
            blocks = Blocks()

            def last(result: GenerationResult) -> list[dict[str, Any]]:
                reason, matched = _stop(result, stops)
                return blocks.close() + [
                    {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": matched},
                     "usage": _usage(result.usage)},
                    {"type": "message_stop"}]

            first = [{"type": "message_start", "message": {
                **message, "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}, {"type": "ping"}]

            def error_event(error: APIError) -> dict[str, Any]:
                return anthropic_error(renames.apply(error))

            events = EventStream(request, typed=True, error_event=error_event)
            return await stream(request, config, call, blocks.take, first_chunks=first, last_chunks=last,
                                events=events)
        result = await generate(request, config, call)
    except APIError as exc:
        raise renames.apply(exc)
    reason, matched = _stop(result, stops)
    return web.json_response({**message, "content": _content(result), "stop_reason": reason,
                              "stop_sequence": matched, "usage": _usage(result.usage)},
                             headers={"request-id": request.get(REQUEST_ID, "")})


@OPENAI.post("/messages/count_tokens")
@errors_as(anthropic_error, ANTHROPIC_ERROR)
@openapi.document("The input tokens a Messages API request would read", body=COUNT_BODY,
                  json=openapi.obj(input_tokens=openapi.INTEGER))
async def count_tokens(request: web.Request) -> web.Response:
    body = await read_json(request, COUNT_BODY, _limits)
    # Only the fields a count reads (any others are left out unread, as on every route).
    config, call, renames = await _prepare(request, {k: v for k, v in body.items() if k in COUNT_BODY["properties"]})
    try:
        result = await generate(request, config, dataclasses.replace(call, count_only=True))
    except APIError as exc:
        raise renames.apply(exc)
    return web.json_response({"input_tokens": result.usage.prompt_tokens})
