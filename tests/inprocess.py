"""The server's application in this test process, its worker client either the real one
(a child process) or `ThreadWorker`, a second placement behind the same interface that
runs the backend on threads here, through the same wire forms."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from localhost_ai.api.app import create_app
from localhost_ai.backends import CallControl, backend_class
from localhost_ai.config import ModelConfig
from localhost_ai.contract import event_from_wire, event_to_wire, request_from_wire, request_to_wire
from localhost_ai.errors import APIError
from localhost_ai.runtime.client import WorkerClient
from localhost_ai.runtime.worker import _error_from
from localhost_ai.runtime.worker_main import error_fields
from localhost_ai.settings import Settings

log = logging.getLogger("tests.inprocess")
PLUGINS = str(Path(__file__).parent / "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)
import fake_backend  # noqa: E402,F401  (registers "test-fake" here too, for the registry)

# A date, as LocalAI's gallery files carry them: YAML reads it as one, JSON has none.
FAKE_YAML = "name: {name}\nbackend: test-fake\nlast_updated: 2024-05-01\nparameters:\n  model: fake.bin\n"


def fake_models(folder: Path, embeddings: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fake.bin").write_bytes(b"fake")
    (folder / "fake.yaml").write_text(FAKE_YAML.format(name="fake"))
    if embeddings:
        (folder / "fake-embed.yaml").write_text(FAKE_YAML.format(name="fake-embed") + "embeddings: true\n")
    return folder


def app_for(folder: Path, placement: Any = None, **settings: Any):
    return create_app(Settings(models_path=folder, **settings), placement=placement)


class ThreadWorker(WorkerClient):
    """The backend in this process: each call on a thread, requests and events through
    their wire forms as they would cross to a worker process."""

    def __init__(self, config: ModelConfig, on_exit: Any) -> None:
        super().__init__(config, on_exit)
        self.backend: Any = None
        self.controls: dict[int, CallControl] = {}
        self.started_calls = 0

    @property
    def pid(self) -> int | None:
        return None

    @property
    def pending(self) -> int:
        return len(self.controls)

    @property
    def running(self) -> int:
        return len(self.controls)

    def memory(self) -> int | None:
        return None

    async def start(self) -> None:
        self.state = "loading"
        cls = backend_class(self.config.backend)
        self.backend = cls(ModelConfig.from_wire(self.config.to_wire(), cls.Options))
        await asyncio.to_thread(self.backend.load)
        self.concurrency = self.backend.concurrency()
        self.state = "ready"

    async def stop(self, grace: float = 10.0) -> None:
        self.expected_exit = True
        self.kill("stopped")

    def kill(self, reason: str) -> None:
        for control in self.controls.values():
            control.set()
        self.state = "dead"
        self.exited.set()
        self.on_exit(self)

    async def ping(self, timeout: float) -> dict[str, Any]:
        return {"running": self.running, "stalled_for": 0.0, "stats": {}}

    @asynccontextmanager
    async def call(self, request: Any) -> AsyncIterator[AsyncIterator[Any]]:
        request = request_from_wire(request_to_wire(request))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        control = CallControl()
        self.controls[id(control)] = control
        self.started_calls += 1

        def run() -> None:
            try:
                if request.OP in self.backend.batching():
                    outcome = self.backend.run_batch([request])[0]
                    if isinstance(outcome, BaseException):
                        raise outcome
                    items = [outcome]
                else:
                    items = self.backend.run(request, control)
                for event in items:
                    loop.call_soon_threadsafe(queue.put_nowait, event_to_wire(event))
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        threading.Thread(target=run, daemon=True).start()

        async def events() -> AsyncIterator[Any]:
            while (item := await queue.get()) is not None:
                if isinstance(item, APIError):
                    raise item
                if isinstance(item, BaseException):  # told to the client as a worker process tells it
                    log.error("call failed", exc_info=item)
                    raise _error_from(error_fields(item))
                yield event_from_wire(item)

        try:
            yield events()
        finally:
            control.set()
            self.controls.pop(id(control), None)
