"""GET /openapi.json: an OpenAPI 3.1 document of every route the server serves, built
from the request schemas the handlers validate with (one source of truth) and the
shapes of what they answer; GET /docs shows it with the viewer shipped in the package."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Callable

from aiohttp import web

from localhost_ai import __version__
from localhost_ai.api.routes import SERVER
from localhost_ai.errors import NotFound

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Operation:
    summary: str
    body: dict[str, Any] | None = None  # a JSON request body's schema
    form: dict[str, Any] | None = None  # a multipart/form-data body's schema
    query: dict[str, dict[str, Any]] = field(default_factory=dict)  # query parameters, each optional
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # content type -> schema of a 200


def document(summary: str, *, body: dict[str, Any] | None = None, form: dict[str, Any] | None = None,
             query: dict[str, dict[str, Any]] | None = None, json: dict[str, Any] | None = None,
             stream: bool = False, other: dict[str, dict[str, Any]] | None = None) -> Callable[[Handler], Handler]:
    """Describe a handler for the document: its request body (`body` JSON, or a multipart
    `form`), query parameters, and what a 200 holds (`json`; `stream`: server-sent events
    when the body asks to stream; `other`: further content types)."""
    answers = {**({"application/json": json} if json is not None else {}),
               **({"text/event-stream": SSE} if stream else {}), **(other or {})}

    def decorate(handler: Handler) -> Handler:
        handler.__openapi__ = Operation(summary, body, form, dict(query or {}), answers)  # type: ignore[attr-defined]
        return handler

    return decorate


# -- the shapes answered ----------------------------------------------------------------

def obj(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required or list(properties), "properties": properties}


STRING, INTEGER, NUMBER, BOOLEAN = ({"type": t} for t in ("string", "integer", "number", "boolean"))
NULLABLE_STRING = {"type": ["string", "null"]}
ANY_OBJECT = {"type": "object"}

ERROR = obj(["error"], error=obj(["message", "type"], message=STRING, type=STRING, param=NULLABLE_STRING,
                                 code=NULLABLE_STRING))
USAGE = obj(["prompt_tokens", "total_tokens"], prompt_tokens=INTEGER, completion_tokens=INTEGER, total_tokens=INTEGER)
MODEL = obj(id=STRING, object={"const": "model"}, created=INTEGER, owned_by=STRING,
            capabilities={"type": "array", "items": STRING})
MODEL_LIST = obj(object={"const": "list"}, data={"type": "array", "items": MODEL})
FINISH = {"enum": ["stop", "length", "tool_calls", "function_call", None]}
_CALL = obj(["id", "type", "function"], id=STRING, type={"const": "function"},
            function=obj(name=STRING, arguments=STRING))
_TOP = obj(["token", "logprob", "bytes"], token=STRING, logprob=NUMBER, bytes={"type": "array", "items": INTEGER})
CHAT_LOGPROBS = {"anyOf": [{"type": "null"}, obj(["content"], refusal={"type": "null"}, content={
    "type": "array", "items": obj(["token", "logprob", "bytes", "top_logprobs"], token=STRING, logprob=NUMBER,
                                  bytes={"type": "array", "items": INTEGER},
                                  top_logprobs={"type": "array", "items": _TOP})})]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
COMPLETION_LOGPROBS = {"anyOf": [{"type": "null"}, obj(
    ["tokens", "token_logprobs", "top_logprobs", "text_offset"], tokens={"type": "array", "items": STRING},
    token_logprobs={"type": "array", "items": _NULLABLE_NUMBER},
    top_logprobs={"type": "array", "items": {"anyOf": [{"type": "null"}, {
        "type": "object", "additionalProperties": NUMBER}]}},
    text_offset={"type": "array", "items": INTEGER})]}
CHAT_COMPLETION = obj(
    ["id", "object", "created", "model", "choices", "usage"], id=STRING, object={"const": "chat.completion"},
    created=INTEGER, model=STRING, system_fingerprint=STRING, usage=USAGE,
    choices={"type": "array", "items": obj(
        ["index", "message", "finish_reason"], index=INTEGER, finish_reason=FINISH, logprobs=CHAT_LOGPROBS,
        message=obj(["role", "content"], role={"const": "assistant"}, content=NULLABLE_STRING,
                    refusal={"type": "null"}, tool_calls={"type": "array", "items": _CALL},
                    function_call=obj(name=STRING, arguments=STRING)))})
TEXT_COMPLETION = obj(
    ["id", "object", "created", "model", "choices", "usage"], id=STRING, object={"const": "text_completion"},
    created=INTEGER, model=STRING, usage=USAGE,
    choices={"type": "array", "items": obj(["index", "text", "finish_reason"], index=INTEGER, text=STRING,
                                           finish_reason=FINISH, logprobs=COMPLETION_LOGPROBS)})
EDIT = obj(["object", "choices", "usage"], id=STRING, object={"const": "edit"}, created=INTEGER, model=STRING,
           usage=USAGE, choices={"type": "array", "items": obj(["index", "text"], index=INTEGER, text=STRING,
                                                              finish_reason=FINISH)})
EMBEDDINGS = obj(object={"const": "list"}, model=STRING, usage=USAGE, data={"type": "array", "items": obj(
    object={"const": "embedding"}, index=INTEGER,
    embedding={"anyOf": [{"type": "array", "items": NUMBER}, STRING]})})
RERANK = obj(model=STRING, usage=USAGE, results={"type": "array", "items": obj(
    ["index", "relevance_score"], index=INTEGER, relevance_score=NUMBER, document=obj(text=STRING))})
NEXA_RERANKING = obj(model=STRING, usage=USAGE, result={"type": "array", "items": NUMBER})
_SEGMENT = obj(id=INTEGER, seek=INTEGER, start=NUMBER, end=NUMBER, text=STRING, tokens={"type": "array", "items": INTEGER},
               temperature=NUMBER, avg_logprob=NUMBER, compression_ratio=NUMBER, no_speech_prob=NUMBER)
TRANSCRIPTION = {"anyOf": [obj(text=STRING), obj(task=STRING, language=STRING, duration=NUMBER, text=STRING,
                                                 segments={"type": "array", "items": _SEGMENT})]}
IMAGES = obj(created=INTEGER, data={"type": "array", "items": {"anyOf": [obj(url=STRING), obj(b64_json=STRING)]}})
NEXA_IMAGES = obj(created=INTEGER, data={"type": "array", "items": obj(base64=STRING, url=STRING)})
JOB = obj(["uuid", "processed", "message", "progress"], uuid=STRING, processed=BOOLEAN, message=STRING,
          progress=NUMBER, file_name=STRING, file_size=INTEGER, downloaded_size=INTEGER, error=NULLABLE_STRING,
          cancelled=BOOLEAN, cancellable=BOOLEAN, gallery_element_name=STRING, installed_model=NULLABLE_STRING,
          downloaded_bytes=INTEGER, total_bytes={"type": ["integer", "null"]},
          bytes_per_second={"type": ["integer", "null"]}, eta_seconds={"type": ["number", "null"]})
GALLERIES = {"type": "array", "items": obj(name=STRING, url=STRING)}
AVAILABLE = {"type": "array", "items": obj(["id", "name", "installed"], id=STRING, name=STRING, installed=BOOLEAN)}
TAGS = {"type": "array", "items": obj(tag=STRING, count=INTEGER)}
STATUS = obj(["model", "state"], model=STRING, state={"enum": ["unloaded", "starting", "loading", "ready", "busy",
                                                               "stopping", "dead"]})
# One server-sent event: `data:` holds a JSON chunk of the non-streamed shape's kind, the last `[DONE]`.
SSE = {"type": "object", "required": ["data"], "properties": {"data": STRING, "event": STRING}}
TEXT = {"type": "string"}
NDJSON = {"application/x-ndjson": ANY_OBJECT}  # one JSON object per line (Ollama's streams)


# -- the document -------------------------------------------------------------------------

_PATH_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _operation(method: str, path: str, op: Operation, error: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}"}
    parameters = [{"name": name, "in": "path", "required": True, "schema": STRING}
                  for name in _PATH_PARAMETER.findall(path)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in op.query.items()]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    elif op.form is not None:
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": op.form}}}
    content = {kind: {"schema": schema} for kind, schema in op.answers.items()}
    out["responses"] = {
        "200": {"description": "OK", **({"content": content} if content else {})},
        "default": {"description": "An error, in the API's own shape", "content": {"application/json": {"schema": error}}},
    }
    return out


def build(app: web.Application) -> dict[str, Any]:
    """The document of `app`'s routes; a route without a description is a bug."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        op: Operation | None = getattr(route.handler, "__openapi__", None)
        if op is None:
            raise RuntimeError(f"{route.method} {route.resource.canonical} has no OpenAPI description")
        path = _PATH_PARAMETER.sub(lambda m: "{" + m.group(1) + "}", route.resource.canonical)
        error = getattr(route.handler, "error_schema", ERROR)  # an API with its own error shape (errors_as)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route.method, path, op, error)
    return {
        "openapi": "3.1.0",
        "info": {"title": "localhost-ai", "version": __version__,
                 "description": "Local AI models under the OpenAI API, LocalAI's model gallery and Nexa's routes."},
        "paths": paths,
    }


OPENAPI = web.AppKey("openapi", dict)


@SERVER.get("/openapi.json")
@document("This document", json=ANY_OBJECT)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


_VIEWER = files("localhost_ai.api") / "docs"
_VIEWER_FILES = {"index.html": "text/html", "swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
                 "LICENSE": "text/plain"}


@SERVER.get("/docs")
@document("The document in a browser: Swagger UI, shipped in the package", other={"text/html": TEXT})
async def docs(request: web.Request) -> web.StreamResponse:
    return web.Response(body=(_VIEWER / "index.html").read_bytes(), content_type="text/html")


@SERVER.get("/docs/{file}")
@document("The viewer's own files", other={"text/css": TEXT, "text/javascript": TEXT, "text/plain": TEXT})
async def docs_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in _VIEWER_FILES:
        raise NotFound(f"No file {name} in the documentation viewer.", code="unknown_url")
    return web.Response(body=(_VIEWER / name).read_bytes(), content_type=_VIEWER_FILES[name],
                        headers={"Cache-Control": "max-age=3600"})
