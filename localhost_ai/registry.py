"""The routing table: model name -> ModelConfig, following the models folder as it changes."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from localhost_ai.backends import backend_options
from localhost_ai.config import ConfigError, ModelConfig, bare_weights_config, load_yaml_file
from localhost_ai.config.model_config import YAML_SUFFIXES, infer_backend
from localhost_ai.errors import InvalidRequest, ModelNotFound, NotFound

log = logging.getLogger(__name__)

# A name not found rebuilds the table at once, at most this often: otherwise it is only
# rebuilt when a file in the folder changed.
FORCED_INTERVAL = 1.0


@dataclass(frozen=True)
class InvalidModelFile:
    file: str
    field: str | None
    error: str


class Registry:
    """Scans the models folder into a table.  Lookups read the table as it is; the server
    brings it up to date with `update`, off the event loop (a stat per file, and reading
    the files again only when one changed), on a timer and before a request is routed."""

    def __init__(self, models_path: Path, min_interval: float = 0.5, require_model: bool = False) -> None:
        self.models_path = models_path
        self.require_model = require_model  # a request that names no model is refused (--require-model)
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._scanning: asyncio.Lock | None = None
        self._stamp: tuple = ()
        self._checked_at = 0.0
        self._forced_at = -FORCED_INTERVAL
        self.generation = 0  # counts rebuilds, whoever made them
        self._models: dict[str, ModelConfig] = {}
        self._invalid: list[InvalidModelFile] = []

    # -- scanning -----------------------------------------------------------------

    def _listing(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.models_path) as entries:
                # Downloads in progress change size constantly and are never models.
                return sorted((e for e in entries if e.is_file() and not e.name.startswith(".")
                               and not e.name.endswith((".partial", ".partial.json"))), key=lambda e: e.name)
        except FileNotFoundError:
            return []

    def refresh(self, force: bool = False, now: bool = False) -> bool:
        """Rescan if any file in the folder changed (`force`: even if none did; `now`: even
        within the interval); return True when the table was rebuilt.  Blocking: the
        server calls it through `update`."""
        with self._lock:
            started = time.monotonic()
            if not (force or now) and started - self._checked_at < self.min_interval:
                return False
            self._checked_at = started
            entries = self._listing()
            try:
                stamp = tuple((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries)
            except OSError:  # a file went away while we looked: look again next time
                return False
            if stamp == self._stamp and not force:
                return False
            self._rebuild(entries)
            self._stamp = stamp
            return True

    async def update(self, missed: bool = False) -> bool:
        """`refresh` on a thread, one at a time.  `missed`: a lookup found no such model, so
        the folder is looked at now, and read whole again at most every FORCED_INTERVAL."""
        started = time.monotonic()
        if not missed and started - self._checked_at < self.min_interval:
            return False
        force = missed and started - self._forced_at >= FORCED_INTERVAL
        if force:
            self._forced_at = started
        if self._scanning is None:
            self._scanning = asyncio.Lock()
        async with self._scanning:
            return await asyncio.to_thread(self.refresh, force, missed)

    def _rebuild(self, entries: list[os.DirEntry]) -> None:
        known = backend_options()
        models: dict[str, ModelConfig] = {}
        invalid: list[InvalidModelFile] = []
        claimed: set[Path] = set()
        defined: dict[str, list[ModelConfig]] = {}

        def reject(path: Path, field: str | None, reason: str) -> None:
            invalid.append(InvalidModelFile(path.name, field, reason))

        for entry in entries:
            path = Path(entry.path)
            if not entry.name.lower().endswith(YAML_SUFFIXES):
                continue
            try:
                items = load_yaml_file(path, self.models_path, known)
            except ConfigError as exc:
                reject(path, exc.field, exc.reason)
                continue
            except Exception:  # a bug met by one file leaves that file out, never the others
                log.exception("reading model file %s failed", path.name)
                reject(path, None, "the file could not be read (the server's log has the details)")
                continue
            for config in items:
                if isinstance(config, ConfigError):
                    reject(path, config.field, config.reason)
                    continue
                defined.setdefault(config.name, []).append(config)
                claimed.add(config.model_path)
                if config.mmproj is not None:
                    claimed.add(config.mmproj)

        # Two files with one name: neither is served (the one that sorts first would take the
        # other's model over), both are listed with the clash, until one goes.
        for name, configs in defined.items():
            if len(configs) == 1:
                models[name] = configs[0]
                continue
            files = ", ".join(c.source.name for c in configs)
            for config in configs:
                reject(config.source, "name", f"'{name}' is defined by {files}: neither is served until one goes")

        for entry in entries:
            path = Path(entry.path)
            if infer_backend(entry.name) is None or path in claimed or entry.name in models:
                continue
            if "mmproj" in entry.name.lower():  # a projector (mmproj-*.gguf) is no model of its own
                continue
            if infer_backend(entry.name) == "piper" and not os.path.exists(entry.path + ".json"):
                continue  # an .onnx file is a Piper voice only with its .onnx.json
            models[entry.name] = bare_weights_config(path, known)

        self._log_changes(models, invalid)
        self._models, self._invalid = models, invalid
        self.generation += 1

    def _log_changes(self, models: dict[str, ModelConfig], invalid: list[InvalidModelFile]) -> None:
        for name, config in models.items():
            old = self._models.get(name)
            if old is None:
                log.info("model %s: found (%s, backend %s)", name, config.source.name, config.backend)
            elif old.fingerprint != config.fingerprint:
                log.info("model %s: changed; it is reloaded on its next use", name)
            if (old is None or old.fingerprint != config.fingerprint) and config.ignored_fields:
                for field, why in config.ignored_fields:
                    log.warning("model %s (%s): field '%s' is ignored: %s", name, config.source.name, field, why)
        for name in self._models.keys() - models.keys():
            log.info("model %s: removed", name)
        old_invalid = set(self._invalid)
        for bad in invalid:
            if bad not in old_invalid:
                where = f", field '{bad.field}'" if bad.field else ""
                log.warning("model file %s left out%s: %s", bad.file, where, bad.error)

    # -- lookups ------------------------------------------------------------------

    def models(self) -> list[ModelConfig]:
        return sorted(self._models.values(), key=lambda c: c.name)

    def invalid(self) -> list[InvalidModelFile]:
        return list(self._invalid)

    def get(self, name: str) -> ModelConfig | None:
        return self._models.get(name)

    async def lookup(self, name: str) -> ModelConfig | None:
        """The model named, with the folder looked at again if it is not (yet) in the table."""
        await self.update()
        if name not in self._models:
            await self.update(missed=True)
        return self._models.get(name)

    async def find(self, name: str | None, capability: str) -> ModelConfig:
        """`resolve`, on a table brought up to date first."""
        if name:
            await self.lookup(name)
        else:
            await self.update()
        return self.resolve(name, capability)

    def resolve(self, name: str | None, capability: str) -> ModelConfig:
        """The model a request names, or with no name the only model that can serve it."""
        if not name and self.require_model:
            raise InvalidRequest("You must provide a model parameter (this server runs with --require-model).",
                                 param="model", code="missing_required_parameter")
        if name:
            config = self._models.get(name)
            if config is None:
                raise ModelNotFound(name, list(self._models))
            if capability not in config.capabilities:
                raise InvalidRequest(
                    f"The model '{name}' does not support {capability}; it supports: "
                    f"{', '.join(sorted(config.capabilities))}.",
                    param="model",
                    code="model_not_supported",
                )
            return config
        able = [c for c in self._models.values() if capability in c.capabilities]
        if len(able) == 1:
            return able[0]
        if not able:
            if not self._models:
                raise NotFound(
                    "No model is installed: the models folder holds none that can be served.",
                    param="model",
                    code="model_not_found",
                )
            raise InvalidRequest(f"No model here supports {capability}.", param="model", code="model_not_supported")
        raise InvalidRequest(
            f"'model' is required: several models can serve {capability}: "
            f"{', '.join(sorted(c.name for c in able))}.",
            param="model",
        )

