"""What the manager needs of a loaded model's worker, wherever it runs.  A local child
process (`worker.WorkerProcess`) is one implementation; another placement (a Ray actor,
a remote host) is a second class behind this interface, not a second manager."""

from __future__ import annotations

import abc
import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Any, AsyncIterator, Callable

from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request
from localhost_ai.contract.events import Event

# Lifecycle: starting -> loading -> ready -> stopping -> dead
STATES = ("starting", "loading", "ready", "stopping", "dead")


class WorkerClient(abc.ABC):
    def __init__(self, config: ModelConfig, on_exit: Callable[["WorkerClient"], None]) -> None:
        self.config = config  # with the server's defaults applied
        self.on_exit = on_exit  # called once when the worker has gone, expectedly or not
        self.state = "starting"
        self.started_at = time.time()
        self.last_used = time.monotonic()
        self.concurrency = 1  # calls it runs at once, known once loaded
        self.expected_exit = False  # stop() was asked for
        self.closing = False  # stopped because the server shuts down: what a restart resumes is kept
        self.exited = asyncio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def alive(self) -> bool:
        return self.state in ("loading", "ready")

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """The process that holds the model, where it is one on this machine."""

    @property
    @abc.abstractmethod
    def pending(self) -> int:
        """Calls sent and not yet finished (running or waiting in the worker)."""

    @property
    @abc.abstractmethod
    def running(self) -> int:
        """Calls the worker has started."""

    @abc.abstractmethod
    def memory(self) -> int | None:
        """Resident memory of the worker in bytes, if known."""

    def describe(self) -> dict[str, Any]:
        """What the model's status shows of where it runs, beyond the pid (its replicas)."""
        return {}

    def processes(self) -> list["WorkerClient"]:
        """What the watchdog pings and, when one hangs, kills (--busy-timeout): the worker
        itself, or each of a model's replicas, so that one hung replica goes alone."""
        return [self]

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the worker and load the model; raise the load error if it fails."""

    @abc.abstractmethod
    async def stop(self, grace: float = 10.0) -> None:
        """Free the model and end the worker; end it by force after `grace` seconds."""

    @abc.abstractmethod
    def kill(self, reason: str) -> None:
        """End it now: its calls fail with `reason`."""

    @abc.abstractmethod
    async def ping(self, timeout: float) -> dict[str, Any]:
        """`running`, `stalled_for` (seconds the slowest running call made no progress), `stats`."""

    @abc.abstractmethod
    def call(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Send a request; the body iterates its events.  Leaving early cancels it."""
