"""Values read from a file once per version of it (its size and modification time), so a
scan of the models folder reads nothing again."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def version_key(path: Path) -> tuple[str, int, int]:
    """A file's version: its path, size and modification time."""
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


class FileCache(Generic[T]):
    def __init__(self, read: Callable[[Path], T]) -> None:
        self.read = read
        self._values: dict[tuple[str, int, int], T] = {}
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> T:
        key = version_key(path)
        with self._lock:
            if key in self._values:
                return self._values[key]
        value = self.read(path)
        with self._lock:
            self._values[key] = value
        return value
