"""Ollama's model routes over the models folder: /api/version, /api/tags, /api/show,
/api/ps, /api/pull (a gallery install with Ollama's progress objects), /api/delete,
/api/copy and /api/create (YAML files), and /api/push and blobs (not served)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from localhost_ai import __version__
from localhost_ai.api import openapi
from localhost_ai.api.keys import GALLERIES, JOBS, MANAGER, REGISTRY, SETTINGS
from localhost_ai.api.middlewares import errors_as
from localhost_ai.api.ollama import OLLAMA, OLLAMA_ERROR, iso_time, ollama_error, untagged
from localhost_ai.api.schemas import nullable as _nullable
from localhost_ai.api.sse import EventStream
from localhost_ai.api.validation import read_json
from localhost_ai.backends import backend_options
from localhost_ai.config import CHAT, COMPLETION, EMBEDDINGS, ModelConfig
from localhost_ai.config.capabilities import VISION
from localhost_ai.config.gguf_info import gguf_info, known_digest
from localhost_ai.config.model_config import model_problem
from localhost_ai.errors import APIError, InvalidRequest, NotFound
from localhost_ai.gallery.apply import build_request
from localhost_ai.gallery.install import check_name, delete_model, model_files

# The Ollama API version this surface follows: tools compare it to decide what to send.
OLLAMA_VERSION = "0.12.0"


_STRING = {"type": "string"}
_MODEL = {"type": "string", "minLength": 1}
_NAMED = {"type": "object", "properties": {"model": _MODEL, "name": _MODEL},
          "anyOf": [{"required": ["model"]}, {"required": ["name"]}]}
PULL_BODY = {**_NAMED, "properties": {**_NAMED["properties"], "insecure": _nullable({"type": "boolean"}),
                                      "stream": _nullable({"type": "boolean"})}}
COPY_BODY = {"type": "object", "required": ["source", "destination"],
             "properties": {"source": _MODEL, "destination": _MODEL}}
CREATE_BODY = {"type": "object", "required": ["model"], "properties": {
    "model": _MODEL, "from": _nullable(_MODEL), "system": _nullable(_STRING), "template": _nullable(_STRING),
    "parameters": _nullable({"type": "object"}), "messages": _nullable({"type": "array"}),
    "files": _nullable({"type": "object"}), "adapters": _nullable({"type": "object"}),
    "quantize": _nullable(_STRING), "license": _nullable({"anyOf": [_STRING, {"type": "array"}]}),
    "stream": _nullable({"type": "boolean"})}}


# -- the models ----------------------------------------------------------------------------------

def _files(config: ModelConfig) -> list[Path]:
    return [p for p in (config.model_path, config.mmproj) if p is not None]


def _size(config: ModelConfig) -> int:
    total = 0
    for path in _files(config):
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def _details(config: ModelConfig) -> dict[str, Any]:
    path = config.model_path
    if path.suffix.lower() == ".gguf" and path.is_file():
        info = gguf_info(path)
        family = info.architecture
        return {"parent_model": "", "format": "gguf", "family": family, "families": [family] if family else None,
                "parameter_size": info.parameter_size, "quantization_level": info.quantization}
    fmt = path.suffix.lstrip(".").lower() if path.is_file() else "folder"
    return {"parent_model": "", "format": fmt, "family": config.backend, "families": None, "parameter_size": "",
            "quantization_level": ""}


def _modified(config: ModelConfig) -> str:
    try:
        stamp = max(p.stat().st_mtime for p in [config.source, *_files(config)] if p.exists())
    except (OSError, ValueError):
        stamp = time.time()
    return iso_time(stamp)


def _digest(config: ModelConfig) -> str:
    return known_digest(config.model_path) or "" if config.model_path.is_file() else ""


def _tag(config: ModelConfig) -> dict[str, Any]:
    return {"name": config.name, "model": config.name, "modified_at": _modified(config), "size": _size(config),
            "digest": _digest(config), "details": _details(config)}


@OLLAMA.get("/api/version")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("The Ollama API version this server follows", json=openapi.obj(version=openapi.STRING))
async def ollama_version(request: web.Request) -> web.Response:
    return web.json_response({"version": OLLAMA_VERSION, "server": f"localhost-ai {__version__}"})


@OLLAMA.get("/api/tags")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Every model, in Ollama's shape", json=openapi.ANY_OBJECT)
async def ollama_tags(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    await registry.update()
    models = await asyncio.to_thread(lambda: [_tag(config) for config in registry.models()])
    return web.json_response({"models": models})


def _capabilities(config: ModelConfig) -> list[str]:
    have = config.capabilities
    out = []
    if CHAT in have or COMPLETION in have:
        out.append("completion")
    if CHAT in have:
        out.append("tools")
    if VISION in have:
        out.append("vision")
    if EMBEDDINGS in have:
        out.append("embedding")
    return out


def _parameters_text(config: ModelConfig) -> str:
    lines = [f"{key} {value}" for key, value in sorted(config.parameters.items())
             if key != "model" and isinstance(value, (int, float, str)) and not isinstance(value, bool)]
    lines += [f"stop {json.dumps(word)}" for word in config.stopwords]
    return "\n".join(lines)


def _show(config: ModelConfig) -> dict[str, Any]:
    info = gguf_info(config.model_path) if config.model_path.suffix.lower() == ".gguf" and \
        config.model_path.is_file() else None
    template = config.templates.get("chat") or (info.chat_template if info else None) or ""
    modelfile = [f"# Modelfile of {config.name}, from {config.source.name}", f"FROM {config.model_path.name}"]
    if template:
        modelfile.append(f'TEMPLATE """{template}"""')
    if config.system_prompt:
        modelfile.append(f'SYSTEM """{config.system_prompt}"""')
    parameters = _parameters_text(config)
    modelfile += [f"PARAMETER {line}" for line in parameters.splitlines()]
    return {"modelfile": "\n".join(modelfile) + "\n", "parameters": parameters, "template": template,
            "system": config.system_prompt or "", "details": _details(config),
            "model_info": info.metadata if info else {}, "capabilities": _capabilities(config),
            "modified_at": _modified(config)}


@OLLAMA.post("/api/show")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("A model's details, template, parameters and capabilities", body=_NAMED, json=openapi.ANY_OBJECT)
async def ollama_show(request: web.Request) -> web.Response:
    body = await read_json(request, _NAMED)
    config = await _any_model(request, body.get("model") or body["name"])
    return web.json_response(await asyncio.to_thread(_show, config))


async def _any_model(request: web.Request, name: str, param: str = "model") -> ModelConfig:
    config = await request.app[REGISTRY].lookup(await untagged(request, name))
    if config is None:
        raise NotFound(f"model '{name}' not found", param=param, code="model_not_found")
    return config


@OLLAMA.get("/api/ps")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("The loaded models: memory and when they are unloaded", json=openapi.ANY_OBJECT)
async def ollama_ps(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    registry = request.app[REGISTRY]
    models = []
    for worker in manager.loaded():
        config = registry.get(worker.name) or worker.config
        expires = manager.expires_at(worker.name)
        models.append({**await asyncio.to_thread(_tag, config), "size": worker.memory() or 0, "size_vram": 0,
                       "expires_at": iso_time(expires) if expires is not None else "2318-01-01T00:00:00Z",
                       "context_length": worker.config.context_size})
    return web.json_response({"models": models})


# -- pull, delete, copy, create -----------------------------------------------------------------

@OLLAMA.post("/api/pull")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Install a model from the gallery, with Ollama's progress objects", body=PULL_BODY,
                  json=openapi.ANY_OBJECT, other=openapi.NDJSON)
async def ollama_pull(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, PULL_BODY)
    name = (body.get("model") or body["name"]).removesuffix(":latest")
    runner = request.app[JOBS]
    install = await build_request({"id": name}, request.app[GALLERIES], runner.session(), runner.allow_file_uris)
    job = runner.submit(install)
    if body.get("stream", True) is False:
        while not job.processed:
            await asyncio.sleep(0.1)
        if job.error or job.cancelled:
            raise APIError(job.error or "the install was cancelled", status=500, type="server_error",
                           code="pull_failed")
        return web.json_response({"status": "success"})
    events = EventStream(request, ndjson=True)
    await events.open()
    await events.send({"status": "pulling manifest"})
    sent: dict[str, tuple[int, int | None]] = {}
    while True:
        processed = job.processed
        for spec in job.plan.files if job.plan else []:
            done, total = job.file_sizes().get(spec.filename, (0, None))
            if sent.get(spec.filename) != (done, total):
                sent[spec.filename] = (done, total)
                digest = f"sha256:{spec.sha256}" if spec.sha256 else spec.filename
                progress = {"status": f"pulling {(spec.sha256 or spec.filename)[:12]}", "digest": digest,
                            "completed": done}
                await events.send({**progress, "total": total} if total else progress)
        if processed:
            break
        await asyncio.sleep(0.1)
    if job.error or job.cancelled:
        await events.send({"error": job.error or "the install was cancelled"})
        await events.close()
        return events.response
    return await _statuses(events, "verifying sha256 digest", "writing manifest", "success")


async def _statuses(events: EventStream, *statuses: str) -> web.StreamResponse:
    """The last progress objects of an open stream, then its end."""
    for status in statuses:
        await events.send({"status": status})
    await events.close()
    return events.response


@OLLAMA.delete("/api/delete")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Delete a model and the files its install wrote", body=_NAMED, json=openapi.ANY_OBJECT)
async def ollama_delete(request: web.Request) -> web.Response:
    body = await read_json(request, _NAMED)
    name = body.get("model") or body["name"]
    models_path = request.app[SETTINGS].models_path
    known = {n for n, _, _ in await asyncio.to_thread(model_files, models_path)}
    if name not in known and name.removesuffix(":latest") in known:
        name = name.removesuffix(":latest")
    if name not in known:
        raise NotFound(f"model '{name}' not found", param="model", code="model_not_found")
    await asyncio.to_thread(delete_model, models_path, check_name(name, "model"))
    await request.app[MANAGER].unload(name)
    await request.app[REGISTRY].update(missed=True)  # gone from /api/tags at once
    return web.json_response({})


def _definition(config: ModelConfig, param: str) -> dict[str, Any]:
    """A new YAML's content for a model like `config`: its own file's, without its install
    record (the files stay the first model's)."""
    if not config.raw or config.source == config.model_path:
        # A YAML naming a bare file would claim it: the bare model would be gone from the list.
        raise InvalidRequest(f"{param}: '{config.name}' is a bare weights file; write a YAML for it first.",
                             param=param, code="bare_model")
    data = copy.deepcopy(config.raw)
    data.pop("installed_files", None)
    return data


async def _write_yaml(request: web.Request, name: str, data: dict[str, Any], param: str) -> None:
    """A new model's YAML: never over a model of that name (a YAML's or a bare file's)."""
    check_name(name, param)
    if await request.app[REGISTRY].lookup(name) is not None:
        raise InvalidRequest(f"{param}: a model named '{name}' exists already.", param=param, code="model_exists")
    await asyncio.to_thread(_write_new, request.app[SETTINGS].models_path, name, data, param)
    await request.app[REGISTRY].update(missed=True)


def _write_new(models_path: Path, name: str, data: dict[str, Any], param: str) -> None:
    target = models_path / f"{name}.yaml"
    if name in {n for n, _, _ in model_files(models_path)}:
        raise InvalidRequest(f"{param}: a model named '{name}' exists already.", param=param, code="model_exists")
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".yaml.tmp", dir=models_path)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(yaml.safe_dump({**data, "name": name}, sort_keys=False, allow_unicode=True))
        os.link(temporary, target)  # fails if the file is there: two creates never overwrite each other
    except FileExistsError:
        raise InvalidRequest(f"{param}: {target.name} exists already.", param=param, code="model_exists") from None
    finally:
        os.unlink(temporary)


