"""POST /v1/completions and POST /v1/edits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import schemas
from localhost_ai.api.generation import created, generate, generation_payload, new_id, stream, usage
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api.validation import read_json
from localhost_ai.backends.base import COMPLETION, EDIT
from localhost_ai.errors import InvalidRequest


async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.COMPLETION)
    config = request.app[REGISTRY].resolve(body.get("model"), COMPLETION)
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    payload = {**generation_payload(body), "prompts": prompts, "echo": bool(body.get("echo"))}
    response_id, stamp = new_id("cmpl"), created()

    def shape(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": response_id, "object": "text_completion", "created": stamp, "model": config.name,
                "choices": choices, **extra}

    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunks(piece: dict[str, Any]) -> list[dict[str, Any]]:
            if piece["type"] == "text" and piece["text"]:
                text, finish = piece["text"], None
            elif piece["type"] == "finish":
                text, finish = "", piece["finish_reason"]
            else:
                return []
            choice = {"index": piece["index"], "text": text, "logprobs": None, "finish_reason": finish}
            return [shape([choice], **({"usage": None} if include_usage else {}))]

        return await stream(request, config, "completion", payload, chunks,
                            usage_chunk=(lambda u: shape([], usage=u)) if include_usage else None)

    result = await generate(request, config, "completion", payload)
    choices = [
        {"index": i, "text": result.texts.get(i, ""), "logprobs": None, "finish_reason": result.finish.get(i, "stop")}
        for i in range(len(prompts) * payload["n"])
    ]
    return web.json_response(shape(choices, usage=result.usage))


async def edits(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.EDIT)
    if body.get("stream"):
        raise InvalidRequest("Streaming is not available on /v1/edits; use /v1/chat/completions to stream.", param="stream")
    config = request.app[REGISTRY].resolve(body.get("model"), EDIT)
    payload = {**generation_payload(body), "instruction": body["instruction"], "input": body.get("input") or ""}
    result = await generate(request, config, "edit", payload)
    choices = [
        {"index": i, "text": result.texts.get(i, ""), "finish_reason": result.finish.get(i, "stop")}
        for i in range(payload["n"])
    ]
    return web.json_response({
        "id": new_id("edit"),
        "object": "edit",
        "created": created(),
        "model": config.name,
        "choices": choices,
        "usage": usage(result.prompt_tokens, result.completion_tokens),
    })
