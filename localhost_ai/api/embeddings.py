"""POST /v1/embeddings."""

from __future__ import annotations

import array
import base64

from aiohttp import web

from localhost_ai.api import limits
from localhost_ai.api.generation import one
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.validation import read_json
from localhost_ai.config import EMBEDDINGS
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import Embeddings

MAX_CHARS = 200_000  # per input; token windows are far smaller, this bounds the work of tokenizing
MAX_TOKENS = 100_000  # per token-id input

_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}
_IDS = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": MAX_TOKENS}

EMBEDDINGS_SCHEMA = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": {"type": ["string", "null"]},
        "input": {
            "anyOf": [
                _TEXT,
                {"type": "array", "items": _TEXT, "minItems": 1},
                _IDS,
                {"type": "array", "items": _IDS, "minItems": 1},
            ]
        },
        "encoding_format": {"enum": ["float", "base64", None]},
        "dimensions": {"type": ["integer", "null"], "minimum": 1},
        "truncate": {"type": ["boolean", "null"]},
        "user": {"type": ["string", "null"]},
    },
}


def _inputs(value: object) -> list:
    """One string, a list of strings, one token-id list, or a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value)  # type: ignore[arg-type]


def vectors(answer: Embeddings) -> list[list[float]]:
    """The rows as lists of floats (the worker sends little-endian float32; this host is little-endian)."""
    values = array.array("f")
    values.frombytes(answer.data)
    return [values[i * answer.dim:(i + 1) * answer.dim].tolist() for i in range(answer.rows)]


@OPENAI.post("/embeddings")
@openapi.document("Embeddings of texts or token ids", body=EMBEDDINGS_SCHEMA, json=openapi.EMBEDDINGS)
async def embeddings(request: web.Request) -> web.Response:
    body = await read_json(request, EMBEDDINGS_SCHEMA, limits.check_embeddings)
    config = await request.app[REGISTRY].find(body.get("model"), EMBEDDINGS)
    call = EmbedRequest(inputs=tuple(_inputs(body["input"])), dimensions=body.get("dimensions"),
                        truncate=body.get("truncate", True) is not False)
    answer = await one(request, config, call, Embeddings)
    data, rows, dim = answer.data, answer.rows, answer.dim
    if body.get("encoding_format") == "base64":
        width = dim * 4
        embeddings: list[object] = [base64.b64encode(data[i * width:(i + 1) * width]).decode() for i in range(rows)]
    else:
        embeddings = list(vectors(answer))
    items = [{"object": "embedding", "index": index, "embedding": embedding}
             for index, embedding in enumerate(embeddings)]
    tokens = answer.prompt_tokens
    return web.json_response({
        "object": "list",
        "data": items,
        "model": config.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })

