"""Log-probabilities on chat and completions, checked against llama-cpp-python's own
logits for the same tokens in this process, on the real Gemma 3 270M.

llama.cpp's logits shift with the shape of the batch they were decoded in (by up to about
0.1 in log-probability between a prompt read at once and token by token on these CPU
kernels), so the reference decodes as the server does: the prompt in one batch, each
generated token alone, logits only where the server takes them, with flash attention as
the server's context has it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from localhost_ai.config.templates import render
from tests.conftest import GEMMA_YAML, assert_schema, sse_events

llama_cpp = pytest.importorskip("llama_cpp")

QUESTION = "What is the capital of France?"
PROMPT = "The capital of France is"
TOLERANCE = 1e-4


def chat_template() -> str:
    import yaml

    return yaml.safe_load(GEMMA_YAML.format(model="x"))["template"]["chat"]


def chat_prompt(content: str) -> str:
    """The prompt the server renders for one user message (its own template code)."""
    return render(chat_template(), messages=[{"role": "user", "content": content}], add_generation_prompt=True,
                  bos_token="<bos>", eos_token="<eos>", system_prompt="", tools=None)


class Reference:
    """Gemma in this process: `all_rows` keeps every prompt row's logits (as the server does
    when it scores an echoed prompt), otherwise only the last."""

    def __init__(self, path, all_rows: bool) -> None:
        self.all_rows = all_rows
        self.llm = llama_cpp.Llama(str(path), n_ctx=1024, n_threads=2, logits_all=all_rows, flash_attn=True,
                                   verbose=False)

    def tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=True, special=True)

    def log_softmax(self, row: int) -> np.ndarray:
        """Of the logits at prompt position `row` (the last decoded, without `all_rows`)."""
        if self.all_rows:
            logits = np.asarray(self.llm.scores[row], dtype=np.float64)
        else:
            assert row == self.llm.n_tokens - 1
            last = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
            logits = np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),)).astype(np.float64)
        peak = logits.max()
        return logits - (peak + np.log(np.exp(logits - peak).sum()))

    def greedy(self, prompt: list[int], count: int) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """The greedy continuation: each token's text, log-probability and top three."""
        self.llm.reset()
        self.llm.eval(prompt)
        out = []
        for _ in range(count):
            scores = self.log_softmax(self.llm.n_tokens - 1)
            token = int(np.argmax(scores))
            if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                break
            top = np.argsort(-scores)[:3]
            out.append((self.text(token), float(scores[token]), [(self.text(int(t)), float(scores[t])) for t in top]))
            self.llm.eval([token])
        return out

    def prompt_scores(self, prompt: list[int]) -> list[float]:
        self.llm.reset()
        self.llm.eval(prompt)
        return [float(self.log_softmax(i - 1)[prompt[i]]) for i in range(1, len(prompt))]

    def text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="backslashreplace")


@pytest.fixture(scope="module")
def last_rows(gemma_gguf):
    reference = Reference(gemma_gguf, all_rows=False)
    yield reference
    reference.llm.close()


@pytest.fixture(scope="module")
def all_rows(gemma_gguf):
    reference = Reference(gemma_gguf, all_rows=True)
    yield reference
    reference.llm.close()


def close(entries, expected) -> None:
    assert [e["token"] for e in entries] == [text for text, _, _ in expected]
    for entry, (_, logprob, top) in zip(entries, expected):
        assert entry["logprob"] == pytest.approx(logprob, abs=TOLERANCE)
        assert [a["token"] for a in entry["top_logprobs"]] == [t for t, _ in top]
        assert [a["logprob"] for a in entry["top_logprobs"]] == pytest.approx([v for _, v in top], abs=TOLERANCE)
        assert bytes(entry["bytes"]).decode("utf-8", errors="backslashreplace") == entry["token"]


# A seed makes the server read the whole prompt afresh (no cached prefix), in one batch.
GREEDY = {"model": "gemma", "temperature": 0, "seed": 7, "max_tokens": 10}


