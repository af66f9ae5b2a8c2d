"""The application factory: state, middlewares, routes and the models-folder watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web

from localhost_ai.api import backend, chat, completions, health, models
from localhost_ai.api.keys import MANAGER, REGISTRY, SETTINGS
from localhost_ai.api.middlewares import auth_middleware, cors_middleware, errors_middleware, metrics_middleware
from localhost_ai.registry import Registry
from localhost_ai.runtime.manager import ManagerOptions, ModelManager
from localhost_ai.settings import Settings

log = logging.getLogger(__name__)

# Each OpenAI route is also served without the /v1 prefix, as LocalAI does.
_OPENAI_ROUTES = [
    ("GET", "/models", models.list_models),
    ("GET", "/models/{model:.+}", models.get_model),
    ("POST", "/completions", completions.completions),
    ("POST", "/chat/completions", chat.chat_completions),
    ("POST", "/edits", completions.edits),
]


async def _watch_models_folder(app: web.Application) -> AsyncIterator[None]:
    """Follow the models folder: new files appear, changed ones reload on next use,
    removed ones are unloaded."""
    registry, manager, settings = app[REGISTRY], app[MANAGER], app[SETTINGS]

    async def loop() -> None:
        while True:
            await asyncio.sleep(settings.rescan_interval)
            try:
                if registry.refresh():
                    await manager.forget_missing({c.name: c.fingerprint for c in registry.models()})
            except Exception:
                log.exception("rescanning %s failed", registry.models_path)

    manager.start()
    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await manager.close()


def create_app(settings: Settings) -> web.Application:
    middlewares = [metrics_middleware, errors_middleware]
    if settings.cors:
        middlewares.append(cors_middleware(settings))
    if settings.api_keys:
        middlewares.append(auth_middleware(settings.api_keys))
    app = web.Application(middlewares=middlewares, client_max_size=settings.upload_limit_mb * 1024 * 1024)
    app[SETTINGS] = settings
    app[REGISTRY] = Registry(settings.models_path)
    app[MANAGER] = ModelManager(ManagerOptions(
        defaults={"threads": settings.threads, "context_size": settings.context_size},
        max_loaded_models=settings.max_loaded_models,
        idle_timeout=settings.idle_timeout,
        busy_timeout=settings.busy_timeout,
        max_queue=settings.max_queue,
        shutdown_grace=settings.shutdown_grace,
    ))
    app[REGISTRY].refresh(force=True)

    for method, path, handler in _OPENAI_ROUTES:
        app.router.add_route(method, "/v1" + path, handler)
        app.router.add_route(method, path, handler)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/system", models.system)
    app.router.add_get("/backend/monitor", backend.monitor)
    app.router.add_post("/backend/monitor", backend.monitor)
    app.router.add_post("/backend/shutdown", backend.shutdown)
    app.router.add_get("/metrics", backend.prometheus)
    app.cleanup_ctx.append(_watch_models_folder)
    return app
