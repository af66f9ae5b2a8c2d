"""`localhost-ai serve | models list`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from localhost_ai import settings as settings_module

log = logging.getLogger("localhost_ai")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve(settings: settings_module.Settings) -> None:
    from aiohttp import web

    from localhost_ai.api import create_app
    from localhost_ai.api.keys import JOBS, REGISTRY

    placement = None
    if settings.ray:
        from localhost_ai.runtime import ray_placement  # imports ray: only when asked for

        placement = ray_placement.Placement(settings)
    app = create_app(settings, placement)
    if placement is not None:
        placement.jobs = lambda: app.get(JOBS)  # a node's fetch of a model's files is a gallery job
    registry = app[REGISTRY]
    # lingering_time: after an answer to a body not read whole (a 408, a 413), the rest is
    # read and dropped for at most 2 s, then the connection closes (aiohttp's default is 10 s).
    # keepalive_timeout: a connection whose request line and headers have not all arrived
    # (or that sits idle between requests) is closed after --read-timeout (aiohttp: an hour).
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=settings.shutdown_grace,
                           lingering_time=2.0, keepalive_timeout=settings.read_timeout)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    names = [c.name for c in registry.models()]
    log.info("models folder %s: %d model(s): %s", registry.models_path, len(names), ", ".join(names) or "none")
    for bad in registry.invalid():
        log.warning("left out %s: %s", bad.file, bad.error)
    log.info("listening on http://%s", settings.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()


def _cmd_serve(args: argparse.Namespace, settings: settings_module.Settings) -> int:
    from localhost_ai.api.middlewares import is_loopback

    if not is_loopback(settings.host) and not settings.api_keys and not settings.insecure_no_key:
        print(f"localhost-ai: serving on {settings.host}, beyond loopback, needs --api-keys (API_KEY): without one "
              "anyone who reaches the address can use and change this server. Give --insecure-no-key "
              "(INSECURE_NO_KEY=true) to serve it anyway.", file=sys.stderr)
        return 2
    if args.demo:
        from localhost_ai.demo import install_demo

        installed = install_demo(settings.models_path)
        log.info("demo models ready in %s: %s", settings.models_path, ", ".join(installed))
    if settings.ray:
        from localhost_ai.runtime import ray_placement

        ray_placement.connect(settings.ray)  # on the main thread, before serving: Ray sets its signal handlers
    asyncio.run(_serve(settings))
    return 0


def _cmd_models_list(args: argparse.Namespace, settings: settings_module.Settings) -> int:
    from localhost_ai.registry import Registry

    registry = Registry(settings.models_path)
    registry.refresh(force=True)
    print("installed:")
    for config in registry.models():
        print(f"  {config.name}\t{config.backend}\t{','.join(sorted(config.capabilities))}\t{config.source.name}")
    for bad in registry.invalid():
        where = f" ({bad.field})" if bad.field else ""
        print(f"invalid: {bad.file}{where}: {bad.error}", file=sys.stderr)
    if not args.installed_only:
        installed = {c.name for c in registry.models()}
        entries, problems = asyncio.run(_gallery_entries(settings))
        print("available:")
        for entry in entries:
            mark = " (installed)" if entry.name in installed else ""
            print(f"  {entry.id}{mark}\t{entry.data.get('description') or ''}")
        for problem in problems:
            print(f"gallery problem: {problem}", file=sys.stderr)
    return 0


async def _gallery_entries(settings: settings_module.Settings):
    from localhost_ai.gallery.download import new_session
    from localhost_ai.gallery.index import Galleries

    galleries = Galleries(Galleries.parse_setting(settings.galleries), allow_file_uris=settings.allow_file_uris)
    async with new_session(settings.allow_private_urls) as session:
        return await galleries.entries(session)


def _cmd_gallery_list(args: argparse.Namespace, settings: settings_module.Settings) -> int:
    from localhost_ai.gallery.index import Galleries

    for ref in Galleries.parse_setting(settings.galleries):
        print(f"gallery {ref.name}: {ref.url}")
    entries, problems = asyncio.run(_gallery_entries(settings))
    for entry in entries:
        tags = ",".join(entry.data.get("tags") or [])
        print(f"  {entry.id}\t{entry.data.get('license') or ''}\t{tags}\t{entry.data.get('description') or ''}")
    for problem in problems:
        print(f"gallery problem: {problem}", file=sys.stderr)
    return 0


def _cmd_models_install(args: argparse.Namespace, settings: settings_module.Settings) -> int:
    from localhost_ai.gallery.cli_install import install_all

    return asyncio.run(install_all(settings, args.models, name=args.name))


def _cmd_models_remove(args: argparse.Namespace, settings: settings_module.Settings) -> int:
    from localhost_ai.errors import APIError
    from localhost_ai.gallery.install import check_name, delete_model

    status = 0
    for name in args.models:
        try:
            removed = delete_model(settings.models_path, check_name(name))
        except APIError as exc:
            print(f"localhost-ai: {exc.message}", file=sys.stderr)
            status = 1
            continue
        print(f"removed {name}: {', '.join(removed)}")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localhost-ai", description="Serve local models under the OpenAI API.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the models folder over HTTP")
    settings_module.add_arguments(serve)
    serve.add_argument("--demo", action="store_true", help="put the demo models into the models folder, then serve")
    serve.set_defaults(func=_cmd_serve)

    models = commands.add_parser("models", help="the models folder and the galleries")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    listing = models_commands.add_parser("list", help="installed models (and files left out), then the galleries' models")
    listing.add_argument("--installed-only", action="store_true", help="do not read the galleries")
    listing.set_defaults(func=_cmd_models_list)
    install = models_commands.add_parser("install", help="install models by gallery id (gallery@name or name) or definition URL")
    install.add_argument("models", nargs="+", metavar="NAME|URL")
    install.add_argument("--name", help="install under this name (one model only)")
    install.set_defaults(func=_cmd_models_install)
    remove = models_commands.add_parser("remove", help="remove installed models and the files only they use")
    remove.add_argument("models", nargs="+", metavar="NAME")
    remove.set_defaults(func=_cmd_models_remove)
    for sub in (listing, install, remove):
        settings_module.add_arguments(sub)

    gallery = commands.add_parser("gallery", help="the configured galleries")
    gallery_commands = gallery.add_subparsers(dest="gallery_command", required=True)
    gallery_list = gallery_commands.add_parser("list", help="list the galleries and their models")
    settings_module.add_arguments(gallery_list)
    gallery_list.set_defaults(func=_cmd_gallery_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_module.from_args(args)
    except ValueError as exc:
        print(f"localhost-ai: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    return args.func(args, settings)
