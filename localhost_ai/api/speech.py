"""POST /v1/audio/speech (OpenAI's text to speech) and LocalAI's POST /tts: the text goes to
a speech model's worker, which speaks it sentence by sentence; each sentence's encoded
audio goes out as it is ready, with chunked transfer, or as `speech.audio.delta` events
with `stream_format: "sse"`."""

from __future__ import annotations

import base64
import json
from typing import Any, AsyncIterator

from aiohttp import web

from localhost_ai.api import openapi
from localhost_ai.api.keys import MANAGER, REGISTRY
from localhost_ai.api.routes import OPENAI, SERVER
from localhost_ai.api.validation import read_json
from localhost_ai.config import SPEECH
from localhost_ai.contract.events import Audio, Event, Usage
from localhost_ai.contract.speech import SpeechRequest
from localhost_ai.errors import APIError

MAX_INPUT_CHARS = 4096  # as OpenAI's
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
RESPONSE_FORMATS = list(CONTENT_TYPES)
_BINARY = {"type": "string", "format": "binary"}
_INPUT = {"type": "string", "minLength": 1, "maxLength": MAX_INPUT_CHARS}
_NAME = {"type": ["string", "null"]}

SPEECH_SCHEMA = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": _NAME,
        "input": _INPUT,
        "voice": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "null"},
                            {"type": "object", "required": ["id"],  # OpenAI's newer form
                             "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 256}}}]},
        "response_format": {"anyOf": [{"enum": RESPONSE_FORMATS}, {"type": "null"}]},
        "speed": {"anyOf": [{"type": "number", "minimum": 0.25, "maximum": 4.0}, {"type": "null"}]},
        "instructions": _NAME,
        "stream_format": {"anyOf": [{"enum": ["audio", "sse"]}, {"type": "null"}]},
    },
}
TTS_SCHEMA = {
    "type": "object",
    "required": ["input"],
    "properties": {"model": _NAME, "input": _INPUT, "voice": {"type": ["string", "null"], "maxLength": 256},
                   "backend": _NAME},
}


def _voice(value: Any) -> str | None:
    """A voice name, or OpenAI's newer `{"id": ...}` form."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


async def _speak(request: web.Request, body: dict[str, Any], response_format: str, speed: float,
                 sse: bool) -> web.StreamResponse:
    """The model is loaded, and the first sentence spoken, before the first byte: an error
    until then is an ordinary HTTP error.  A client that goes away stops the speaking."""
    config = await request.app[REGISTRY].find(body.get("model"), SPEECH)
    call = SpeechRequest(input=body["input"], voice=_voice(body.get("voice")), speed=speed,
                         response_format=response_format)
    async with request.app[MANAGER].call(config, call) as incoming:
        iterator: AsyncIterator[Event] = incoming.__aiter__()
        first = await anext(iterator, None)
        content_type = "text/event-stream" if sse else CONTENT_TYPES[response_format]
        response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        usage = Usage(0, 0)
        try:
            event = first
            while event is not None:
                if isinstance(event, Audio) and event.data:
                    await response.write(_sse({"type": "speech.audio.delta", "audio": base64.b64encode(event.data)
                                               .decode()}) if sse else event.data)
                elif isinstance(event, Usage):
                    usage = event
                event = await anext(iterator, None)
        except APIError as exc:  # after the first byte the status is sent: the stream must not look whole
            if sse:
                await response.write(_sse({"type": "error", **exc.body()}))
                await response.write_eof()
            elif request.transport is not None:
                request.transport.close()  # an unfinished chunked body: the client sees the audio is cut short
            return response
    if sse:
        await response.write(_sse({"type": "speech.audio.done", "usage": {
            "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}}))
    await response.write_eof()
    return response


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@OPENAI.post("/audio/speech")
@openapi.document("Speech from text, sent sentence by sentence", body=SPEECH_SCHEMA, stream=True,
                  other={ct: _BINARY for ct in CONTENT_TYPES.values()})
async def speech(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, SPEECH_SCHEMA)
    return await _speak(request, body, body.get("response_format") or "mp3", body.get("speed") or 1.0,
                        body.get("stream_format") == "sse")


@SERVER.post("/tts")
@openapi.document("LocalAI's text to speech: WAV", body=TTS_SCHEMA, other={"audio/wav": _BINARY})
async def tts(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, TTS_SCHEMA)
    return await _speak(request, body, "wav", 1.0, sse=False)
