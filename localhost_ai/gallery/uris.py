"""Model URIs: http(s)://, huggingface://owner/repo/path, github:owner/repo/path[@ref]
and (only when allowed) file://, turned into something that can be fetched."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from localhost_ai.errors import InvalidRequest

HF_DEFAULT = "https://huggingface.co"
GITHUB_RAW_DEFAULT = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    """Where bytes come from: an HTTP(S) URL, or a local path for file://."""

    uri: str
    url: str | None = None
    path: Path | None = None


def _endpoint(env: str, default: str) -> str:
    return (os.environ.get(env) or default).rstrip("/")


def resolve(uri: str, *, allow_file: bool, param: str = "uri") -> Source:
    """Check and resolve one URI; a bad or forbidden one is a 400 naming `param`."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidRequest("A URI must be a non-empty string.", param=param, code="invalid_uri")
    uri = uri.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in uri):
        raise InvalidRequest(f"The URI {uri!r} contains control characters.", param=param, code="invalid_uri")
    lowered = uri.lower()
    if lowered.startswith(("huggingface://", "hf://")):
        rest = uri.split("://", 1)[1]
        parts = [p for p in rest.split("/") if p]
        if len(parts) < 3 or any(p in (".", "..") for p in parts):
            raise InvalidRequest(f"'{uri}' must look like huggingface://owner/repo/path/in/repo.",
                                 param=param, code="invalid_uri")
        owner, repo, path = parts[0], parts[1], "/".join(parts[2:])
        revision = "main"
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        url = f"{_endpoint('HF_ENDPOINT', HF_DEFAULT)}/{quote(owner)}/{quote(repo)}/resolve/{quote(revision)}/{quote(path)}"
        return Source(uri=uri, url=url)
    if lowered.startswith("github:"):
        rest = uri.split(":", 1)[1].lstrip("/")
        ref = "main"
        if "@" in rest:
            rest, ref = rest.rsplit("@", 1)
        parts = [p for p in rest.split("/") if p]
        if len(parts) < 3 or not ref or any(p in (".", "..") for p in parts):
            raise InvalidRequest(f"'{uri}' must look like github:owner/repo/path[@ref].", param=param, code="invalid_uri")
        url = f"{_endpoint('GITHUB_RAW_ENDPOINT', GITHUB_RAW_DEFAULT)}/{'/'.join(quote(p) for p in parts[:2])}/{quote(ref)}/{quote('/'.join(parts[2:]))}"
        return Source(uri=uri, url=url)
    if lowered.startswith("file://"):
        if not allow_file:
            raise InvalidRequest("file:// URIs are not allowed on this server; start it with --allow-file-uris.",
                                 param=param, code="forbidden_uri")
        path = Path(unquote(urlsplit(uri).path))
        if not path.is_absolute():
            raise InvalidRequest(f"'{uri}' must name an absolute path.", param=param, code="invalid_uri")
        return Source(uri=uri, path=path)
    parsed = urlsplit(uri)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return Source(uri=uri, url=uri)
    raise InvalidRequest(
        f"Unsupported URI '{uri}': use http(s)://, huggingface://owner/repo/path, github:owner/repo/path[@ref]"
        + (" or file://" if allow_file else "") + ".",
        param=param, code="invalid_uri",
    )
