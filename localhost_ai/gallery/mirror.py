"""A gallery install's files put again into another models folder: a Ray node's own, for a
replica of the model there (runtime/ray_replica.py).  The install recorded where each file
came from and its sha256 (`installed_from`, with the files an archive unpacked and theirs).
The gallery's own download fetches them here (the checksum checked, a broken download
resumed) and an archive is unpacked by the gallery's own code.  A file in place counts only
with its checksum, so a model installed again under the same name with other weights is
fetched again, not served from the old file."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, AsyncIterator, Callable

from localhost_ai.config.model_config import YAML_SUFFIXES
from localhost_ai.errors import InvalidRequest
from localhost_ai.gallery.archive import ArchiveError, Stopped, remove_workdir, unpack
from localhost_ai.gallery.download import download, new_session, open_no_follow, remove_partial, sha256_of, stoppable
from localhost_ai.gallery.install import check_relpath, files_of, model_files
from localhost_ai.gallery.uris import resolve

log = logging.getLogger(__name__)

PARAM = "installed_from"
_LOCK_POLL = 0.2  # seconds between tries for a file's lock that another fetch holds
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
FileProgress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class Item:
    """One file of the install, in the models folder `root`: downloaded to `target`; an
    archive's files, (where, sha256) each, are what it unpacked.  The names are checked
    (plain, relative); where a fetch writes is checked when it writes (`_writable`), so a
    link the folder's owner placed is read through, never written through."""

    root: Path
    filename: str
    target: Path
    uri: str
    sha256: str | None
    unpacked: tuple[tuple[Path, str], ...] = ()

    def wanted(self) -> list[tuple[Path, str | None]]:
        return list(self.unpacked) if self.unpacked else [(self.target, self.sha256)]


def _entries(record: Any) -> list[tuple[dict[str, Any], PurePosixPath, str | None, list[tuple[PurePosixPath, str]]]]:
    """The record's entries checked as anything from a YAML file is: (the entry, its file's
    name, its sha256, the files it unpacked with theirs), every name plain and relative."""
    def sha_of(value: Any) -> str | None:
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"'{PARAM}' gives a sha256 that is not text.", param=PARAM, code="invalid_config")
        return value.lower() if value else None

    if record is not None and not isinstance(record, (list, tuple)):
        raise InvalidRequest(f"'{PARAM}' must be a list of files.", param=PARAM, code="invalid_config")
    found = []
    for entry in record or ():
        if (not isinstance(entry, dict) or not isinstance(entry.get("uri"), str)
                or not isinstance(entry.get("unpacked") or {}, dict)):
            raise InvalidRequest(f"'{PARAM}' lists something that is not a file with a uri.", param=PARAM,
                                 code="invalid_config")
        unpacked = [(_name(name), sha_of(sha) or "") for name, sha in (entry.get("unpacked") or {}).items()]
        found.append((entry, _name(entry.get("filename")), sha_of(entry.get("sha256")), unpacked))
    return found


def items(root: Path, record: Any) -> list[Item]:
    """The record's files in the models folder `root`."""
    base = root.resolve()
    return [Item(base, entry["filename"], base.joinpath(*name.parts), entry["uri"], sha256,
                 tuple((base.joinpath(*inner.parts), inner_sha) for inner, inner_sha in unpacked))
            for entry, name, sha256, unpacked in _entries(record)]


def _checksums(record: Any) -> dict[PurePosixPath, str | None]:
    """Each file the record names (of an archive, the files it unpacked: a node fetches the
    archive itself under a hidden name), with its sha256."""
    return {path: sha for _, name, sha256, unpacked in _entries(record) for path, sha in unpacked or [(name, sha256)]}


_sums: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: the front-end's files hashed


def _regular(path: Path) -> os.stat_result | None:
    """The file's figures (through a link); None when no regular file is there."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _sum_of(path: Path) -> str | None:
    """The file's sha256, hashed again only when it changed (check_owned runs at every load)."""
    info = _regular(path)
    if info is None:
        return None
    key = (str(path), info.st_size, info.st_mtime_ns)
    known = _sums.get(key)
    if known is None:
        try:
            known = sha256_of(path)
        except OSError:  # unreadable: not this content
            return None
        if len(_sums) > 4096:
            _sums.clear()
        _sums[key] = known
    return known


