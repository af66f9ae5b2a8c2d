"""Ollama's API over the same models folder: /api/chat and /api/generate (NDJSON streams, or
one object), /api/embed and /api/embeddings (the models' routes are in ollama_models.py).
Requests become the same internal requests as the OpenAI routes (chat through
api/chat.prepare); errors come as Ollama's `{"error": "..."}`."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from localhost_ai.api import chat, limits, openapi
from localhost_ai.api.embeddings import vectors
from localhost_ai.api.chat import token_logprob
from localhost_ai.api.generation import PendingLogprobs, generate, one, stream
from localhost_ai.api.keys import MANAGER, REGISTRY, SETTINGS
from localhost_ai.api.middlewares import errors_as
from localhost_ai.api.routes import Surface
from localhost_ai.api.schemas import MAX_LOGPROBS, TOOL
from localhost_ai.api.schemas import nullable as _nullable
from localhost_ai.api.sse import EventStream
from localhost_ai.api.translate import Renames, arguments_object, text_part, tool_call
from localhost_ai.api.validation import generation as read_generation
from localhost_ai.api.validation import read_json
from localhost_ai.config import CHAT, COMPLETION, EMBEDDINGS, ModelConfig
from localhost_ai.config.sampling import SAMPLING_KEYS, removed_problem, sampling_schemas
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import Embeddings, Event, Logprobs as LogprobsEvent, TextDelta, TokenLogprob
from localhost_ai.contract.generate import CompletionRequest
from localhost_ai.contract.results import GenerationResult
from localhost_ai.errors import APIError, InvalidRequest

OLLAMA = Surface()  # Ollama's routes, under /api


OLLAMA_ERROR = openapi.obj(["error"], error={"type": "string"})


def ollama_error(error: APIError) -> dict[str, Any]:
    """Ollama's error body: `{"error": "..."}`; the field at fault leads the message."""
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    return {"error": message}


