"""The one place that starts workers, admits calls and unloads models.

Each loaded model lives in its own worker process (runtime/worker.py).  Calls wait in
a bounded per-model queue; at most `max_loaded_models` workers live at once (least
recently used goes first); idle workers are unloaded; a worker that dies fails the
calls it held and is started again by the next call; one whose call makes no progress
for `busy_timeout` is killed."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import time
from collections import defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from localhost_ai import metrics
from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request
from localhost_ai.contract.events import Event, Usage
from localhost_ai.errors import APIError, QueueFull
from localhost_ai.runtime.client import WorkerClient
from localhost_ai.runtime.worker import WorkerProcess

# Where a model's worker runs: (config, on_exit) -> a WorkerClient.
Placement = Callable[[ModelConfig, Callable[[WorkerClient], None]], WorkerClient]

log = logging.getLogger(__name__)


@dataclass
class ManagerOptions:
    threads: int | None = None  # for models whose YAML sets none
    context_size: int | None = None
    max_loaded_models: int = 0
    idle_timeout: float | None = None
    busy_timeout: float = 300.0
    max_queue: int = 64
    shutdown_grace: float = 10.0
    placement: Placement = field(default=WorkerProcess)


LOAD_BACKOFF_FIRST = 2.0
LOAD_BACKOFF_MAX = 60.0


@dataclass
class LoadFailure:
    fingerprint: str
    error: APIError
    delay: float
    until: float

    def waiting(self) -> bool:
        return time.monotonic() < self.until

    def fresh_error(self) -> APIError:
        """The same error, a new object: one raised again and again would gather every
        request's frames in its traceback."""
        error = copy.copy(self.error)
        error.__traceback__ = error.__context__ = error.__cause__ = None
        return error