def test_chat_logprobs_are_the_models_log_softmax(gemma_server, last_rows):
    prompt = last_rows.tokens(chat_prompt(QUESTION))
    client = gemma_server.client()
    reply = client.chat.completions.create(messages=[{"role": "user", "content": QUESTION}], logprobs=True,
                                           top_logprobs=3, **GREEDY)
    assert reply.usage.prompt_tokens == len(prompt)
    assert_schema(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
    entries = [e.model_dump() for e in reply.choices[0].logprobs.content]
    expected = last_rows.greedy(prompt, reply.usage.completion_tokens)
    # The answer's first token carries the space the chat answer starts without.
    assert "".join(e["token"] for e in entries).lstrip() == reply.choices[0].message.content
    close(entries, expected[:len(entries)])


def test_completion_logprobs_are_the_models_log_softmax(gemma_server, last_rows):
    prompt = last_rows.tokens(PROMPT)
    reply = gemma_server.client().completions.create(prompt=PROMPT, logprobs=3, **GREEDY)
    assert_schema(reply.model_dump(exclude_unset=True), "CreateCompletionResponse")
    logprobs = reply.choices[0].logprobs
    expected = last_rows.greedy(prompt, 10)
    assert logprobs.tokens == [text for text, _, _ in expected]
    assert logprobs.token_logprobs == pytest.approx([v for _, v, _ in expected], abs=TOLERANCE)
    for top, (_, _, want) in zip(logprobs.top_logprobs, expected):
        assert list(top) == [t for t, _ in want]
        assert list(top.values()) == pytest.approx([v for _, v in want], abs=TOLERANCE)
    text = reply.choices[0].text
    assert "".join(logprobs.tokens) == text
    assert [text[o:] .startswith(t) for o, t in zip(logprobs.text_offset, logprobs.tokens)] == [True] * 10


def stream_entries(server, path: str, body: dict) -> tuple[list, str]:
    events = sse_events(server.post(path, json={**body, "stream": True}))
    assert events[-1] == "[DONE]"
    entries, text = [], ""
    for event in events[:-1]:
        chunk = json.loads(event)
        choice = chunk["choices"][0]
        if path.endswith("chat/completions"):
            assert_schema(chunk, "CreateChatCompletionStreamResponse")
            text += choice["delta"].get("content") or ""
            entries += (choice["logprobs"] or {}).get("content") or []
        else:
            text += choice["text"]
            lp = choice["logprobs"]
            entries += [{"token": t, "logprob": v, "top": top, "offset": o} for t, v, top, o in
                        zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], lp["text_offset"])]
    return entries, text


def test_streamed_and_plain_logprobs_agree(gemma_server):
    chat = {**GREEDY, "messages": [{"role": "user", "content": QUESTION}], "logprobs": True, "top_logprobs": 2}
    plain = gemma_server.post("/v1/chat/completions", json=chat).json()["choices"][0]
    streamed, text = stream_entries(gemma_server, "/v1/chat/completions", chat)
    assert text == plain["message"]["content"]
    assert streamed == plain["logprobs"]["content"]
    completion = {**GREEDY, "prompt": PROMPT, "logprobs": 2, "echo": True}
    plain = gemma_server.post("/v1/completions", json=completion).json()["choices"][0]
    streamed, text = stream_entries(gemma_server, "/v1/completions", completion)
    assert text == plain["text"]
    lp = plain["logprobs"]
    assert streamed == [{"token": t, "logprob": v, "top": top, "offset": o} for t, v, top, o in
                        zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], lp["text_offset"])]


