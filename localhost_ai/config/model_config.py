"""What a model is: a YAML file (or a bare weights file) checked and turned into a ModelConfig."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from localhost_ai.config.schema import model_schema
from localhost_ai.config.templates import PromptTemplateError, compile_template

YAML_SUFFIXES = (".yaml", ".yml")
SAMPLING_KEYS = (
    "temperature", "top_p", "top_k", "min_p", "max_tokens", "seed",
    "presence_penalty", "frequency_penalty", "repeat_penalty",
)


class ConfigError(ValueError):
    """A model file that cannot be served; `field` names the part at fault."""

    def __init__(self, path: Path, field: str | None, message: str) -> None:
        where = f"{path.name}" + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")
        self.path = path
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backend: str
    model_path: Path
    source: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    context_size: int | None = None
    threads: int | None = None
    mmap: bool = True
    embeddings: bool = False
    parallel: int | None = None
    prefill_chunk: int | None = None
    stopwords: tuple[str, ...] = ()
    system_prompt: str | None = None
    templates: dict[str, str] = field(default_factory=dict)
    function: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    usage: str = ""
    known_usecases: tuple[str, ...] = ()
    batch_size: int | None = None
    batch_wait_ms: float | None = None
    matryoshka: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fingerprint: str = ""

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        return {key: self.parameters[key] for key in SAMPLING_KEYS if key in self.parameters}

    def as_dict(self) -> dict[str, Any]:
        """The plain form that crosses into a backend (and later a worker process)."""
        return {
            "name": self.name,
            "backend": self.backend,
            "model_path": str(self.model_path),
            "parameters": dict(self.parameters),
            "context_size": self.context_size,
            "threads": self.threads,
            "mmap": self.mmap,
            "embeddings": self.embeddings,
            "parallel": self.parallel,
            "prefill_chunk": self.prefill_chunk,
            "stopwords": list(self.stopwords),
            "system_prompt": self.system_prompt,
            "templates": dict(self.templates),
            "function": dict(self.function),
            "known_usecases": list(self.known_usecases),
            "batch_size": self.batch_size,
            "batch_wait_ms": self.batch_wait_ms,
            "matryoshka": self.matryoshka,
        }


def _fingerprint(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _stat_key(path: Path) -> bytes:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}".encode()


def resolve_model_file(models_root: Path, source: Path, value: str, field_name: str) -> Path:
    """A model file is named relative to the models folder and may not climb out of it
    (a symlink the owner placed inside the folder is theirs to make)."""
    candidate = Path(value)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise ConfigError(source, field_name, f"'{value}' must be a path inside the models folder")
    path = models_root / candidate
    if not path.exists():
        raise ConfigError(source, field_name, f"model file '{value}' does not exist in the models folder")
    return path


def infer_backend(model_file: str) -> str | None:
    if model_file.lower().endswith(".gguf"):
        return "llama-cpp"
    return None


def load_yaml_config(path: Path, models_root: Path, backends: list[str]) -> ModelConfig:
    """Read, validate and resolve one YAML model definition; raise ConfigError naming the field."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, None, f"YAML syntax error{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, "must be a YAML mapping of fields")

    validator = Draft202012Validator(model_schema(backends))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field_name = ".".join(str(p) for p in first.absolute_path) or None
        if first.validator == "enum" and list(first.absolute_path) == ["backend"]:
            message = f"unknown backend {first.instance!r}; known backends: {', '.join(backends)}"
        else:
            message = first.message
        raise ConfigError(path, field_name, message)

    parameters = dict(data.get("parameters") or {})
    model_value = parameters.get("model")
    if not model_value:
        raise ConfigError(path, "parameters.model", "is required: the weights file or folder of this model")
    model_path = resolve_model_file(models_root, path, model_value, "parameters.model")
    backend = data.get("backend") or infer_backend(model_value)
    if backend is None:
        raise ConfigError(path, "backend", "is required when it cannot be told from the model file's name")

    templates = {k: v for k, v in (data.get("template") or {}).items() if isinstance(v, str) and v}
    for kind, source in templates.items():
        try:
            compile_template(source)
        except PromptTemplateError as exc:
            raise ConfigError(path, f"template.{kind}", str(exc)) from None

    function = dict(data.get("function") or {})
    _check_function_section(path, function)

    name = data.get("name") or path.stem
    return ModelConfig(
        name=name,
        backend=backend,
        model_path=model_path,
        source=path,
        parameters=parameters,
        context_size=data.get("context_size"),
        threads=data.get("threads"),
        mmap=data.get("mmap", True),
        embeddings=bool(data.get("embeddings", False)),
        parallel=data.get("parallel"),
        prefill_chunk=data.get("prefill_chunk"),
        stopwords=tuple(data.get("stopwords") or ()),
        system_prompt=data.get("system_prompt"),
        templates=templates,
        function=function,
        description=data.get("description", ""),
        usage=data.get("usage", ""),
        known_usecases=_usecases(data.get("known_usecases")),
        batch_size=data.get("batch_size"),
        batch_wait_ms=data.get("batch_wait_ms"),
        matryoshka=bool(data.get("matryoshka", False)),
        raw=data,
        fingerprint=_fingerprint(text, _stat_key(model_path)),
    )


def _check_function_section(path: Path, function: dict[str, Any]) -> None:
    """The tools prompt compiles and the response regexes are regexes, or the file is refused."""
    if function.get("prompt"):
        try:
            compile_template(function["prompt"])
        except PromptTemplateError as exc:
            raise ConfigError(path, "function.prompt", str(exc)) from None
    for i, pattern in enumerate(function.get("response_regex") or []):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(path, f"function.response_regex[{i}]", f"is not a regular expression: {exc}") from None


def _usecases(value: str | list[str] | None) -> tuple[str, ...]:
    """LocalAI writes `known_usecases` as a list or one string: `[rerank]`, `rerank`."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    return tuple(item.strip().lower() for item in items if item.strip())


def bare_weights_config(path: Path) -> ModelConfig:
    """A weights file with no YAML is served under its file name with the backend's defaults."""
    backend = infer_backend(path.name)
    assert backend is not None
    return ModelConfig(
        name=path.name,
        backend=backend,
        model_path=path,
        source=path,
        fingerprint=_fingerprint(path.name.encode(), _stat_key(path)),
    )
