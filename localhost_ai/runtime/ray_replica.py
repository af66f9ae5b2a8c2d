"""A model's replica in a Ray cluster: the same `Worker` a local worker process runs,
behind a Ray actor instead of a socket.  The server sends each message with `handle`;
what the worker sends comes back through one long-lived `messages` stream (a Ray
streaming generator), a batch of messages per item, so a busy replica does not pay one
object per token.  Loaded by Ray on the node the replica is placed on."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, AsyncIterator

from localhost_ai.gallery import mirror
from localhost_ai.runtime.worker_main import Worker

log = logging.getLogger("localhost_ai.replica")


class Replica:
    def __init__(self, log_level: str = "INFO") -> None:
        logging.basicConfig(level=log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        self._out: collections.deque[dict[str, Any]] = collections.deque()  # appended from the worker's threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.worker = Worker(self._send)
        self._cancelled: collections.deque[str] = collections.deque(maxlen=1024)  # cancels before their call

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

    async def place_files(self, config: dict[str, Any], fetch: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The model's config with its paths in this node's models folder (the node's
        MODELS_PATH, else the front-end's path), once the files a gallery install recorded
        (`installed_from`) are there with their checksums (gallery/mirror.py).  Yields
        {"fetching": [file names]} first when some must be fetched (the front-end lists a
        job for it), then {"progress": [file name, bytes, total]} now and then, and at the
        end {"config": ...}, or {"error": text}: what failed, for the front-end to say.
        `fetch`: the front-end's allow_private_urls, allow_file_uris and max_download_size."""
        front_root = Path(config["source"]).parent
        node_root = Path(os.environ.get("MODELS_PATH") or front_root).resolve()
        try:
            wanted = mirror.items(node_root, config.get("installed_from"))
            own = node_root != front_root.resolve()  # a folder of the node's own, not the front-end's
            lacking = await asyncio.to_thread(mirror.missing, wanted, own)
            if lacking:
                async with mirror.node_lock(lacking):
                    lacking = await asyncio.to_thread(mirror.missing, lacking, own)  # another's fetch may be done
                    if lacking:
                        yield {"fetching": [item.filename for item in lacking]}
                        reporter = _Reporter()
                        # Closed before the lock is let go, however this stream ends: no download goes on unlocked.
                        async with contextlib.aclosing(
                                _reports(reporter, mirror.put_in_place(lacking, fetch, reporter, own))) as reports:
                            async for report in reports:
                                yield report
                        log.info("fetched %s into %s", ", ".join(item.filename for item in lacking), node_root)
        except Exception as exc:
            yield {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
            return
        placed = dict(config)
        for key in ("model_path", "source", "mmproj"):
            if placed.get(key) and Path(placed[key]).is_relative_to(front_root):
                placed[key] = str(node_root / Path(placed[key]).relative_to(front_root))
        yield {"config": placed}

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
        op = message.get("op")
        if op == "shutdown":  # frees the model: not on the actor's event loop
            await asyncio.get_running_loop().run_in_executor(None, self.worker.handle, message)
            return
        # An async actor's calls may run out of order (a call whose body Ray moves through
        # its object store arrives late): a cancel that came first drops its call.
        if op == "cancel" and message.get("id") not in self.worker.calls:
            self._cancelled.append(message.get("id"))
        elif op == "call" and message.get("id") in self._cancelled:
            self._cancelled.remove(message.get("id"))
            return
        self.worker.handle(message)


class _Reporter:
    """The download's progress, kept for `_reports` to send: the latest figures per file."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, int | None]] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        self.latest[name] = (done, total)


async def _reports(reporter: _Reporter, work: Any, every: float = 0.25) -> AsyncIterator[dict[str, Any]]:
    """Run `work` (which reports to `reporter`), yielding its progress every `every`
    seconds; its error is raised; cancelled, it is cancelled too."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait([task], timeout=every)
            latest, reporter.latest = reporter.latest, {}  # a copy's thread reports into it meanwhile
            for name, (bytes_done, total) in list(latest.items()):
                yield {"progress": [name, bytes_done, total]}
            if done:
                task.result()
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
