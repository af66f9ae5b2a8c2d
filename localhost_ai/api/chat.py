"""POST /v1/chat/completions, and Nexa's POST /v1/function-calling: the OpenAI body read
into a ChatRequest, and the result rendered in OpenAI's chat-completion shape."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from localhost_ai.api import limits, schemas
from localhost_ai.api.generation import PendingLogprobs, created, generate, new_id, stream, usage
from localhost_ai.api.keys import REGISTRY, SETTINGS
from localhost_ai.api.media import check_media, media_refs, read_media
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.tools import tool_fields
from localhost_ai.api.validation import generation, off_loop, read_json
from localhost_ai.api.translate import Renames
from localhost_ai.config import CHAT, ModelConfig
from localhost_ai.contract.events import (
    Event,
    Finish,
    FinishReason,
    Logprobs as LogprobsEvent,
    TextDelta,
    TokenLogprob,
    ToolArgumentsDelta,
    ToolCallStart,
)
from localhost_ai.contract.generate import ChatRequest, Logprobs, Message, Part, TextPart, ToolCall
from localhost_ai.contract.results import CallResult, GenerationResult
from localhost_ai.errors import APIError, InvalidRequest


class ChatShape:
    """OpenAI's chat shape: calls as `tool_calls`."""

    def finish_reason(self, reason: FinishReason) -> str:
        return reason

    def message_calls(self, calls: list[CallResult]) -> dict[str, Any]:
        return {"tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                               for c in calls]}

    def call_delta(self, event: ToolCallStart | ToolArgumentsDelta) -> dict[str, Any]:
        if isinstance(event, ToolCallStart):
            return {"tool_calls": [{"index": event.call, "id": event.id, "type": "function",
                                    "function": {"name": event.name, "arguments": ""}}]}
        return {"tool_calls": [{"index": event.call, "function": {"arguments": event.text}}]}


class LegacyFunctionsShape(ChatShape):
    """A request that declared the older `functions`: one call, as `function_call`."""

    def finish_reason(self, reason: FinishReason) -> str:
        return "function_call" if reason == "tool_calls" else reason

    def message_calls(self, calls: list[CallResult]) -> dict[str, Any]:
        return {"function_call": {"name": calls[0].name, "arguments": calls[0].arguments}}

    def call_delta(self, event: ToolCallStart | ToolArgumentsDelta) -> dict[str, Any]:
        if isinstance(event, ToolCallStart):
            return {"function_call": {"name": event.name, "arguments": ""}}
        return {"function_call": {"arguments": event.text}}


class NexaShape(ChatShape):
    """Nexa's /v1/function-calling: `tool_calls`, the first call also as `function_call`."""

    def message_calls(self, calls: list[CallResult]) -> dict[str, Any]:
        return {**super().message_calls(calls),
                "function_call": {"name": calls[0].name, "arguments": calls[0].arguments}}


@OPENAI.post("/chat/completions")
@openapi.document("Chat completion, streamed when asked", body=schemas.CHAT, json=openapi.CHAT_COMPLETION, stream=True)
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.CHAT, limits.check_chat)
    return await _answer(request, body, ChatShape())


@OPENAI.post("/function-calling")
@openapi.document("Nexa's function calling: a chat completion with tools", body=schemas.FUNCTION_CALLING, json=openapi.CHAT_COMPLETION, stream=True)
async def function_calling(request: web.Request) -> web.StreamResponse:
    """Nexa's endpoint: a chat request with tools (`tool_choice` defaults to auto)."""
    body = await read_json(request, schemas.FUNCTION_CALLING, limits.check_chat)
    return await _answer(request, body, NexaShape())


def _content(content: Any, media: dict[int, Part]) -> tuple[Part, ...]:
    """The message's parts in order; `media` holds its image and audio parts, read already."""
    if content is None:
        return ()
    if isinstance(content, str):
        return (TextPart(content),)
    return tuple(TextPart(part["text"]) if part["type"] == "text" else media[p] for p, part in enumerate(content))


