"""The worker process: one loaded model, served over the framed protocol on a socket.

Started by the server as `python -m localhost_ai.runtime.worker_main FD`.  The main
thread reads frames (so pings are answered while calls run); calls run on the
backend's own threads, in arrival order; when the server goes away the worker exits."""

from __future__ import annotations

import logging
import os
import queue
import resource
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable

from localhost_ai.backends import CallControl, backend_class
from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request, WireError, event_to_wire, request_from_wire
from localhost_ai.errors import APIError
from localhost_ai.runtime.batching import BatchItem, Batcher
from localhost_ai.runtime.protocol import encode, recv_frame

log = logging.getLogger("localhost_ai.worker")


# What native libraries raise when an allocation fails (C++'s bad_alloc, torch's CPU allocator).
_OUT_OF_MEMORY = ("bad_alloc", "can't allocate memory", "out of memory")


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(
        text in str(exc).lower() for text in _OUT_OF_MEMORY))


def default_memory_limit() -> int:
    """Three quarters of the machine's memory: one worker can never take it all."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 3 // 4


def limit_memory(limit: int) -> None:
    """Cap this process's data (heap and private mappings; the weights llama.cpp maps from
    their file are not counted): an allocation beyond it fails, in the call that made it."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def error_fields(exc: BaseException, memory_limit: int | None = None, loading: bool = False) -> dict[str, Any]:
    """What the client is told: an APIError as it is; anything else without its text (which
    may hold paths or internals; the worker's log has it, under the call's id)."""
    if isinstance(exc, APIError):
        return {"status": exc.status, "message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    if _out_of_memory(exc):
        limit = f" ({memory_limit / (1 << 20):,.0f} MiB, memory_limit)" if memory_limit else ""
        if loading:
            return {"status": 500, "message": f"it needs more memory than its worker may use{limit}",
                    "type": "server_error", "param": None, "code": "memory_limit_exceeded"}
        return {"status": 400, "message": f"This request needs more memory than this model's worker may use{limit}.",
                "type": "invalid_request_error", "param": None, "code": "memory_limit_exceeded"}
    if loading:
        return {"status": 500, "message": "the server's log has the details", "type": "server_error", "param": None,
                "code": "model_load_failed"}
    return {"status": 500, "message": "The model failed while serving this request; the server's log has the details.",
            "type": "server_error", "param": None, "code": "backend_failed"}


class Worker:
    """One loaded model and its calls, whatever carries the messages: `send` takes each
    message out, `handle` each message in (a socket to the server here; the same code can
    sit behind another transport)."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send = send
        self.backend: Any = None
        self.waiting: "queue.Queue[tuple[str, Request, CallControl]]" = queue.Queue()
        self.calls: dict[str, CallControl] = {}
        self.running: dict[str, CallControl] = {}
        self.batchers: dict[str, Batcher] = {}
        self.memory_limit: int | None = None

    def handle(self, message: dict[str, Any]) -> bool:
        """Act on one message from the server; False once it asked the worker to shut down
        (the model is freed and "bye" sent)."""
        op = message.get("op")
        if op == "load":
            threading.Thread(target=self.load, args=(message,), name="load", daemon=True).start()
        elif op == "call":
            try:
                request = request_from_wire(message["call"])
            except WireError as exc:
                self.send({"type": "error", "id": message["id"], "error": error_fields(exc)})
                return True
            control = CallControl()
            self.calls[message["id"]] = control
            batcher = self.batchers.get(request.OP)
            if batcher is not None:
                batcher.submit(message["id"], request, control)
            else:
                self.waiting.put((message["id"], request, control))
        elif op == "cancel":
            control = self.calls.get(message["id"])
            if control is not None:
                control.set()
            else:  # already finished: say so again, so the server forgets the call for sure
                self.send({"type": "end", "id": message["id"]})
        elif op == "ping":
            now = time.monotonic()
            stalled = max((now - c.last_beat for c in list(self.running.values())), default=0.0)
            stats = self.backend.stats() if self.backend is not None else {}
            self.send({"type": "pong", "id": message["id"], "running": len(self.running), "stalled_for": stalled,
                       "stats": stats})
        elif op == "shutdown":
            self.shutdown()
            return False
        return True

    def load(self, message: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            cls = backend_class(message["config"]["backend"])
            config = ModelConfig.from_wire(message["config"], cls.Options)
            self.memory_limit = config.memory_limit or default_memory_limit()
            limit_memory(self.memory_limit)
            backend = cls(config)
            backend.load()
            batching = backend.batching()
            threads = max(1, backend.concurrency())
        except BaseException as exc:
            if not isinstance(exc, APIError):
                log.error("loading failed: %s", "".join(traceback.format_exception_only(type(exc), exc)).strip())
            self.send({"type": "load_error", "error": error_fields(exc, self.memory_limit, loading=True)})
            return
        self.backend = backend
        for op, (max_items, max_wait) in batching.items():
            self.batchers[op] = Batcher(
                op,
                process=backend.run_batch,
                size_of=backend.batch_size,
                max_items=max_items,
                max_wait=max_wait,
                on_start=self.batch_started,
                on_done=self.batch_done,
            )
        for n in range(threads):
            threading.Thread(target=self.run_calls, name=f"call-{n}", daemon=True).start()
        self.send({"type": "loaded", "concurrency": threads, "seconds": time.monotonic() - started})

    def run_calls(self) -> None:
        while True:
            call_id, request, control = self.waiting.get()
            if control.is_set():  # cancelled while it waited
                self.calls.pop(call_id, None)
                self.send({"type": "end", "id": call_id})
                continue
            control.beat()
            self.running[call_id] = control
            self.send({"type": "started", "id": call_id})
            try:
                for event in self.backend.run(request, control):
                    control.beat()
                    self.send({"type": "event", "id": call_id, "event": event_to_wire(event)})
            except BaseException as exc:
                if not isinstance(exc, APIError):
                    log.error("call %s (%s) failed:\n%s", call_id, request.OP, traceback.format_exc().rstrip())
                self.send({"type": "error", "id": call_id, "error": error_fields(exc, self.memory_limit)})
            else:
                self.send({"type": "end", "id": call_id})
            finally:
                self.running.pop(call_id, None)
                self.calls.pop(call_id, None)

    def batch_started(self, item: BatchItem, batch_calls: int) -> None:
        item.control.beat()
        self.running[item.call_id] = item.control
        message = {"type": "started", "id": item.call_id}
        if batch_calls:
            message["batch_calls"] = batch_calls
        self.send(message)

    def batch_done(self, item: BatchItem, result: Any) -> None:
        if isinstance(result, BaseException):
            if not isinstance(result, APIError):
                log.error("batched call %s failed", item.call_id, exc_info=result)
            self.send({"type": "error", "id": item.call_id, "error": error_fields(result, self.memory_limit)})
        else:
            try:
                if result is not None:
                    self.send({"type": "event", "id": item.call_id, "event": event_to_wire(result)})
            except WireError as exc:
                log.error("batched call %s: %s", item.call_id, exc)
                self.send({"type": "error", "id": item.call_id, "error": error_fields(exc, self.memory_limit)})
            else:
                self.send({"type": "end", "id": item.call_id})
        self.running.pop(item.call_id, None)
        self.calls.pop(item.call_id, None)

    def shutdown(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:
                log.warning("closing the model failed: %s", exc)
        self.send({"type": "bye"})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=int(argv[1]))
    sock.setblocking(True)
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        frame = encode(message)
        with lock:
            try:
                sock.sendall(frame)
            except OSError:
                os._exit(0)  # the server is gone: nothing left to serve

    worker = Worker(send)
    # The main thread reads frames, so pings are answered while calls run.
    while (message := recv_frame(sock)) is not None and worker.handle(message):
        pass
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
