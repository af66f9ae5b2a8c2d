"""What the text endpoints share: request fields to a backend payload, and the
backend's pieces gathered into choices or streamed as they come."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from aiohttp import web

from localhost_ai.api.keys import MANAGER
from localhost_ai.api.sse import EventStream
from localhost_ai.config import ModelConfig
from localhost_ai.errors import APIError, BackendError

_SAMPLING_FIELDS = (
    "temperature", "top_p", "top_k", "min_p", "seed",
    "presence_penalty", "frequency_penalty", "repeat_penalty",
)


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def generation_payload(body: dict[str, Any]) -> dict[str, Any]:
    """The request's generation fields; absent ones fall back to the model's YAML in the backend.
    Nexa's `max_new_tokens` and `stop_words` are aliases of `max_tokens` and `stop`."""
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_new_tokens")
    return {
        "sampling": {k: body[k] for k in _SAMPLING_FIELDS if body.get(k) is not None},
        "max_tokens": max_tokens,
        "stop": _stop_list(body.get("stop")) + _stop_list(body.get("stop_words")),
        "n": body.get("n") or 1,
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass
class Result:
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    calls: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None

    def take(self, piece: dict[str, Any]) -> None:
        kind = piece["type"]
        if kind == "text":
            self.texts[piece["index"]] = self.texts.get(piece["index"], "") + piece["text"]
        elif kind == "finish":
            self.finish[piece["index"]] = piece["finish_reason"]
            self.texts.setdefault(piece["index"], "")
        elif kind == "tool_call":
            self.calls.setdefault(piece["index"], []).append({"id": piece["id"], "name": piece["name"], "arguments": ""})
        elif kind == "arguments":
            self.calls[piece["index"]][piece["call"]]["arguments"] += piece["text"]
        elif kind == "usage":
            self.prompt_tokens = piece["prompt_tokens"]
            self.completion_tokens = piece["completion_tokens"]
            self.cached_tokens = piece.get("cached_tokens")

    @property
    def usage(self) -> dict[str, Any]:
        counts: dict[str, Any] = usage(self.prompt_tokens, self.completion_tokens)
        if self.cached_tokens is not None:  # as OpenAI reports prompt caching
            counts["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return counts


async def generate(request: web.Request, config: ModelConfig, op: str, payload: dict[str, Any]) -> Result:
    result = Result()
    async with request.app[MANAGER].call(config, op, payload) as pieces:
        async for piece in pieces:
            result.take(piece)
    return result


ChunkMaker = Callable[[dict[str, Any]], list[dict[str, Any]]]


async def stream(
    request: web.Request,
    config: ModelConfig,
    op: str,
    payload: dict[str, Any],
    make_chunks: ChunkMaker,
    first_chunks: list[dict[str, Any]] | None = None,
    usage_chunk: Callable[[dict[str, int]], dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Stream the backend's pieces as SSE.  The model is loaded (and its errors raised
    as ordinary HTTP errors) before the first byte; a client that goes away cancels."""
    manager = request.app[MANAGER]
    events = EventStream(request)
    async with manager.call(config, op, payload) as pieces:
        iterator: AsyncIterator = pieces.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        await events.open()
        for chunk in first_chunks or []:
            await events.send(chunk)
        try:
            piece = first
            result = Result()
            while piece is not None:
                result.take(piece)
                for chunk in make_chunks(piece):
                    await events.send(chunk)
                piece = await anext(iterator, None)
        except APIError as exc:
            await events.fail(exc)
            await events.close()
            return events.response
    if usage_chunk is not None:
        await events.send(usage_chunk(result.usage))
    await events.close()
    return events.response


async def one_piece(request: web.Request, config: ModelConfig, op: str, payload: dict[str, Any], kind: str) -> dict[str, Any]:
    """Run a call that answers with one piece (embeddings, scores, a transcription)."""
    piece = None
    async with request.app[MANAGER].call(config, op, payload) as pieces:
        async for item in pieces:
            piece = item
    if piece is None or piece.get("type") != kind:
        raise BackendError(f"Model '{config.name}' returned no {kind}.")
    return piece


def created() -> int:
    return int(time.time())

