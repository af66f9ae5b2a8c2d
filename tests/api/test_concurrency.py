"""Requests for one model run one at a time, in order, without stalling the server."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import requests

PROMPTS = [f"Question: What is the capital of {country}?\nAnswer:" for country in ("France", "Japan", "Spain", "Egypt")]


def complete(server, prompt: str) -> str:
    body = {"model": "gemma", "prompt": prompt, "max_tokens": 6, "temperature": 0}
    return server.post("/v1/completions", json=body).json()["choices"][0]["text"]


def test_concurrent_requests_each_get_their_own_answer(gemma_server):
    alone = [complete(gemma_server, p) for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: complete(gemma_server, p), PROMPTS))
    assert together == alone
    assert "Paris" in alone[0] and "Tokyo" in alone[1]


def test_the_server_answers_other_calls_while_a_model_generates(gemma_server):
    body = {"model": "gemma", "prompt": "Once upon a time,", "max_tokens": 120, "stop": [], "stream": True}
    with requests.post(gemma_server.url + "/v1/completions", json=body, stream=True, timeout=120) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        assert json.loads(first[6:])["choices"][0]["finish_reason"] is None
        # mid-stream: the event loop is free for other requests
        assert gemma_server.get("/healthz", timeout=5).status_code == 200
        assert gemma_server.get("/v1/models", timeout=5).json()["data"][0]["id"] == "gemma"
        rest = [line for line in lines if line.startswith(b"data: ")]
    assert rest[-1] == b"data: [DONE]"
    assert len(rest) > 10, "the stream was still going when the other calls were answered"