_STRING = {"type": "string"}
_MODEL = {"type": "string", "minLength": 1}
_KEEP_ALIVE = _nullable({"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 32}]})
_OPTIONS = _nullable({"type": "object", "properties": {
    **sampling_schemas(),
    "num_predict": {"type": "integer", "minimum": -2},
    "num_ctx": {"type": "integer", "minimum": 1},
    "stop": {"anyOf": [_STRING, {"type": "array", "items": _STRING}]},
    "penalize_newline": {"type": "boolean"},
}})
_FORMAT = _nullable({"anyOf": [{"enum": ["", "json"]}, {"type": "object"}]})
_IMAGES = _nullable({"type": "array", "items": {"type": "string", "minLength": 1}})
_TOOL_CALL = {"type": "object", "required": ["function"], "properties": {"function": {
    "type": "object", "required": ["name"], "properties": {"name": _STRING, "arguments": {"type": "object"}}}}}
_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {"role": {"enum": ["system", "user", "assistant", "tool"]}, "content": _nullable(_STRING),
                   "images": _IMAGES, "tool_calls": _nullable({"type": "array", "items": _TOOL_CALL}),
                   "tool_name": _nullable(_STRING), "thinking": _nullable(_STRING)},
}
_GENERATION = {"model": _MODEL, "options": _OPTIONS, "format": _FORMAT, "stream": _nullable({"type": "boolean"}),
               "logprobs": _nullable({"type": "boolean"}),
               "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_LOGPROBS}),
               "keep_alive": _KEEP_ALIVE, "think": _nullable({"anyOf": [{"type": "boolean"}, _STRING]})}
CHAT_BODY = {"type": "object", "required": ["model"], "properties": {
    **_GENERATION, "messages": _nullable({"type": "array", "items": _MESSAGE}),
    "tools": _nullable({"type": "array", "items": TOOL})}}
GENERATE_BODY = {"type": "object", "required": ["model"], "properties": {
    **_GENERATION, "prompt": _nullable(_STRING), "system": _nullable(_STRING), "template": _nullable(_STRING),
    "raw": _nullable({"type": "boolean"}), "images": _IMAGES, "suffix": _nullable(_STRING),
    "context": _nullable({"type": "array"})}}
EMBED_BODY = {"type": "object", "required": ["model", "input"], "properties": {
    "model": _MODEL, "input": {"anyOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1}]},
    "truncate": _nullable({"type": "boolean"}), "dimensions": _nullable({"type": "integer", "minimum": 1}),
    "options": _OPTIONS, "keep_alive": _KEEP_ALIVE}}
EMBEDDINGS_BODY = {"type": "object", "required": ["model"], "properties": {
    "model": _MODEL, "prompt": _nullable(_STRING), "options": _OPTIONS, "keep_alive": _KEEP_ALIVE}}

def iso_time(seconds: float | None = None) -> str:
    """A time (now by default) as Ollama writes it: ISO 8601 in UTC, with a Z."""
    moment = datetime.datetime.fromtimestamp(time.time() if seconds is None else seconds, datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


async def untagged(request: web.Request, name: str) -> str:
    """The model's name as served: Ollama's clients may add the default tag, `:latest`."""
    registry = request.app[REGISTRY]
    if name.endswith(":latest") and await registry.lookup(name) is None \
            and await registry.lookup(name.removesuffix(":latest")) is not None:
        return name.removesuffix(":latest")
    return name


# -- what every generation route reads ------------------------------------------------------

async def _model(request: web.Request, name: str, capability: str) -> ModelConfig:
    return await request.app[REGISTRY].find(await untagged(request, name), capability)


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FOR_EVER = 10 * 365 * 86400.0  # longer than this is for ever


def _keep_alive(value: Any) -> float | None | bool:
    """Seconds; None for ever (a negative value); False when the request sets none.  A
    number is seconds; a string a number or a Go duration ("5m", "1h30m", "-1m"), as Ollama
    reads it."""
    if value is None:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        sign, rest = (-1.0, text[1:]) if text.startswith("-") else (1.0, text)
        try:
            seconds = sign * float(rest)
        except ValueError:
            pieces = _GO_DURATION.findall(rest)
            if not rest or "".join(n + u for n, u in pieces) != rest:
                raise InvalidRequest(f"keep_alive: {text!r} is not a duration (e.g. 300, \"5m\", \"1h30m\", \"-1\").",
                                     param="keep_alive", code="invalid_value") from None
            seconds = sign * sum(float(n) * _GO_UNITS[u] for n, u in pieces)
    if math.isnan(seconds):
        raise InvalidRequest("keep_alive must be a number of seconds.", param="keep_alive", code="invalid_value")
    return None if seconds < 0 or seconds > _FOR_EVER else seconds


async def _after(request: web.Request, config: ModelConfig, keep: float | None | bool) -> None:
    """Apply keep_alive once the answer is out (0: unloaded as soon as no call runs on it)."""
    if keep is not False:
        request.app[MANAGER].keep_alive(config.name, keep)  # type: ignore[arg-type]


def _sampling(options: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
    """`options` as the chat body's fields; what this server does not do is refused."""
    removed = removed_problem(options)
    if removed is not None:
        key, why = removed
        raise InvalidRequest(f"options.{key}: {why}.", param=f"options.{key}", code="unsupported_parameter")
    out = {key: options[key] for key in SAMPLING_KEYS if options.get(key) is not None}
    predict = options.get("num_predict")
    if predict == 0:
        raise InvalidRequest("options.num_predict: 0 generates nothing; use -1 (no limit) or a count.",
                             param="options.num_predict", code="invalid_value")
    if predict is not None and predict > 0:
        out["max_tokens"] = predict
    stop = options.get("stop")
    if stop:
        out["stop"] = [stop] if isinstance(stop, str) else stop
    context = config.context_size
    if options.get("num_ctx") is not None and context is not None and options["num_ctx"] > context:
        raise InvalidRequest(f"options.num_ctx: {options['num_ctx']} is more than model '{config.name}' is served with "
                             f"({context}, its YAML's context_size).", param="options.num_ctx",
                             code="context_length_exceeded")
    return out


# The chat body's fields, as Ollama's requests name them (in errors).
_RENAMES = {"max_tokens": "options.num_predict", "stop": "options.stop", "response_format": "format"}


def _chat_body(config: ModelConfig, messages: list[dict[str, Any]], body: dict[str, Any],
               options: dict[str, Any]) -> dict[str, Any]:
    """The chat route's body: the messages, the options read by _sampling, and `format` (json
    or a JSON Schema) as a response format."""
    out: dict[str, Any] = {"model": config.name, "messages": messages, **options}
    value = body.get("format")
    if value == "json":
        out["response_format"] = {"type": "json_object"}
    elif value:
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": value}}
    return out


def _logprobs(body: dict[str, Any]) -> dict[str, Any]:
    """`logprobs` and `top_logprobs` as the chat body's fields."""
    return {key: body[key] for key in ("logprobs", "top_logprobs") if body.get(key) is not None}


def _refuse_unserved(body: dict[str, Any]) -> None:
    if body.get("think") not in (None, False):
        raise InvalidRequest("think: thinking output is not served here; leave 'think' out or false.",
                             param="think", code="unsupported_parameter")
    for key in ("suffix", "context"):
        if body.get(key):
            raise InvalidRequest(f"{key}: not served here.", param=key, code="unsupported_parameter")
    if body.get("template"):
        raise InvalidRequest("template: Ollama's Go templates are not rendered by this server yet; set the model's "
                             "chat template in its YAML.", param="template", code="unsupported_parameter")


def _chat_messages(messages: list[dict[str, Any]], renames: Renames) -> list[dict[str, Any]]:
    """Ollama's messages as the chat route's: images as parts, calls with ids, and each tool
    result tied to the call it answers (by `tool_name`, else in order)."""
    out = []
    pending: list[tuple[str, str]] = []  # (call id, name) of the last assistant turn's calls not answered yet
    for m, message in enumerate(messages):
        role = message["role"]
        content: Any = message.get("content") or ""
        if message.get("images"):
            content = [text_part(content)] + [{"type": "image_url", "image_url": image} for image in message["images"]]
            for i in range(len(message["images"])):
                renames.add(f"messages[{len(out)}].content[{i + 1}]", f"messages[{m}].images[{i}]")
        item: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant" and message.get("tool_calls"):
            calls = [tool_call(f"call_{m}_{c}", call["function"]["name"],
                               json.dumps(call["function"].get("arguments") or {}, ensure_ascii=False))
                     for c, call in enumerate(message["tool_calls"])]
            item["tool_calls"] = calls
            pending = [(c["id"], c["function"]["name"]) for c in calls]
        if role == "tool":
            wanted = message.get("tool_name")
            match = next((p for p in pending if p[1] == wanted), None) if wanted else (pending[0] if pending else None)
            if match is not None:
                pending.remove(match)
            item["tool_call_id"] = match[0] if match else f"call_{wanted or m}"  # a result of no call of that turn
        renames.add(f"messages[{len(out)}]", f"messages[{m}]")
        out.append(item)
    return out


# -- timing, as Ollama reports it --------------------------------------------------------------

@dataclass
class Clock:
    """When a request began, how long its model took to load, when the call started, when its
    first event came, and when it ended: Ollama's durations, measured."""

    start: float = field(default_factory=time.perf_counter)
    load: float = 0.0
    called: float = 0.0
    first: float | None = None

    def seen(self, _: Event | None = None) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def stats(self, result: GenerationResult) -> dict[str, Any]:
        end = time.perf_counter()
        first = self.first or end
        return {"total_duration": _ns(end - self.start), "load_duration": _ns(self.load),
                "prompt_eval_count": result.usage.prompt_tokens, "prompt_eval_duration": _ns(first - self.called),
                "eval_count": result.usage.completion_tokens, "eval_duration": _ns(end - first)}


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


async def _load(request: web.Request, config: ModelConfig, clock: Clock) -> None:
    manager = request.app[MANAGER]
    if not manager.is_ready(config):
        began = time.perf_counter()
        await manager.load(config)
        clock.load = time.perf_counter() - began
    clock.called = time.perf_counter()


def _done_reason(result: GenerationResult) -> str:
    return "length" if result.reason(0) == "length" else "stop"


def _calls(result: GenerationResult) -> list[dict[str, Any]]:
    return [{"function": {"name": found.name, "arguments": arguments_object(found.arguments)}}
            for found in result.calls.get(0) or []]


async def _answer(request: web.Request, config: ModelConfig, call: Any, body: dict[str, Any], clock: Clock,
                  shape: Any, renames: Renames | None = None) -> web.StreamResponse:
    """Run the call, streamed as NDJSON (the default) or as one object; `shape(text, result,
    done)` writes one object of the route's."""
    keep = _keep_alive(body.get("keep_alive"))
    wanted = call.generation.logprobs is not None
    pending = PendingLogprobs()

    def logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
        return {"logprobs": [token_logprob(e) for e in entries]} if wanted else {}

    try:
        await _load(request, config, clock)
        if body.get("stream", True) is False:
            result = await generate(request, config, call, clock.seen)
            return web.json_response(shape(result.text(0), result, True) | logprobs(result.logprobs.get(0, []))
                                     | clock.stats(result))

        def render(event: Event) -> list[dict[str, Any]]:
            clock.seen()
            if isinstance(event, LogprobsEvent):
                pending.add(event)
            elif isinstance(event, TextDelta) and event.text:
                return [shape(event.text, None, False) | logprobs(pending.take(0))]
            return []

        def last(result: GenerationResult) -> list[dict[str, Any]]:
            return [shape("", result, True) | logprobs(pending.take(0)) | clock.stats(result)]

        def error_event(error: APIError) -> dict[str, Any]:
            return ollama_error(renames.apply(error) if renames else error)

        events = EventStream(request, ndjson=True, error_event=error_event)
        return await stream(request, config, call, render, last_chunks=last, events=events)
    except APIError as exc:
        raise renames.apply(exc) if renames else exc
    finally:
        await _after(request, config, keep)


async def _load_or_unload(request: web.Request, config: ModelConfig, body: dict[str, Any],
                          reply: dict[str, Any]) -> web.Response:
    """A request with nothing to answer loads the model (or, with keep_alive 0, unloads it)."""
    keep = _keep_alive(body.get("keep_alive"))
    if keep is not False and keep == 0:
        await request.app[MANAGER].unload(config.name)
        return web.json_response({**reply, "done_reason": "unload", "done": True})
    await request.app[MANAGER].load(config)
    await _after(request, config, keep)
    return web.json_response({**reply, "done_reason": "load", "done": True})


# -- /api/chat and /api/generate -------------------------------------------------------------

@OLLAMA.post("/api/chat")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Ollama's chat: NDJSON stream by default", body=CHAT_BODY, json=openapi.ANY_OBJECT,
                  other=openapi.NDJSON)
async def ollama_chat(request: web.Request) -> web.StreamResponse:
    clock = Clock()
    body = await read_json(request, CHAT_BODY, _limits)
    _refuse_unserved(body)
    config = await _model(request, body["model"], CHAT)
    stamp = {"model": body["model"], "created_at": iso_time()}
    if not body.get("messages"):
        return await _load_or_unload(request, config, body, {**stamp, "message": {"role": "assistant", "content": ""}})
    renames = Renames(dict(_RENAMES))
    translated = _chat_body(config, _chat_messages(body["messages"], renames), body,
                            _sampling(body.get("options") or {}, config) | _logprobs(body))
    if body.get("tools"):
        translated["tools"] = body["tools"]
    config, call, _ = await chat.prepare(request, translated, renames, fit_max_tokens=True)

    def shape(text: str, result: GenerationResult | None, done: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        out = {**stamp, "created_at": iso_time(), "message": message, "done": done}
        if result is not None:
            calls = _calls(result)
            if calls:
                message["tool_calls"] = calls
            out["done_reason"] = _done_reason(result)
        return out

    return await _answer(request, config, call, body, clock, shape, renames)


@OLLAMA.post("/api/generate")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Ollama's generate: NDJSON stream by default", body=GENERATE_BODY, json=openapi.ANY_OBJECT,
                  other=openapi.NDJSON)
async def ollama_generate(request: web.Request) -> web.StreamResponse:
    clock = Clock()
    body = await read_json(request, GENERATE_BODY, _limits)
    _refuse_unserved(body)
    raw = bool(body.get("raw"))
    config = await _model(request, body["model"], COMPLETION if raw else CHAT)
    stamp = {"model": body["model"], "created_at": iso_time()}
    if not body.get("prompt") and not body.get("images"):
        return await _load_or_unload(request, config, body, {**stamp, "response": ""})
    options = _sampling(body.get("options") or {}, config)
    renames = Renames({**_RENAMES, "messages": "prompt"})
    if raw:
        if body.get("images") or body.get("system") or body.get("format"):
            field_ = next(k for k in ("images", "system", "format") if body.get(k))
            raise InvalidRequest(f"{field_}: not served with raw (the prompt is sent as it is).", param=field_,
                                 code="unsupported_parameter")
        limits.check_fits([body["prompt"]], config, request.app[SETTINGS].context_size, "prompt")
        generation = dataclasses.replace(read_generation(options, chat.logprobs_of(_logprobs(body))),
                                         fit_max_tokens=True)  # options: a chat body's fields
        call: Any = CompletionRequest(prompts=(body["prompt"],), generation=generation)
    else:
        messages: list[dict[str, Any]] = []
        if body.get("system"):
            messages.append({"role": "system", "content": body["system"]})
            renames.add("messages[0]", "system")
        user: dict[str, Any] = {"role": "user", "content": body.get("prompt") or ""}
        if body.get("images"):
            user["images"] = body["images"]
        for i in range(len(body.get("images") or [])):
            renames.add(f"messages[{len(messages)}].content[{i + 1}]", f"images[{i}]")
        renames.add(f"messages[{len(messages)}]", "prompt")
        messages += _chat_messages([user], Renames())
        translated = _chat_body(config, messages, body, options | _logprobs(body))
        config, call, _ = await chat.prepare(request, translated, renames, fit_max_tokens=True)

    def shape(text: str, result: GenerationResult | None, done: bool) -> dict[str, Any]:
        out = {**stamp, "created_at": iso_time(), "response": text, "done": done}
        if result is not None:
            out["done_reason"] = _done_reason(result)
        return out

    return await _answer(request, config, call, body, clock, shape, renames)


def _limits(body: dict[str, Any], settings: Any) -> None:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    limits.refuse("messages", len(messages), settings.max_messages, "--max-messages", "messages", "too_many_messages")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    limits.refuse("tools", len(tools), settings.max_tools, "--max-tools", "tools", "too_many_tools")
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    stops = options.get("stop") if isinstance(options.get("stop"), list) else []
    limits.refuse("stop words", len(stops), settings.max_stop_words, "--max-stop-words", "options.stop",
                  "too_many_stop_words")


# -- embeddings --------------------------------------------------------------------------------

async def _embed(request: web.Request, body: dict[str, Any], inputs: list[str], clock: Clock,
                 truncate: bool = True, dimensions: int | None = None) -> tuple[ModelConfig, Embeddings]:
    config = await _model(request, body["model"], EMBEDDINGS)
    keep = _keep_alive(body.get("keep_alive"))
    try:
        await _load(request, config, clock)
        answer = await one(request, config, EmbedRequest(inputs=tuple(inputs), dimensions=dimensions,
                                                         truncate=truncate), Embeddings)
    finally:
        await _after(request, config, keep)
    return config, answer


@OLLAMA.post("/api/embed")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Ollama's embeddings of one text or a list", body=EMBED_BODY, json=openapi.ANY_OBJECT)
async def ollama_embed(request: web.Request) -> web.Response:
    clock = Clock()
    body = await read_json(request, EMBED_BODY, limits.check_embeddings)
    inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
    _, answer = await _embed(request, body, inputs, clock, body.get("truncate") is not False, body.get("dimensions"))
    end = time.perf_counter()
    return web.json_response({"model": body["model"], "embeddings": vectors(answer),
                              "total_duration": _ns(end - clock.start), "load_duration": _ns(clock.load),
                              "prompt_eval_count": answer.prompt_tokens})


@OLLAMA.post("/api/embeddings")
@errors_as(ollama_error, OLLAMA_ERROR)
@openapi.document("Ollama's older embedding of one prompt", body=EMBEDDINGS_BODY,
                  json=openapi.obj(embedding={"type": "array", "items": openapi.NUMBER}))
async def ollama_embeddings(request: web.Request) -> web.Response:
    body = await read_json(request, EMBEDDINGS_BODY)
    if not body.get("prompt"):
        await _model(request, body["model"], EMBEDDINGS)
        return web.json_response({"embedding": []})
    _, answer = await _embed(request, body, [body["prompt"]], Clock())
    return web.json_response({"embedding": vectors(answer)[0]})
