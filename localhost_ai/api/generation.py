"""Running a request on a model from a handler: gathered into one result, streamed as
server-sent events, or a call that answers with one event."""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator, Callable, TypeVar

from aiohttp import web

from localhost_ai.api.keys import MANAGER
from localhost_ai.api.sse import EventStream
from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request
from localhost_ai.contract.events import Event, Logprobs, TokenLogprob, Usage
from localhost_ai.contract.results import GenerationResult
from localhost_ai.errors import APIError, BackendError

E = TypeVar("E")


def new_id(prefix: str, sep: str = "-") -> str:
    """`chatcmpl-...` as OpenAI's older APIs spell ids; `sep="_"` for `resp_...`, `msg_...`."""
    return f"{prefix}{sep}{uuid.uuid4().hex[:24]}"


def created() -> int:
    return int(time.time())


def usage(counts: Usage) -> dict[str, Any]:
    """OpenAI's usage object, with prompt caching reported as OpenAI reports it."""
    out: dict[str, Any] = {"prompt_tokens": counts.prompt_tokens, "completion_tokens": counts.completion_tokens,
                           "total_tokens": counts.prompt_tokens + counts.completion_tokens}
    if counts.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": counts.cached_tokens}
    return out


class PendingLogprobs:
    """Log-probabilities kept until the next chunk of their choice carries them (a choice's
    Logprobs events come before the text that holds their tokens)."""

    def __init__(self) -> None:
        self.held: dict[int, list[TokenLogprob]] = {}

    def add(self, event: Logprobs) -> None:
        self.held.setdefault(event.index, []).extend(event.tokens)

    def take(self, index: int) -> list[TokenLogprob]:
        return self.held.pop(index, [])


async def generate(request: web.Request, config: ModelConfig, call: Request,
                   seen: Callable[[Event], None] | None = None) -> GenerationResult:
    """The call's events gathered into one result; `seen` is told of each as it comes."""
    result = GenerationResult()
    async with request.app[MANAGER].call(config, call) as events:
        async for event in events:
            if seen is not None:
                seen(event)
            result.take(event)
    return result


async def stream(
    request: web.Request,
    config: ModelConfig,
    call: Request,
    render: Callable[[Event], list[dict[str, Any]]],
    first_chunks: list[dict[str, Any]] | None = None,
    usage_chunk: Callable[[Usage], dict[str, Any]] | None = None,
    last_chunks: Callable[[GenerationResult], list[dict[str, Any]]] | None = None,
    events: EventStream | None = None,
) -> web.StreamResponse:
    """Stream the events as SSE, each rendered into the surface's chunks, then those
    `last_chunks` makes of the whole result.  The model is loaded (and its errors raised as
    ordinary HTTP errors) before the first byte; a client that goes away cancels."""
    manager = request.app[MANAGER]
    events = events or EventStream(request)
    result = GenerationResult()
    async with manager.call(config, call) as incoming:
        iterator: AsyncIterator[Event] = incoming.__aiter__()
        try:
            first: Event | None = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        await events.open()
        for chunk in first_chunks or []:
            await events.send(chunk)
        try:
            event = first
            while event is not None:
                result.take(event)
                for chunk in render(event):
                    await events.send(chunk)
                event = await anext(iterator, None)
        except APIError as exc:
            await events.fail(exc)
            await events.close()
            return events.response
    if usage_chunk is not None:
        await events.send(usage_chunk(result.usage))
    for chunk in last_chunks(result) if last_chunks is not None else []:
        await events.send(chunk)
    await events.close()
    return events.response


async def one(request: web.Request, config: ModelConfig, call: Request, kind: type[E]) -> E:
    """Run a call that answers with one event of `kind` (embeddings, scores, a transcription)."""
    answer = None
    async with request.app[MANAGER].call(config, call) as events:
        async for event in events:
            answer = event
    if not isinstance(answer, kind):
        raise BackendError(f"Model '{config.name}' returned no {kind.__name__.lower()}.")
    return answer