def _text_only(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages without their image and audio parts: what is counted as text."""
    return [{**m, "content": [p for p in m["content"] if p.get("type") == "text"]}
            if isinstance(m.get("content"), list) else m for m in messages]


_MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "function_call", "tool_call_id"})


def _message(raw: dict[str, Any], media: dict[int, Part]) -> Message:
    """OpenAI's message, with its older forms read as the current ones: `developer` is a
    system message, `function_call` a tool call and `role: function` its result."""
    role = raw["role"]
    calls = [ToolCall(c["function"]["name"], c["function"].get("arguments"), c.get("id"))
             for c in raw.get("tool_calls") or []]
    legacy = raw.get("function_call")
    if legacy:
        calls.append(ToolCall(legacy["name"], legacy.get("arguments"), f"call_{legacy['name']}"))
    tool_call_id = raw.get("tool_call_id")
    if role == "function":
        role, tool_call_id = "tool", f"call_{raw.get('name', '')}"
    extra = {key: value for key, value in raw.items() if key not in _MESSAGE_FIELDS}
    return Message(role="system" if role == "developer" else role, content=_content(raw.get("content"), media),
                   name=raw.get("name"), tool_calls=tuple(calls), tool_call_id=tool_call_id, extra=extra)


async def prepare(request: web.Request, body: dict[str, Any], renames: Renames | None = None,
                  fit_max_tokens: bool = False) -> tuple[ModelConfig, ChatRequest, bool]:
    """The model and the contract's request for a chat body, and whether its tools came as
    the older `functions`.  `renames`: the body was translated from another API, whose
    field names its errors then carry; its chat-route limits are checked here.
    `fit_max_tokens`: that API's max_tokens is a ceiling, cut to the context's room."""
    settings = request.app[SETTINGS]
    try:
        if renames is not None:
            limits.check_chat(body, settings)
        config = await request.app[REGISTRY].find(body.get("model"), CHAT)
        refs = media_refs(body["messages"])
        check_media(refs, config, settings)
        media = await read_media(request, refs) if refs else {}
        call, legacy = await off_loop(request, lambda: _chat_request(body, config, settings.context_size, media))
    except APIError as exc:
        if renames is not None:
            renames.apply(exc)
        raise
    if fit_max_tokens:
        call = dataclasses.replace(call, generation=dataclasses.replace(call.generation, fit_max_tokens=True))
    return config, call, legacy


async def _answer(request: web.Request, body: dict[str, Any], shape: ChatShape) -> web.StreamResponse:
    config, call, legacy = await prepare(request, body)
    if legacy:
        shape = LegacyFunctionsShape()
    n = call.generation.n
    response_id, stamp = new_id("chatcmpl"), created()

    def wrap(obj: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": response_id, "object": obj, "created": stamp, "model": config.name,
                "system_fingerprint": f"fp_{config.fingerprint}", "choices": choices, **extra}

    wanted = call.generation.logprobs is not None

    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        pending = PendingLogprobs()

        def chunk(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            logprobs = chat_logprobs(pending.take(index)) if wanted else None
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return wrap("chat.completion.chunk", [choice], **extra)

        def render(event: Event) -> list[dict[str, Any]]:
            if isinstance(event, LogprobsEvent):
                pending.add(event)
                return []
            if isinstance(event, TextDelta) and event.text:
                return [chunk(event.index, {"content": event.text}, None)]
            if isinstance(event, (ToolCallStart, ToolArgumentsDelta)):
                return [chunk(event.index, shape.call_delta(event), None)]
            if isinstance(event, Finish):
                return [chunk(event.index, {}, shape.finish_reason(event.reason))]
            return []

        # With tools, content stays null unless text comes, as OpenAI streams it.
        opening = [chunk(i, {"role": "assistant", "content": None if call.offers_tools else ""}, None)
                   for i in range(n)]
        return await stream(request, config, call, render, first_chunks=opening,
                            usage_chunk=(lambda u: wrap("chat.completion.chunk", [], usage=usage(u))) if include_usage else None)

    result = await generate(request, config, call)
    choices = [{"index": i, "message": _reply(result, i, shape),
                "logprobs": chat_logprobs(result.logprobs.get(i, [])) if wanted else None,
                "finish_reason": shape.finish_reason(result.reason(i))} for i in range(n)]
    return web.json_response(wrap("chat.completion", choices, usage=usage(result.usage)))


def token_logprob(entry: TokenLogprob, with_bytes: bool = True) -> dict[str, Any]:
    """A token's log-probability in OpenAI's shape (chat's ChatCompletionTokenLogprob, the
    Responses API's LogProb; without bytes, its stream events' ResponseLogProb)."""
    def one(token: str, logprob: float | None, raw: list[int]) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, **({"bytes": raw} if with_bytes else {})}

    return {**one(entry.token, entry.logprob, entry.bytes),
            "top_logprobs": [one(a.token, a.logprob, a.bytes) for a in entry.top]}


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat logprobs object."""
    return {"content": [token_logprob(e) for e in entries], "refusal": None}


def _refuse_unserved(body: dict[str, Any]) -> None:
    for field, why in schemas.UNSERVED_CHAT_FIELDS.items():
        if body.get(field) is not None:
            raise InvalidRequest(f"'{field}' is not served here: {why}.", param=field, code="unsupported_parameter")
    if "audio" in (body.get("modalities") or []):
        raise InvalidRequest("'modalities': answers are text only; speech is POST /v1/audio/speech.",
                             param="modalities", code="unsupported_parameter")


def logprobs_of(body: dict[str, Any]) -> Logprobs | None:
    top = body.get("top_logprobs")
    if top is not None and not body.get("logprobs"):
        raise InvalidRequest("'top_logprobs' needs 'logprobs' set to true.", param="top_logprobs",
                             code="invalid_value")
    return Logprobs(top=top or 0) if body.get("logprobs") else None


def _chat_request(body: dict[str, Any], config: Any, default_context: int,
                  media: dict[tuple[int, int], Part]) -> tuple[ChatRequest, bool]:
    """The contract's request, and whether its tools came as the older `functions`."""
    _refuse_unserved(body)
    texts = limits.strings([_text_only(body["messages"]), body.get("tools"), body.get("functions")])
    limits.check_fits(texts, config, default_context, "messages")
    limits.check_grammar_bounds(body, config)
    fields = tool_fields(body)
    by_message: dict[int, dict[int, Part]] = {}
    for (m, p), part in media.items():
        by_message.setdefault(m, {})[p] = part
    wanted = logprobs_of(body)
    limits.check_logprobs(body.get("n") or 1, wanted.top if wanted else None, config, default_context, "top_logprobs")
    call = ChatRequest(messages=tuple(_message(raw, by_message.get(m, {})) for m, raw in enumerate(body["messages"])),
                       generation=generation(body, wanted),
                       tools=fields.tools, tool_choice=fields.tool_choice, forced_tool=fields.forced_tool,
                       parallel_tool_calls=fields.parallel, response_format=fields.response_format)
    return call, fields.legacy


def _reply(result: GenerationResult, index: int, shape: ChatShape) -> dict[str, Any]:
    text = result.text(index)
    calls = result.calls.get(index) or []
    message: dict[str, Any] = {"role": "assistant", "content": text or None if calls else text, "refusal": None}
    if calls:
        message.update(shape.message_calls(calls))
    return message
