"""A gallery install's files put again into another models folder: a Ray node's own, for a
replica of the model there (runtime/ray_replica.py).  The install recorded where each file
came from and its sha256 (`installed_from`, with the files an archive unpacked and theirs).
The gallery's own download fetches them here (the checksum checked, a broken download
resumed) and an archive is unpacked by the gallery's own code.  A file in place counts only
with its checksum, so a model installed again under the same name with other weights is
fetched again, not served from the old file."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from localhost_ai.config.model_config import YAML_SUFFIXES
from localhost_ai.errors import InvalidRequest
from localhost_ai.gallery.archive import ArchiveError, Stopped, remove_workdir, unpack
from localhost_ai.gallery.download import download, new_session, open_no_follow, remove_partial, sha256_of
from localhost_ai.gallery.install import check_relpath, target_path
from localhost_ai.gallery.uris import resolve

log = logging.getLogger(__name__)

PARAM = "installed_from"
FileProgress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class Item:
    """One file of the install: downloaded to `target`; an archive's files, (where, sha256)
    each, are what it unpacked."""

    filename: str
    target: Path
    uri: str
    sha256: str | None
    unpacked: tuple[tuple[Path, str], ...] = ()

    def wanted(self) -> list[tuple[Path, str | None]]:
        return list(self.unpacked) if self.unpacked else [(self.target, self.sha256)]


def items(root: Path, record: Any) -> list[Item]:
    """The record, checked as anything from a YAML file is: every name inside `root`."""
    found = []
    for entry in record or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
            raise InvalidRequest(f"'{PARAM}' lists something that is not a file with a uri.", param=PARAM,
                                 code="invalid_config")
        target = _target(root, entry.get("filename"))
        unpacked = tuple((_target(root, name), str(sha).lower()) for name, sha in (entry.get("unpacked") or {}).items())
        sha256 = entry.get("sha256")
        found.append(Item(entry["filename"], target, entry["uri"], sha256.lower() if sha256 else None, unpacked))
    return found


def _target(root: Path, name: Any) -> Path:
    """A file's place in `root`: inside it, and never a model definition (as an install)."""
    if isinstance(name, str) and name.lower().endswith(YAML_SUFFIXES):
        raise InvalidRequest(f"'{PARAM}' names a model definition ({name}); it is not a file to fetch.", param=PARAM,
                             code="invalid_filename")
    return target_path(root, check_relpath(name, PARAM), PARAM)


def _mark(target: Path) -> Path:
    return target.with_name(f".{target.name}.sha256")


def in_place(target: Path, sha256: str | None) -> bool:
    """The file is there with its checksum.  A check that passed is remembered beside the
    file with its size and modification time, so a large model is hashed again only when
    it changed, not at every replica's start."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if not sha256:
        return True
    key = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": sha256}
    with contextlib.suppress(OSError, ValueError):
        with os.fdopen(os.open(_mark(target), os.O_RDONLY | os.O_NOFOLLOW)) as handle:
            if json.load(handle) == key:
                return True
    if sha256_of(target) != sha256:
        return False
    with contextlib.suppress(OSError):
        with open_no_follow(_mark(target), "w") as handle:
            json.dump(key, handle)
    return True


def missing(wanted: list[Item], verify: bool = True) -> list[Item]:
    """The items not in place.  `verify`: a file there counts only with its checksum (a
    node's own folder); without, any file there counts (the front-end's own folder, whose
    files are its installs' and its users': never replaced from here)."""
    return [item for item in wanted
            if not all(in_place(target, sha if verify else None) for target, sha in item.wanted())]


@contextlib.asynccontextmanager
async def node_lock(wanted: list[Item]) -> AsyncIterator[None]:
    """One fetch of each file at a time on this node (replicas are processes, and two models
    may share a file): a lock file beside each, taken in one order so two fetches never
    wait for each other."""
    with contextlib.ExitStack() as held:
        for target in sorted({item.target for item in wanted}):
            target.parent.mkdir(parents=True, exist_ok=True)
            lock = held.enter_context(open_no_follow(target.with_name(f".{target.name}.fetch.lock"), "w"))
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        yield  # closing each lock file releases its lock


async def put_in_place(wanted: list[Item], fetch: dict[str, Any], progress: FileProgress) -> None:
    """Download each item (an archive: and unpack it).  `fetch`: the front-end's
    allow_private_urls, allow_file_uris and max_download_size.  Cancelled, the file being
    downloaded leaves no partial behind."""
    max_size = fetch.get("max_download_size")
    async with new_session(bool(fetch.get("allow_private_urls"))) as session:
        for item in wanted:
            source = resolve(item.uri, allow_file=bool(fetch.get("allow_file_uris")), param=PARAM)
            log.info("fetching %s for this node from %s", item.filename, item.uri)
            try:
                wrote = await download(session, source, item.target, item.sha256,
                                       lambda done, total, name=item.filename: progress(name, done, total), max_size)
            except asyncio.CancelledError:
                remove_partial(item.target)
                raise
            if item.unpacked:
                try:
                    await _unpack(item, max_size)
                finally:
                    if wrote:
                        item.target.unlink(missing_ok=True)


async def _unpack(item: Item, max_size: int | None) -> None:
    """The archive's files where the install put them, found by their checksums."""
    stop = threading.Event()
    workdir = Path(tempfile.mkdtemp(prefix=f".{item.target.name}.", suffix=".unpack", dir=item.target.parent))

    def place() -> None:
        try:
            by_sum = {member.sha256: member.path for member in unpack(item.target, workdir, max_size, stop)}
            placed: dict[str, Path] = {}
            for target, sha in item.unpacked:
                if stop.is_set():
                    raise Stopped
                if in_place(target, sha):
                    continue
                if sha not in by_sum:
                    raise ArchiveError(f"{item.filename} no longer holds {target.name} as it was installed "
                                       f"(sha256 {sha}); install the model again.", code="checksum_mismatch")
                target.parent.mkdir(parents=True, exist_ok=True)
                if sha in placed:  # two names for one content
                    shutil.copyfile(placed[sha], target)
                else:
                    os.replace(by_sum[sha], target)
                    placed[sha] = target
        finally:
            remove_workdir(workdir)

    work = asyncio.ensure_future(asyncio.to_thread(place))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await work
        raise
