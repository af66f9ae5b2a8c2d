"""The small interface every backend implements, and the table of backends by `backend:` name."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, ClassVar, Iterator

# What a backend can do; the API checks a model's capabilities before calling it.
CHAT = "chat"
COMPLETION = "completion"
EDIT = "edit"
EMBEDDINGS = "embeddings"
RERANK = "rerank"
TRANSCRIPTION = "transcription"
IMAGE = "image"

Piece = dict[str, Any]


class CallControl(threading.Event):
    """Handed to every call: set when the caller has gone (stop soon); `beat()` tells the
    watchdog that a long step without output is still making progress."""

    def __init__(self) -> None:
        super().__init__()
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()


class Backend:
    """A loaded model.  Calls are plain dicts in and plain dicts out so that they can
    cross a process boundary unchanged; `run` yields pieces as they are produced."""

    name: ClassVar[str]

    def __init__(self, config: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.config = config
        self.defaults = defaults

    @classmethod
    def capabilities(cls, config: dict[str, Any]) -> frozenset[str]:
        raise NotImplementedError

    @classmethod
    def concurrency(cls, config: dict[str, Any]) -> int:
        """How many calls the loaded model runs at once; more wait in order."""
        return 1

    def batching(self) -> dict[str, tuple[int, float]]:
        """Operations whose concurrent calls the worker batches: op -> (max inputs, max wait s)."""
        return {}

    def batch_size(self, op: str, payload: dict[str, Any]) -> int:
        """How many inputs a call adds to a batch."""
        return 1

    def run_batch(self, op: str, payloads: list[dict[str, Any]]) -> list[Any]:
        """Run several calls' payloads at once; one piece (or an exception) per payload, in order."""
        raise NotImplementedError

    def load(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Figures about the loaded model's work, shown by /backend/monitor."""
        return {}

    def close(self) -> None:
        """Free what load() took; the default relies on garbage collection."""

    def run(self, op: str, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        method = getattr(self, f"op_{op}", None)
        if method is None:
            raise ValueError(f"backend {self.name} has no operation {op!r}")
        return method(payload, cancel)


_BACKENDS: dict[str, type[Backend]] = {}


def register(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def decorate(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return decorate


def backend_class(name: str) -> type[Backend]:
    return _BACKENDS[name]


def backend_names() -> list[str]:
    return sorted(_BACKENDS)
