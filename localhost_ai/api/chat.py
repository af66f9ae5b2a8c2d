"""POST /v1/chat/completions, and Nexa's POST /v1/function-calling."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import schemas
from localhost_ai.api.generation import Result, created, generate, generation_payload, new_id, stream
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api.tools import tool_payload
from localhost_ai.api.validation import read_json
from localhost_ai.backends.base import CHAT


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.CHAT)
    return await _answer(request, body)


async def function_calling(request: web.Request) -> web.StreamResponse:
    """Nexa's endpoint: a chat request with tools (`tool_choice` defaults to auto), answered
    in the chat-completion shape, the first call also given as `function_call`."""
    body = await read_json(request, schemas.FUNCTION_CALLING)
    return await _answer(request, body, nexa=True)


def _message(result: Result, index: int, legacy: bool, nexa: bool) -> dict[str, Any]:
    text = result.texts.get(index, "")
    calls = result.calls.get(index) or []
    message: dict[str, Any] = {"role": "assistant", "content": text or None if calls else text, "refusal": None}
    functions = [{"name": c["name"], "arguments": c["arguments"]} for c in calls]
    if calls and legacy:
        message["function_call"] = functions[0]
    elif calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function", "function": f} for c, f in zip(calls, functions)]
        if nexa:
            message["function_call"] = functions[0]
    return message


async def _answer(request: web.Request, body: dict[str, Any], nexa: bool = False) -> web.StreamResponse:
    config = request.app[REGISTRY].resolve(body.get("model"), CHAT)
    grammar = not ((config.function.get("grammar") or {}).get("disable"))
    payload = {**generation_payload(body), **tool_payload(body, grammar), "messages": body["messages"]}
    legacy = bool(payload.get("legacy_functions"))
    response_id, stamp = new_id("chatcmpl"), created()

    def shape(obj: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": response_id, "object": obj, "created": stamp, "model": config.name,
                "system_fingerprint": f"fp_{config.fingerprint}", "choices": choices, **extra}

    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}

        def chunk(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return shape("chat.completion.chunk", [choice], **extra)

        def call_delta(piece: dict[str, Any]) -> dict[str, Any]:
            if piece["type"] == "tool_call":
                function = {"name": piece["name"], "arguments": ""}
                if legacy:
                    return {"function_call": function}
                return {"tool_calls": [{"index": piece["call"], "id": piece["id"], "type": "function",
                                        "function": function}]}
            if legacy:
                return {"function_call": {"arguments": piece["text"]}}
            return {"tool_calls": [{"index": piece["call"], "function": {"arguments": piece["text"]}}]}

        def chunks(piece: dict[str, Any]) -> list[dict[str, Any]]:
            kind = piece["type"]
            if kind == "text" and piece["text"]:
                return [chunk(piece["index"], {"content": piece["text"]}, None)]
            if kind in ("tool_call", "arguments"):
                return [chunk(piece["index"], call_delta(piece), None)]
            if kind == "finish":
                return [chunk(piece["index"], {}, piece["finish_reason"])]
            return []

        # With tools, content stays null unless text comes, as OpenAI streams it.
        opening = [chunk(i, {"role": "assistant", "content": None if payload.get("tools") else ""}, None)
                   for i in range(payload["n"])]
        return await stream(request, config, "chat", payload, chunks, first_chunks=opening,
                            usage_chunk=(lambda u: shape("chat.completion.chunk", [], usage=u)) if include_usage else None)

    result = await generate(request, config, "chat", payload)
    choices = [
        {
            "index": i,
            "message": _message(result, i, legacy, nexa),
            "logprobs": None,
            "finish_reason": result.finish.get(i, "stop"),
        }
        for i in range(payload["n"])
    ]
    return web.json_response(shape("chat.completion", choices, usage=result.usage))
