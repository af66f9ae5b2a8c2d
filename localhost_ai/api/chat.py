"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import schemas
from localhost_ai.api.generation import created, generate, generation_payload, new_id, stream
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api.validation import read_json
from localhost_ai.backends.base import CHAT


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.CHAT)
    config = request.app[REGISTRY].resolve(body.get("model"), CHAT)
    payload = {**generation_payload(body), "messages": body["messages"]}
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

        def chunks(piece: dict[str, Any]) -> list[dict[str, Any]]:
            if piece["type"] == "text" and piece["text"]:
                return [chunk(piece["index"], {"content": piece["text"]}, None)]
            if piece["type"] == "finish":
                return [chunk(piece["index"], {}, piece["finish_reason"])]
            return []

        opening = [chunk(i, {"role": "assistant", "content": ""}, None) for i in range(payload["n"])]
        return await stream(request, config, "chat", payload, chunks, first_chunks=opening,
                            usage_chunk=(lambda u: shape("chat.completion.chunk", [], usage=u)) if include_usage else None)

    result = await generate(request, config, "chat", payload)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": result.texts.get(i, ""), "refusal": None},
            "logprobs": None,
            "finish_reason": result.finish.get(i, "stop"),
        }
        for i in range(payload["n"])
    ]
    return web.json_response(shape("chat.completion", choices, usage=result.usage))
