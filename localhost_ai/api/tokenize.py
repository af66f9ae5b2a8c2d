"""POST /tokenize and /detokenize in llama.cpp's shape, which LocalAI's POST /v1/tokenize
also reads (`model`, `content`): a text into the model's token ids, and back."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from localhost_ai.api import openapi
from localhost_ai.api.generation import one
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.schemas import nullable
from localhost_ai.api.validation import read_json
from localhost_ai.config import TOKENIZE
from localhost_ai.contract.events import Tokens
from localhost_ai.contract.tokenize import DetokenizeRequest, TokenizeRequest

TOKENIZE_SCHEMA = {
    "type": "object",
    "required": ["content"],
    "properties": {
        "model": nullable({"type": "string"}),
        "content": {"type": "string"},
        "add_special": nullable({"type": "boolean"}),  # the BOS token in front (llama.cpp's default: no)
        "parse_special": nullable({"type": "boolean"}),  # special tokens written in the text (default: yes)
        "with_pieces": nullable({"type": "boolean"}),
    },
}
DETOKENIZE_SCHEMA = {
    "type": "object",
    "required": ["tokens"],
    "properties": {
        "model": nullable({"type": "string"}),
        "tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
}
_PIECE = {"anyOf": [openapi.STRING, {"type": "array", "items": openapi.INTEGER}]}
TOKENS = openapi.obj(["tokens"], tokens={"type": "array", "items": {"anyOf": [
    openapi.INTEGER, openapi.obj(["id", "piece"], id=openapi.INTEGER, piece=_PIECE)]}})
CONTENT = openapi.obj(["content"], content=openapi.STRING)


def _piece(raw: list[int]) -> str | list[int]:
    """A token's bytes as text, or as the bytes when they are not whole UTF-8 characters (llama.cpp's rule)."""
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return raw


@OPENAI.post("/tokenize")
@openapi.document("Text into the model's token ids (llama.cpp's and LocalAI's shape)", body=TOKENIZE_SCHEMA,
                  json=TOKENS)
async def tokenize(request: web.Request) -> web.Response:
    body = await read_json(request, TOKENIZE_SCHEMA)
    config = await request.app[REGISTRY].find(body.get("model"), TOKENIZE)
    call = TokenizeRequest(content=body["content"], add_special=bool(body.get("add_special")),
                           parse_special=body.get("parse_special") is not False,
                           with_pieces=bool(body.get("with_pieces")))
    answer = await one(request, config, call, Tokens)
    tokens: list[Any] = answer.tokens
    if call.with_pieces:
        tokens = [{"id": token, "piece": _piece(piece)} for token, piece in zip(answer.tokens, answer.pieces or [])]
    return web.json_response({"tokens": tokens})


@OPENAI.post("/detokenize")
@openapi.document("Token ids back into text (llama.cpp's shape)", body=DETOKENIZE_SCHEMA, json=CONTENT)
async def detokenize(request: web.Request) -> web.Response:
    body = await read_json(request, DETOKENIZE_SCHEMA)
    config = await request.app[REGISTRY].find(body.get("model"), TOKENIZE)
    answer = await one(request, config, DetokenizeRequest(tokens=tuple(body["tokens"])), Tokens)
    return web.json_response({"content": answer.text})
