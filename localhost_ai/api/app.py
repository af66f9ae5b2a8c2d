"""The application factory: state, middlewares, routes and the models-folder watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web

from localhost_ai.api import (  # noqa: F401  (each declares its routes on its surface)
    audio,
    backend,
    chat,
    completions,
    embeddings,
    gallery,
    health,
    images,
    messages,
    models,
    ollama,
    ollama_models,
    openapi,
    rerank,
    responses,
    speech,
    tokenize,
    webui,
)
from localhost_ai.api.keys import GALLERIES, JOBS, MANAGER, PRELOAD, REGISTRY, RESPONSES, SETTINGS
from localhost_ai.api.middlewares import (
    auth_middleware,
    cors_middleware,
    errors_middleware,
    host_middleware,
    metrics_middleware,
)
from localhost_ai.api.response_store import ResponseStore
from localhost_ai.api.routes import GALLERY, OPENAI, SERVER
from localhost_ai.api.validation import close_parser
from localhost_ai.gallery.index import Galleries
from localhost_ai.gallery.jobs import JobRunner
from localhost_ai.gallery.preload import PreloadState, preload, preload_bodies
from localhost_ai.registry import Registry
from localhost_ai.runtime.manager import ManagerOptions, ModelManager, Placement
from localhost_ai.settings import Settings

log = logging.getLogger(__name__)

async def _watch_models_folder(app: web.Application) -> AsyncIterator[None]:
    """Follow the models folder: new files appear, changed ones reload on next use,
    removed ones are unloaded."""
    registry, manager, settings = app[REGISTRY], app[MANAGER], app[SETTINGS]

    async def loop() -> None:
        seen = registry.generation
        while True:
            await asyncio.sleep(settings.rescan_interval)
            try:
                await registry.update()
                if registry.generation != seen:  # rebuilt, here or before a request was routed
                    seen = registry.generation
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
    close_parser()


async def _gallery_jobs(app: web.Application) -> AsyncIterator[None]:
    """The install-job runner, and PRELOAD_MODELS installed in the background (/readyz
    answers 503 until they are done)."""
    settings = app[SETTINGS]
    runner = JobRunner(settings.models_path, settings.allow_file_uris, settings.max_downloads,
                       allow_private_urls=settings.allow_private_urls, max_file_size=settings.max_download_size,
                       on_installed=lambda name: app[REGISTRY].update(missed=True))
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


def create_app(settings: Settings, placement: Placement | None = None) -> web.Application:
    """`placement`: where models' workers run; a child process each unless told otherwise."""
    # CORS outside the error handler, so error responses carry its headers too.
    middlewares = [metrics_middleware, cors_middleware(settings), errors_middleware]
    host_check = host_middleware(settings)
    if host_check is not None:  # before anything else answers, errors and CORS preflights included
        middlewares.insert(1, host_check)
    if settings.api_keys:
        middlewares.append(auth_middleware(settings.api_keys))
    app = web.Application(middlewares=middlewares, client_max_size=settings.upload_limit_mb * 1024 * 1024)
    app[SETTINGS] = settings
    app[REGISTRY] = Registry(settings.models_path, require_model=settings.require_model)
    app[MANAGER] = ModelManager(ManagerOptions(
        threads=settings.threads,
        context_size=settings.context_size,
        max_loaded_models=settings.max_loaded_models,
        idle_timeout=settings.idle_timeout,
        busy_timeout=settings.busy_timeout,
        max_queue=settings.max_queue,
        shutdown_grace=settings.shutdown_grace,
        **({"placement": placement} if placement is not None else {}),
    ))
    app[REGISTRY].refresh(force=True)
    app[GALLERIES] = Galleries(Galleries.parse_setting(settings.galleries), allow_file_uris=settings.allow_file_uris)
    app[PRELOAD] = PreloadState()
    app[RESPONSES] = ResponseStore(settings.responses_store, settings.responses_store_ttl,
                                   settings.responses_store_size)

    GALLERY.mount(app)  # before the unprefixed /models/{model}, which would shadow its routes
    OPENAI.mount(app)
    SERVER.mount(app)
    ollama.OLLAMA.mount(app)
    app[openapi.OPENAPI] = openapi.build(app)
    app.cleanup_ctx.append(_gallery_jobs)
    app.cleanup_ctx.append(_watch_models_folder)
    return app