def check_owned(root: Path, name: str, record: Any) -> None:
    """What a node may replace for model `name` is its own, as an install writes only its
    own (install.check_ownership).  A file its record names with a checksum, which another
    model in the front-end's folder (`root`) also names, is refused unless that model
    records the same checksum for it, or the front-end's copy has this checksum (what the
    node writes is then what the front-end serves): else a node would replace the other
    model's file with this one's."""
    ours = [(path, sha) for path, sha in _checksums(record).items() if sha]
    if not ours:
        return
    claims: dict[PurePosixPath, list[tuple[str, str | None]]] = {}  # file or folder -> (model naming it, checksum)
    for other, _, data in model_files(root):
        if other == name:
            continue
        recorded: dict[PurePosixPath, str | None] = {}
        with contextlib.suppress(InvalidRequest):  # a record that does not check out claims nothing by it
            recorded = _checksums(data.get(PARAM))
        named = set(recorded) | {PurePosixPath(filename) for filename in files_of(data)}
        for path in named:
            if path.parts and not path.is_absolute() and ".." not in path.parts:  # a name in the folder ("." is none)
                claims.setdefault(path, []).append((other, recorded.get(path)))
    for path, sha in ours:
        for claimed in (path, *path.parents):  # the file, or a folder holding it
            for other, their_sha in claims.get(claimed, ()):
                if their_sha == sha or _sum_of(root.joinpath(*path.parts)) == sha:
                    continue  # the same content for both, or this model's record is what the front-end has
                raise InvalidRequest(f"its '{PARAM}' gives {path} a checksum that model '{other}', which uses that "
                                     f"file too, does not have: a node would replace that model's file. Install "
                                     f"'{name}' again under files of its own.", param=PARAM, code="file_not_owned")


def _name(name: Any) -> PurePosixPath:
    """A file name of the record: plain, relative, and never a model definition (as an install)."""
    if isinstance(name, str) and name.lower().endswith(YAML_SUFFIXES):
        raise InvalidRequest(f"'{PARAM}' names a model definition ({name}); it is not a file to fetch.", param=PARAM,
                             code="invalid_filename")
    return check_relpath(name, PARAM)


def _inside(item: Item, target: Path) -> None:
    """Where a fetch writes beside `target` (a lock, a checksum mark, a partial file) is in
    the models folder: a linked folder leading out is refused."""
    if not Path(os.path.realpath(target.parent)).is_relative_to(item.root):
        raise InvalidRequest(f"'{target.relative_to(item.root)}' would be written outside the models folder.",
                             param=PARAM, code="invalid_filename")


def _writable(item: Item, target: Path) -> None:
    """A file a fetch writes: in the models folder, and not a link (a link the folder's
    owner placed is theirs: read through, never written through)."""
    _inside(item, target)
    if target.is_symlink():
        raise InvalidRequest(f"{target.relative_to(item.root)} is a link on this node with other content than the "
                             f"install's; it is not replaced from here.", param=PARAM, code="file_exists")


def _mark(target: Path) -> Path:
    return target.with_name(f".{target.name}.sha256")


def in_place(item: Item, target: Path, sha256: str | None) -> bool:
    """The file is there (through a link too) with its checksum.  A check that passed is
    remembered beside the file with its size and modification time, so a large model is
    hashed again only when it changed, not at every replica's start."""
    info = _regular(target)
    if info is None:
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
    with contextlib.suppress(OSError, InvalidRequest):
        _inside(item, target)
        with open_no_follow(_mark(target), "w") as handle:
            json.dump(key, handle)
    return True


def _there(item: Item, target: Path, sha: str | None, verify: bool) -> bool:
    """`verify`: the file counts only with its checksum (a node's own folder); without,
    anything there counts, a link too (the front-end's folder: its files are its installs'
    and its users', and never replaced from a node)."""
    return in_place(item, target, sha) if verify else os.path.lexists(target)


def missing(wanted: list[Item], verify: bool = True) -> list[Item]:
    """The items not in place (see _there)."""
    return [item for item in wanted if not all(_there(item, target, sha, verify) for target, sha in item.wanted())]


