"""Server-sent events: OpenAI's chat framing (`data: {json}` events, `data: [DONE]` last),
typed events (`event: <type>` before each, no [DONE]) as the Responses API and Anthropic's
Messages API send them, or Ollama's newline-delimited JSON."""

from __future__ import annotations

import json
from typing import Any, Callable

from aiohttp import web

from localhost_ai.errors import APIError


class EventStream:
    def __init__(self, request: web.Request, *, typed: bool = False, ndjson: bool = False,
                 error_event: Callable[[APIError], dict[str, Any] | list[dict[str, Any]]] | None = None) -> None:
        """`typed`: each payload's `type` is also its event name, and no [DONE] ends the
        stream; `ndjson`: one JSON object per line, as Ollama streams; `error_event`: how an
        error after the first byte is sent (OpenAI's body), as one event or several."""
        self.request = request
        self.typed = typed
        self.ndjson = ndjson
        self.error_event = error_event
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson" if ndjson else "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, payload: dict[str, Any]) -> None:
        if self.ndjson:
            await self.response.write(json.dumps(payload, ensure_ascii=False).encode() + b"\n")
            return
        head = f"event: {payload['type']}\n".encode() if self.typed else b""
        await self.response.write(head + b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")

    async def fail(self, error: APIError) -> None:
        """Headers are gone once a stream has begun: the error travels as an event."""
        payload = self.error_event(error) if self.error_event else error.body()
        for event in payload if isinstance(payload, list) else [payload]:
            await self.send(event)

    async def close(self) -> None:
        try:
            if not self.typed and not self.ndjson:
                await self.response.write(b"data: [DONE]\n\n")
            await self.response.write_eof()
        except ConnectionResetError:
            pass  # the client left as the stream ended: nothing is lost
