"""GET /healthz (the process answers) and GET /readyz (it can serve requests)."""

from __future__ import annotations

from aiohttp import web

from localhost_ai.api.keys import PRELOAD, REGISTRY
from localhost_ai.api import openapi
from localhost_ai.api.routes import SERVER
from localhost_ai.errors import NotReady


@SERVER.get("/healthz")
@openapi.document("The process answers", json=openapi.obj(status=openapi.STRING))
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@SERVER.get("/readyz")
@openapi.document("The models folder exists and nothing is still preloading", json=openapi.obj(["status"], status=openapi.STRING))
async def readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    if not registry.models_path.is_dir():
        raise NotReady("The models folder does not exist (the server's log names it).", code="not_ready")
    preload = request.app[PRELOAD]
    if preload.pending:
        raise NotReady("Preloading models (PRELOAD_MODELS) has not finished.", code="preloading")
    return web.json_response({"status": "ready"})  # open without a key: nothing more
