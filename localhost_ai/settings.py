"""One Settings object built from command-line flags and LocalAI's environment names."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


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
    insecure_no_key: bool = False  # serve beyond loopback without a key
    cors: bool = False
    cors_allow_origins: list[str] = field(default_factory=lambda: ["*"])  # the CLI asks for them with --cors
    allowed_hosts: list[str] = field(default_factory=list)  # Host names served besides loopback ones
    upload_limit_mb: int = 15
    read_timeout: float = 60.0  # seconds a request body may take to arrive
    # Cheap limits checked before a body is validated, templated or tokenized (api/limits.py).
    max_messages: int = 2048
    max_content_parts: int = 4096
    max_tools: int = 128
    max_stop_words: int = 16
    max_schema_size: int = 64 * 1024
    max_embedding_inputs: int = 2048
    max_rerank_documents: int = 1000
    max_audio_seconds: float = 600.0
    rescan_interval: float = 1.0
    disable_webui: bool = False  # no web page at /
    require_model: bool = False  # a request without `model` is a 400, as OpenAI's; off: the only able model answers
    log_level: str = "INFO"
    max_loaded_models: int = 0  # 0: no limit
    idle_timeout: float | None = None
    busy_timeout: float = 300.0
    max_queue: int = 64
    shutdown_grace: float = 10.0
    ray: str | None = None  # a Ray cluster's address (or "auto"): models' replicas run there
    ray_placement_timeout: float = 120.0  # seconds a replica may wait for a node with room
    galleries: str | None = None  # JSON list of {name, url}; None: this project's own
    allow_file_uris: bool = False
    allow_private_urls: bool = False  # gallery fetches to loopback, link-local and private addresses
    preload_models: str | None = None
    preload_models_config: Path | None = None
    max_downloads: int = 3
    max_download_size: int | None = None  # bytes of one downloaded file; None: the disk's free space
    generated_images_path: Path = Path("./generated-images")
    generated_images_max_age: float = 3600.0
    images_path: Path | None = None  # where image_path and chat media paths may read from; None: nowhere
    max_media_size: int = 20 << 20  # bytes of one image or audio part in chat
    media_fetch_timeout: float = 30.0  # seconds to fetch all of one request's http(s) images and audio
    max_media_parts: int = 16  # images and audio parts in one chat request
    max_image_size: int = 1024
    responses_store: int = 1000  # Responses API responses kept for previous_response_id; 0: none
    responses_store_ttl: float = 24 * 3600.0  # seconds a stored response stays after its last use
    responses_store_size: int = 256 << 20  # bytes all stored responses may take

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


def _size(text: str) -> int:
    from localhost_ai.config.schema import parse_size

    return parse_size(text.strip())


def parse_address(value: str) -> tuple[str, int]:
    """Accept LocalAI's forms: ':8080', '0.0.0.0:8080', 'host:port', '[::1]:8080'."""
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must look like HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass(frozen=True)
class Option:
    """One setting: its flag, LocalAI's environment name, how its text is read, and the
    Settings field it fills (default: named after the flag)."""

    flag: str
    env: str
    read: Callable[[str], Any] | None  # None: an on/off switch
    help: str
    field: str | None = None
    minimum: float | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


