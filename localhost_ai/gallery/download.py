"""Downloads that a package manager would be proud of: streamed to `<file>.partial`,
resumed with HTTP Range, retried with backoff, checked against sha256, and renamed
into place only when complete and verified."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import aiohttp

from localhost_ai.errors import APIError
from localhost_ai.gallery.fetch import USER_AGENT, fetch_failure
from localhost_ai.gallery.netguard import PrivateAddressError, guarded_session
from localhost_ai.gallery.uris import Source

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
READ_BUFFER = 1024 * 1024  # aiohttp's read buffer for downloads: larger pieces, less overhead per byte
RETRIES = 5
BACKOFF = 0.5
Progress = Callable[[int, "int | None"], None]  # (bytes so far, total or None)


class DownloadError(APIError):
    status = 502
    type = "server_error"


class ChecksumMismatch(DownloadError):
    pass


class TooLarge(DownloadError):
    """A file larger than --max-download-size, or than the disk's free space."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def open_no_follow(path: Path, mode: str) -> Any:
    """`open`, refusing a symlink at `path` (a partial file is never one someone put there)."""
    flags = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    return os.fdopen(os.open(path, flags | os.O_NOFOLLOW, 0o644), mode)


def check_room(target: Path, needed: int, max_size: int | None) -> None:
    """Before a byte is written: within --max-download-size, and within the disk's free space."""
    if max_size is not None and needed > max_size:
        raise TooLarge(f"{target.name} is {needed:,} bytes, over this server's --max-download-size of {max_size:,}.",
                       code="file_too_large")
    free = shutil.disk_usage(target.parent).free
    if needed > free:
        raise TooLarge(f"{target.name} needs {needed:,} bytes and the disk holding the models folder has {free:,} "
                       "free.", code="disk_full")


def new_session(allow_private: bool = False) -> aiohttp.ClientSession:
    """The HTTP client for gallery work: public addresses only unless `allow_private`
    (gallery/netguard.py); no total time limit (files are large), but a connection that
    stalls for a minute counts as broken and is resumed."""
    return guarded_session(allow_private, read_bufsize=READ_BUFFER,
                           timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60))


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _meta_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial.json")


def remove_partial(target: Path) -> None:
    for path in (partial_path(target), _meta_path(target)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _digest_of(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    if path.exists():
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    return digest


def sha256_of(path: Path) -> str:
    return _digest_of(path).hexdigest()


def already_installed(target: Path, sha256: str | None) -> bool:
    """A file in place counts as installed when it matches its checksum (or has none)."""
    if not target.is_file():
        return False
    return not sha256 or sha256_of(target) == sha256.lower()


async def download(
    session: aiohttp.ClientSession,
    source: Source,
    target: Path,
    sha256: str | None,
    progress: Progress,
    max_size: int | None = None,
) -> bool:
    """Fetch `source` into `target`, True when it was written (False: it was in place);
    raises DownloadError (partial kept for a later resume, except when the disk is full or
    the file too large) or ChecksumMismatch (nothing kept)."""
    expected = sha256.lower() if sha256 else None
    if await asyncio.to_thread(already_installed, target, expected):
        size = target.stat().st_size
        progress(size, size)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial, meta = partial_path(target), _meta_path(target)
    for path in (partial, meta):
        if path.is_symlink():  # not ours: the link goes, whatever it points at stays
            path.unlink()
    identity = {"uri": source.uri, "sha256": expected}
    try:
        if json.loads(meta.read_text()) != identity:
            remove_partial(target)  # a leftover of some other download
    except (OSError, ValueError):
        remove_partial(target)
    try:
        with open_no_follow(meta, "w") as handle:
            handle.write(json.dumps(identity))
        if source.path is not None:
            actual = await stoppable(lambda stop: _copy_local(source.path, partial, progress, stop))
        else:
            actual = await _fetch_with_retries(session, source, partial, progress, verify=expected is not None,
                                               max_size=max_size)
    except TooLarge:
        remove_partial(target)
        raise
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        remove_partial(target)  # so that the next install starts with the space back
        raise DownloadError(f"{target.name}: the disk holding the models folder is full; the partial file was "
                            "removed.", code="disk_full") from None

    if expected is not None and actual != expected:
        remove_partial(target)
        raise ChecksumMismatch(
            f"{target.name}: sha256 is {actual}, expected {expected}; the file was discarded.",
            code="checksum_mismatch",
        )
    os.replace(partial, target)
    meta.unlink(missing_ok=True)
    return True


def _copy_local(path: Path, partial: Path, progress: Progress, stop: threading.Event) -> str:
    digest = hashlib.sha256()
    try:
        total = path.stat().st_size
        done = 0
        check_room(partial, total, None)
        with path.open("rb") as src, open_no_follow(partial, "wb") as dst:
            while block := src.read(CHUNK):
                if stop.is_set():
                    raise DownloadError(f"copying {path} was stopped")
                dst.write(block)
                digest.update(block)
                done += len(block)
                progress(done, total)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise
        raise DownloadError(f"cannot copy {path}: {exc.strerror}") from None
    shutil.copystat(path, partial)
    return digest.hexdigest()


T = TypeVar("T")


async def stoppable(work: Callable[[threading.Event], T], patience: float = 30.0) -> T:
    """`work(stop)` on a thread that looks at `stop` between pieces.  Cancelled, it sets
    `stop` and waits for the thread to end, so nothing the work does comes after the cancel
    (a partial file written after it was removed, a file put in place after the job ended);
    a thread stuck in one piece (a hung network mount) is waited for `patience` seconds."""
    stop = threading.Event()
    running = asyncio.ensure_future(asyncio.to_thread(work, stop))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(running), patience)
        raise


class _Writer:
    """Writes (and hashes) 1 MB pieces on its own thread while the event loop reads the
    next ones, with at most two pieces in flight, so memory stays flat.  On leaving
    (also after a broken connection) everything received is written: a resume starts
    right after it."""

    def __init__(self, path: Path, append: bool, digest: "hashlib._Hash | None") -> None:
        self.handle = open_no_follow(path, "ab" if append else "wb")
        self.digest = digest
        self.blocks: list[bytes] = []
        self.buffered = 0
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="download-writer")
        self.in_flight: deque[asyncio.Future] = deque()

    def __enter__(self) -> "_Writer":
        return self

    def add(self, block: bytes) -> None:
        self.blocks.append(block)
        self.buffered += len(block)

    def _write(self, data: bytes) -> None:
        self.handle.write(data)
        if self.digest is not None:
            self.digest.update(data)

    def _take(self) -> bytes:
        data = b"".join(self.blocks)
        self.blocks.clear()
        self.buffered = 0
        return data

    async def flush(self) -> None:
        self.in_flight.append(asyncio.get_running_loop().run_in_executor(self.thread, self._write, self._take()))
        while len(self.in_flight) > 2:
            await self.in_flight.popleft()

    def __exit__(self, *exc_info: object) -> None:
        pending: list[Any] = list(self.in_flight)
        if self.blocks:  # the last piece's write can fail too (a full disk): it is checked like the others
            pending.append(self.thread.submit(self._write, self._take()))
        self.thread.shutdown(wait=True)  # a few MB at most are left, written in order
        self.handle.close()
        for future in pending:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]


