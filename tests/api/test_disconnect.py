"""A client that goes away stops its generation, and the server keeps serving."""

from __future__ import annotations

import re

import requests

STORY = {"model": "gemma", "prompt": "Once upon a time, in a kingdom by the sea,", "max_tokens": 600, "stop": []}


def cancelled_counts(server) -> list[int]:
    return [int(n) for n in re.findall(r"cancelled after (\d+) tokens", server.log())]


def still_serves(server) -> None:
    reply = server.client().chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=8
    )
    assert "Paris" in reply.choices[0].message.content


def test_closing_a_stream_cancels_the_generation(gemma_server):
    with requests.post(gemma_server.url + "/v1/completions", json={**STORY, "stream": True}, stream=True, timeout=60) as response:
        assert response.status_code == 200
        received = 0
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                received += 1
            if received >= 3:
                break
    gemma_server.wait_for(lambda: len(cancelled_counts(gemma_server)) >= 1, timeout=30)
    assert cancelled_counts(gemma_server)[-1] < 600
    still_serves(gemma_server)


def test_openai_client_closing_its_stream_cancels(gemma_server):
    before = len(cancelled_counts(gemma_server))
    stream = gemma_server.client().completions.create(**STORY, stream=True)
    for i, _ in enumerate(stream):
        if i >= 2:
            break
    stream.close()
    gemma_server.wait_for(lambda: len(cancelled_counts(gemma_server)) > before, timeout=30)
    assert cancelled_counts(gemma_server)[-1] < 600
    still_serves(gemma_server)


def test_a_plain_request_given_up_by_its_client_is_cancelled(gemma_server):
    before = len(cancelled_counts(gemma_server))
    try:
        requests.post(gemma_server.url + "/v1/completions", json=STORY, timeout=1.5)
    except requests.Timeout:
        pass
    gemma_server.wait_for(lambda: len(cancelled_counts(gemma_server)) > before, timeout=30)
    assert cancelled_counts(gemma_server)[-1] < 600
    still_serves(gemma_server)
