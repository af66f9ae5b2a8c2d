"""One Settings object built from command-line flags and LocalAI's environment names."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _split_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class Settings:
    models_path: Path = Path("./models")
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    context_size: int = 2048
    api_keys: list[str] = field(default_factory=list)
    cors: bool = False
    cors_allow_origins: list[str] = field(default_factory=lambda: ["*"])
    upload_limit_mb: int = 15
    rescan_interval: float = 1.0
    log_level: str = "INFO"
    max_loaded_models: int = 0  # 0: no limit
    idle_timeout: float | None = None
    busy_timeout: float = 300.0
    max_queue: int = 64
    shutdown_grace: float = 10.0
    galleries: str | None = None  # JSON list of {name, url}; None: this project's own
    allow_file_uris: bool = False
    preload_models: str | None = None
    preload_models_config: Path | None = None
    max_downloads: int = 3
    generated_images_path: Path = Path("./generated-images")
    generated_images_max_age: float = 3600.0
    images_path: Path | None = None  # where Nexa's image_path may read from; None: data URLs only
    max_image_size: int = 1024

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: str) -> float:
    """Seconds from '90', '90s', '15m', '1h' or '500ms' (LocalAI writes its timeouts so)."""
    text = value.strip().lower()
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * _UNITS[unit]
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 1h)") from None
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def parse_address(value: str) -> tuple[str, int]:
    """Accept LocalAI's forms: ':8080', '0.0.0.0:8080', 'host:port', '[::1]:8080'."""
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must look like HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