def test_echo_with_no_new_tokens_scores_the_prompt(gemma_server, all_rows):
    text = "The capital of France is Paris"
    prompt = all_rows.tokens(text)
    reply = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": text, "echo": True, "logprobs": 1,
                                                        "max_tokens": 0}).json()
    choice = reply["choices"][0]
    # OpenAI's API answers null for the first echoed token, which its schema types as a
    # number: the rest is checked against the schema.
    rest = {key: values[1:] for key, values in choice["logprobs"].items()}
    assert_schema({**reply, "choices": [{**choice, "logprobs": rest}]}, "CreateCompletionResponse")
    assert choice["text"] == text and choice["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 0 and reply["usage"]["prompt_tokens"] == len(prompt)
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(prompt)
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert logprobs["token_logprobs"][1:] == pytest.approx(all_rows.prompt_scores(prompt), abs=TOLERANCE)
    # Each token's text sits at its offset (the BOS spells nothing).
    assert all(text[o:].startswith(t) for o, t in zip(logprobs["text_offset"][1:], logprobs["tokens"][1:]))


def test_a_scored_prompt_reports_every_position_after_it(gemma_server):
    """lm-eval reads `token_logprobs[ctxlen:-1]`: with echo, the one token decoded after the
    prompt is always there, even when it ends the text or is a stop word."""
    prompt = gemma_server.post("/tokenize", json={"content": PROMPT, "add_special": True}).json()["tokens"]
    eos = {"1": 100}  # Gemma's <eos>, forced
    body = {"model": "gemma", "prompt": prompt, "max_tokens": 1, "logprobs": 1, "temperature": 0}
    scored = gemma_server.post("/v1/completions", json={**body, "echo": True, "logit_bias": eos}).json()["choices"][0]
    assert scored["finish_reason"] == "stop" and len(scored["logprobs"]["tokens"]) == len(prompt) + 1
    assert scored["logprobs"]["tokens"][-1] == "<eos>" and scored["text"] == "<bos>" + PROMPT
    plain = gemma_server.post("/v1/completions", json={**body, "logit_bias": eos}).json()["choices"][0]
    assert plain["text"] == "" and plain["logprobs"]["tokens"] == []  # the end is not text
    word = gemma_server.post("/v1/completions", json={**body, "echo": True}).json()["choices"][0]
    stopped = gemma_server.post("/v1/completions", json={
        **body, "echo": True, "stop": [word["logprobs"]["tokens"][-1]]}).json()["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["logprobs"]["tokens"] == word["logprobs"]["tokens"]


def test_tool_calls_come_with_their_tokens_logprobs(gemma_server):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    reply = gemma_server.post("/v1/chat/completions", json={
        **GREEDY, "max_tokens": 40, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": tools,
        "tool_choice": "required", "logprobs": True}).json()
    choice = reply["choices"][0]
    call = choice["message"]["tool_calls"][0]["function"]
    written = "".join(e["token"] for e in choice["logprobs"]["content"])
    assert call["name"] in written and json.loads(call["arguments"])["city"] in written
    assert all(e["logprob"] <= 0 for e in choice["logprobs"]["content"])


def test_a_stop_words_tokens_are_not_reported(gemma_server):
    body = {**GREEDY, "prompt": PROMPT, "logprobs": 0, "max_tokens": 12}
    full = gemma_server.post("/v1/completions", json=body).json()["choices"][0]
    tokens, offsets = full["logprobs"]["tokens"], full["logprobs"]["text_offset"]
    # The first token past the second whose text is not found earlier: the stop word.
    at = next(i for i in range(2, len(tokens)) if full["text"].find(tokens[i]) == offsets[i])
    cut = gemma_server.post("/v1/completions", json={**body, "stop": [tokens[at]]}).json()["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["logprobs"]["tokens"] == tokens[:at]
    assert "".join(cut["logprobs"]["tokens"]) == cut["text"]


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "logprobs": 1}, "logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "logprobs": 21}, "logprobs"),
    ({"prompt": "x", "logprobs": True}, "logprobs"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "best_of": 2}, "best_of"),
    # OpenAI's chat fields that nothing here acts on.
    ({"messages": [{"role": "user", "content": "x"}], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"messages": [{"role": "user", "content": "x"}], "modalities": ["text", "audio"]}, "modalities"),
    ({"messages": [{"role": "user", "content": "x"}], "prediction": {"type": "content", "content": "x"}},
     "prediction"),
    ({"messages": [{"role": "user", "content": "x"}], "web_search_options": {}}, "web_search_options"),
    ({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}, "reasoning_effort"),
    ({"messages": [{"role": "user", "content": "x"}], "verbosity": "low"}, "verbosity"),
    ({"messages": [{"role": "user", "content": "x"}], "metadata": {"a": 1}}, "metadata.a"),
])
def test_refused_fields(gemma_server, body, param):
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    response = gemma_server.post(path, json={"model": "gemma", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_fields_ignored_by_design_are_accepted(gemma_server):
    reply = gemma_server.client().chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, user="u1", metadata={"k": "v"},
        store=False, service_tier="auto", modalities=["text"], prompt_cache_key="k", safety_identifier="s")
    assert reply.choices[0].message.content is not None
