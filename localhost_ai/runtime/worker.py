"""The server's side of a worker process: start it, load the model, multiplex calls
over the framed protocol, ping it, stop it, and notice when it dies."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import re
import signal
import socket
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Coroutine

from localhost_ai import metrics
from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request, WireError, event_from_wire, request_to_wire
from localhost_ai.contract.events import Event
from localhost_ai.errors import APIError, BackendError
from localhost_ai.runtime.client import WorkerClient
from localhost_ai.runtime.protocol import encode, read_frame

log = logging.getLogger(__name__)

_END = object()
_ids = itertools.count(1)
# The id of the request being served (X-Request-Id), set by the API's error middleware.
CURRENT_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def _error_from(fields: dict[str, Any]) -> APIError:
    return APIError(fields.get("message") or "the model failed", status=fields.get("status") or 500,
                    type=fields.get("type"), param=fields.get("param"), code=fields.get("code"))


def unloaded(name: str) -> APIError:
    """What a call (or a load) waiting on a worker that was stopped on purpose hears."""
    return BackendError(f"Model '{name}' was unloaded while this request waited.", code="model_unloaded")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class _Call:
    id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    started: bool = False
    abandoned: bool = False  # its caller left; kept until the worker confirms it stopped


class WorkerProcess(WorkerClient):
    """One model in one child process on this machine."""

    def __init__(self, config: ModelConfig, on_exit: Callable[[WorkerClient], None]) -> None:
        super().__init__(config, on_exit)
        self.process: asyncio.subprocess.Process | None = None
        self.calls: dict[str, _Call] = {}
        self.death_reason: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._loaded: asyncio.Future | None = None
        self._pongs: dict[str, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def pending(self) -> int:
        return len(self.calls)

    @property
    def running(self) -> int:
        return sum(1 for call in self.calls.values() if call.started)

    def memory(self) -> int | None:
        return rss_bytes(self.pid) if self.pid else None

    async def start(self) -> None:
        """Spawn the process and load the model; raise the load error if it fails."""
        parent_sock, child_sock = socket.socketpair()
        env = {**os.environ, "LOG_LEVEL": logging.getLevelName(logging.getLogger().getEffectiveLevel())}
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "localhost_ai.runtime.worker_main", str(child_sock.fileno()),
                pass_fds=(child_sock.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
            )
        finally:
            child_sock.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=parent_sock)
        log.info("model %s: worker pid %d started; loading %s", self.name, self.pid, self.config.model_path.name)
        seconds = await self._load([self._read(reader), self._forward_output()])
        log.info("model %s: loaded in %.2fs (worker pid %d)", self.name, seconds, self.pid)

    async def _load(self, readers: list[Coroutine[Any, Any, None]]) -> float:
        """Read what the worker sends (`readers`), have it load the model, and wait: the
        seconds loading took; on failure the worker is stopped and the error raised."""
        self.state = "loading"
        self._loaded = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(reader) for reader in readers]
        try:
            self._send({"op": "load", "config": self._config_to_load()})
            seconds = await self._loaded
        except BaseException:
            await self.stop(grace=2)
            raise
        self.state = "ready"
        return seconds

    def _config_to_load(self) -> dict[str, Any]:
        return self.config.to_wire()

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise BackendError(f"Model '{self.name}': its worker is not running.", code="worker_gone")
        self._writer.write(encode(message))

    async def _forward_output(self) -> None:
        """The worker's stdout and stderr (native libraries print there) go to our log."""
        assert self.process and self.process.stdout
        prefix = f"[{self.name} {self.pid}]"
        pending = b""
        # Read in chunks, not lines: progress bars redraw with '\r' and never end a line, and
        # a pipe left unread would block the worker on its next write.
        while chunk := await self.process.stdout.read(65536):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            if len(pending) > 65536:
                lines, pending = lines + [pending], b""
            for line in lines:
                text = line.decode(errors="replace").rstrip()
                if text:
                    log.info("%s %s", prefix, text)
        if pending.strip():
            log.info("%s %s", prefix, pending.decode(errors="replace").rstrip())

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                if message is None:
                    break
                self._dispatch(message)
        except Exception as exc:
            log.error("model %s: bad frame from worker: %s", self.name, exc)
            self.kill("sent a malformed frame")
        finally:
            await self._reap()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        call = self.calls.get(message.get("id", ""))
        if kind == "event" and call:
            try:
                call.queue.put_nowait(event_from_wire(message["event"]))
            except WireError as exc:  # this call fails; the worker and its other calls go on
                log.error("model %s: call %s sent a malformed event: %s", self.name, call.id, exc)
                call.queue.put_nowait(BackendError(f"Model '{self.name}' answered with a malformed event."))
                self._send({"op": "cancel", "id": call.id})
        elif kind == "started" and call:
            call.started = True
            if "batch_calls" in message:
                metrics.BATCH_CALLS.labels(self.name).observe(message["batch_calls"])
        elif kind in ("end", "error") and call:
            if call.abandoned:
                del self.calls[call.id]
            else:
                call.queue.put_nowait(_END if kind == "end" else _error_from(message["error"]))
        elif kind == "pong":
            future = self._pongs.pop(message["id"], None)
            if future and not future.done():
                future.set_result(message)
        elif kind == "loaded" and self._loaded and not self._loaded.done():
            self.concurrency = message.get("concurrency", 1)
            self._loaded.set_result(message.get("seconds", 0.0))
        elif kind == "load_error" and self._loaded and not self._loaded.done():
            fields = message["error"]
            error = _error_from(fields)
            if error.status >= 500:
                error = BackendError(
                    f"Model '{self.name}' failed to load from {self.config.model_path.name}: {fields.get('message')}",
                    code=fields.get("code") or "model_load_failed",
                )
            self._loaded.set_exception(error)

    async def _reap(self) -> None:
        """The channel closed: the process is gone or going.  Fail what it held."""
        assert self.process
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout=5)
        except asyncio.TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        if self._writer:
            self._writer.close()
        if not self.expected_exit:
            reason = self.death_reason or _describe_exit(code)
            log.error("model %s: worker pid %d %s", self.name, self.pid, reason)
            error = BackendError(
                f"Model '{self.name}' stopped: its worker process {reason}. The next request starts it again.",
                code="worker_died",
            )
        else:
            error = unloaded(self.name)
        self._gone(error)

    def _gone(self, error: APIError) -> None:
        """The worker has gone: what it held fails with `error`, and the manager hears of it."""
        self.state = "dead"
        if self._loaded and not self._loaded.done():
            self._loaded.set_exception(error)
        for call in self.calls.values():
            call.queue.put_nowait(error)
        for future in self._pongs.values():
            if not future.done():
                future.set_exception(error)
        self.exited.set()
        self.on_exit(self)

    def kill(self, reason: str) -> None:
        if self.process and self.process.returncode is None:
            self.death_reason = reason
            self.process.kill()

    async def stop(self, grace: float = 10.0) -> None:
        """Ask the worker to free its model and exit; kill it if it does not in time."""
        if self.process is None or self.state == "dead":
            return
        self.expected_exit = True
        self.state = "stopping"
        try:
            self._send({"op": "shutdown"})
        except APIError:
            pass
        try:
            await asyncio.wait_for(self.exited.wait(), timeout=grace)
        except asyncio.TimeoutError:
            log.warning("model %s: worker pid %d did not stop in %.0fs; killing it", self.name, self.pid, grace)
            self.process.kill()
            await self.exited.wait()
        for task in self._tasks:
            task.cancel()

    # -- calls -------------------------------------------------------------------------

    async def ping(self, timeout: float) -> dict[str, Any]:
        ping_id = f"p{next(_ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pongs[ping_id] = future
        self._send({"op": "ping", "id": ping_id})
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pongs.pop(ping_id, None)

    @asynccontextmanager
    async def call(self, request: Request) -> AsyncIterator[AsyncIterator[Event]]:
        """Send a call; the body iterates its events.  Leaving early cancels it in the worker."""
        # Named after the request it serves, so the worker's log of a failure finds its request.
        call = _Call(id=f"{CURRENT_REQUEST.get()}-c{next(_ids)}")
        self.calls[call.id] = call
        self.last_used = time.monotonic()
        finished = False

        async def events() -> AsyncIterator[Event]:
            nonlocal finished
            while True:
                item = await call.queue.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, APIError):
                    finished = True
                    raise item
                yield item

        try:
            self._send({"op": "call", "id": call.id, "call": request_to_wire(request)})
            yield events()
        finally:
            self.last_used = time.monotonic()
            while not finished and not call.queue.empty():  # its end may already be here, unread
                item = call.queue.get_nowait()
                finished = item is _END or isinstance(item, APIError)
            if not finished and self.alive:
                call.abandoned = True
                try:
                    self._send({"op": "cancel", "id": call.id})
                except APIError:
                    self.calls.pop(call.id, None)
            else:
                self.calls.pop(call.id, None)
