"""The images and audio of chat messages, read from where a client says they are: a data
URL or bare base64 in the body, an http(s) URL the server fetches, or a local file inside
--images-path (a path, or a file:// URL).  Only the bytes are read here; decoding them is
the model's worker's (Pillow and PyAV), so no file a client sends is opened on the loop.

A part that cannot be read is a 400 (413 when too large) naming the message and the part."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web

from localhost_ai.api.keys import SETTINGS
from localhost_ai.config import ModelConfig
from localhost_ai.config.capabilities import AUDIO_INPUT, VISION
from localhost_ai.contract.generate import AudioPart, ImagePart
from localhost_ai.errors import InvalidRequest, PayloadTooLarge
from localhost_ai.gallery.netguard import PrivateAddressError, guarded_session
from localhost_ai.settings import Settings

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
USER_AGENT = "localhost-ai (chat media)"


@dataclass(frozen=True)
class MediaRef:
    """Where a part's bytes are, and where the part sits in the request (for errors)."""

    kind: str  # "image" | "audio"
    source: str
    format: str  # audio: the client's `format`; image: ""
    where: str  # "messages[1].content[2]"


def media_refs(messages: list[dict[str, Any]]) -> dict[tuple[int, int], MediaRef]:
    """Every image and audio part of the (schema-checked) messages, by (message, part) index."""
    refs: dict[tuple[int, int], MediaRef] = {}
    for m, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            where = f"messages[{m}].content[{p}]"
            if part.get("type") == "image_url":
                value = part["image_url"]
                refs[(m, p)] = MediaRef("image", value if isinstance(value, str) else value["url"], "", where)
            elif part.get("type") == "input_audio":
                value = part["input_audio"]
                if isinstance(value, str):  # Nexa's form: the source itself
                    refs[(m, p)] = MediaRef("audio", value, "", where)
                else:
                    refs[(m, p)] = MediaRef("audio", value["data"], value.get("format") or "", where)
    return refs


def check_media(refs: dict[tuple[int, int], MediaRef], config: ModelConfig, settings: Settings) -> None:
    """At most --max-media-parts, each of a kind the model's projector reads: told before
    anything is fetched or decoded."""
    if len(refs) > settings.max_media_parts:
        raise InvalidRequest(f"This request has {len(refs)} images and audio parts; this server reads at most "
                             f"{settings.max_media_parts} in one request (--max-media-parts).", param="messages",
                             code="too_many_media_parts")
    for ref in refs.values():
        capability = VISION if ref.kind == "image" else AUDIO_INPUT
        if capability not in config.capabilities:
            what = "images" if ref.kind == "image" else "audio"
            reads = ("it reads " + " and ".join("images" if m == "image" else m for m in config.media) + " only"
                     if config.media else "it has no projector (mmproj in its YAML)")
            raise InvalidRequest(f"Model '{config.name}' does not read {what} ({reads}); '{ref.where}' is "
                                 f"{'an image' if ref.kind == 'image' else 'audio'}.", param=ref.where,
                                 code="unsupported_content")


async def read_media(request: web.Request, refs: dict[tuple[int, int], MediaRef]) -> dict[tuple[int, int], Any]:
    """Each part's bytes, as the contract's ImagePart or AudioPart."""
    settings = request.app[SETTINGS]
    parts: dict[tuple[int, int], Any] = {}
    session: aiohttp.ClientSession | None = None
    deadline = asyncio.get_running_loop().time() + settings.media_fetch_timeout  # for all of the request's fetches
    try:
        for key, ref in refs.items():
            if ref.source.lower().startswith(("http://", "https://")):
                if session is None:
                    session = guarded_session(settings.allow_private_urls)
                data, mime = await _fetch(session, ref, settings, deadline)
            else:
                data, mime = await asyncio.to_thread(_local, ref, settings)
            if not data:
                raise InvalidRequest(f"'{ref.where}' is empty.", param=ref.where, code="invalid_media")
            fmt = ref.format or (mime.split("/", 1)[1] if "/" in mime else "")
            parts[key] = (ImagePart(data, mime, ref.where) if ref.kind == "image"
                          else AudioPart(data, fmt, ref.where, settings.max_audio_seconds))
    finally:
        if session is not None:
            await session.close()
    return parts


def _too_large(ref: MediaRef, size: int | None, settings: Settings) -> PayloadTooLarge:
    said = f" is {size:,} bytes" if size is not None else " is larger than that"
    return PayloadTooLarge(f"'{ref.where}'{said}; this server reads at most {settings.max_media_size:,} bytes "
                           "per image or audio (--max-media-size).", param=ref.where, code="media_too_large")


