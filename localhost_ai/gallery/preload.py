"""Install PRELOAD_MODELS at start-up; the server is ready once they are done."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localhost_ai.config import yamlfile

from localhost_ai.errors import APIError
from localhost_ai.gallery.apply import build_request
from localhost_ai.gallery.index import Galleries
from localhost_ai.gallery.jobs import JobRunner

log = logging.getLogger(__name__)


@dataclass
class PreloadState:
    pending: bool = False
    errors: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)


def preload_bodies(models_json: str | None, config_path: Path | None) -> list[Any]:
    """Apply bodies from `--preload-models` (JSON list) and `--preload-models-config` (YAML list)."""
    bodies: list[Any] = []
    if models_json:
        parsed = json.loads(models_json)
        if not isinstance(parsed, list):
            raise ValueError("PRELOAD_MODELS must be a JSON list of apply requests")
        bodies += parsed
    if config_path is not None:
        parsed = yamlfile.load(config_path.read_text())
        if not isinstance(parsed, list):
            raise ValueError(f"{config_path} must be a YAML list of apply requests")
        bodies += parsed
    return bodies


async def preload(bodies: list[Any], galleries: Galleries, runner: JobRunner, state: PreloadState) -> None:
    state.pending = True
    try:
        jobs = []
        for position, body in enumerate(bodies):
            try:
                request = await build_request(body, galleries, runner.session(), runner.allow_file_uris)
            except APIError as exc:
                state.errors.append(f"preload {position}: {exc.message}")
                log.error("preload %d (%s): %s", position, json.dumps(body)[:200], exc.message)
                continue
            job = runner.submit(request)
            state.jobs.append(job.uuid)
            jobs.append(job)
        for job in jobs:
            await runner.wait(job)
            if job.error:
                state.errors.append(f"preload {job.label}: {job.error}")
                log.error("preload %s failed: %s", job.label, job.error)
            else:
                log.info("preload %s: ready", job.label)
    finally:
        state.pending = False