class ModelManager:
    def __init__(self, options: ManagerOptions) -> None:
        self.options = options
        self._workers: dict[str, WorkerClient] = {}
        self._loading: dict[str, asyncio.Task] = {}
        self._admitted: dict[str, int] = defaultdict(int)
        self._durations: dict[str, deque] = defaultdict(lambda: deque(maxlen=20))
        self._died: set[str] = set()
        self._pinging: set[str] = set()
        self._changed = asyncio.Event()
        self._watchdog: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._failed: dict[str, LoadFailure] = {}
        self._keep: dict[str, float | None] = {}  # a client's keep_alive: idle seconds, None for ever

    # -- state -------------------------------------------------------------------------

    def loaded(self) -> list[WorkerClient]:
        return [w for w in self._workers.values() if w.state == "ready"]

    def worker(self, name: str) -> WorkerClient | None:
        return self._workers.get(name)

    def queue_length(self, name: str) -> int:
        worker = self._workers.get(name)
        return max(0, self._admitted[name] - (worker.running if worker else 0))

    def status(self, name: str) -> dict[str, Any]:
        worker = self._workers.get(name)
        base = {"model": name, "queue_length": self.queue_length(name), "in_flight": self._admitted[name]}
        if worker is None or worker.state == "dead":
            return {**base, "state": "unloaded", "pid": None}
        state = worker.state
        if state == "ready" and worker.running:
            state = "busy"
        return {
            **base,
            "state": state,
            "pid": worker.pid,
            "memory": {"rss": worker.memory()},
            "uptime_seconds": round(time.time() - worker.started_at, 3),
            "running": worker.running,
            "concurrency": worker.concurrency,
            **worker.describe(),
        }

    async def live_status(self, name: str) -> dict[str, Any]:
        """status(), plus the figures a ready worker reports of its work (`engine`)."""
        worker = self._workers.get(name)
        stats = None
        if worker is not None and worker.state == "ready":
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, APIError):
                stats = (await worker.ping(2.0)).get("stats")
        status = self.status(name)  # after the ping: a model's replicas show the figures it gave
        if stats:
            status["engine"] = stats
        return status

    def keep_alive(self, name: str, seconds: float | None) -> None:
        """Unload the model after `seconds` idle (None: never; 0: as soon as no call runs on
        it), instead of --idle-timeout, until it is unloaded (Ollama's keep_alive).  A model
        not loaded (its load failed, or it went since) keeps nothing."""
        if name in self._workers:
            self._keep[name] = seconds

    def idle_limit(self, name: str) -> float | None:
        return self._keep[name] if name in self._keep else (self.options.idle_timeout or None)

    def expires_at(self, name: str) -> float | None:
        """The wall-clock time an idle model will be unloaded at, None if never."""
        worker = self._workers.get(name)
        limit = self.idle_limit(name)
        if worker is None or not limit:
            return None
        return time.time() + limit - (time.monotonic() - worker.last_used)

    def is_ready(self, config: ModelConfig) -> bool:
        worker = self._workers.get(config.name)
        return worker is not None and worker.state == "ready" and worker.config.fingerprint == config.fingerprint

    async def load(self, config: ModelConfig) -> None:
        """The model loaded (or its load error raised), without running a call."""
        await self._ensure(config)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        metrics.LOADED_MODELS.set(len(self.loaded()))

    # -- loading -----------------------------------------------------------------------

    async def _ensure(self, config: ModelConfig) -> WorkerClient:
        """The model's ready worker; started once however many calls wait for it."""
        worker = self._workers.get(config.name)
        if self.is_ready(config):
            return worker  # type: ignore[return-value]
        if worker is not None and worker.state == "ready":
            log.info("model %s: its definition changed; reloading", config.name)
            await self.unload(config.name)
        task = self._loading.get(config.name)
        if task is None:
            failure = self._failed.get(config.name)
            if failure is not None and failure.fingerprint == config.fingerprint and failure.waiting():
                raise failure.fresh_error()
            task = asyncio.create_task(self._start(config))
            self._loading[config.name] = task
            task.add_done_callback(lambda done: self._loading.pop(config.name, None) if self._loading.get(config.name) is done else None)
        return await asyncio.shield(task)

    async def _start(self, config: ModelConfig) -> WorkerClient:
        await self._make_room(config.name)
        options = self.options
        worker = options.placement(config.with_defaults(options.threads, options.context_size), self._on_exit)
        if config.name in self._died:
            self._died.discard(config.name)
            metrics.WORKER_RESTARTS.labels(config.name).inc()
        self._workers[config.name] = worker
        try:
            await worker.start()
        except BaseException as exc:
            unloaded = isinstance(exc, APIError) and exc.code == "model_unloaded"  # while it loaded: no failure
            if not unloaded:
                metrics.MODEL_LOADS.labels(config.name, "failed").inc()
            if self._workers.get(config.name) is worker:
                del self._workers[config.name]
            if isinstance(exc, APIError) and not unloaded:
                self._record_failure(config, exc)
            self._notify()
            raise
        self._failed.pop(config.name, None)
        metrics.MODEL_LOADS.labels(config.name, "ok").inc()
        self._notify()
        return worker

    def _record_failure(self, config: ModelConfig, error: APIError) -> None:
        """A model that failed to load is not started again for a while, doubling each time
        it fails again (up to LOAD_BACKOFF_MAX), unless its definition changes: meanwhile its
        requests get the same error at once, with a Retry-After."""
        previous = self._failed.get(config.name)
        delay = LOAD_BACKOFF_FIRST
        if previous is not None and previous.fingerprint == config.fingerprint:
            delay = min(previous.delay * 2, LOAD_BACKOFF_MAX)
        error.headers = {**error.headers, "Retry-After": str(math.ceil(delay))}
        self._failed[config.name] = LoadFailure(config.fingerprint, error, delay, time.monotonic() + delay)
        log.warning("model %s: not loaded again for %.0f s", config.name, delay)

    def _on_exit(self, worker: WorkerClient) -> None:
        if self._workers.get(worker.name) is worker:
            del self._workers[worker.name]
            self._keep.pop(worker.name, None)
        if not worker.expected_exit:
            self._died.add(worker.name)
            metrics.WORKER_DEATHS.labels(worker.name).inc()
        self._notify()

    async def _make_room(self, name: str) -> None:
        limit = self.options.max_loaded_models
        if not limit:
            return
        while len([n for n in self._workers if n != name]) >= limit:
            idle = [w for w in self._workers.values()
                    if w.name != name and w.state == "ready" and not w.pending and not self._admitted[w.name]]
            if idle:
                victim = min(idle, key=lambda w: w.last_used)
                log.info("model %s: unloading the least recently used model to make room for %s (--max-loaded-models %d)",
                         victim.name, name, limit)
                await self.unload(victim.name)
            else:
                await self._changed.wait()  # every loaded model is busy: wait for one to be free

    async def unload(self, name: str) -> bool:
        """Let the model's running calls finish (within the grace period), then stop its worker."""
        worker = self._workers.pop(name, None)
        if worker is None:
            return False
        deadline = time.monotonic() + self.options.shutdown_grace
        while worker.pending and worker.state == "ready" and time.monotonic() < deadline:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, deadline - time.monotonic()))
        self._keep.pop(name, None)
        await worker.stop(grace=self.options.shutdown_grace)
        log.info("model %s: unloaded (%s stopped)", name, f"worker pid {worker.pid}" if worker.pid else "its replicas")
        self._notify()
        return True

    async def forget_missing(self, current: dict[str, str]) -> None:
        """Unload models whose file was removed (`current` maps name -> fingerprint)."""
        for name in [n for n in self._workers if n not in current]:
            await self.unload(name)

    # -- calls -------------------------------------------------------------------------

    def _retry_after(self, name: str) -> int:
        durations = self._durations[name]
        average = sum(durations) / len(durations) if durations else 1.0
        worker = self._workers.get(name)
        per_slot = self.queue_length(name) / max(1, worker.concurrency if worker else 1)
        return max(1, min(600, math.ceil(average * per_slot)))

    @asynccontextmanager
    async def call(self, config: ModelConfig, request: Request) -> AsyncIterator[AsyncIterator[Event]]:
        """Run the request on the model; the body iterates the events it yields.  Leaving
        the block early (or being cancelled) cancels the call in the worker."""
        name = config.name
        if self.queue_length(name) >= self.options.max_queue:
            raise QueueFull(
                f"Model '{name}' has {self.queue_length(name)} requests waiting, the most it queues "
                f"(--max-queue {self.options.max_queue}). Try again shortly.",
                code="queue_full",
                headers={"Retry-After": str(self._retry_after(name))},
            )
        self._admitted[name] += 1
        metrics.QUEUE_LENGTH.labels(name).set(self.queue_length(name))
        started = time.monotonic()
        try:
            worker = await self._ensure(config)
            async with worker.call(request) as events:
                yield _counted(name, events)
        finally:
            self._admitted[name] -= 1
            self._durations[name].append(time.monotonic() - started)
            metrics.QUEUE_LENGTH.labels(name).set(self.queue_length(name))
            self._notify()

    # -- watchdog ----------------------------------------------------------------------

    def start(self) -> None:
        self._watchdog = asyncio.create_task(self._watch())

    def _spawn(self, coroutine: Any) -> None:
        """Run in the background, holding a reference so the task is not collected mid-way."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch(self) -> None:
        options = self.options
        tick = min(1.0, options.busy_timeout / 4, (options.idle_timeout or 4.0) / 4)  # keep_alive: 1 s at most
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for worker in list(self._workers.values()):
                if worker.state != "ready":
                    continue
                metrics.QUEUE_LENGTH.labels(worker.name).set(self.queue_length(worker.name))
                idle = not worker.pending and not self._admitted[worker.name]
                limit = self.idle_limit(worker.name)
                if idle and limit is not None and now - worker.last_used >= limit:
                    self._spawn(self._unload_if_idle(worker))
                elif worker.running and worker.name not in self._pinging:
                    self._spawn(self._check_busy(worker))

    async def _unload_if_idle(self, worker: WorkerClient) -> None:
        """Checked again when the task runs: a call may have arrived since the watchdog looked."""
        idle_for = time.monotonic() - worker.last_used
        limit = self.idle_limit(worker.name)
        if (self._workers.get(worker.name) is worker and not worker.pending and not self._admitted[worker.name]
                and limit is not None and idle_for >= limit):
            how = "keep_alive" if worker.name in self._keep else "--idle-timeout"
            log.info("model %s: idle for %.0fs (%s); unloading", worker.name, idle_for, how)
            await self.unload(worker.name)

    async def _check_busy(self, worker: WorkerClient) -> None:
        """A worker (or one replica of a model) that does not answer, or whose running call
        has made no progress, for `busy_timeout` is killed; its calls fail and the next call
        starts it again (or the model's other replicas serve it while it is replaced)."""
        self._pinging.add(worker.name)
        try:
            await asyncio.gather(*(self._check_process(process) for process in worker.processes() if process.running),
                                 return_exceptions=True)
        finally:
            self._pinging.discard(worker.name)

    async def _check_process(self, process: WorkerClient) -> None:
        timeout = self.options.busy_timeout
        try:
            pong = await process.ping(timeout)
        except asyncio.TimeoutError:
            process.kill(f"did not answer for {timeout:.0f}s (--busy-timeout) and was killed")
            return
        except APIError:
            return
        if pong.get("stalled_for", 0) >= timeout:
            process.kill(f"made no progress on a call for {pong['stalled_for']:.0f}s (--busy-timeout) and was killed")

    async def close(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        loading = list(self._loading.values())
        for task in loading:  # first, so that no load starts a worker while the others stop
            task.cancel()
        await asyncio.gather(*loading, return_exceptions=True)
        for worker in self._workers.values():
            worker.closing = True
        await asyncio.gather(*(self.unload(name) for name in list(self._workers)), return_exceptions=True)


async def _counted(name: str, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    async for event in events:
        if isinstance(event, Usage):
            metrics.PROMPT_TOKENS.labels(name).inc(event.prompt_tokens)
            metrics.GENERATED_TOKENS.labels(name).inc(event.completion_tokens)
            metrics.CACHED_PROMPT_TOKENS.labels(name).inc(event.cached_tokens or 0)
        yield event
