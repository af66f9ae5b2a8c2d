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
    from localhost_ai.api.keys import REGISTRY

    app = create_app(settings)
    registry = app[REGISTRY]
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=settings.shutdown_grace)
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
    if args.demo:
        from localhost_ai.demo import install_demo

        installed = install_demo(settings.models_path)
        log.info("demo models ready in %s: %s", settings.models_path, ", ".join(installed))
    asyncio.run(_serve(settings))
    return 0


def _cmd_models_list(args: argparse.Namespace, settings: settings_module.Settings) -> int:
    from localhost_ai.registry import Registry, capabilities

    registry = Registry(settings.models_path)
    registry.refresh(force=True)
    for config in registry.models():
        print(f"{config.name}\t{config.backend}\t{','.join(sorted(capabilities(config)))}\t{config.source.name}")
    for bad in registry.invalid():
        where = f" ({bad.field})" if bad.field else ""
        print(f"invalid: {bad.file}{where}: {bad.error}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localhost-ai", description="Serve local models under the OpenAI API.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the models folder over HTTP")
    settings_module.add_arguments(serve)
    serve.add_argument("--demo", action="store_true", help="put the demo models into the models folder, then serve")
    serve.set_defaults(func=_cmd_serve)

    models = commands.add_parser("models", help="the models folder")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    listing = models_commands.add_parser("list", help="list the servable models and the files left out")
    settings_module.add_arguments(listing)
    listing.set_defaults(func=_cmd_models_list)
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
