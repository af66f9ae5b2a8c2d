"""A model's replica in a Ray cluster: the same `Worker` a local worker process runs,
behind a Ray actor instead of a socket.  The server sends each message with `handle`;
what the worker sends comes back through one long-lived `messages` stream (a Ray
streaming generator), a batch of messages per item, so a busy replica does not pay one
object per token.  Loaded by Ray on the node the replica is placed on."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import sys
from typing import Any, AsyncIterator

from localhost_ai.runtime.worker_main import Worker


class Replica:
    def __init__(self, log_level: str = "INFO") -> None:
        logging.basicConfig(level=log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        self._out: collections.deque[dict[str, Any]] = collections.deque()  # appended from the worker's threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.worker = Worker(self._send)

    def _send(self, message: dict[str, Any]) -> None:
        self._out.append(message)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)  # type: ignore[union-attr]

    async def where(self) -> dict[str, Any]:
        """The node it was placed on (the first call returns once Ray has placed it)."""
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
                "node_ip": ray.util.get_node_ip_address()}

    async def messages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """What the worker sends, in order, until it said goodbye."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # after the event: a worker thread may look at once
        while True:
            if not self._out:
                await self._wake.wait()
                self._wake.clear()
            batch = []
            while self._out:
                batch.append(self._out.popleft())
            if batch:
                yield batch
                if any(message.get("type") == "bye" for message in batch):
                    return

    async def handle(self, message: dict[str, Any]) -> None:
        if message.get("op") == "shutdown":  # frees the model: not on the actor's event loop
            await asyncio.get_running_loop().run_in_executor(None, self.worker.handle, message)
        else:
            self.worker.handle(message)
