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
import time
from pathlib import Path
from typing import Any, AsyncIterator

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

    async def place_files(self, config: dict[str, Any], fetch: dict[str, Any]) -> dict[str, Any]:
        """The model's config with its paths in this node's models folder (the node's
        MODELS_PATH, else the front-end's path), once the files a gallery install listed
        (`installed_from`) are there: a missing one is fetched as the gallery does (its
        sha256 checked, a broken download resumed on the next try).  `fetch`: the front-end's
        allow_private_urls, allow_file_uris and max_download_size.  An error comes back as
        {"error": text}: what failed, for the front-end to say."""
        front_root = Path(config["source"]).parent
        node_root = Path(os.environ.get("MODELS_PATH") or front_root).resolve()
        try:
            for item in config.get("installed_from") or ():
                await _fetch_file(node_root, item, fetch)
        except Exception as exc:
            return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
        placed = dict(config)
        for key in ("model_path", "source", "mmproj"):
            if placed.get(key) and Path(placed[key]).is_relative_to(front_root):
                placed[key] = str(node_root / Path(placed[key]).relative_to(front_root))
        return placed

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


async def _fetch_file(root: Path, item: dict[str, Any], fetch: dict[str, Any]) -> None:
    """One file of a gallery install into this node's models folder, unless it is there:
    one replica on the node fetches it while the others wait for it (a lock file)."""
    import fcntl

    from localhost_ai.gallery.download import download, new_session
    from localhost_ai.gallery.install import check_relpath, target_path
    from localhost_ai.gallery.uris import resolve

    target = target_path(root, check_relpath(item.get("filename"), "installed_from"), "installed_from")
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        if target.exists():  # another replica on this node fetched it meanwhile
            return
        source = resolve(item["uri"], allow_file=bool(fetch.get("allow_file_uris")), param="installed_from")
        log.info("fetching %s for this node from %s", item["filename"], item["uri"])
        reported = [0.0]

        def progress(done: int, total: int | None) -> None:
            if time.monotonic() - reported[0] >= 5 and total:
                reported[0] = time.monotonic()
                log.info("fetching %s: %d%%", item["filename"], 100 * done // total)

        async with new_session(bool(fetch.get("allow_private_urls"))) as session:
            await download(session, source, target, item.get("sha256"), progress, fetch.get("max_download_size"))
        log.info("fetched %s into %s", item["filename"], root)