def _transient(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


async def _fetch_with_retries(session: aiohttp.ClientSession, source: Source, partial: Path, progress: Progress,
                              verify: bool, max_size: int | None = None) -> str | None:
    """Fetch until complete; with `verify`, return the sha256 of the whole file, computed
    while the bytes arrive (a resumed file's first part is read back once)."""
    digest = [await asyncio.to_thread(_digest_of, partial) if verify else None]
    last_error = "no attempt made"
    for attempt in range(RETRIES + 1):
        if attempt:
            delay = BACKOFF * 2 ** (attempt - 1)
            log.info("download %s: retrying in %.1fs (%s)", source.uri, delay, last_error)
            await asyncio.sleep(delay)
        try:
            if await _fetch_once(session, source, partial, progress, digest, max_size):
                return digest[0].hexdigest() if digest[0] is not None else None
            last_error = "the connection closed before the file was complete"
        except aiohttp.ClientResponseError as exc:
            if not _transient(exc.status):
                raise DownloadError(f"downloading {source.uri} failed: HTTP {exc.status}") from None
            last_error = f"HTTP {exc.status}"
        except PrivateAddressError as exc:
            raise fetch_failure(source.uri, exc) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            last_error = "it timed out" if isinstance(exc, asyncio.TimeoutError) else "the connection failed"
    raise DownloadError(f"downloading {source.uri} failed after {RETRIES + 1} attempts: {last_error}; "
                        "the partial file is kept and a new attempt resumes it.")


async def _fetch_once(session: aiohttp.ClientSession, source: Source, partial: Path, progress: Progress,
                      digest: list, max_size: int | None = None) -> bool:
    """One request, resuming from what `partial` holds.  True when the file is complete.
    `digest[0]` always covers exactly the bytes written to `partial`."""
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    async with session.get(source.url, headers=headers) as response:
        if response.status == 416 and have:
            return True  # nothing left to fetch; the checksum decides
        if response.status not in (200, 206):
            response.raise_for_status()
            raise DownloadError(f"downloading {source.uri} answered HTTP {response.status}")
        if response.status == 200:
            have = 0  # the server ignored the range: start over
            digest[0] = hashlib.sha256() if digest[0] is not None else None
        length = response.content_length
        total = have + length if length is not None else None
        if length is not None:
            check_room(partial, length, None if max_size is None else max_size - have)
        received = have
        progress(received, total)
        with _Writer(partial, append=bool(have), digest=digest[0]) as writer:
            async for block in response.content.iter_any():
                writer.add(block)
                received += len(block)
                if max_size is not None and received > max_size:  # no length, or one that lied
                    raise TooLarge(f"{partial.name[:-len('.partial')]} is over this server's --max-download-size of "
                                   f"{max_size:,} bytes.", code="file_too_large")
                if writer.buffered >= CHUNK:
                    await writer.flush()
                progress(received, total)
        return total is None or received >= total
