"""Archives in gallery entries (LocalAI publishes Piper voices as `.tar.gz`): unpacked after
their checksum is verified, in one pass over the decompressed stream, into a hidden working
folder; only regular files with plain relative names.  Links, devices, absolute names, `..`,
a name given twice, or a file where another member is a folder make the whole archive
refused.  Every decompressed byte counts against the limit (--max-download-size, else the
disk's free space), and a cancelled install stops the pass at its next read.  The install
(gallery/install.py) then checks each file like a downloaded one before moving it into place."""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import shutil
import tarfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from localhost_ai.config.model_config import YAML_SUFFIXES
from localhost_ai.gallery.download import DISK_FULL, DownloadError, TooLarge, sha256_of

log = logging.getLogger(__name__)

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAX_MEMBERS = 1000  # a voice holds three files; an archive of thousands is not a model
# Extended headers (pax, GNU long names) are read whole into memory, and Python's tarfile
# before 3.11.10 parses pax headers in time quadratic in their length: a real one is a few
# hundred bytes.
MAX_HEADER = 8 * 1024
MAX_PART_BYTES = 255  # a file name part, as the file system takes it


class ArchiveError(DownloadError):
    pass


class Stopped(Exception):
    """The install was cancelled while its archive was being unpacked."""


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class Unpacked:
    name: str   # relative to the archive's root, POSIX
    path: Path  # where it is now, inside the working folder
    sha256: str


class _Metered:
    """The decompressed stream, counted against `limit` and stopped when asked."""

    def __init__(self, raw: BinaryIO, limit: int, name: str, stop: threading.Event) -> None:
        self.raw, self.limit, self.name, self.stop = raw, limit, name, stop
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise Stopped
        data = self.raw.read(size)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise TooLarge(f"{self.name} unpacks to more than {self.limit:,} bytes (--max-download-size, or the "
                           "disk's free space); nothing was unpacked.", code="file_too_large")
        return data


class _BoundedInfo(tarfile.TarInfo):
    """A member whose extended header is larger than any real one is refused before it is read."""

    def _proc_member(self, tar: tarfile.TarFile) -> Any:  # tarfile's hook for each header it reads
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK) and self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"an extended header of {self.size:,} bytes")
        return super()._proc_member(tar)


def _decompressed(path: Path) -> BinaryIO:
    with path.open("rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return path.open("rb")


def _refused(archive: Path, member: str, why: str) -> ArchiveError:
    return ArchiveError(f"{archive.name} holds '{member[:300]}', {why}; nothing was unpacked.", code="invalid_archive")


def _member_name(archive: Path, member: tarfile.TarInfo) -> str | None:
    """The member's plain relative name, None for what is skipped (folders, hidden files,
    model definitions); ArchiveError for what no model archive holds."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if member.isdir() or not name or name == ".":
        return None
    if not member.isfile():
        raise _refused(archive, member.name, "which is not a regular file (links and devices are refused)")
    path = PurePosixPath(name)
    if (path.is_absolute() or path.as_posix() != name or "\\" in name or "\0" in name
            or any(part in ("", ".", "..") for part in path.parts)):
        raise _refused(archive, member.name, "a name that leads outside its folder")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES for part in path.parts):
        raise _refused(archive, member.name, f"a name with a part longer than {MAX_PART_BYTES} bytes")
    if any(part.startswith(".") for part in path.parts) or name.lower().endswith(YAML_SUFFIXES):
        log.info("%s: skipped %s (hidden files and model definitions are not unpacked)", archive.name, name)
        return None
    return name


def unpack(archive: Path, workdir: Path, max_size: int | None, stop: threading.Event) -> list[Unpacked]:
    """Unpack `archive` into `workdir` (which the caller removes afterwards)."""
    limit = shutil.disk_usage(workdir).free
    if max_size is not None:
        limit = min(limit, max_size)
    names: dict[str, Unpacked] = {}
    folders: set[str] = set()
    try:
        with _decompressed(archive) as raw:
            stream = _Metered(raw, limit, archive.name, stop)
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedInfo) as tar:  # type: ignore[arg-type]
                for count, member in enumerate(tar, start=1):
                    if count > MAX_MEMBERS:
                        raise ArchiveError(f"{archive.name} holds more than {MAX_MEMBERS} entries; nothing was "
                                           "unpacked.", code="invalid_archive")
                    name = _member_name(archive, member)
                    if name is None:
                        continue
                    parents = {p.as_posix() for p in PurePosixPath(name).parents if p.as_posix() != "."}
                    if name in names or name in folders or parents & names.keys():
                        raise _refused(archive, member.name, "a name given twice, or both a file and a folder")
                    folders |= parents
                    tar.extract(member.replace(name=name), workdir, set_attrs=False, filter="data")
                    path = workdir.joinpath(*PurePosixPath(name).parts)
                    names[name] = Unpacked(name, path, sha256_of(path))
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise DownloadError(f"{archive.name}: the disk holding the models folder is full; nothing was unpacked.",
                                code="disk_full") from None
        if exc.errno is not None:
            raise
        raise _unreadable(archive, exc) from None  # gzip and bz2 report bad data as OSError without errno
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise _unreadable(archive, exc) from None
    return list(names.values())


def _unreadable(archive: Path, exc: Exception) -> ArchiveError:
    return ArchiveError(f"{archive.name} is not a readable archive ({exc}); nothing was unpacked.",
                        code="invalid_archive")


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