@OLLAMA.post("/api/copy")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("A second name for a model: a YAML file naming the same files", body=COPY_BODY,
                  json=openapi.ANY_OBJECT)
async def ollama_copy(request: web.Request) -> web.Response:
    body = await read_json(request, COPY_BODY)
    config = await _any_model(request, body["source"], "source")
    await _write_yaml(request, body["destination"], _definition(config, "source"), "destination")
    return web.json_response({})


# Modelfile parameters -> the YAML's fields.
_CREATE_PARAMETERS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                      "seed": "seed", "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
                      "frequency_penalty": "frequency_penalty", "num_predict": "max_tokens"}


@OLLAMA.post("/api/create")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("A model from another one with its own system prompt and parameters, written as a YAML file",
                  body=CREATE_BODY, json=openapi.ANY_OBJECT, other=openapi.NDJSON)
async def ollama_create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, CREATE_BODY)
    for key in ("files", "adapters", "quantize", "messages"):
        if body.get(key):
            raise InvalidRequest(f"{key}: creating a model from uploaded files, adapters, a quantisation or messages "
                                 "is not served here; create it from an existing model with 'from'.", param=key,
                                 code="unsupported_parameter")
    if not body.get("from"):
        raise InvalidRequest("from: the model to start from is required.", param="from",
                             code="missing_required_parameter")
    if body.get("template"):
        raise InvalidRequest("template: Ollama's Go templates are not rendered by this server yet; set a Jinja chat "
                             "template in the model's YAML.", param="template", code="unsupported_parameter")
    config = await _any_model(request, body["from"], "from")
    data = _definition(config, "from")
    parameters = dict(data.get("parameters") or {})
    for key, value in (body.get("parameters") or {}).items():
        if key == "stop":
            if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise InvalidRequest("parameters.stop must be a string or a list of strings.",
                                     param="parameters.stop", code="invalid_value")
            data["stopwords"] = [value] if isinstance(value, str) else value
        elif key == "num_ctx":
            data["context_size"] = value
        elif key in _CREATE_PARAMETERS:
            parameters[_CREATE_PARAMETERS[key]] = value
        else:
            raise InvalidRequest(f"parameters.{key}: not served here.", param=f"parameters.{key}",
                                 code="unsupported_parameter")
    data["parameters"] = parameters
    if body.get("system") is not None:
        data["system_prompt"] = body["system"]
    if body.get("license"):
        data["license"] = body["license"]
    problem = model_problem({**data, "name": body["model"]}, backend_options())
    if problem is not None:
        raise InvalidRequest(f"the model would be invalid at '{problem.dotted}' ({problem.error.message}).",
                             param=problem.dotted or "parameters", code="invalid_config")
    await _write_yaml(request, body["model"], data, "model")
    if body.get("stream", True) is False:
        return web.json_response({"status": "success"})
    events = EventStream(request, ndjson=True)
    await events.open()
    return await _statuses(events, "using existing layer", "writing manifest", "success")


@OLLAMA.post("/api/push")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Not served: models are not pushed anywhere from here", body=_NAMED, json=openapi.ANY_OBJECT)
async def ollama_push(request: web.Request) -> web.Response:
    raise APIError("pushing models is not served here.", status=501, type="invalid_request_error",
                   code="not_implemented")


@OLLAMA.get("/api/blobs/{digest}")
@OLLAMA.post("/api/blobs/{digest}")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Not served: blob uploads (Ollama's way to create models from files)", json=openapi.ANY_OBJECT)
async def ollama_blobs(request: web.Request) -> web.Response:
    raise APIError("blob uploads are not served here: create models from existing ones with 'from'.", status=501,
                   type="invalid_request_error", code="not_implemented")

