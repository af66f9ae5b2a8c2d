"""The application factory: state, middlewares, routes and the models-folder watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web

from localhost_ai.api import audio, backend, chat, completions, embeddings, gallery, health, images, models, rerank
from localhost_ai.api.keys import GALLERIES, JOBS, MANAGER, PRELOAD, REGISTRY, SETTINGS
from localhost_ai.api.middlewares import auth_middleware, cors_middleware, errors_middleware, metrics_middleware
from localhost_ai.gallery.index import Galleries
from localhost_ai.gallery.jobs import JobRunner
from localhost_ai.gallery.preload import PreloadState, preload, preload_bodies
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
    ("POST", "/function-calling", chat.function_calling),
    ("POST", "/edits", completions.edits),
    ("POST", "/embeddings", embeddings.embeddings),
    ("POST", "/rerank", rerank.rerank),
    ("POST", "/reranking", rerank.nexa_reranking),
    ("POST", "/audio/transcriptions", audio.transcriptions),
    ("POST", "/audio/translations", audio.translations),
    ("POST", "/images/generations", images.generations),
    ("POST", "/images/edits", images.edits),
    ("POST", "/txt2img", images.txt2img),
    ("POST", "/img2img", images.img2img),
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
    tasks = [asyncio.create_task(loop()), asyncio.create_task(images.remove_old_images(app))]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await manager.close()


async def _gallery_jobs(app: web.Application) -> AsyncIterator[None]:
    """The install-job runner, and PRELOAD_MODELS installed in the background (/readyz
    answers 503 until they are done)."""
    settings = app[SETTINGS]
    runner = JobRunner(settings.models_path, settings.allow_file_uris, settings.max_downloads,
                       on_installed=lambda name: app[REGISTRY].refresh(force=True))
    app[JOBS] = runner
    try:
        bodies = preload_bodies(settings.preload_models, settings.preload_models_config)
    except (ValueError, OSError) as exc:
        log.error("preload: %s", exc)
        app[PRELOAD].errors.append(f"preload settings: {exc}")
        bodies = []
    task = None
    if bodies:
        app[PRELOAD].pending = True
        task = asyncio.create_task(preload(bodies, app[GALLERIES], runner, app[PRELOAD]))
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.close()


def create_app(settings: Settings) -> web.Application:
    # CORS outside the error handler, so error responses carry its headers too.
    middlewares = [metrics_middleware, cors_middleware(settings), errors_middleware]
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
    app[GALLERIES] = Galleries(Galleries.parse_setting(settings.galleries), allow_file_uris=settings.allow_file_uris)
    app[PRELOAD] = PreloadState()

    gallery.add_routes(app)  # before the unprefixed /models/{model}, which would shadow them
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
    app.router.add_get("/generated-images/{name}", images.generated_image, name="generated_image")
    app.cleanup_ctx.append(_gallery_jobs)
    app.cleanup_ctx.append(_watch_models_folder)
    return app
