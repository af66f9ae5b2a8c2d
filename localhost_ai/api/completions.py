"""POST /v1/completions and POST /v1/edits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import limits, schemas
from localhost_ai.api.generation import PendingLogprobs, created, generate, new_id, stream, usage
from localhost_ai.api.keys import REGISTRY, SETTINGS
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.validation import generation, read_json
from localhost_ai.config import COMPLETION, EDIT
from localhost_ai.contract.events import Alternative, Event, Finish, Logprobs as LogprobsEvent, TextDelta, TokenLogprob
from localhost_ai.contract.generate import CompletionRequest, EditRequest, Logprobs
from localhost_ai.errors import InvalidRequest


def _prompts(prompt: Any) -> tuple[tuple[str | tuple[int, ...], ...], bool]:
    """OpenAI's four prompt shapes as prompts (texts or token ids), and whether they came as a list."""
    if isinstance(prompt, str):
        return (prompt,), False
    if isinstance(prompt[0], int):
        return (tuple(prompt),), False
    return tuple(p if isinstance(p, str) else tuple(p) for p in prompt), True


def completion_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """The legacy completions' logprobs object for a choice's tokens."""
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [None if e.logprob is None else _by_text(e.top) for e in entries],
        "text_offset": [e.offset for e in entries],
    }


def _by_text(alternatives: list[Alternative]) -> dict[str, float]:
    """Alternatives by their text, most likely first (of two with one text, the likelier)."""
    out: dict[str, float] = {}
    for alternative in alternatives:
        out.setdefault(alternative.token, alternative.logprob)
    return out


@OPENAI.post("/completions")
@openapi.document("Text completion, streamed when asked", body=schemas.COMPLETION, json=openapi.TEXT_COMPLETION, stream=True)
async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.COMPLETION, limits.check_text)
    config = await request.app[REGISTRY].find(body.get("model"), COMPLETION)
    prompts, listed = _prompts(body["prompt"])
    limits.check_fits([p for p in prompts if isinstance(p, str)], config, request.app[SETTINGS].context_size, "prompt")
    echo = bool(body.get("echo"))
    if body.get("max_tokens") == 0 and not echo:
        raise InvalidRequest("max_tokens 0 generates nothing: it scores the prompt, with echo: true and logprobs.",
                             param="max_tokens", code="invalid_value")
    wanted = Logprobs(top=body["logprobs"], prompt=echo) if body.get("logprobs") is not None else None
    limits.check_logprobs(len(prompts) * (body.get("n") or 1), body.get("logprobs"), config,
                          request.app[SETTINGS].context_size, "logprobs")
    call = CompletionRequest(prompts=prompts, generation=generation(body, wanted), echo=echo, listed=listed)
    response_id, stamp = new_id("cmpl"), created()

    def wrap(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": response_id, "object": "text_completion", "created": stamp, "model": config.name,
                "choices": choices, **extra}

    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pending = PendingLogprobs()

        def render(event: Event) -> list[dict[str, Any]]:
            if isinstance(event, LogprobsEvent):
                pending.add(event)
                return []
            if isinstance(event, TextDelta) and event.text:
                text, finish = event.text, None
            elif isinstance(event, Finish):
                text, finish = "", event.reason
            else:
                return []
            entries = pending.take(event.index)
            choice = {"index": event.index, "text": text,
                      "logprobs": completion_logprobs(entries) if wanted is not None else None, "finish_reason": finish}
            return [wrap([choice], **({"usage": None} if include_usage else {}))]

        return await stream(request, config, call, render,
                            usage_chunk=(lambda u: wrap([], usage=usage(u))) if include_usage else None)

    result = await generate(request, config, call)
    choices = [{"index": i, "text": result.text(i),
                "logprobs": completion_logprobs(result.logprobs.get(i, [])) if wanted is not None else None,
                "finish_reason": result.reason(i)}
               for i in range(len(prompts) * call.generation.n)]
    return web.json_response(wrap(choices, usage=usage(result.usage)))


@OPENAI.post("/edits")
@openapi.document("An edit of `input` by `instruction`", body=schemas.EDIT, json=openapi.EDIT)
async def edits(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, schemas.EDIT, limits.check_text)
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
