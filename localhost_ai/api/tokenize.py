"""POST /tokenize and /detokenize in llama.cpp's shape, which LocalAI's POST /v1/tokenize
also reads (`model`, `content`), and in vLLM's (`prompt`, `add_special_tokens`; GET
/tokenizer_info), which evaluation tools use to tokenize on the server: a text into the
model's token ids, and back."""

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
from localhost_ai.contract.events import TokenizerInfo, Tokens
from localhost_ai.contract.tokenize import DetokenizeRequest, TokenizeRequest, TokenizerInfoRequest
from localhost_ai.errors import InvalidRequest

TOKENIZE_SCHEMA = {
    "type": "object",
    "properties": {
        "model": nullable({"type": "string"}),
        "content": {"type": "string"},  # llama.cpp's and LocalAI's name
        "prompt": {"type": "string"},  # vLLM's
        "add_special": nullable({"type": "boolean"}),  # the BOS token in front (llama.cpp's default: no)
        "add_special_tokens": nullable({"type": "boolean"}),  # vLLM's name (its default: yes)
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
CONTENT = openapi.obj(["content", "prompt"], content=openapi.STRING, prompt=openapi.STRING)
TOKENIZER_INFO = openapi.obj(["eos_token"], tokenizer_class=openapi.STRING, bos_token=openapi.NULLABLE_STRING,
                             eos_token=openapi.NULLABLE_STRING, pad_token=openapi.NULLABLE_STRING,
                             chat_template=openapi.NULLABLE_STRING, model_max_length=openapi.INTEGER)


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
    vllm = "prompt" in body
    if vllm == ("content" in body):
        raise InvalidRequest("Send the text as 'content' (or as vLLM's 'prompt'), once.", param="content",
                             code="missing_required_parameter" if not vllm else "invalid_value")
    add = body.get("add_special_tokens") is not False if vllm else bool(body.get("add_special"))
    call = TokenizeRequest(content=body["prompt" if vllm else "content"], add_special=add,
                           parse_special=body.get("parse_special") is not False,
                           with_pieces=bool(body.get("with_pieces")))
    answer = await one(request, config, call, Tokens)
    tokens: list[Any] = answer.tokens
    if call.with_pieces:
        tokens = [{"id": token, "piece": _piece(piece)} for token, piece in zip(answer.tokens, answer.pieces or [])]
    return web.json_response({"tokens": tokens, **({"count": len(tokens)} if vllm else {})})


@OPENAI.post("/detokenize")
@openapi.document("Token ids back into text (llama.cpp's shape)", body=DETOKENIZE_SCHEMA, json=CONTENT)
async def detokenize(request: web.Request) -> web.Response:
    body = await read_json(request, DETOKENIZE_SCHEMA)
    config = await request.app[REGISTRY].find(body.get("model"), TOKENIZE)
    answer = await one(request, config, DetokenizeRequest(tokens=tuple(body["tokens"])), Tokens)
    return web.json_response({"content": answer.text, "prompt": answer.text})  # llama.cpp's name, vLLM's


@OPENAI.get("/tokenizer_info")
@openapi.document("The model's special tokens and chat template (vLLM's shape); `?model=`", json=TOKENIZER_INFO)
async def tokenizer_info(request: web.Request) -> web.Response:
    config = await request.app[REGISTRY].find(request.query.get("model"), TOKENIZE)
    info = await one(request, config, TokenizerInfoRequest(), TokenizerInfo)
    return web.json_response({"tokenizer_class": "llama.cpp", "bos_token": info.bos_token, "eos_token": info.eos_token,
                              "pad_token": info.pad_token, "chat_template": info.chat_template,
                              "model_max_length": info.max_length})
