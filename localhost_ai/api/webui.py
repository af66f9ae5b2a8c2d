"""The web page at `/`: static files shipped in the package (localhost_ai/webui), served
without a key (the page asks for one) under a strict Content-Security-Policy: scripts,
styles and connections from this server only, no inline script, no other host."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from aiohttp import web

from localhost_ai.api import openapi
from localhost_ai.api.keys import SETTINGS
from localhost_ai.api.middlewares import open_without_key
from localhost_ai.api.routes import SERVER
from localhost_ai.errors import NotFound

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",  # generated images arrive as base64; attachments are previewed from blobs
    "media-src 'self' blob:",  # recorded and spoken audio
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated: a new version's files are never mixed with an old page
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".png": "image/png", ".LICENSE": "text/plain", ".txt": "text/plain"}
_ROOT = files("localhost_ai") / "webui"


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Traversable]:
    found: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            found.update(_walk(entry, f"{prefix}{entry.name}/"))
        elif any(entry.name.endswith(suffix) for suffix in _TYPES):
            found[prefix + entry.name] = entry
    return found


# The files the page may be served from, listed once: a request names one of them or nothing.
_FILES = _walk(_ROOT) if _ROOT.is_dir() else {}


def _not_found(request: web.Request) -> NotFound:
    return NotFound(f"No such endpoint: {request.method} {request.path}", code="unknown_url")


def _serve(request: web.Request, name: str) -> web.Response:
    entry = _FILES.get(name)
    if request.app[SETTINGS].disable_webui or entry is None:
        raise _not_found(request)
    content_type = next(kind for suffix, kind in _TYPES.items() if name.endswith(suffix))
    return web.Response(body=entry.read_bytes(), content_type=content_type, headers=_HEADERS)


@SERVER.get("/")
@openapi.document("The web page: models, gallery, chat, images and audio (off with --disable-webui)",
                  other={"text/html": openapi.TEXT})
@open_without_key
async def page(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


@SERVER.get("/webui/settings.json")
@openapi.document("What the web page needs before its first call: whether the server wants an API key",
                  json=openapi.obj(api_key_required=openapi.BOOLEAN))
@open_without_key
async def page_settings(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.disable_webui:
        raise _not_found(request)
    return web.json_response({"api_key_required": bool(settings.api_keys)},
                             headers={"Cache-Control": "no-store"})


@SERVER.get("/webui/{file:.+}")
@openapi.document("The web page's own files, shipped in the package",
                  other={"text/javascript": openapi.TEXT, "text/css": openapi.TEXT, "text/plain": openapi.TEXT,
                         "image/svg+xml": openapi.TEXT})
@open_without_key
async def page_file(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["file"])