# flag, environment variable, how to read it, help
_OPTIONS: list[tuple[str, str, object, str]] = [
    ("--models-path", "MODELS_PATH", str, "folder of model YAML files and weights (default ./models)"),
    ("--address", "ADDRESS", str, "HOST:PORT to listen on (default 127.0.0.1:8080)"),
    ("--threads", "THREADS", int, "CPU threads per model (default: all cores)"),
    ("--context-size", "CONTEXT_SIZE", int, "default context size for models that set none (default 2048)"),
    ("--api-keys", "API_KEY", str, "comma-separated keys; when set, every API call needs one"),
    ("--cors", "CORS", "bool", "answer CORS preflights and add CORS headers"),
    ("--cors-allow-origins", "CORS_ALLOW_ORIGINS", str, "comma-separated origins for CORS (default *)"),
    ("--upload-limit", "UPLOAD_LIMIT", int, "largest request body in MB (default 15)"),
    ("--log-level", "LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR (default INFO)"),
    ("--max-loaded-models", "MAX_LOADED_MODELS", int, "keep at most N models loaded; the least recently used goes first (default: no limit)"),
    ("--idle-timeout", "IDLE_TIMEOUT", parse_duration, "unload a model that served nothing for this long, e.g. 15m (default: never)"),
    ("--busy-timeout", "BUSY_TIMEOUT", parse_duration, "kill a worker whose call makes no progress for this long (default 5m)"),
    ("--max-queue", "MAX_QUEUE", int, "calls that may wait per model before 429 (default 64)"),
    ("--shutdown-grace", "SHUTDOWN_GRACE", parse_duration, "time running requests get to finish on SIGTERM (default 10s)"),
    ("--galleries", "GALLERIES", str, 'JSON list of {"name", "url"} galleries (default: this project\'s own)'),
    ("--allow-file-uris", "ALLOW_FILE_URIS", "bool", "let model installs read file:// URIs (off by default)"),
    ("--preload-models", "PRELOAD_MODELS", str, "JSON list of /models/apply bodies installed at start-up"),
    ("--preload-models-config", "PRELOAD_MODELS_CONFIG", str, "YAML file with a list of /models/apply bodies"),
    ("--max-downloads", "MAX_DOWNLOADS", int, "files downloaded at once across install jobs (default 3)"),
    ("--generated-images-path", "GENERATED_IMAGES_PATH", str, "where generated images are kept for their URLs (default ./generated-images)"),
    ("--generated-images-max-age", "GENERATED_IMAGES_MAX_AGE", parse_duration, "remove generated images after this long (default 1h)"),
    ("--images-path", "IMAGES_PATH", str, "folder that image_path in image requests may read from (default: none, data URLs only)"),
    ("--max-image-size", "MAX_IMAGE_SIZE", int, "largest width or height of a generated image (default 1024)"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, kind, help_text in _OPTIONS:
        help_text = f"{help_text} [env {env}]"
        if kind == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text)


def from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, object] = {}
    for flag, env, kind, _ in _OPTIONS:
        dest = flag.lstrip("-").replace("-", "_")
        value = getattr(args, dest, None)
        if value is None and environ.get(env, "") != "":
            text = environ[env]
            try:
                value = _env_bool(text) if kind == "bool" else kind(text)  # type: ignore[operator]
            except ValueError as exc:
                raise ValueError(f"{env}={text!r}: {exc}") from None
        if value is not None:
            raw[dest] = value

    settings = Settings()
    if "models_path" in raw:
        settings.models_path = Path(str(raw["models_path"]))
    if "address" in raw:
        settings.host, settings.port = parse_address(str(raw["address"]))
    for dest in ("threads", "context_size", "upload_limit"):
        if dest in raw and int(raw[dest]) <= 0:  # type: ignore[arg-type]
            raise ValueError(f"--{dest.replace('_', '-')} must be a positive number")
    if "threads" in raw:
        settings.threads = int(raw["threads"])  # type: ignore[arg-type]
    if "context_size" in raw:
        settings.context_size = int(raw["context_size"])  # type: ignore[arg-type]
    if "upload_limit" in raw:
        settings.upload_limit_mb = int(raw["upload_limit"])  # type: ignore[arg-type]
    if "api_keys" in raw:
        settings.api_keys = _split_csv(str(raw["api_keys"]))
    if "cors" in raw:
        settings.cors = bool(raw["cors"])
    if "cors_allow_origins" in raw:
        settings.cors_allow_origins = _split_csv(str(raw["cors_allow_origins"]))
    if "max_loaded_models" in raw:
        if int(raw["max_loaded_models"]) < 0:  # type: ignore[arg-type]
            raise ValueError("--max-loaded-models cannot be negative")
        settings.max_loaded_models = int(raw["max_loaded_models"])  # type: ignore[arg-type]
    if "idle_timeout" in raw:
        settings.idle_timeout = float(raw["idle_timeout"]) or None  # type: ignore[arg-type]
    if "busy_timeout" in raw:
        if float(raw["busy_timeout"]) <= 0:  # type: ignore[arg-type]
            raise ValueError("--busy-timeout must be positive")
        settings.busy_timeout = float(raw["busy_timeout"])  # type: ignore[arg-type]
    if "max_queue" in raw:
        if int(raw["max_queue"]) < 1:  # type: ignore[arg-type]
            raise ValueError("--max-queue must be at least 1")
        settings.max_queue = int(raw["max_queue"])  # type: ignore[arg-type]
    if "shutdown_grace" in raw:
        settings.shutdown_grace = float(raw["shutdown_grace"])  # type: ignore[arg-type]
    if "galleries" in raw:
        settings.galleries = str(raw["galleries"])
    if "allow_file_uris" in raw:
        settings.allow_file_uris = bool(raw["allow_file_uris"])
    if "preload_models" in raw:
        settings.preload_models = str(raw["preload_models"])
    if "preload_models_config" in raw:
        settings.preload_models_config = Path(str(raw["preload_models_config"]))
    if "max_downloads" in raw:
        if int(raw["max_downloads"]) < 1:  # type: ignore[arg-type]
            raise ValueError("--max-downloads must be at least 1")
        settings.max_downloads = int(raw["max_downloads"])  # type: ignore[arg-type]
    if "generated_images_path" in raw:
        settings.generated_images_path = Path(str(raw["generated_images_path"]))
    if "generated_images_max_age" in raw:
        settings.generated_images_max_age = float(raw["generated_images_max_age"])  # type: ignore[arg-type]
    if "images_path" in raw:
        settings.images_path = Path(str(raw["images_path"])).expanduser().resolve()
    if "max_image_size" in raw:
        if int(raw["max_image_size"]) < 8:  # type: ignore[arg-type]
            raise ValueError("--max-image-size must be at least 8")
        settings.max_image_size = int(raw["max_image_size"])  # type: ignore[arg-type]
    if "log_level" in raw:
        settings.log_level = str(raw["log_level"]).upper()
    settings.models_path = settings.models_path.expanduser().resolve()
    settings.generated_images_path = settings.generated_images_path.expanduser().resolve()
    return settings
