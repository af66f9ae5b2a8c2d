"""POST /v1/audio/transcriptions and /v1/audio/translations (multipart, as OpenAI defines them)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localhost_ai.api.generation import one_piece
from localhost_ai.api.keys import REGISTRY, SETTINGS
from localhost_ai.backends.base import TRANSCRIPTION
from localhost_ai.errors import InvalidRequest, PayloadTooLarge

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(segments: list[dict[str, Any]]) -> str:
    blocks = [f"{n}\n{_timestamp(s['start'], ',')} --> {_timestamp(s['end'], ',')}\n{s['text'].strip()}\n"
              for n, s in enumerate(segments, 1)]
    return "\n".join(blocks)


def to_vtt(segments: list[dict[str, Any]]) -> str:
    blocks = [f"{_timestamp(s['start'], '.')} --> {_timestamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _number(fields: dict[str, Any], name: str, kind: type, low: float, high: float) -> Any:
    raw = fields.get(name)
    if raw in (None, ""):
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{name}': {raw!r} is not a {kind.__name__}.", param=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"Invalid value for '{name}': {value} is not between {low} and {high}.", param=name)
    return value


async def _form(request: web.Request) -> tuple[dict[str, Any], bytes, str]:
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("Send the audio as multipart/form-data with a 'file' field.", param="file",
                             code="invalid_content_type")
    limit = request.app[SETTINGS].upload_limit_mb * 1024 * 1024
    too_large = PayloadTooLarge(f"The upload is larger than the limit of {request.app[SETTINGS].upload_limit_mb} MB.",
                                param="file", code="request_too_large")
    if (request.content_length or 0) > limit:
        raise too_large
    fields: dict[str, Any] = {}
    data, filename, total = None, "", 0
    reader = await request.multipart()
    async for part in reader:
        if part.name == "file":
            filename = part.filename or "upload"
            buffer = bytearray()
            while chunk := await part.read_chunk(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise too_large
                buffer += chunk
            data = bytes(buffer)
        elif part.name:
            text = await part.read_chunk(64 * 1024)
            fields[part.name] = bytes(text).decode("utf-8", errors="replace").strip()
    if data is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    return fields, data, filename


async def _run(request: web.Request, task: str) -> web.Response:
    fields, data, filename = await _form(request)
    response_format = fields.get("response_format") or "json"
    if response_format not in FORMATS:
        raise InvalidRequest(f"Invalid value for 'response_format': {response_format!r}; use one of {', '.join(FORMATS)}.",
                             param="response_format")
    config = request.app[REGISTRY].resolve(fields.get("model"), TRANSCRIPTION)
    payload = {
        "audio": data,
        "filename": filename,
        "task": task,
        "language": (fields.get("language") or None) if task == "transcribe" else None,
        "prompt": fields.get("prompt") or None,
        "temperature": _number(fields, "temperature", float, 0.0, 1.0),
        "beam_size": _number(fields, "beam_size", int, 1, 20),
    }
    result = await one_piece(request, config, "transcribe", payload, "transcription")
    segments = result["segments"]
    if response_format == "text":
        return web.Response(text=result["text"] + "\n", content_type="text/plain")
    if response_format == "srt":
        return web.Response(text=to_srt(segments), content_type="application/x-subrip")
    if response_format == "vtt":
        return web.Response(text=to_vtt(segments), content_type="text/vtt")
    if response_format == "verbose_json":
        return web.json_response({"task": "translate" if task == "translate" else "transcribe",
                                  "language": result["language"], "duration": result["duration"],
                                  "text": result["text"], "segments": segments})
    return web.json_response({"text": result["text"]}, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


async def transcriptions(request: web.Request) -> web.Response:
    return await _run(request, "transcribe")


async def translations(request: web.Request) -> web.Response:
    return await _run(request, "translate")
