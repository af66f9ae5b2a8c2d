"""POST /v1/rerank (the Jina/Cohere shape LocalAI serves) and Nexa's POST /v1/reranking."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from localhost_ai.api import limits
from localhost_ai.api.generation import one
from localhost_ai.api.keys import REGISTRY
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI
from localhost_ai.api.validation import read_json
from localhost_ai.config import RERANK, ModelConfig
from localhost_ai.contract.events import Scores
from localhost_ai.contract.rerank import RerankRequest
from localhost_ai.errors import BackendError

MAX_CHARS = 200_000

_DOCUMENT = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_CHARS},
        {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": MAX_CHARS}}},
    ]
}
_COMMON = {
    "model": {"type": ["string", "null"]},
    "query": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS},
    "documents": {"type": "array", "items": _DOCUMENT, "minItems": 1},
}
RERANK_SCHEMA = {
    "type": "object",
    "required": ["query", "documents"],
    "properties": {
        **_COMMON,
        "top_n": {"type": ["integer", "null"], "minimum": 1},
        "return_documents": {"type": ["boolean", "null"]},
    },
}
NEXA_SCHEMA = {
    "type": "object",
    "required": ["query", "documents"],
    "properties": {
        **_COMMON,
        "batch_size": {"type": ["integer", "null"], "minimum": 1, "maximum": 4096},
        "normalize": {"type": ["boolean", "null"]},
        "normalize_method": {"enum": ["softmax", "sigmoid", "none", None]},
    },
}


def _text(document: Any) -> str:
    return document if isinstance(document, str) else document["text"]


async def _scores(request: web.Request, config: ModelConfig, query: str, documents: list[str]) -> tuple[list[float], int]:
    answer = await one(request, config, RerankRequest(query=query, documents=tuple(documents)), Scores)
    if len(answer.scores) != len(documents):
        raise BackendError(f"Model '{config.name}' returned {len(answer.scores)} scores for {len(documents)} documents.")
    return answer.scores, answer.prompt_tokens


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    total = sum(exps)
    return [e / total for e in exps]


@OPENAI.post("/rerank")
@openapi.document("Documents ranked against a query (Jina/Cohere shape)", body=RERANK_SCHEMA, json=openapi.RERANK)
async def rerank(request: web.Request) -> web.Response:
    body = await read_json(request, RERANK_SCHEMA, limits.check_rerank)
    config = await request.app[REGISTRY].find(body.get("model"), RERANK)
    documents = [_text(d) for d in body["documents"]]
    logits, tokens = await _scores(request, config, body["query"], documents)
    order = sorted(range(len(documents)), key=lambda i: -logits[i])
    if body.get("top_n"):
        order = order[: body["top_n"]]
    with_documents = body.get("return_documents") is not False
    results = []
    for index in order:
        result: dict[str, Any] = {"index": index, "relevance_score": sigmoid(logits[index])}
        if with_documents:
            result["document"] = {"text": documents[index]}
        results.append(result)
    return web.json_response({
        "model": config.name,
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


@OPENAI.post("/reranking")
@openapi.document("Documents scored against a query, in input order (Nexa's shape)", body=NEXA_SCHEMA, json=openapi.NEXA_RERANKING)
async def nexa_reranking(request: web.Request) -> web.Response:
    """Scores in input order, normalised as asked (softmax over the documents by default)."""
    body = await read_json(request, NEXA_SCHEMA, limits.check_rerank)
    config = await request.app[REGISTRY].find(body.get("model"), RERANK)
    documents = [_text(d) for d in body["documents"]]
    logits, tokens = await _scores(request, config, body["query"], documents)
    method = body.get("normalize_method") or "softmax"
    if body.get("normalize") is False or method == "none":
        scores = logits
    elif method == "sigmoid":
        scores = [sigmoid(x) for x in logits]
    else:
        scores = softmax(logits)
    return web.json_response({"model": config.name, "result": scores,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
