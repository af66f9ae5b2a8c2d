"""GET /v1/models and /v1/models/{id} in OpenAI's shape; GET /system for the table's state."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai import __version__
from localhost_ai.api.keys import MANAGER, PRELOAD, REGISTRY
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI, SERVER
from localhost_ai.config import ModelConfig
from localhost_ai.errors import ModelNotFound


def model_object(config: ModelConfig) -> dict[str, Any]:
    try:
        created = int(config.source.stat().st_mtime)
    except OSError:
        created = 0
    # `capabilities` is this server's own (as llama.cpp's server and Ollama list them): what
    # the model does, `vision` and `audio` included where its projector reads them.
    return {"id": config.name, "object": "model", "created": created, "owned_by": "localhost-ai",
            "capabilities": sorted(config.capabilities)}


@OPENAI.get("/models")
@openapi.document("The models, in OpenAI's shape", json=openapi.MODEL_LIST)
async def list_models(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    await registry.update()
    models = registry.models()
    return web.json_response({"object": "list", "data": [model_object(c) for c in models]})


@OPENAI.get("/models/{model:.+}")
@openapi.document("One model, in OpenAI's shape", json=openapi.MODEL)
async def get_model(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    name = request.match_info["model"]
    config = await registry.lookup(name)
    if config is None:
        raise ModelNotFound(name, [c.name for c in registry.models()])
    return web.json_response(model_object(config))


_STATES = {"starting": "loading"}


@SERVER.get("/system")
@openapi.document("Every model with its backend, capabilities and state; the files left out and why", json=openapi.ANY_OBJECT)
async def system(request: web.Request) -> web.Response:
    """Every model the folder defines, which are loaded, and the files that were left out."""
    registry, manager = request.app[REGISTRY], request.app[MANAGER]
    await registry.update()
    loaded = {w.name for w in manager.loaded()}
    models = []
    for c in registry.models():
        status = manager.status(c.name)
        models.append({
            "id": c.name,
            "backend": c.backend,
            "file": c.source.name,
            "capabilities": sorted(c.capabilities),
            "loaded": c.name in loaded,
            "description": c.description,
            "usage": c.usage,
            # LocalAI's fields the file sets that have no effect here (the log says so too).
            "ignored_fields": [{"field": field, "reason": why} for field, why in c.ignored_fields],
            # unloaded, loading (its worker starting), ready or busy (running calls)
            "state": _STATES.get(status["state"], status["state"]),
            "memory": (status.get("memory") or {}).get("rss"),
            "queue_length": status["queue_length"],
            "in_flight": status["in_flight"],
        })
    return web.json_response({
        "version": __version__,
        "models_path": str(registry.models_path),
        "models": models,
        "invalid": [{"file": bad.file, "field": bad.field, "error": bad.error} for bad in registry.invalid()],
        "loaded": [manager.status(name) for name in sorted(loaded)],
        "preload_errors": request.app[PRELOAD].errors,
    })
