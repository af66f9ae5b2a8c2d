"""Small documents (gallery indexes, model definitions) fetched with a size cap."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import yaml

from localhost_ai.config import yamlfile
from localhost_ai.errors import APIError, InvalidRequest
from localhost_ai.gallery.netguard import PrivateAddressError
from localhost_ai.gallery.uris import Source

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
DOCUMENT_SECONDS = 60.0  # the whole fetch of one document, however slowly its bytes come
USER_AGENT = "localhost-ai"


class FetchError(APIError):
    status = 502
    type = "server_error"


async def fetch_bytes(session: aiohttp.ClientSession, source: Source, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    if source.path is not None:
        try:
            size = source.path.stat().st_size
            if size > limit:
                raise FetchError(f"{source.uri} is {size} bytes, over the {limit}-byte limit for a gallery document.")
            return source.path.read_bytes()
        except OSError as exc:
            raise FetchError(f"cannot read {source.uri}: {exc.strerror}") from None
    assert source.url is not None
    try:
        async with session.get(source.url, headers={"User-Agent": USER_AGENT},
                               timeout=aiohttp.ClientTimeout(total=DOCUMENT_SECONDS)) as response:
            if response.status != 200:
                raise FetchError(f"fetching {source.uri} answered HTTP {response.status}")
            data = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                data += chunk
                if len(data) > limit:
                    raise FetchError(f"{source.uri} is larger than the {limit}-byte limit for a gallery document.")
            return bytes(data)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise fetch_failure(source.uri, exc) from None


def fetch_failure(uri: str, exc: BaseException) -> APIError:
    """What a failed fetch is told as: the URL and the kind of failure, never what the
    other side said (its text could be an internal service's), and a refused address."""
    if isinstance(exc, PrivateAddressError):
        return InvalidRequest(f"{uri} points at an address that is not public; this server fetches from public "
                              "addresses only (--allow-private-urls).", code="forbidden_address")
    if isinstance(exc, asyncio.TimeoutError):
        return FetchError(f"fetching {uri} timed out.")
    if isinstance(exc, aiohttp.ClientResponseError):
        return FetchError(f"fetching {uri} answered HTTP {exc.status}.")
    return FetchError(f"fetching {uri} failed: the connection could not be made or was broken.")


def parse_yaml(data: bytes | str, what: str, max_nodes: int = yamlfile.MAX_NODES) -> Any:
    try:
        return yamlfile.load(data, max_nodes)
    except yamlfile.YAMLTooLarge as exc:
        raise InvalidRequest(f"{what} is refused: {exc}.", code="invalid_yaml") from None
    except yaml.YAMLError as exc:  # its text quotes the document, which may be anyone's: only where
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InvalidRequest(f"{what} is not valid YAML{where}.", code="invalid_yaml") from None
