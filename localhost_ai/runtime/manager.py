"""The one place that loads models, queues their calls and runs them.

Each loaded model has its own thread; calls for one model run one at a time, in
arrival order, and stream their pieces back to the event loop as they are made.
A call whose consumer goes away is cancelled: the backend sees its cancel event and
stops at the next token."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from localhost_ai.backends import Backend, backend_class
from localhost_ai.backends.base import Piece
from localhost_ai.config import ModelConfig
from localhost_ai.errors import APIError, BackendError

log = logging.getLogger(__name__)

_END = object()


@dataclass
class LoadedModel:
    config: ModelConfig
    backend: Backend
    executor: ThreadPoolExecutor
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)


class ModelManager:
    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._loaded: dict[str, LoadedModel] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    async def _ensure(self, config: ModelConfig) -> LoadedModel:
        """Load once even when many requests for a cold model arrive together."""
        current = self._loaded.get(config.name)
        if current is not None and current.config.fingerprint == config.fingerprint:
            return current
        lock = self._load_locks.setdefault(config.name, asyncio.Lock())
        async with lock:
            current = self._loaded.get(config.name)
            if current is not None and current.config.fingerprint == config.fingerprint:
                return current
            if current is not None:
                log.info("model %s: its file changed; reloading", config.name)
                await self.unload(config.name)
            model = await self._load(config)
            self._loaded[config.name] = model
            return model

    async def _load(self, config: ModelConfig) -> LoadedModel:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{config.name}")
        backend = backend_class(config.backend)(config.as_dict(), self.defaults)
        started = time.monotonic()
        log.info("model %s: loading %s", config.name, config.model_path.name)
        try:
            await asyncio.get_running_loop().run_in_executor(executor, backend.load)
        except APIError:
            executor.shutdown(wait=False)
            raise
        except Exception as exc:
            executor.shutdown(wait=False)
            log.error("model %s: failed to load: %s", config.name, exc)
            raise BackendError(
                f"Model '{config.name}' failed to load from {config.model_path.name}: {exc}",
                code="model_load_failed",
            ) from None
        log.info("model %s: loaded in %.2fs", config.name, time.monotonic() - started)
        return LoadedModel(config=config, backend=backend, executor=executor)

    async def unload(self, name: str) -> bool:
        model = self._loaded.pop(name, None)
        if model is None:
            return False
        async with model.lock:
            await asyncio.get_running_loop().run_in_executor(model.executor, model.backend.close)
        model.executor.shutdown(wait=False)
        log.info("model %s: unloaded", name)
        return True

    async def forget_missing(self, current: dict[str, str]) -> None:
        """Unload models whose file was removed (`current` maps name -> fingerprint)."""
        for name in [n for n in self._loaded if n not in current]:
            await self.unload(name)

    async def close(self) -> None:
        for name in list(self._loaded):
            await self.unload(name)

    @asynccontextmanager
    async def call(self, config: ModelConfig, op: str, payload: dict[str, Any]) -> AsyncIterator[AsyncIterator[Piece]]:
        """Run `op` on the model; the body iterates the pieces it yields.  Leaving the
        block early (or being cancelled) cancels the call in the backend."""
        model = await self._ensure(config)
        loop = asyncio.get_running_loop()
        async with model.lock:
            model.last_used = time.monotonic()
            queue: asyncio.Queue = asyncio.Queue()
            cancel = threading.Event()

            def produce() -> None:
                try:
                    # The backend watches `cancel` itself, between tokens or batches.
                    for piece in model.backend.run(op, payload, cancel):
                        loop.call_soon_threadsafe(queue.put_nowait, piece)
                except BaseException as exc:  # handed to the caller, never lost in the thread
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                else:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)

            async def pieces() -> AsyncIterator[Piece]:
                while True:
                    item = await queue.get()
                    if item is _END:
                        return
                    if isinstance(item, APIError):
                        raise item
                    if isinstance(item, BaseException):
                        log.exception("model %s: %s failed", config.name, op, exc_info=item)
                        raise BackendError(f"Model '{config.name}' failed while running {op}: {item}") from None
                    yield item

            running = loop.run_in_executor(model.executor, produce)
            try:
                yield pieces()
            finally:
                cancel.set()
                # The next call must not start before this one has stopped in its thread.
                try:
                    await asyncio.shield(running)
                except asyncio.CancelledError:
                    await running
                model.last_used = time.monotonic()
