"""One module per backend; importing this package registers them all.

Backend modules import their heavy libraries only inside `load`, so importing them
here costs nothing at start-up.  Other packages add backends through the same
`register` hook: by the entry-point group `localhost_ai.backends`, or by naming
their modules in `LOCALHOST_AI_BACKENDS` (comma-separated)."""

import importlib
import logging
import os
from importlib.metadata import entry_points

from localhost_ai.backends import (  # noqa: F401  (each registers itself)
    diffusion,
    fasterwhisper,
    llamacpp,
    openaiwhisper,
    piper,
    sentencetransformers,
)
from localhost_ai.backends.base import Backend, CallControl, backend_class, backend_options

log = logging.getLogger(__name__)


def _load_plugins() -> None:
    modules = [name.strip() for name in os.environ.get("LOCALHOST_AI_BACKENDS", "").split(",") if name.strip()]
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            log.error("backend plugin %s could not be imported: %s", module, exc)
    for entry in entry_points(group="localhost_ai.backends"):
        try:
            entry.load()
        except Exception as exc:
            log.error("backend plugin %s could not be loaded: %s", entry.name, exc)


_load_plugins()

__all__ = ["Backend", "CallControl", "backend_class", "backend_options"]
