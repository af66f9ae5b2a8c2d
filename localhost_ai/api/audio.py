"""POST /v1/audio/transcriptions and /v1/audio/translations (multipart, as OpenAI defines them)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localhost_ai.api.forms import read_form
from localhost_ai.api.generation import one
from localhost_ai.api.keys import REGISTRY, SETTINGS
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI
from localhost_ai.config import TRANSCRIPTION
from localhost_ai.contract.events import Segment, Transcription
from localhost_ai.contract.transcribe import TranscribeRequest
from localhost_ai.contract.wire import dump
from localhost_ai.errors import InvalidRequest

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
AUDIO_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
        "model": {"type": "string"},
        "language": {"type": "string"},
        "prompt": {"type": "string"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "response_format": {"enum": list(FORMATS)},
        "beam_size": {"type": "integer", "minimum": 1, "maximum": 20},
    },
}
_TEXT_FORMATS = {"text/plain": openapi.TEXT, "application/x-subrip": openapi.TEXT, "text/vtt": openapi.TEXT}


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(segments: list[Segment]) -> str:
    blocks = [f"{n}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
              for n, s in enumerate(segments, 1)]
    return "\n".join(blocks)


def to_vtt(segments: list[Segment]) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
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


async def _run(request: web.Request, task: str) -> web.Response:
    form = await read_form(request, "file", "audio", file_fields=("file",))
    fields = form.fields
    if "file" not in form.files:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    response_format = fields.get("response_format") or "json"
    if response_format not in FORMATS:
        raise InvalidRequest(f"Invalid value for 'response_format': {response_format!r}; use one of {', '.join(FORMATS)}.",
                             param="response_format")
    config = await request.app[REGISTRY].find(fields.get("model"), TRANSCRIPTION)
    call = TranscribeRequest(
        audio=form.files["file"],
        filename=form.filenames["file"],
        task=task,  # type: ignore[arg-type]
        language=(fields.get("language") or None) if task == "transcribe" else None,
        prompt=fields.get("prompt") or None,
        temperature=_number(fields, "temperature", float, 0.0, 1.0),
        beam_size=_number(fields, "beam_size", int, 1, 20),
        max_seconds=request.app[SETTINGS].max_audio_seconds,
    )
    result = await one(request, config, call, Transcription)
    segments = result.segments
    if response_format == "text":
        return web.Response(text=result.text + "\n", content_type="text/plain")
    if response_format == "srt":
        return web.Response(text=to_srt(segments), content_type="application/x-subrip")
    if response_format == "vtt":
        return web.Response(text=to_vtt(segments), content_type="text/vtt")
    if response_format == "verbose_json":
        return web.json_response({"task": "translate" if task == "translate" else "transcribe",
                                  "language": result.language, "duration": result.duration,
                                  "text": result.text, "segments": dump(segments)})
    return web.json_response({"text": result.text}, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


@OPENAI.post("/audio/transcriptions")
@openapi.document("Speech to text", form=AUDIO_FORM, json=openapi.TRANSCRIPTION, other=_TEXT_FORMATS)
async def transcriptions(request: web.Request) -> web.Response:
    return await _run(request, "transcribe")


@OPENAI.post("/audio/translations")
@openapi.document("Speech to English text", form=AUDIO_FORM, json=openapi.TRANSCRIPTION, other=_TEXT_FORMATS)
async def translations(request: web.Request) -> web.Response:
    return await _run(request, "translate")
