"""GET /backend/monitor, POST /backend/shutdown (LocalAI's names) and GET /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from localhost_ai import metrics
from localhost_ai.api.keys import MANAGER, REGISTRY
from localhost_ai.api import openapi
from localhost_ai.api.routes import SERVER
from localhost_ai.api.validation import read_json
from localhost_ai.errors import InvalidRequest, ModelNotFound

_MODEL_BODY = {"type": "object", "required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}}}


async def _model_name(request: web.Request) -> str:
    """From `?model=NAME` or a JSON body `{"model": NAME}` (LocalAI sends a body with GET)."""
    name = request.query.get("model")
    if name is None and request.can_read_body:
        body = await read_json(request, _MODEL_BODY)
        name = body["model"]
    if not name:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    registry, manager = request.app[REGISTRY], request.app[MANAGER]
    if manager.worker(name) is None and await registry.lookup(name) is None:
        raise ModelNotFound(name, [c.name for c in registry.models()])
    return name


@SERVER.get("/backend/monitor")
@SERVER.post("/backend/monitor")
@openapi.document("A model's worker: state, pid, memory, queue", query={"model": openapi.STRING}, json=openapi.STATUS)
async def monitor(request: web.Request) -> web.Response:
    name = await _model_name(request)
    return web.json_response(await request.app[MANAGER].live_status(name))


@SERVER.post("/backend/load")
@openapi.document("Load a model (and wait until it is ready) without running a call", body=_MODEL_BODY,
                  json=openapi.STATUS)
async def load(request: web.Request) -> web.Response:
    name = await _model_name(request)
    registry = request.app[REGISTRY]
    config = await registry.lookup(name)
    if config is None:
        raise ModelNotFound(name, [c.name for c in registry.models()])
    await request.app[MANAGER].load(config)
    return web.json_response(await request.app[MANAGER].live_status(name))


@SERVER.post("/backend/shutdown")
@openapi.document("Unload a model", body=_MODEL_BODY, json=openapi.obj(model=openapi.STRING, unloaded=openapi.BOOLEAN))
async def shutdown(request: web.Request) -> web.Response:
    name = await _model_name(request)
    unloaded = await request.app[MANAGER].unload(name)
    return web.json_response({"model": name, "unloaded": unloaded})


@SERVER.get("/metrics")
@openapi.document("Prometheus metrics", other={"text/plain": openapi.TEXT})
async def prometheus(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    names = [worker.name for worker in manager.loaded()]
    statuses = await asyncio.gather(*(manager.live_status(name) for name in names))  # each asks its own worker
    metrics.ENGINE.clear()  # a model unloaded since has no engine
    for name, engine in zip(names, (status.get("engine") for status in statuses)):
        for figure in metrics.ENGINE_FIGURES if engine else ():
            if isinstance(engine.get(figure), int):
                metrics.ENGINE.labels(name, figure).set(engine[figure])
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def loaded_models(request: web.Request) -> list[dict[str, Any]]:
    manager = request.app[MANAGER]
    return [manager.status(worker.name) for worker in manager.loaded()]

