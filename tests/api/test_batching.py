"""Continuous batching on the real Gemma 3 270M: concurrent chats decoded together in one
context, each with its own answer; slots freed on cancel; prompts read in chunks between
the others' tokens; a chat's earlier turns reused from the cache."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from tests.conftest import GEMMA_FILE, Server, assert_schema, place, start_server, stop_server

TRANSCRIPT = (
    "{% for m in messages %}{% if m.role == 'user' %}Question: {{ m.content }}\n"
    "{% elif m.role == 'assistant' %}Answer: {{ m.content }}\n"
    "{% else %}{{ m.content }}\n{% endif %}{% endfor %}Answer:"
)
CHUNK = 64


def model(name: str, parallel: int, stopwords: list[str], max_tokens: int) -> dict:
    return {
        "name": name, "backend": "llama-cpp", "context_size": 1024, "threads": 2, "parallel": parallel,
        "prefill_chunk": CHUNK, "stopwords": stopwords, "template": {"chat": TRANSCRIPT},
        "parameters": {"model": GEMMA_FILE, "temperature": 0.0, "max_tokens": max_tokens},
    }


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    copier = {**model("copier", 2, [], 80), "template": {"edit": "{{ instruction }}\nText: {{ input }}\nCopy:"}}
    for config in (model("eight", 8, ["\nQuestion:"], 48), model("two", 2, [], 400), copier,
                   {**copier, "name": "copier-plain", "prompt_lookup": False},
                   {**copier, "name": "drafted", "draft_model": GEMMA_FILE, "n_draft": 4}):
        (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config))
    server = start_server(folder, tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


QUESTIONS = [
    "What is the capital of France?", "Who wrote Hamlet?", "What is the largest planet?", "Name a large ocean.",
    "What colour is the sky?", "Who painted the Mona Lisa?", "What is the capital of Japan?", "What do bees make?",
]


def stream_chat(server: Server, model_name: str, question: str, **extra) -> tuple[str, str, dict]:
    body = {"model": model_name, "messages": [{"role": "user", "content": question}], "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    text, finish, usage = "", None, {}
    with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            assert_schema(chunk, "CreateChatCompletionStreamResponse")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                text += choice["delta"].get("content") or ""
                finish = choice["finish_reason"] or finish
    return text, finish, usage


def engine(server: Server, name: str) -> dict:
    return server.get("/backend/monitor", params={"model": name}).json()["engine"]


def test_eight_concurrent_chats_each_get_their_own_answer(batch_server):
    # Seeded: a seeded request is decoded afresh, so alone and together read the same cells.
    alone = [stream_chat(batch_server, "eight", q, seed=7) for q in QUESTIONS]
    before = engine(batch_server, "eight")
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: stream_chat(batch_server, "eight", q, seed=7), QUESTIONS))
    after = engine(batch_server, "eight")
    assert after["slots"] == 8
    assert after["max_sequences_in_step"] >= 4, after  # they really were decoded together
    for question, (text, finish, usage), single in zip(QUESTIONS, together, alone):
        assert text == single[0], (question, text, single[0])
        assert finish == single[1] and finish in ("stop", "length")
        assert usage["completion_tokens"] == single[2]["completion_tokens"]
    answers = {q: t for q, (t, _, _) in zip(QUESTIONS, together)}
    assert "Paris" in answers["What is the capital of France?"]
    assert "Tokyo" in answers["What is the capital of Japan?"]
    assert "Shakespeare" in answers["Who wrote Hamlet?"]
    assert after["tokens_generated"] - before["tokens_generated"] >= sum(u["completion_tokens"] for _, _, u in together)


def test_a_cancelled_stream_frees_its_slot_for_a_waiting_request(batch_server):
    """`two` has two slots and writes 400 tokens with no stop word: two streams fill it, a
    third request waits, and closing one stream lets the third in while the other runs on."""
    body = {"model": "two", "messages": [{"role": "user", "content": "Tell me a long story."}], "stream": True}
    first = requests.post(batch_server.url + "/v1/chat/completions", json=body, stream=True, timeout=300)
    second_done = threading.Event()

    def second() -> None:
        stream_chat(batch_server, "two", "Tell me another long story.")
        second_done.set()

    other = threading.Thread(target=second, daemon=True)
    other.start()
    lines = first.iter_lines()
    while b"content" not in next(lines):
        pass
    batch_server.wait_for(lambda: engine(batch_server, "two")["active"] == 2)
    waiting: dict = {}

    def third() -> None:
        started = time.monotonic()
        response = batch_server.post("/v1/chat/completions", json={
            "model": "two", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 4})
        waiting.update(status=response.status_code, seconds=time.monotonic() - started)

    worker = threading.Thread(target=third, daemon=True)
    worker.start()
    worker.join(3)
    assert worker.is_alive(), "the third request ran although both slots were busy"
    first.close()  # the client goes away
    worker.join(60)
    assert waiting.get("status") == 200, waiting
    assert not second_done.is_set(), "the third request only ran once the other stream had ended"
    other.join(120)


def test_a_long_prompt_is_read_in_chunks_between_the_others_tokens(batch_server):
    before = engine(batch_server, "two")
    long_question = "Summarise this: " + " ".join(f"The number {i} is followed by {i + 1}." for i in range(60))
    results: dict = {}

    def streaming() -> None:
        results["short"] = stream_chat(batch_server, "two", "Count from one to fifty.", max_tokens=400)

    short = threading.Thread(target=streaming)
    short.start()
    batch_server.wait_for(lambda: engine(batch_server, "two")["tokens_generated"] > before["tokens_generated"] + 4)
    results["long"] = stream_chat(batch_server, "two", long_question, max_tokens=4)
    short.join(120)
    after = engine(batch_server, "two")
    long_prompt = results["long"][2]["prompt_tokens"]
    assert long_prompt > 6 * CHUNK
    # No step read more than one chunk, and while the long prompt was read in its steps
    # the short stream got its next token in each of them.
    assert after["max_prompt_tokens_in_step"] <= CHUNK
    shared_steps = after["steps_with_prompt_and_generation"] - before["steps_with_prompt_and_generation"]
    assert shared_steps >= long_prompt // CHUNK, (shared_steps, long_prompt)
    assert results["short"][1] in ("stop", "length")


def test_the_second_turn_of_a_chat_reuses_the_first(batch_server):
    client = batch_server.client()
    history = [{"role": "system", "content": "You answer questions about geography in a few words. " * 8},
               {"role": "user", "content": "What is the capital of Italy?"}]
    before = engine(batch_server, "eight")
    first = client.chat.completions.create(model="eight", messages=history)
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "And of Spain?"}]
    second = client.chat.completions.create(model="eight", messages=history)
    after = engine(batch_server, "eight")
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 1, (cached, first.usage)
    evaluated = after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"]
    assert evaluated <= first.usage.prompt_tokens + (second.usage.prompt_tokens - cached) + 1
    assert after["prompt_tokens_reused"] - before["prompt_tokens_reused"] >= cached
    metrics = batch_server.get("/metrics").text
    assert 'localhost_ai_prompt_tokens_cached_total{model="eight"}' in metrics


PARAGRAPH = ("The committee met on Tuesday to review the budget for the new library. After a long discussion, "
             "the members agreed to fund the children's reading room, to extend the opening hours on weekends, "
             "and to replace the old heating system before the winter.")


def test_an_edit_is_drafted_by_prompt_lookup_and_gives_the_same_text(batch_server):
    def edit(name: str) -> str:
        response = batch_server.post("/v1/edits", json={"model": name, "instruction": "Copy the text exactly.",
                                                        "input": PARAGRAPH, "temperature": 0})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["text"]

    plain = edit("copier-plain")
    assert PARAGRAPH[:60] in plain
    assert edit("copier") == plain
    drafted, plain_engine = engine(batch_server, "copier"), engine(batch_server, "copier-plain")
    assert plain_engine["drafted"] == 0
    assert 0 < drafted["draft_accepted"] <= drafted["drafted"]
    assert drafted["steps"] < plain_engine["steps"]
    metrics = batch_server.get("/metrics").text
    assert f'localhost_ai_engine{{figure="draft_accepted",model="copier"}} {float(drafted["draft_accepted"])}' \
        in metrics, metrics


def test_a_draft_model_drafts_for_a_completion_and_the_text_is_the_same(batch_server):
    def complete(name: str) -> str:
        response = batch_server.post("/v1/completions", json={
            "model": name, "prompt": "Question: What is the capital of France?\nAnswer:", "max_tokens": 24,
            "temperature": 0})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["text"]

    assert complete("drafted") == complete("copier-plain")
    figures = engine(batch_server, "drafted")
    assert 0 < figures["draft_accepted"] <= figures["drafted"]
    assert figures["max_sequences_in_step"] >= 1


def test_a_lone_completion_is_drafted_by_default_and_the_text_is_the_same(batch_server):
    def complete(name: str) -> str:
        response = batch_server.post("/v1/completions", json={
            "model": name, "prompt": f"Copy the text exactly.\nText: {PARAGRAPH}\nCopy:", "max_tokens": 40,
            "temperature": 0})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["text"]

    plain = complete("copier-plain")
    assert PARAGRAPH[:40] in plain  # the answer copies: lookup has something to find
    before = engine(batch_server, "two")  # no prompt_lookup in its file
    assert complete("two") == plain
    after = engine(batch_server, "two")
    assert after["draft_accepted"] > before["draft_accepted"]
    assert after["steps"] - before["steps"] < 40
