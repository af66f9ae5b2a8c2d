"""Small documents (gallery indexes, model definitions) fetched with a size cap."""

from __future__ import annotations

from typing import Any

import aiohttp
import yaml

from localhost_ai.config import yamlfile
from localhost_ai.errors import APIError, InvalidRequest
from localhost_ai.gallery.uris import Source

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
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
        async with session.get(source.url, headers={"User-Agent": USER_AGENT}) as response:
            if response.status != 200:
                raise FetchError(f"fetching {source.uri} answered HTTP {response.status}")
            data = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                data += chunk
                if len(data) > limit:
                    raise FetchError(f"{source.uri} is larger than the {limit}-byte limit for a gallery document.")
            return bytes(data)
    except aiohttp.ClientError as exc:
        raise FetchError(f"fetching {source.uri} failed: {exc}") from None


def parse_yaml(data: bytes | str, what: str, max_nodes: int = yamlfile.MAX_NODES) -> Any:
    try:
        return yamlfile.load(data, max_nodes)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{what} is not valid YAML: {exc}", code="invalid_yaml") from None