def _local(ref: MediaRef, settings: Settings) -> tuple[bytes, str]:
    """A data URL, bare base64, or a file inside --images-path (read on a thread)."""
    source = ref.source.strip()
    match = _DATA_URL.match(source)
    if match:
        if ";base64" not in match.group(2).lower():
            raise InvalidRequest(f"'{ref.where}' is a data URL without ';base64': only base64 data URLs are read.",
                                 param=ref.where, code="invalid_media")
        return _decode(source[match.end():], ref, settings), match.group(1).lower()
    if source.lower().startswith("file://"):
        return _file(unquote(urlsplit(source).path), ref, settings), ""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", source)
    if scheme and len(scheme.group(1)) > 1:  # one letter: a Windows drive, a path
        raise InvalidRequest(f"'{ref.where}' is a {scheme.group(1)}: URL; images and audio are read from data URLs, "
                             "base64, http(s) URLs, or files inside --images-path.", param=ref.where,
                             code="invalid_media")
    if len(source) * 3 // 4 > settings.max_media_size + 3:  # before any pattern reads it
        raise _too_large(ref, len(source) * 3 // 4, settings)
    compact = "".join(source.split())
    if len(compact) >= 16 and len(compact) % 4 == 0 and _BASE64.fullmatch(compact):
        return _decode(compact, ref, settings), ""
    return _file(source, ref, settings), ""


def _decode(text: str, ref: MediaRef, settings: Settings) -> bytes:
    if len(text) * 3 // 4 > settings.max_media_size + 3:
        raise _too_large(ref, len(text) * 3 // 4, settings)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{ref.where}' is not valid base64.", param=ref.where, code="invalid_media") from None


def file_inside(root: Path, value: str) -> Path | None:
    """The regular file `value` names inside `root`, found by its real path (links resolved,
    so none leads out), or None: the one rule for files a request names (Nexa's
    `image_path`, chat media).  `value` holds no NUL (the callers refuse it, naming their field)."""
    try:
        candidate = (root / value).resolve()
        return candidate if candidate.is_relative_to(root) and candidate.is_file() else None
    except (OSError, RuntimeError):  # a name too long, a link loop
        return None


def _file(value: str, ref: MediaRef, settings: Settings) -> bytes:
    """The same rule as image_path: only a file inside --images-path, found by its real path."""
    root = settings.images_path
    if root is None:
        raise InvalidRequest(f"'{ref.where}' names a local file, and this server reads none (no --images-path is "
                             "set): send a data URL, base64 or an http(s) URL.", param=ref.where, code="forbidden_path")
    if "\0" in value:
        raise InvalidRequest(f"'{ref.where}' may not contain a NUL character.", param=ref.where, code="forbidden_path")
    candidate = file_inside(root, value)
    try:
        if candidate is not None:
            size = candidate.stat().st_size
            if size > settings.max_media_size:
                raise _too_large(ref, size, settings)
            with candidate.open("rb") as handle:
                data = handle.read(settings.max_media_size + 1)
            if len(data) > settings.max_media_size:
                raise _too_large(ref, None, settings)
            return data
    except OSError:  # a file that went
        pass
    raise InvalidRequest(f"'{ref.where}' must name a file inside the images folder (--images-path).",
                         param=ref.where, code="forbidden_path")


async def _fetch(session: aiohttp.ClientSession, ref: MediaRef, settings: Settings,
                 deadline: float) -> tuple[bytes, str]:
    """An http(s) URL, by `deadline` (--media-fetch-timeout for all of a request's fetches)
    and within --max-media-size; redirects only to http(s), and (unless
    --allow-private-urls) never to a private or loopback address."""
    url = ref.source.strip()
    timeout = aiohttp.ClientTimeout(total=max(0.001, deadline - asyncio.get_running_loop().time()))
    host = urlsplit(url).hostname or url
    try:
        async with session.get(url, headers={"User-Agent": USER_AGENT}, timeout=timeout, max_redirects=5) as response:
            if response.status != 200:
                raise InvalidRequest(f"Fetching '{ref.where}' from {host} answered HTTP {response.status}.",
                                     param=ref.where, code="media_fetch_failed")
            if (response.content_length or 0) > settings.max_media_size:
                raise _too_large(ref, response.content_length, settings)
            data = bytearray()
            async for block in response.content.iter_chunked(65536):
                data += block
                if len(data) > settings.max_media_size:
                    raise _too_large(ref, None, settings)
            return bytes(data), response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    except PrivateAddressError:
        raise InvalidRequest(f"'{ref.where}' links to {host}, which is not a public address; this server fetches "
                             "only from public ones (--allow-private-urls lets it fetch from others).",
                             param=ref.where, code="forbidden_url") from None
    except asyncio.TimeoutError:
        raise InvalidRequest(f"Fetching '{ref.where}' from {host} did not finish within the request's "
                             f"{settings.media_fetch_timeout:g} seconds for fetches (--media-fetch-timeout).",
                             param=ref.where, code="media_fetch_failed") from None
    except aiohttp.TooManyRedirects:
        raise InvalidRequest(f"Fetching '{ref.where}' from {host} was redirected too many times.", param=ref.where,
                             code="media_fetch_failed") from None
    except (aiohttp.ClientError, ValueError) as exc:
        # aiohttp follows redirects to http(s) only; another scheme is an InvalidUrlRedirectClientError.
        reason = "redirected to a URL that is not http(s)" if "Redirect" in type(exc).__name__ else type(exc).__name__
        raise InvalidRequest(f"Fetching '{ref.where}' from {host} failed: {reason}.", param=ref.where,
                             code="media_fetch_failed") from None
