"""POST /v1/completions and POST /v1/edits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import limits, schemas
from localhost_ai.api.generation import created, generate, new_id, stream, usage
from localhost_ai.api.keys import REGISTRY, SETTINGS
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.validation import generation, read_json
from localhost_ai.config import COMPLETION, EDIT
from localhost_ai.contract.events import Event, Finish, TextDelta
from localhost_ai.contract.generate import CompletionRequest, EditRequest
from localhost_ai.errors import InvalidRequest


@OPENAI.post("/completions")
@openapi.document("Text completion, streamed when asked", body=schemas.COMPLETION, json=openapi.TEXT_COMPLETION, stream=True)
async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.COMPLETION, limits.check_stop)
    config = await request.app[REGISTRY].find(body.get("model"), COMPLETION)
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    for prompt in prompts:
        limits.check_fits([prompt], config, request.app[SETTINGS].context_size, "prompt")
    call = CompletionRequest(prompts=tuple(prompts), generation=generation(body), echo=bool(body.get("echo")))
    response_id, stamp = new_id("cmpl"), created()

    def wrap(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": response_id, "object": "text_completion", "created": stamp, "model": config.name,
                "choices": choices, **extra}

    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def render(event: Event) -> list[dict[str, Any]]:
            if isinstance(event, TextDelta) and event.text:
                text, finish = event.text, None
            elif isinstance(event, Finish):
                text, finish = "", event.reason
            else:
                return []
            choice = {"index": event.index, "text": text, "logprobs": None, "finish_reason": finish}
            return [wrap([choice], **({"usage": None} if include_usage else {}))]

        return await stream(request, config, call, render,
                            usage_chunk=(lambda u: wrap([], usage=usage(u))) if include_usage else None)

    result = await generate(request, config, call)
    choices = [{"index": i, "text": result.text(i), "logprobs": None, "finish_reason": result.reason(i)}
               for i in range(len(prompts) * call.generation.n)]
    return web.json_response(wrap(choices, usage=usage(result.usage)))


@OPENAI.post("/edits")
@openapi.document("An edit of `input` by `instruction`", body=schemas.EDIT, json=openapi.EDIT)
async def edits(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.EDIT, limits.check_stop)
    if body.get("stream"):
        raise InvalidRequest("Streaming is not available on /v1/edits; use /v1/chat/completions to stream.", param="stream")
    config = await request.app[REGISTRY].find(body.get("model"), EDIT)
    limits.check_fits([body["instruction"], body.get("input") or ""], config, request.app[SETTINGS].context_size,
                      "input")
    call = EditRequest(instruction=body["instruction"], input=body.get("input") or "", generation=generation(body))
    result = await generate(request, config, call)
    choices = [{"index": i, "text": result.text(i), "finish_reason": result.reason(i)} for i in range(call.generation.n)]
    counts = usage(result.usage)
    counts.pop("prompt_tokens_details", None)  # an edit's usage is the three counts alone
    return web.json_response({
        "id": new_id("edit"),
        "object": "edit",
        "created": created(),
        "model": config.name,
        "choices": choices,
        "usage": counts,
    })
