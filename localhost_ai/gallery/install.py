"""Install a model from a gallery entry, a definition URL or a config URL: download its
files, then write its YAML last, so the registry never sees a model with missing files.
Every name and path from outside is checked to stay inside the models folder."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import aiohttp
import yaml

from localhost_ai.backends import backend_options
from localhost_ai.config import yamlfile
from localhost_ai.config.go_prompts import syntax_of
from localhost_ai.config.gotemplate import TemplateSyntaxError
from localhost_ai.config import localai_fields
from localhost_ai.config.model_config import YAML_SUFFIXES, model_problem
from localhost_ai.config.templates import PromptTemplateError
from localhost_ai.errors import InvalidRequest, NotFound
from localhost_ai.gallery.archive import ArchiveError, Stopped, is_archive, remove_workdir, unpack
from localhost_ai.gallery.download import Progress, already_installed, download, stoppable
from localhost_ai.gallery.fetch import fetch_bytes, parse_yaml
from localhost_ai.gallery.index import SAFE_NAME, Entry
from localhost_ai.gallery.uris import resolve

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(SAFE_NAME)


@dataclass(frozen=True)
class FileSpec:
    filename: str
    uri: str
    sha256: str | None = None


@dataclass
class InstallRequest:
    """What to install, checked up front so a bad request is a 4xx, not a failed job."""

    entry: Entry | None = None
    url: str | None = None
    config_url: str | None = None
    name: str | None = None
    files: list[FileSpec] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False  # may replace files of its own model that are there already

    @property
    def label(self) -> str:
        return self.name or (self.entry.id if self.entry else None) or self.url or self.config_url or "model"


def check_name(name: str, param: str = "name") -> str:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise InvalidRequest("The model name is not valid: use letters, digits and . _ - + @ : "
                             "(no slashes, at most 128 characters).", param=param, code="invalid_name")
    return name


def check_relpath(value: Any, param: str) -> PurePosixPath:
    """A file name from outside: relative, plain parts, no way up or out."""
    if not isinstance(value, str) or not value or len(value) > 255 or "\\" in value or "\0" in value:
        raise InvalidRequest(f"'{param}' is not a valid file name.", param=param, code="invalid_filename")
    path = PurePosixPath(value)
    # Only the canonical spelling: `./x`, `x/` and `a//b` are refused, not read as `x` and
    # `a/b` (pathlib drops those parts, and a name compared as written would slip past).
    if (path.is_absolute() or path.as_posix() != value
            or any(part in ("", ".", "..") or part.startswith(".") for part in path.parts)):
        raise InvalidRequest(f"'{param}' must be a plain relative path inside the models folder "
                             "(no '..', no absolute path, no hidden parts).", param=param, code="invalid_filename")
    return path


def target_path(models_path: Path, relpath: PurePosixPath, param: str) -> Path:
    """The file's place in the models folder; refused when a link would lead it outside."""
    root = models_path.resolve()
    target = root.joinpath(*relpath.parts)
    if target.is_symlink() or not Path(os.path.realpath(target.parent)).is_relative_to(root):
        raise InvalidRequest(f"'{relpath}' would be written outside the models folder.", param=param,
                             code="invalid_filename")
    return target


