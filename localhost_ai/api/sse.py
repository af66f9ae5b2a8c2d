"""Server-sent events in OpenAI's framing: `data: {json}` events, `data: [DONE]` last."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localhost_ai.errors import APIError


class EventStream:
    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, payload: dict[str, Any]) -> None:
        await self.response.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")

    async def fail(self, error: APIError) -> None:
        """Headers are gone once a stream has begun: the error travels as an event."""
        await self.send(error.body())

    async def close(self) -> None:
        try:
            await self.response.write(b"data: [DONE]\n\n")
            await self.response.write_eof()
        except ConnectionResetError:
            pass  # the client left as the stream ended: nothing is lost