@contextlib.asynccontextmanager
async def node_lock(wanted: list[Item]) -> AsyncIterator[None]:
    """One fetch of each file at a time on this node (replicas are processes, and two models
    may share a file): a lock file beside each, taken in one order so two fetches never
    wait for each other.  Waited for without a thread, so a fetch cancelled while it
    waits leaves nothing waiting behind it."""
    with contextlib.ExitStack() as held:
        for item in sorted({item.target: item for item in wanted}.values(), key=lambda item: item.target):
            target = item.target
            _inside(item, target)  # before making its folder: a linked folder leading out gets none
            target.parent.mkdir(parents=True, exist_ok=True)
            lock = held.enter_context(open_no_follow(target.with_name(f".{target.name}.fetch.lock"), "w"))
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(_LOCK_POLL)
        yield  # closing each lock file releases its lock


async def put_in_place(wanted: list[Item], fetch: dict[str, Any], progress: FileProgress, verify: bool = True) -> None:
    """Download each item (an archive: and unpack it).  `fetch`: the front-end's
    allow_private_urls, allow_file_uris and max_download_size; `verify`: as `missing`'s.
    Cancelled, the file being downloaded leaves no partial behind (killed, it does: the next
    fetch resumes it)."""
    max_size = fetch.get("max_download_size")
    async with new_session(bool(fetch.get("allow_private_urls"))) as session:
        for item in wanted:
            source = resolve(item.uri, allow_file=bool(fetch.get("allow_file_uris")), param=PARAM)
            # An archive, and any file for the front-end's folder, goes to a hidden name of its own
            # (never over a file of that name, nor into the partial file an install there resumes).
            hidden = item.unpacked or not verify
            target = item.target.with_name(f".{item.target.name}.fetch") if hidden else item.target
            _writable(item, target)
            log.info("fetching %s for this node from %s", item.filename, item.uri)
            try:
                await download(session, source, target, item.sha256,
                               lambda done, total, name=item.filename: progress(name, done, total), max_size)
            except asyncio.CancelledError:
                remove_partial(target)
                raise
            if item.unpacked:
                try:
                    await _unpack(item, target, max_size, verify)
                finally:
                    target.unlink(missing_ok=True)
            elif hidden:
                try:
                    _inside(item, item.target)
                    _publish(target, item.target, replace=False)
                finally:
                    target.unlink(missing_ok=True)


def _publish(source: Path, target: Path, replace: bool) -> None:
    """`source` becomes `target`.  Without `replace` (the front-end's folder) a file, or a
    link, that appeared there meanwhile (an install's, a user's) is kept, and `source`
    dropped: a hard link is made, which never replaces; where the file system has none
    (some network and FUSE mounts), a rename where nothing is."""
    try:
        if replace:
            os.replace(source, target)
            return
        try:
            os.link(source, target)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if not os.path.lexists(target):
                os.replace(source, target)
    finally:
        source.unlink(missing_ok=True)


async def _unpack(item: Item, archive: Path, max_size: int | None, verify: bool) -> None:
    """The archive's files where the install put them, found by their checksums (`verify`:
    as `missing`'s; a file there that counts is left as it is)."""
    workdir = Path(tempfile.mkdtemp(prefix=f".{item.target.name}.", suffix=".unpack", dir=archive.parent))

    def place(stop: threading.Event) -> None:
        try:
            by_sum = {member.sha256: member.path for member in unpack(archive, workdir, max_size, stop)}
            uses = collections.Counter(sha for _, sha in item.unpacked)  # the last use of a content moves it
            for index, (target, sha) in enumerate(item.unpacked):
                if stop.is_set():
                    raise Stopped
                uses[sha] -= 1
                if _there(item, target, sha, verify):  # checked here: a link to a file placed just now reads through
                    continue
                if verify:
                    _writable(item, target)
                else:  # the front-end's folder: what appeared meanwhile is kept, never written through
                    _inside(item, target)
                if sha not in by_sum:
                    raise ArchiveError(f"{item.filename} no longer holds {target.name} as it was installed "
                                       f"(sha256 {sha}); install the model again.", code="checksum_mismatch")
                target.parent.mkdir(parents=True, exist_ok=True)
                ready = workdir / f".place-{index}"
                if uses[sha]:  # two names for one content: a copy for each but the last
                    shutil.copyfile(by_sum[sha], ready)
                else:
                    os.replace(by_sum[sha], ready)
                _publish(ready, target, replace=verify)
        finally:
            remove_workdir(workdir)

    await stoppable(place)
