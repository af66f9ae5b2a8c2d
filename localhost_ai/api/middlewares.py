"""Request id, one error shape, CORS and API keys, in that order around every handler."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable

from aiohttp import web
from yarl import URL

from localhost_ai.errors import APIError, AuthenticationError, NotFound, PayloadTooLarge
from localhost_ai import metrics
from localhost_ai.api.keys import SETTINGS
from localhost_ai.runtime.worker import CURRENT_REQUEST
from localhost_ai.settings import Settings

log = logging.getLogger("localhost_ai.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = "request_id"
OPEN_PATHS = frozenset({"/readyz", "/healthz"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's own id is kept when it looks like one


ErrorBody = Callable[[APIError], dict[str, Any]]


def open_without_key(handler: Handler) -> Handler:
    """A route served without an API key (the web page's static files: the page asks for the key)."""
    handler.open_without_key = True  # type: ignore[attr-defined]
    return handler


def is_open(handler: Handler) -> bool:
    return getattr(handler, "open_without_key", False)


def error_response(error: APIError, shape: ErrorBody | None = None) -> web.Response:
    return web.json_response(shape(error) if shape else error.body(), status=error.status, headers=error.headers)


def errors_as(shape: ErrorBody, schema: dict[str, Any]) -> Callable[[Handler], Handler]:
    """A handler whose API has its own error shape (Anthropic's, Ollama's): every error on
    its route, the key's and the body's included, is answered in it; `schema` documents it."""
    def mark(handler: Handler) -> Handler:
        handler.error_shape = shape  # type: ignore[attr-defined]
        handler.error_schema = schema  # type: ignore[attr-defined]
        return handler
    return mark


def _shape_of(request: web.Request) -> ErrorBody | None:
    return getattr(request.match_info.handler, "error_shape", None)


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> APIError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(
            f"The request body is larger than the limit of {request.app[SETTINGS].upload_limit_mb} MB.",
            code="request_too_large",
        )
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"No such endpoint: {request.method} {request.path}", code="unknown_url")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return APIError(
            f"{request.method} is not allowed on {request.path}; use {', '.join(sorted(exc.allowed_methods))}.",
            status=405,
            type="invalid_request_error",
            code="method_not_allowed",
            headers={"Allow": ",".join(sorted(exc.allowed_methods))},
        )
    return APIError(exc.reason or "HTTP error", status=exc.status, type="invalid_request_error")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route (not raw path, so unknown URLs cannot grow the labels)."""
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    status = 499  # the client went away before an answer
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.REQUESTS.labels(endpoint, request.method, str(status)).inc()
        metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - started)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    CURRENT_REQUEST.set(request_id)
    try:
        response = await handler(request)
    except APIError as exc:
        if exc.status >= 500:
            log.error("[%s] %s %s -> %d %s", request_id, request.method, request.path, exc.status, exc.message)
        response = error_response(exc, _shape_of(request))
        if exc.status == 408:  # the rest of a stalled body is not waited for
            response.force_close()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc, request), _shape_of(request))
    except (asyncio.CancelledError, ConnectionResetError):
        log.info("[%s] %s %s: client went away", request_id, request.method, request.path)
        raise
    except Exception:
        log.exception("[%s] %s %s: unexpected failure", request_id, request.method, request.path)
        response = error_response(APIError("The server failed while handling this request.", code="internal_error"),
                                  _shape_of(request))
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


def is_loopback(name: str) -> bool:
    """localhost (and its subdomains, RFC 6761) or an address in 127.0.0.0/8 or ::1."""
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(request: web.Request) -> str | None:
    try:
        return URL(f"http://{request.host}").host
    except ValueError:
        return None


def host_middleware(settings: Settings) -> Callable:
    """DNS rebinding: a web page on a name its attacker points at 127.0.0.1 reaches a server
    on loopback with that name as its Host.  A server on loopback answers loopback names
    (and --allowed-hosts) only; one listening elsewhere answers --allowed-hosts, when set."""
    allowed = {host.lower().rstrip(".") for host in settings.allowed_hosts}
    on_loopback = is_loopback(settings.host)
    if "*" in allowed or (not on_loopback and not allowed):
        return None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = (_host_name(request) or "").lower().rstrip(".")
        if not (name and (is_loopback(name) or name in allowed)):
            return error_response(APIError(
                f"This server does not answer requests for the host {request.host!r}; start it with "
                "--allowed-hosts to allow that name.", status=403, type="invalid_request_error",
                code="host_not_allowed"))
        return await handler(request)

    return middleware


def own_url(request: web.Request, path: str) -> str:
    """A URL of this server for a response: from the Host the request named only when that
    name was checked (a loopback name, or one of --allowed-hosts); otherwise from the address
    the server was told to serve (a Host header is the client's to write: a job's status
    URL must not point a poller elsewhere)."""
    settings: Settings = request.app[SETTINGS]
    name = (_host_name(request) or "").lower().rstrip(".")
    allowed = {host.lower().rstrip(".") for host in settings.allowed_hosts}
    if name and (is_loopback(name) or name in allowed) and "*" not in allowed:
        return str(request.url.origin().join(URL(path)))
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{request.scheme}://{host}:{settings.port}{path}"


def _cross_site_write(request: web.Request, allowed_origin: str | None) -> bool:
    origin = request.headers.get("Origin")
    if request.method in ("GET", "HEAD", "OPTIONS") or origin is None or allowed_origin:
        return False
    return origin.split("://", 1)[-1] != request.host


def cors_middleware(settings: Settings) -> Callable:
    allowed = settings.cors_allow_origins

    def origin_for(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        return "*" if "*" in allowed else (origin if origin in allowed else None)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = origin_for(request) if settings.cors else None
        if _cross_site_write(request, origin):
            # A web page elsewhere may not make the server install, delete or unload models
            # (a plain-text POST needs no preflight); curl and SDKs send no Origin.
            return error_response(APIError(
                f"Requests from the web origin {request.headers['Origin']} are not allowed; start the server "
                "with --cors (and --cors-allow-origins) to allow them.",
                status=403, type="invalid_request_error", code="origin_not_allowed"))
        if not settings.cors:
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if origin and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = ("Authorization, Content-Type, X-Request-Id, X-Api-Key, "
                                                                "Anthropic-Version, Anthropic-Beta")
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        return response

    return middleware


def auth_middleware(keys: list[str]) -> Callable:
    encoded = [key.encode() for key in keys]

    def valid(presented: str) -> bool:
        # A header's bytes that are not UTF-8 arrive as surrogates: such a key matches none.
        given = presented.encode("utf-8", "surrogateescape")
        return any(hmac.compare_digest(given, key) for key in encoded)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.method == "OPTIONS" or is_open(request.match_info.handler):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header and "X-Api-Key" in request.headers:  # Anthropic's clients send the key so
            scheme, token = "bearer", request.headers["X-Api-Key"]
        elif not header:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>').",
                code="missing_api_key")
        if scheme.lower() != "bearer" or not valid(token.strip()):
            raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
        return await handler(request)

    return middleware
