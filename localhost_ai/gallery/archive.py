"""Archives in gallery entries (LocalAI publishes Piper voices as `.tar.gz`): unpacked after
their checksum is verified, into a hidden working folder beside them, holding only regular
files with plain relative names.  Links, devices, absolute names and `..` make the whole
archive refused; the install (gallery/install.py) then checks each file like a downloaded
one before moving it into place."""

from __future__ import annotations

import logging
import lzma
import shutil
import tarfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from localhost_ai.config.model_config import YAML_SUFFIXES
from localhost_ai.gallery.download import DISK_FULL, DownloadError, check_room, sha256_of

log = logging.getLogger(__name__)

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAX_MEMBERS = 1000  # a voice holds three files; an archive of thousands is not a model


class ArchiveError(DownloadError):
    pass


class Stopped(Exception):
    """The install was cancelled while its archive was being unpacked."""


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class Unpacked:
    name: str   # relative to the archive's folder, POSIX
    path: Path  # where it is now, inside the working folder
    sha256: str


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
        raise ArchiveError(f"{archive.name} holds '{member.name}', which is not a regular file (links and devices "
                           "are refused); nothing was unpacked.", code="invalid_archive")
    path = PurePosixPath(name)
    if (path.is_absolute() or path.as_posix() != name or "\\" in name or len(name) > 255
            or any(part in ("", ".", "..") for part in path.parts)):
        raise ArchiveError(f"{archive.name} holds '{member.name}', a name that leads outside its folder; nothing "
                           "was unpacked.", code="invalid_archive")
    if any(part.startswith(".") for part in path.parts) or name.lower().endswith(YAML_SUFFIXES):
        log.info("%s: skipped %s (hidden files and model definitions are not unpacked)", archive.name, name)
        return None
    return name


def unpack(archive: Path, workdir: Path, max_size: int | None, stop: threading.Event) -> list[Unpacked]:
    """Unpack `archive` into `workdir` (which the caller removes afterwards); checked in
    full before a byte is written: member kinds, names, count, and their total size against
    `max_size` and the disk's free space."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            chosen: dict[str, tarfile.TarInfo] = {}
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"{archive.name} holds more than {MAX_MEMBERS} entries; nothing was unpacked.",
                                       code="invalid_archive")
                name = _member_name(archive, member)
                if name is not None:
                    chosen[name] = member  # a later copy of a name replaces an earlier one, as tar does
            check_room(workdir / archive.name, sum(m.size for m in chosen.values()), max_size)
            unpacked = []
            for name, member in chosen.items():
                if stop.is_set():
                    raise Stopped
                member = member.replace(name=name)
                tar.extract(member, workdir, set_attrs=False, filter="data")  # the library's own guard, too
                path = workdir.joinpath(*PurePosixPath(name).parts)
                unpacked.append(Unpacked(name, path, sha256_of(path)))
            return unpacked
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise DownloadError(f"{archive.name}: the disk holding the models folder is full; nothing was unpacked.",
                                code="disk_full") from None
        if exc.errno is not None:
            raise
        raise _unreadable(archive, exc) from None  # gzip and bz2 report bad data as OSError without errno
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise _unreadable(archive, exc) from None


def _unreadable(archive: Path, exc: Exception) -> ArchiveError:
    return ArchiveError(f"{archive.name} is not a readable archive ({exc}); nothing was unpacked.",
                        code="invalid_archive")


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
