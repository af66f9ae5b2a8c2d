"""Every error body the suite's clients receive, kept for one last test
(tests/test_zz_error_bodies.py): none may hold exception text or a path on the server."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

MESSAGES: list[tuple[str, str]] = []  # (the test that received it, the error's message)


def _record(status: int, content_type: str, body: bytes) -> None:
    if status < 400 or "json" not in content_type:
        return
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return
    if isinstance(message, str):
        MESSAGES.append((os.environ.get("PYTEST_CURRENT_TEST", "?"), message))


def _httpx_modules() -> list[Any]:
    """httpx, and httpx2 (which newer openai clients use), whichever are installed."""
    import importlib

    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            pass
    return found


@pytest.fixture(scope="session", autouse=True)
def record_error_bodies() -> Any:
    """The client stacks the tests use: requests, httpx (under the openai, anthropic and
    ollama clients), and aiohttp (the in-process test clients)."""
    import aiohttp
    import requests

    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, make: Any) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        setattr(owner, name, make(original))

    def requests_send(send):
        def wrapped(self, request, **kwargs):
            response = send(self, request, **kwargs)
            if not kwargs.get("stream"):
                _record(response.status_code, response.headers.get("Content-Type", ""), response.content)
            return response
        return wrapped

    def httpx_send(send):
        def wrapped(self, request, *args, **kwargs):
            response = send(self, request, *args, **kwargs)
            if not kwargs.get("stream"):
                _record(response.status_code, response.headers.get("Content-Type", ""), response.content)
            return response
        return wrapped

    def httpx_async_send(send):
        async def wrapped(self, request, *args, **kwargs):
            response = await send(self, request, *args, **kwargs)
            if not kwargs.get("stream"):
                _record(response.status_code, response.headers.get("Content-Type", ""), response.content)
            return response
        return wrapped

    def aiohttp_read(read):
        async def wrapped(self):
            body = await read(self)
            _record(self.status, self.headers.get("Content-Type", ""), body)
            return body
        return wrapped

    wrap(requests.Session, "send", requests_send)
    wrap(aiohttp.ClientResponse, "read", aiohttp_read)
    for module in _httpx_modules():
        wrap(module.Client, "send", httpx_send)
        wrap(module.AsyncClient, "send", httpx_async_send)
    yield
    for owner, name, original in reversed(originals):
        setattr(owner, name, original)