def check_files(items: Any, param: str, allow_file: bool) -> list[FileSpec]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidRequest(f"'{param}' must be a list of {{filename, uri, sha256}}.", param=param)
    specs = []
    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object with filename and uri.", param=where)
        check_relpath(item.get("filename"), f"{where}.filename")
        if item["filename"].lower().endswith(YAML_SUFFIXES):  # model definitions are the install's own to write
            raise InvalidRequest(f"'{where}.filename' may not be a model definition (.yaml or .yml).",
                                 param=f"{where}.filename", code="invalid_filename")
        resolve(item.get("uri"), allow_file=allow_file, param=f"{where}.uri")
        sha = item.get("sha256") or None
        if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha)):
            raise InvalidRequest(f"'{where}.sha256' must be 64 hex digits.", param=f"{where}.sha256")
        specs.append(FileSpec(item["filename"], item["uri"], sha.lower() if sha else None))
    return specs


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _config_from(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    config = parse_yaml(value, what) if isinstance(value, (str, bytes)) else value
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidRequest(f"{what} must be a YAML mapping.", code="invalid_config")
    return config


def _drop_broken_templates(config: dict[str, Any], label: str) -> None:
    """An entry's templates are kept as written, LocalAI's Go ones included (they are
    rendered as LocalAI renders them); one that compiles in neither syntax is left out with
    a log line, so the model's own chat template is used rather than the model refused."""
    templates = config.get("template")
    if not isinstance(templates, dict):
        return
    for key, value in list(templates.items()):
        if not isinstance(value, str) or "{{" not in value:
            continue  # settings (use_tokenizer_template ...), or a .tmpl file's name
        try:
            syntax_of(key, value)
        except (TemplateSyntaxError, PromptTemplateError) as exc:
            log.warning("install %s: template.%s does not compile (%s); it is left out", label, key, exc)
            del templates[key]
    if not templates:
        del config["template"]


def check_backend(backend: str | None, what: str) -> None:
    """A model whose backend this server does not have is refused before anything is downloaded."""
    known = backend_options()
    if backend is not None and backend not in known:
        raise InvalidRequest(f"'{what}' needs the backend '{backend}', which this server does not have "
                             f"(it has: {', '.join(sorted(known))}).", param="id", code="unsupported_backend")


@dataclass
class Plan:
    name: str
    config: dict[str, Any]
    files: list[FileSpec]
    overwrite: bool = False


async def make_plan(session: aiohttp.ClientSession, request: InstallRequest, models_path: Path, allow_file: bool) -> Plan:
    """Fetch definitions and merge: base config, entry overrides, request overrides; files likewise."""
    config: dict[str, Any] = {}
    files: list[FileSpec] = []
    definition_name = None
    definition_urls = [u for u in (request.entry.data.get("url") if request.entry else None, request.url) if u]
    for url in definition_urls:
        fetched = await fetch_bytes(session, resolve(url, allow_file=allow_file, param="url"))
        definition = await asyncio.to_thread(_config_from, fetched, f"model definition {url}")
        definition_name = definition.get("name") or definition_name
        config = deep_merge(config, await asyncio.to_thread(_config_from, definition.get("config_file"), f"config_file of {url}"))
        files += check_files(definition.get("files"), "files", allow_file)
    if request.entry is not None:
        config = deep_merge(config, await asyncio.to_thread(
            _config_from, request.entry.data.get("config_file"), f"config_file of {request.entry.id}"))
        config = deep_merge(config, request.entry.data.get("overrides") or {})
        files += check_files(request.entry.data.get("files"), "files", allow_file)
    if request.config_url:
        fetched = await fetch_bytes(session, resolve(request.config_url, allow_file=allow_file, param="config_url"))
        config = deep_merge(config, await asyncio.to_thread(_config_from, fetched, f"config {request.config_url}"))
    config = deep_merge(config, request.overrides)
    files += request.files
    by_name = {f.filename: f for f in files}  # later ones (the request's) win

    name = check_name(request.name or (request.entry.name if request.entry else None)
                      or config.get("name") or definition_name or "", "name")
    config["name"] = name
    _drop_broken_templates(config, name)
    parameters = config.setdefault("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"the config of '{name}' has 'parameters' that is not a mapping.", code="invalid_config")
    if not parameters.get("model") and len(by_name) == 1 and not is_archive(next(iter(by_name))):
        parameters["model"] = next(iter(by_name))
    if not parameters.get("model"):
        raise InvalidRequest(f"the config of '{name}' names no model file (parameters.model).", param="overrides",
                             code="invalid_config")
    check_relpath(parameters["model"], "parameters.model")
    if config.get("mmproj") is not None:
        check_relpath(config["mmproj"], "mmproj")
    for spec in by_name.values():
        target_path(models_path, check_relpath(spec.filename, "files"), "files")
    if isinstance(config.get("backend"), str):
        check_backend(config["backend"], name)  # told by its base config: still before any download starts
    try:
        localai_fields.review(config, ())
    except localai_fields.FieldRefused as exc:
        raise InvalidRequest(f"the config of '{name}' sets '{exc.field}', which this server refuses: {exc.reason}.",
                             param="overrides", code="invalid_config") from None
    problem = model_problem(config, backend_options())
    if problem is not None:
        # Which field and which rule, not the value: the config may have come from anywhere.
        raise InvalidRequest(f"the config of '{name}' is invalid at '{problem.dotted or 'config'}' "
                             f"(it fails '{problem.error.validator}').",
                             param="overrides", code="invalid_config")
    plan = Plan(name=name, config=config, files=list(by_name.values()), overwrite=request.overwrite)
    await asyncio.to_thread(check_ownership, plan, models_path, request.overwrite)
    return plan


def _owner_of(filename: str, owners: dict[str, str]) -> str | None:
    """The model whose file (or folder) holds `filename`."""
    for owned, owner in owners.items():
        if filename == owned or filename.startswith(owned.rstrip("/") + "/"):
            return owner
    return None


def check_ownership(plan: Plan, models_path: Path, overwrite: bool) -> None:
    """An install writes only what is its own: never a file another model's YAML names (its
    YAML, weights or install record), and never over a file already there, unless the
    request says `overwrite` and the file is its own model's (or nobody's).  A file in place
    with the checksum the install asks for is used as it is."""
    owners: dict[str, str] = {}
    own: tuple[Path, dict[str, Any]] | None = None
    yaml_name = f"{plan.name}.yaml"
    for other, path, data in model_files(models_path):
        if other == plan.name:
            if path.name != yaml_name:  # a second file would make the name ambiguous: neither served
                raise InvalidRequest(f"Model '{plan.name}' is already defined by {path.name}; this install would "
                                     "define it twice.", param="name", code="file_not_owned")
            own = (path, data)
            continue
        owners[path.name] = other
        for filename in files_of(data):  # as a spec names it: `./x.gguf` is `x.gguf`
            owners.setdefault(PurePosixPath(filename).as_posix(), other)
    if yaml_name in owners:
        raise InvalidRequest(f"This install would write {yaml_name}, which defines model '{owners[yaml_name]}'.",
                             param="name", code="file_not_owned")
    if own is not None and own[1].get("installed_files") is None and not overwrite:
        raise InvalidRequest(f"Model '{plan.name}' is defined by a file this server did not install; send "
                             "\"overwrite\": true to replace it.", param="name", code="file_exists")
    for spec in plan.files:
        target = target_path(models_path, check_relpath(spec.filename, "files"), "files")
        if already_installed(target, spec.sha256):
            continue  # in place (with its checksum, when one is given): used as it is, not written
        owner = _owner_of(spec.filename, owners)
        if owner is not None:
            raise InvalidRequest(f"This install would write {spec.filename}, which belongs to model '{owner}'.",
                                 param="files", code="file_not_owned")
        if target.is_file() and not overwrite:
            raise InvalidRequest(f"{spec.filename} is already in the models folder with other content; send "
                                 "\"overwrite\": true to replace it.", param="files", code="file_exists")


FileProgress = Callable[[FileSpec, int, "int | None"], None]
_target_locks: dict[Path, asyncio.Lock] = {}


async def execute(session: aiohttp.ClientSession, plan: Plan, models_path: Path, allow_file: bool,
                  progress: FileProgress, slots: asyncio.Semaphore, held: set[Path] | None = None,
                  max_file_size: int | None = None) -> Path:
    """Download every file (at most `slots` at once across jobs), then write the YAML.
    `held`: the targets whose lock this install holds while it downloads them, the only
    partial files its cancellation may remove (a duplicate job waiting for the lock owns
    none of them)."""

    async def fetch(spec: FileSpec) -> list[tuple[str, bool]]:
        """(file name, whether this install wrote it) for the file, or an archive's files."""
        target = target_path(models_path, check_relpath(spec.filename, "files"), "files")
        report: Progress = lambda done, total: progress(spec, done, total)  # noqa: E731
        # Two jobs for one file take turns: the second finds it installed (or resumes it).
        async with _target_locks.setdefault(target, asyncio.Lock()), slots:
            # Again, now that the file is ours to write: another job may have put it there
            # since this one's plan was checked.
            await asyncio.to_thread(check_ownership, Plan(plan.name, plan.config, [spec]), models_path, plan.overwrite)
            if held is not None:
                held.add(target)
            wrote = await download(session, resolve(spec.uri, allow_file=allow_file), target, spec.sha256, report,
                                   max_file_size)
            if held is not None:
                held.discard(target)
            if not is_archive(spec.filename):
                return [(spec.filename, wrote)]
            # Its files go into a folder named after the model, so that two archives' model
            # cards (or any other file they share a name for) never meet.
            folder = PurePosixPath(spec.filename).parent / plan.name
            try:
                async with _target_locks.setdefault(models_path / folder, asyncio.Lock()):
                    placed, names, sums = await _unpack_in_place(plan, models_path, target, folder, max_file_size,
                                                                 check_names=len(archives) == 1)
            finally:
                if wrote:  # unpacked or refused, it goes; a copy of an archive a user put there stays
                    target.unlink(missing_ok=True)
            unpacked.update(names)
            members[spec.filename] = sums
            return placed

    # Files in place that an install wrote (this model's earlier one, or another's that
    # shares them) stay in the record; a file a user put there does not enter it.
    managed = set().union(*(_installed(data) for _, _, data in model_files(models_path)))
    archives = [spec for spec in plan.files if is_archive(spec.filename)]
    unpacked: dict[str, str] = {}  # a file as the config names it (inside its archive) -> where it went
    members: dict[str, dict[str, str]] = {}  # an archive -> each file it put in place -> its sha256
    written = []
    for spec in plan.files:  # one at a time within a job, so progress reads as one file
        written += [name for name, wrote in await fetch(spec) if wrote or name in managed]
    config = copy.deepcopy(plan.config)
    for holder, key in _file_fields(config):
        if holder[key] in unpacked:
            holder[key] = unpacked[holder[key]]
    # What delete removes: only the files an install of this model wrote, never a list from
    # outside, nor a file that was in place already (a user's own weights).
    config.pop("installed_files", None)
    config["installed_files"] = written  # present even when empty: this file is an install's
    # Where each file came from: a node of a Ray cluster without the models folder fetches
    # them the same way (gallery/mirror.py).
    config["installed_from"] = [{"filename": spec.filename, "uri": spec.uri, "sha256": spec.sha256,
                                 **({"unpacked": members[spec.filename]} if spec.filename in members else {})}
                                for spec in plan.files]
    yaml_path = models_path / f"{plan.name}.yaml"
    handle, temporary = tempfile.mkstemp(prefix=f".{plan.name}.", suffix=".yaml.tmp", dir=models_path)
    with os.fdopen(handle, "w") as out:
        out.write(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    os.replace(temporary, yaml_path)
    log.info("installed model %s (%d file(s))", plan.name, len(plan.files))
    return yaml_path


def _file_fields(config: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The config's fields that name a file: (the mapping holding it, its key)."""
    fields = []
    parameters = config.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("model"), str):
        fields.append((parameters, "model"))
    if isinstance(config.get("mmproj"), str):
        fields.append((config, "mmproj"))
    return fields


async def _unpack_in_place(plan: Plan, models_path: Path, archive: Path, folder: PurePosixPath,
                           max_file_size: int | None,
                           check_names: bool) -> tuple[list[tuple[str, bool]], dict[str, str], dict[str, str]]:
    """Unpack a verified archive into `folder`, then put each of its files in place by the
    rules for a downloaded file (check_ownership): its own, or nobody's, or already there.
    Returns (file, whether written) for each, where each went by its name in the archive,
    and each file's sha256.  `check_names`: the config's files must be in the archive (or in place).  On
    failure or cancel, the files it had put in place go again."""
    workdir = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".unpack", dir=archive.parent))

    def place(stop: threading.Event) -> tuple[list[tuple[str, bool]], dict[str, str], dict[str, str]]:
        moved: list[Path] = []
        try:
            unpacked = unpack(archive, workdir, max_file_size, stop)
            specs = [FileSpec((folder / item.name).as_posix(), archive.name, item.sha256) for item in unpacked]
            names = {item.name: spec.filename for item, spec in zip(unpacked, specs)}
            given = {spec.filename for spec in plan.files}
            for holder, key in _file_fields(plan.config) if check_names else []:
                if holder[key] not in names and holder[key] not in given and not (models_path / holder[key]).is_file():
                    raise ArchiveError(f"{archive.name} does not hold '{holder[key]}', which the config names "
                                       f"({key}); nothing was unpacked.", code="invalid_archive")
            check_ownership(Plan(plan.name, plan.config, specs), models_path, plan.overwrite)
            placed = []
            for spec, item in zip(specs, unpacked):
                if stop.is_set():
                    raise Stopped
                target = target_path(models_path, check_relpath(spec.filename, "files"), "files")
                if already_installed(target, spec.sha256):
                    placed.append((spec.filename, False))
                    continue
                if target.exists() or target.is_symlink():  # a folder or a link of that name
                    raise ArchiveError(f"{spec.filename} is in the models folder and is not a file; nothing was "
                                       "unpacked.", code="file_exists")
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(item.path, target)
                except OSError as exc:
                    raise ArchiveError(f"{spec.filename} could not be put in place ({exc.strerror}); nothing was "
                                       "unpacked.", code="invalid_archive") from None
                moved.append(target)
                placed.append((spec.filename, True))
            return placed, names, {spec.filename: spec.sha256 for spec in specs}
        except BaseException:
            for path in moved:
                path.unlink(missing_ok=True)
            raise
        finally:
            remove_workdir(workdir)

    return await stoppable(place)  # cancelled, it stops at its next read or file, and takes back what it placed


def model_files(models_path: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """(name, YAML path, its data) for every readable YAML in the models folder."""
    found: list[tuple[str, Path, dict[str, Any]]] = []
    if not models_path.is_dir():
        return found
    for path in sorted(models_path.iterdir()):
        if not path.name.lower().endswith(YAML_SUFFIXES) or path.name.startswith("."):
            continue
        try:
            data = yamlfile.load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            found.append((str(data.get("name") or path.stem), path, data))
    return found


def installed_configs(models_path: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (YAML path, its data), the first file for each name."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name, path, data in model_files(models_path):
        found.setdefault(name, (path, data))
    return found


def _installed(data: dict[str, Any]) -> set[str]:
    """The install record: the files an install of this model wrote."""
    record = data.get("installed_files")
    return {f for f in record if isinstance(f, str)} if isinstance(record, list) else set()


def files_of(data: dict[str, Any]) -> set[str]:
    """Every file a model's YAML names: its record, and its weights."""
    return _installed(data) | {holder[key] for holder, key in _file_fields(data)}


def delete_model(models_path: Path, name: str) -> list[str]:
    """Remove the model's YAML, and of the files its install wrote, those no other model
    uses; a file the install did not write (a user's own weights) stays.  Return what went."""
    configs = installed_configs(models_path)
    if name not in configs:
        raise NotFound(f"No installed model is named '{name}'.", param="name", code="model_not_found")
    yaml_path, data = configs.pop(name)
    others = [d for _, path, d in model_files(models_path) if path != yaml_path]
    still_used = {PurePosixPath(f).as_posix() for d in others for f in files_of(d)}
    removed = [yaml_path.name]
    yaml_path.unlink()
    for filename in sorted(_installed(data) - still_used):
        try:
            target = target_path(models_path, check_relpath(filename, "files"), "files")
        except InvalidRequest:
            continue  # never delete anything outside the models folder
        if target.is_file():
            target.unlink()
            removed.append(filename)
            _remove_empty_folders(target.parent, models_path.resolve())
    return removed


def _remove_empty_folders(folder: Path, root: Path) -> None:
    """The folders an install made (an archive's), once delete has emptied them."""
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            return
        folder = folder.parent
