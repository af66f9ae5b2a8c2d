"""The small interface every backend implements, and the table of backends by `backend:` name."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, ClassVar, Iterator

from localhost_ai.config import BackendOptions, CapabilityRule, ModelConfig
from localhost_ai.config.capabilities import TABLE, declare
from localhost_ai.contract import Request
from localhost_ai.contract.events import Event


class CallControl(threading.Event):
    """Handed to every call: set when the caller has gone (stop soon); `beat()` tells the
    watchdog that a long step without output is still making progress."""

    def __init__(self) -> None:
        super().__init__()
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()


class Backend:
    """A loaded model.  It takes the contract's requests and yields its events; `op_<OP>`
    serves the request type whose OP it names.  `Options` declares the YAML fields of
    its own, which arrive checked and typed as `config.options`."""

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.options: Any = config.options

    def concurrency(self) -> int:
        """How many calls the loaded model runs at once; more wait in order."""
        return 1

    def batching(self) -> dict[str, tuple[int, float]]:
        """Request OPs whose concurrent calls the worker batches: OP -> (max inputs, max wait s)."""
        return {}

    def batch_size(self, request: Request) -> int:
        """How many inputs a call adds to a batch."""
        return 1

    def run_batch(self, requests: list[Any]) -> list[Any]:
        """Run several calls at once; one event (or an exception) per request, in order."""
        raise NotImplementedError

    def load(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Figures about the loaded model's work, shown by /backend/monitor."""
        return {}

    def close(self) -> None:
        """Free what load() took; the default relies on garbage collection."""

    def run(self, request: Request, cancel: CallControl) -> Iterator[Event]:
        method = getattr(self, f"op_{request.OP}", None)
        if method is None:
            raise ValueError(f"backend {self.name} has no operation {request.OP!r}")
        return method(request, cancel)


_BACKENDS: dict[str, type[Backend]] = {}


def register(name: str, capabilities: CapabilityRule | None = None) -> Callable[[type[Backend]], type[Backend]]:
    """Add a backend under its `backend:` name; a plugin says what it can do (the built-in
    ones are in config.capabilities's table)."""
    def decorate(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _BACKENDS[name] = cls
        if capabilities is not None:
            declare(name, capabilities)
        elif name not in TABLE:
            logging.getLogger(__name__).warning("backend %s declares no capabilities: no request can reach it", name)
        return cls

    return decorate


def backend_class(name: str) -> type[Backend]:
    return _BACKENDS[name]


def backend_options() -> dict[str, type[BackendOptions]]:
    """Each backend's options class, for the model-file loader."""
    return {name: cls.Options for name, cls in _BACKENDS.items()}
