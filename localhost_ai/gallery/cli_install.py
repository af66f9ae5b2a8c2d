"""`localhost-ai models install`: the same install path as the server's jobs, with a
progress bar per file, and no server needed."""

from __future__ import annotations

import asyncio
import sys

from tqdm import tqdm

from localhost_ai.errors import APIError
from localhost_ai.gallery.apply import build_request
from localhost_ai.gallery.download import new_session
from localhost_ai.gallery.index import Galleries
from localhost_ai.gallery.install import FileSpec, execute, make_plan
from localhost_ai.settings import Settings


def _body(arg: str, name: str | None) -> dict:
    body: dict = {"url": arg} if "://" in arg or arg.startswith("github:") else {"id": arg}
    if name:
        body["name"] = name
    return body


async def install_all(settings: Settings, models: list[str], name: str | None = None) -> int:
    if name and len(models) > 1:
        print("localhost-ai: --name needs exactly one model", file=sys.stderr)
        return 2
    settings.models_path.mkdir(parents=True, exist_ok=True)
    galleries = Galleries(Galleries.parse_setting(settings.galleries), allow_file_uris=settings.allow_file_uris)
    status = 0
    slots = asyncio.Semaphore(settings.max_downloads)
    async with new_session(settings.allow_private_urls) as session:
        for arg in models:
            bars: dict[str, tqdm] = {}

            def progress(spec: FileSpec, done: int, total: int | None) -> None:
                bar = bars.get(spec.filename)
                if bar is None:
                    bar = bars[spec.filename] = tqdm(total=total, desc=spec.filename, unit="B", unit_scale=True,
                                                     unit_divisor=1024, file=sys.stderr, mininterval=0.2)
                bar.total = total
                bar.update(done - bar.n)

            try:
                request = await build_request(_body(arg, name), galleries, session, settings.allow_file_uris)
                plan = await make_plan(session, request, settings.models_path, settings.allow_file_uris)
                path = await execute(session, plan, settings.models_path, settings.allow_file_uris, progress, slots,
                                     max_file_size=settings.max_download_size)
            except APIError as exc:
                print(f"localhost-ai: {arg}: {exc.message}", file=sys.stderr)
                status = 1
                continue
            finally:
                for bar in bars.values():
                    bar.close()
            print(f"installed {plan.name} -> {path}")
    return status
