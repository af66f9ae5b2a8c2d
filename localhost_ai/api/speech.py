"""POST /v1/audio/speech (OpenAI's text to speech) and LocalAI's POST /tts: the text goes to
a speech model's worker, which answers with the encoded audio."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import openapi
from localhost_ai.api.generation import one
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api.routes import OPENAI, SERVER
from localhost_ai.api.validation import read_json
from localhost_ai.config import SPEECH
from localhost_ai.contract.events import Audio
from localhost_ai.contract.speech import SpeechRequest

MAX_INPUT_CHARS = 4096  # as OpenAI's
RESPONSE_FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
_BINARY = {"type": "string", "format": "binary"}

SPEECH_SCHEMA = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": {"type": ["string", "null"]},
        "input": {"type": "string", "minLength": 1, "maxLength": MAX_INPUT_CHARS},
        "voice": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "object"}, {"type": "null"}]},
        "response_format": {"anyOf": [{"enum": RESPONSE_FORMATS}, {"type": "null"}]},
        "speed": {"anyOf": [{"type": "number", "minimum": 0.25, "maximum": 4.0}, {"type": "null"}]},
        "instructions": {"type": ["string", "null"]},
        # Streamed speech (OpenAI's `sse`) is not served yet: asking for it is a 400.
        "stream_format": {"anyOf": [{"const": "audio"}, {"type": "null"}]},
    },
}
TTS_SCHEMA = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": {"type": ["string", "null"]},
        "input": {"type": "string", "minLength": 1, "maxLength": MAX_INPUT_CHARS},
        "voice": {"type": ["string", "null"], "maxLength": 256},
        "backend": {"type": ["string", "null"]},
    },
}


def _voice(value: Any) -> str | None:
    """A voice name, or OpenAI's newer `{"id": ...}` form."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


async def _speak(request: web.Request, body: dict[str, Any], response_format: str, speed: float) -> web.Response:
    config = await request.app[REGISTRY].find(body.get("model"), SPEECH)
    call = SpeechRequest(input=body["input"], voice=_voice(body.get("voice")), speed=speed,
                         response_format=response_format)
    audio = await one(request, config, call, Audio)
    return web.Response(body=audio.data, content_type=CONTENT_TYPES[response_format])


@OPENAI.post("/audio/speech")
@openapi.document("Speech from text", body=SPEECH_SCHEMA, other={ct: _BINARY for ct in CONTENT_TYPES.values()})
async def speech(request: web.Request) -> web.Response:
    body = await read_json(request, SPEECH_SCHEMA)
    return await _speak(request, body, body.get("response_format") or "mp3", body.get("speed") or 1.0)


@SERVER.post("/tts")
@openapi.document("LocalAI's text to speech: WAV", body=TTS_SCHEMA, other={"audio/wav": _BINARY})
async def tts(request: web.Request) -> web.Response:
    body = await read_json(request, TTS_SCHEMA)
    return await _speak(request, body, "wav", 1.0)