_OPTIONS = [
    Option("--models-path", "MODELS_PATH", Path, "folder of model YAML files and weights (default ./models)"),
    Option("--address", "ADDRESS", parse_address, "HOST:PORT to listen on (default 127.0.0.1:8080)"),
    Option("--threads", "THREADS", int, "CPU threads per model (default: all cores)", minimum=1),
    Option("--context-size", "CONTEXT_SIZE", int, "default context size for models that set none (default 2048)",
           minimum=1),
    Option("--api-keys", "API_KEY", _split_csv, "comma-separated keys; when set, every API call needs one"),
    Option("--cors", "CORS", None, "answer CORS preflights and add CORS headers"),
    Option("--cors-allow-origins", "CORS_ALLOW_ORIGINS", _split_csv,
           "comma-separated web origins CORS allows, or *; required with --cors"),
    Option("--insecure-no-key", "INSECURE_NO_KEY", None,
           "serve on an address beyond loopback without --api-keys (anyone who reaches it may use it)"),
    Option("--allowed-hosts", "ALLOWED_HOSTS", _split_csv,
           "comma-separated Host names the server answers besides loopback ones; * for any "
           "(default: loopback names only when listening on loopback, any otherwise)"),
    Option("--upload-limit", "UPLOAD_LIMIT", int, "largest request body in MB (default 15)", field="upload_limit_mb",
           minimum=1),
    Option("--read-timeout", "READ_TIMEOUT", parse_duration,
           "time a request body may take to arrive, e.g. 30s (default 1m)", minimum=0.001),
    Option("--max-messages", "MAX_MESSAGES", int, "messages one chat request may hold (default 2048)", minimum=1),
    Option("--max-content-parts", "MAX_CONTENT_PARTS", int, "content parts across one chat's messages (default 4096)",
           minimum=1),
    Option("--max-tools", "MAX_TOOLS", int, "tools (or functions) one request may declare (default 128)", minimum=1),
    Option("--max-stop-words", "MAX_STOP_WORDS", int, "stop words one request may give (default 16)", minimum=1),
    Option("--max-schema-size", "MAX_SCHEMA_SIZE", int,
           "bytes of one tool's or response format's JSON Schema (default 65536)", minimum=64),
    Option("--max-embedding-inputs", "MAX_EMBEDDING_INPUTS", int, "inputs one embeddings request may hold (default 2048)",
           minimum=1),
    Option("--max-rerank-documents", "MAX_RERANK_DOCUMENTS", int, "documents one rerank request may hold (default 1000)",
           minimum=1),
    Option("--max-audio-seconds", "MAX_AUDIO_SECONDS", parse_duration,
           "longest audio one transcription may be, e.g. 10m or 1h (default 10m)", minimum=1),
    Option("--require-model", "REQUIRE_MODEL", None,
           "refuse requests that name no model (400), as OpenAI does; by default the only model able to answer does"),
    Option("--disable-webui", "DISABLE_WEBUI", None, "serve no web page at / (the API is unchanged)"),
    Option("--log-level", "LOG_LEVEL", str.upper, "DEBUG, INFO, WARNING or ERROR (default INFO)"),
    Option("--max-loaded-models", "MAX_LOADED_MODELS", int,
           "keep at most N models loaded; the least recently used goes first (default: no limit)", minimum=0),
    Option("--idle-timeout", "IDLE_TIMEOUT", lambda text: parse_duration(text) or None,
           "unload a model that served nothing for this long, e.g. 15m (default: never)"),
    Option("--busy-timeout", "BUSY_TIMEOUT", parse_duration,
           "kill a worker whose call makes no progress for this long (default 5m)", minimum=0.001),
    Option("--max-queue", "MAX_QUEUE", int, "calls that may wait per model before 429 (default 64)", minimum=1),
    Option("--shutdown-grace", "SHUTDOWN_GRACE", parse_duration,
           "time running requests get to finish on SIGTERM (default 10s)"),
    Option("--ray", "RAY_ADDRESS", str, "run models as replicas in this Ray cluster: its address (HOST:6379) or auto "
           "(default: a child process each, on this machine)"),
    Option("--ray-placement-timeout", "RAY_PLACEMENT_TIMEOUT", parse_duration,
           "time a replica may wait for a node of the cluster with room for it before 503 (default 2m)", minimum=0.001),
    Option("--galleries", "GALLERIES", str, 'JSON list of {"name", "url"} galleries (default: this project\'s own)'),
    Option("--allow-file-uris", "ALLOW_FILE_URIS", None, "let model installs read file:// URIs (off by default)"),
    Option("--allow-private-urls", "ALLOW_PRIVATE_URLS", None,
           "let model installs and chat media URLs fetch from loopback, link-local and private addresses, e.g. a "
           "mirror on the LAN (off by default)"),
    Option("--preload-models", "PRELOAD_MODELS", str, "JSON list of /models/apply bodies installed at start-up"),
    Option("--preload-models-config", "PRELOAD_MODELS_CONFIG", Path, "YAML file with a list of /models/apply bodies"),
    Option("--max-download-size", "MAX_DOWNLOAD_SIZE", lambda text: _size(text),
           "largest file a model install may download, e.g. 20GiB (default: what the disk has free)"),
    Option("--max-downloads", "MAX_DOWNLOADS", int, "files downloaded at once across install jobs (default 3)",
           minimum=1),
    Option("--generated-images-path", "GENERATED_IMAGES_PATH", Path,
           "where generated images are kept for their URLs (default ./generated-images)"),
    Option("--generated-images-max-age", "GENERATED_IMAGES_MAX_AGE", parse_duration,
           "remove generated images after this long (default 1h)"),
    Option("--images-path", "IMAGES_PATH", lambda text: Path(text).expanduser().resolve(),
           "folder that image_path in image requests and local paths or file:// URLs of chat images and audio may "
           "read from (default: none, data URLs only)"),
    Option("--max-media-size", "MAX_MEDIA_SIZE", lambda text: _size(text),
           "largest image or audio file a chat message may carry or link to, e.g. 20MiB (default 20MiB)", minimum=1),
    Option("--media-fetch-timeout", "MEDIA_FETCH_TIMEOUT", parse_duration,
           "time to fetch all of one chat request's http(s) images and audio (default 30s)", minimum=0.001),
    Option("--max-media-parts", "MAX_MEDIA_PARTS", int, "images and audio parts in one chat request (default 16)",
           minimum=1),
    Option("--max-image-size", "MAX_IMAGE_SIZE", int, "largest width or height of a generated image (default 1024)",
           minimum=8),
    Option("--responses-store", "RESPONSES_STORE", int, "responses of the Responses API kept in memory for "
           "previous_response_id and GET /v1/responses/{id} (default 1000; 0 keeps none)", minimum=0),
    Option("--responses-store-ttl", "RESPONSES_STORE_TTL", parse_duration,
           "how long a stored response is kept after its last use (default 24h)", minimum=1),
    Option("--responses-store-size", "RESPONSES_STORE_SIZE", lambda text: _size(text),
           "memory all stored responses may take, counted by their request bodies and output, e.g. 256MiB "
           "(default 256MiB)", minimum=1),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for option in _OPTIONS:
        help_text = f"{option.help} [env {option.env}]"
        if option.read is None:
            parser.add_argument(option.flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(option.flag, default=None, help=help_text)  # read below, like the environment


def _read(option: Option, text: str, source: str) -> Any:
    try:
        value = _env_bool(text) if option.read is None else option.read(text)
    except ValueError as exc:
        raise ValueError(f"{source}={text!r}: {exc}") from None
    if option.minimum is not None and value is not None and value < option.minimum:
        raise ValueError(f"{option.flag} must be at least {option.minimum:g}, got {text!r}")
    return value


def from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    environ = dict(os.environ if environ is None else environ)
    settings = Settings()
    for option in _OPTIONS:
        given = getattr(args, option.dest, None)
        if given is True and option.read is None:
            value = True
        elif given is not None:
            value = _read(option, str(given), option.flag)
        elif environ.get(option.env, "") != "":
            value = _read(option, environ[option.env], option.env)
        else:
            continue
        if option.dest == "address":
            settings.host, settings.port = value
        else:
            setattr(settings, option.field or option.dest, value)
    settings.models_path = settings.models_path.expanduser().resolve()
    settings.generated_images_path = settings.generated_images_path.expanduser().resolve()
    origins_given = args_or_env(args, environ, "--cors-allow-origins")
    if settings.cors and not origins_given:
        raise ValueError("--cors needs --cors-allow-origins (CORS_ALLOW_ORIGINS): the web origins that may call this "
                         "server, comma-separated, or * for any (then any web page can use it).")
    return settings


def args_or_env(args: argparse.Namespace, environ: dict[str, str], flag: str) -> bool:
    """Whether a setting was given, by flag or environment, rather than left to its default."""
    option = next(o for o in _OPTIONS if o.flag == flag)
    return getattr(args, option.dest, None) is not None or environ.get(option.env, "") != ""
