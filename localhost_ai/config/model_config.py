"""What a model is: a YAML file (or a bare weights file) checked and turned into a ModelConfig."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from jsonschema import Draft202012Validator

from localhost_ai.config import localai_fields, yamlfile
from localhost_ai.config.gguf_info import gguf_info
from localhost_ai.config.capabilities import capabilities
from localhost_ai.config.options import BackendOptions
from localhost_ai.config.projector import ProjectorError, projector_media
from localhost_ai.config.sampling import SAMPLING_KEYS
from localhost_ai.config.schema import MIN_MEMORY_LIMIT, model_schema, parse_size
from localhost_ai.config.go_prompts import syntax_of
from localhost_ai.config.gotemplate import TemplateSyntaxError
from localhost_ai.config.templates import PromptTemplateError, compile_template
from localhost_ai.config.validation import SchemaProblem, earliest, first_problem

YAML_SUFFIXES = (".yaml", ".yml")


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
    """The fields every backend reads; a backend's own fields are in `options`, typed by
    the backend's `Options` class."""

    name: str
    backend: str
    model_path: Path
    source: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    context_size: int | None = None
    threads: int | None = None
    context_size_is_default: bool = False  # from --context-size: a model trained on less gets less
    memory_limit: int | None = None  # bytes; None: the worker's default (runtime/worker_main.py)
    replicas: int = 1  # with --ray: copies of the model in the cluster
    # With --ray, what one replica needs of a node: num_cpus, num_gpus, memory (bytes), custom, node_labels.
    resources: dict[str, Any] = field(default_factory=dict)
    installed_from: tuple[dict[str, Any], ...] = ()  # a gallery install's files: filename, uri, sha256
    embeddings: bool = False
    stopwords: tuple[str, ...] = ()
    system_prompt: str | None = None
    templates: dict[str, str] = field(default_factory=dict)
    template_syntax: dict[str, str] = field(default_factory=dict)  # each template's: "go" (LocalAI's) or "jinja"
    roles: dict[str, str] = field(default_factory=dict)  # LocalAI's role prefixes, for its Go templates
    join_chat_messages: str | None = None  # template.join_chat_messages_by_character; None: a newline
    function: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    usage: str = ""
    known_usecases: tuple[str, ...] = ()
    mmproj: Path | None = None  # the multimodal projector (LocalAI's `mmproj`)
    media: tuple[str, ...] = ()  # what the projector reads: "image", "audio"
    options: BackendOptions = field(default_factory=BackendOptions)
    # LocalAI's fields the file sets that have no effect here, each with why (GET /system, the log).
    ignored_fields: tuple[tuple[str, str], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fingerprint: str = ""

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        return {key: self.parameters[key] for key in (*SAMPLING_KEYS, "max_tokens") if key in self.parameters}

    @property
    def capabilities(self) -> frozenset[str]:
        return capabilities(self)

    def with_defaults(self, threads: int | None, context_size: int | None) -> "ModelConfig":
        """The server's --threads and --context-size where the YAML sets neither."""
        return replace(self, threads=self.threads or threads, context_size=self.context_size or context_size,
                       context_size_is_default=self.context_size is None)

    def to_wire(self) -> dict[str, Any]:
        """The plain form that crosses into a worker process: everything but `raw` (the
        file as read, for the server's own use), with YAML's dates and the like as text."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("options", "raw")}
        out.update(model_path=str(self.model_path), source=str(self.source), stopwords=list(self.stopwords),
                   known_usecases=list(self.known_usecases), media=list(self.media),
                   mmproj=str(self.mmproj) if self.mmproj else None,
                   options={f.name: getattr(self.options, f.name) for f in fields(self.options)})
        return json.loads(json.dumps(out, default=str))

    @classmethod
    def from_wire(cls, data: dict[str, Any], options: type[BackendOptions]) -> "ModelConfig":
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values.update(model_path=Path(data["model_path"]), source=Path(data["source"]),
                      stopwords=tuple(data["stopwords"]), known_usecases=tuple(data["known_usecases"]),
                      media=tuple(data.get("media") or ()),
                      installed_from=tuple(data.get("installed_from") or ()),
                      mmproj=Path(data["mmproj"]) if data.get("mmproj") else None,
                      options=options(**data["options"]),
                      ignored_fields=tuple((f, why) for f, why in data.get("ignored_fields") or ()))
        return cls(**values)


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
    if model_file.lower().endswith(".onnx"):  # a Piper voice (its .onnx.json beside it)
        return "piper"
    return None


def model_problem(data: dict[str, Any], options_of: Mapping[str, type[BackendOptions]]) -> SchemaProblem | None:
    """The first field of a model definition that its schema refuses: the fields every
    model has, then those of its backend (named, or told from the weights file's name)."""
    problem = first_problem(Draft202012Validator(model_schema(sorted(options_of))), data, earliest)
    if problem is not None:
        return problem
    backend = data.get("backend") or infer_backend(str((data.get("parameters") or {}).get("model") or ""))
    options = options_of.get(backend or "", BackendOptions)
    return first_problem(Draft202012Validator({"type": "object", "properties": options.schema_properties()}), data,
                         earliest)


def load_yaml_config(path: Path, models_root: Path, backends: Sequence[str] | Mapping[str, type[BackendOptions]]) -> ModelConfig:
    """The one model a YAML file defines; a ConfigError names the field at fault (and, for a
    file that lists several models, which of them)."""
    items = load_yaml_file(path, models_root, backends)
    if len(items) > 1:
        raise ConfigError(path, None, f"lists {len(items)} models; read it with load_yaml_file")
    return _raise(items[0])


def _raise(item: "ModelConfig | ConfigError") -> ModelConfig:
    if isinstance(item, ConfigError):
        raise item
    return item


def load_yaml_file(path: Path, models_root: Path,
                   backends: Sequence[str] | Mapping[str, type[BackendOptions]]) -> list["ModelConfig | ConfigError"]:
    """Read, validate and resolve a YAML model file: one model (a mapping), or several (a list
    of mappings, as LocalAI reads them), each a ModelConfig or the ConfigError naming its field.
    `backends` maps each backend's name to its options class (a plain list: none of their own)."""
    options_of = backends if isinstance(backends, Mapping) else {name: BackendOptions for name in backends}
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot be read: {exc.strerror}") from None
    try:
        data = yamlfile.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, None, f"YAML syntax error{where}: {problem}") from None
    if isinstance(data, dict):
        return [_config_or_error(path, text, data, models_root, options_of, "")]
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return [_config_or_error(path, text, item, models_root, options_of, f"[{i}].") for i, item in enumerate(data)]
    raise ConfigError(path, None, "must be a YAML mapping of fields (or a list of them, one per model)")


def _config_or_error(path: Path, text: bytes, data: dict[str, Any], models_root: Path,
                     options_of: Mapping[str, type[BackendOptions]], where: str) -> "ModelConfig | ConfigError":
    try:
        return _config(path, text, data, models_root, options_of, where)
    except ConfigError as exc:
        return ConfigError(path, where + exc.field if exc.field else where.rstrip(".") or None, exc.reason)


def _config(path: Path, text: bytes, data: dict[str, Any], models_root: Path,
            options_of: Mapping[str, type[BackendOptions]], where: str) -> ModelConfig:
    try:
        ignored = localai_fields.review(data, _own_fields(options_of))
    except localai_fields.FieldRefused as exc:
        raise ConfigError(path, exc.field, f"is refused: {exc.reason}") from None
    problem = model_problem(data, options_of)
    if problem is not None:
        if problem.dotted == "backend":
            raise ConfigError(path, "backend", f"unknown backend {data['backend']!r}; known backends: "
                                               f"{', '.join(sorted(options_of))}")
        raise ConfigError(path, problem.dotted, problem.message)

    parameters = {**{k: data[k] for k in LOCALAI_TOP_LEVEL_SAMPLING if data.get(k) is not None},
                  **dict(data.get("parameters") or {})}
    if isinstance(parameters.get("max_tokens"), int) and parameters["max_tokens"] <= 0:
        del parameters["max_tokens"]  # LocalAI's 0 and -1: no default budget
    model_value = parameters.get("model")
    if not model_value:
        raise ConfigError(path, "parameters.model", "is required: the weights file or folder of this model")
    model_path = resolve_model_file(models_root, path, model_value, "parameters.model")
    backend = data.get("backend") or infer_backend(model_value)
    if backend is None:
        raise ConfigError(path, "backend", "is required when it cannot be told from the model file's name")
    options_class = options_of.get(backend, BackendOptions)
    weights_problem = options_class.weights_problem(model_path)
    if weights_problem:
        raise ConfigError(path, "parameters.model", f"'{model_value}' {weights_problem}")

    section = data.get("template") or {}
    templates, syntax = _templates(path, models_root, section, model_value)

    function = dict(data.get("function") or {})
    _check_function_section(path, function)
    if section.get("use_tokenizer_template"):
        # As in LocalAI: the model's own template comes with its own way of writing calls.
        function["grammar"] = {**(function.get("grammar") or {}), "disable": True}
    mmproj, media = _projector(path, models_root, data.get("mmproj"))
    draft = resolve_model_file(models_root, path, data["draft_model"], "draft_model") \
        if isinstance(data.get("draft_model"), str) and data["draft_model"] else None

    name = data.get("name") or (path.stem if not where else None)
    if name is None:
        raise ConfigError(path, "name", "is required for each model of a file that lists several")
    return ModelConfig(
        name=name,
        backend=backend,
        model_path=model_path,
        source=path,
        parameters=parameters,
        context_size=_context_size(path, data.get("context_size"), model_path),
        threads=_threads(path, data.get("threads")),
        memory_limit=_memory_limit(path, data.get("memory_limit")),
        replicas=data.get("replicas") or 1,
        resources=_resources(data.get("resources")),
        installed_from=tuple(dict(item) for item in data.get("installed_from") or ()),
        embeddings=bool(data.get("embeddings", False)),
        stopwords=tuple(data.get("stopwords") or ()),
        system_prompt=data.get("system_prompt"),
        templates=templates,
        template_syntax=syntax,
        roles={k: v for k, v in (data.get("roles") or {}).items() if isinstance(v, str)},
        join_chat_messages=section.get("join_chat_messages_by_character"),
        function=function,
        description=data.get("description", ""),
        usage=data.get("usage", ""),
        known_usecases=_usecases(data.get("known_usecases")),
        mmproj=mmproj,
        media=media,
        options=options_class.from_yaml(data),
        ignored_fields=tuple(ignored),
        raw=data,
        fingerprint=_fingerprint(text, where.encode(), _stat_key(model_path),
                                 *(_stat_key(p) for p in _companions(model_path, mmproj) + ([draft] if draft else []))),
    )


LOCALAI_TOP_LEVEL_SAMPLING = ("mirostat", "mirostat_tau", "mirostat_eta")
# Fields every backend has that the schema does not describe: the image defaults are checked
# by the diffusers backend's own options; other backends ignore them.
_SHARED_FIELDS = frozenset({"parameters.size", "parameters.steps", "parameters.guidance_scale", "step"})


def _own_fields(options_of: Mapping[str, type[BackendOptions]]) -> frozenset[str]:
    return _own_fields_of(tuple(sorted(options_of.items(), key=lambda item: item[0])))


@lru_cache(maxsize=8)
def _own_fields_of(options_of: tuple[tuple[str, type[BackendOptions]], ...]) -> frozenset[str]:
    """This server's field paths for these backends: the same for every file of a scan."""
    paths = localai_fields.own_fields(model_schema([name for name, _ in options_of])["properties"]) | _SHARED_FIELDS
    for _, options in options_of:
        paths |= localai_fields.own_fields(options.schema_properties())
    return frozenset(paths)


def _context_size(path: Path, value: int | None, model_path: Path) -> int | None:
    """LocalAI's -1: the context the model was trained for, from the GGUF."""
    if value is None or value > 0:
        return value
    trained = gguf_info(model_path).context_length if model_path.suffix.lower() == ".gguf" else None
    if not trained:
        raise ConfigError(path, "context_size", f"is {value}, the model's trained context, but "
                                                f"'{model_path.name}' does not say what it is: give a size")
    return trained


TEMPLATE_KINDS = ("chat", "chat_message", "completion", "edit", "function", "multimodal")
MAX_TEMPLATE_FILE = 256 * 1024
_TEMPLATE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _template_file(models_root: Path, value: str, own: bool = False) -> str | None:
    """LocalAI's file reference: `chat: chatml` reads `chatml.tmpl` from the models folder
    when that file exists (and only from there); otherwise the value is the template. With
    `own`, `value` is the model's file (a path in the folder) and `<value>.tmpl` is read.
    The bytes are kept as they are (no newline translation), as Go reads them."""
    if not own and not _TEMPLATE_FILE.match(value):
        return None
    candidate = models_root / f"{value}.tmpl"
    try:
        if not candidate.is_file() or not candidate.resolve().is_relative_to(models_root.resolve()):
            return None
        if candidate.stat().st_size > MAX_TEMPLATE_FILE:
            return None
        return candidate.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def _templates(path: Path, models_root: Path, section: dict[str, Any], model_value: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each template's text (from the YAML, or a .tmpl file it names) and its syntax, Go's
    or Jinja's, told by parsing; one that is neither refuses the file, naming the field and
    the line and column at fault. With `use_tokenizer_template` the model's own chat
    template is used, as in LocalAI."""
    templates: dict[str, str] = {}
    syntax: dict[str, str] = {}
    for kind, value in section.items():
        if not isinstance(value, str) or not value or kind not in TEMPLATE_KINDS:
            continue
        if section.get("use_tokenizer_template") and kind in ("chat", "chat_message", "function"):
            continue
        templates[kind] = _template_file(models_root, value) or value
    # LocalAI's <parameters.model>.tmpl: the chat, completion and edit template a file does not give.
    own = _template_file(models_root, model_value, own=True)
    if own is not None:
        for kind in ("completion", "edit") if section.get("use_tokenizer_template") else ("chat", "completion", "edit"):
            templates.setdefault(kind, own)
    for kind, source in templates.items():
        try:
            syntax[kind] = syntax_of(kind, source)
        except (TemplateSyntaxError, PromptTemplateError) as exc:
            raise ConfigError(path, f"template.{kind}", f"does not compile: {exc}" if isinstance(exc, TemplateSyntaxError)
                              else str(exc)) from None
    return templates, syntax


def _companions(model_path: Path, mmproj: Path | None) -> list[Path]:
    """Files the model reads besides its weights, whose change reloads it: the projector,
    a Piper voice's .onnx.json."""
    voice_config = Path(str(model_path) + ".json")
    return ([mmproj] if mmproj else []) + ([voice_config] if model_path.suffix == ".onnx" and voice_config.exists()
                                           else [])


def _projector(path: Path, models_root: Path, value: str | None) -> tuple[Path | None, tuple[str, ...]]:
    """The projector file, and what it reads (from its own metadata)."""
    if not value:
        return None, ()
    mmproj = resolve_model_file(models_root, path, value, "mmproj")
    try:
        return mmproj, tuple(sorted(projector_media(mmproj)))
    except ProjectorError as exc:
        raise ConfigError(path, "mmproj", f"'{value}' {exc}") from None
    except OSError as exc:
        raise ConfigError(path, "mmproj", f"'{value}' cannot be read: {exc.strerror}") from None


def _threads(path: Path, value: Any) -> int | None:
    """At most twice the machine's cores: a YAML (a remote one too) cannot start thousands."""
    most = 2 * (os.cpu_count() or 1)
    if isinstance(value, int) and value > most:
        raise ConfigError(path, "threads", f"is {value}; this machine has {os.cpu_count() or 1} cores, so at most "
                                           f"{most} threads are used")
    return value


def _resources(value: Any) -> dict[str, Any]:
    resources = dict(value or {})
    if "memory" in resources:
        resources["memory"] = parse_size(resources["memory"])
    return resources


def _memory_limit(path: Path, value: Any) -> int | None:
    if value is None:
        return None
    limit = parse_size(value)
    if limit < MIN_MEMORY_LIMIT:
        raise ConfigError(path, "memory_limit", f"is {limit:,} bytes; a worker needs at least 1 MiB (write e.g. 2GiB)")
    return limit


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
    """LocalAI writes `known_usecases` as a list or one string, and either spelling: `[rerank]`,
    `rerank`, `FLAG_RERANK`."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    return tuple(item.strip().lower().removeprefix("flag_") for item in items if item.strip())


def bare_weights_config(path: Path, options: Mapping[str, type[BackendOptions]] | None = None) -> ModelConfig:
    """A weights file with no YAML is served under its file name with the backend's defaults."""
    backend = infer_backend(path.name)
    assert backend is not None
    return ModelConfig(
        name=path.name,
        backend=backend,
        model_path=path,
        source=path,
        options=(options or {}).get(backend, BackendOptions)(),
        fingerprint=_fingerprint(path.name.encode(), _stat_key(path), *(_stat_key(p) for p in _companions(path, None))),
    )
