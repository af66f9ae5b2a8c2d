"""The rest of the sampling surface on the real Gemma 3 270M: logit bias, llama.cpp's
other samplers, integer ranges in grammars, /tokenize and /detokenize, and the request
shapes other servers take (token-id prompts, stream_options, a required model)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import sse_events

PROMPT = "The capital of France is"
STORY = "Once upon a time"
COUNTING = "1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3,"


def complete(server, prompt=PROMPT, **fields) -> str:
    response = server.post("/v1/completions", json={"model": "gemma", "prompt": prompt, "max_tokens": 12, **fields})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def token_id(server, text: str) -> int:
    tokens = server.post("/tokenize", json={"content": text}).json()["tokens"]
    assert len(tokens) == 1, tokens
    return tokens[0]


# -- logit bias ----------------------------------------------------------------------------

def test_logit_bias_bans_and_forces_tokens_per_sequence(gemma_server):
    # Seeded: an unseeded prompt may share its batch, which shifts llama.cpp's logits in their
    # last bits and can turn a near tie; a seeded one is read and decoded as if alone.
    greedy = complete(gemma_server, temperature=0, max_tokens=6, seed=1)
    first = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": PROMPT, "max_tokens": 1,
                                                        "temperature": 0, "logprobs": 0}).json()
    first_token = first["choices"][0]["logprobs"]["tokens"][0]
    assert greedy.startswith(first_token)
    banned = {str(token_id(gemma_server, first_token)): -100}
    forced = {str(token_id(gemma_server, " Berlin")): 100}
    other = "The capital of Germany is"
    alone = complete(gemma_server, other, temperature=0, max_tokens=6, seed=1)
    jobs = [(PROMPT, {}), (PROMPT, {"logit_bias": banned}), (other, {}), (PROMPT, {"logit_bias": forced})]
    with ThreadPoolExecutor(len(jobs)) as pool:  # decoded together in the engine's batches
        texts = list(pool.map(lambda job: complete(gemma_server, job[0], temperature=0, max_tokens=6, seed=1,
                                                   **job[1]), jobs))
    assert texts[0] == greedy and texts[2] == alone  # the others' sequences are unchanged
    assert texts[1] != greedy and not texts[1].startswith(first_token)
    assert texts[3].startswith(" Berlin")
    # Chat and edits take it too.
    chat = gemma_server.post("/v1/chat/completions", json={
        "model": "gemma", "messages": [{"role": "user", "content": "Name a city."}], "temperature": 0,
        "max_tokens": 3, "logit_bias": forced})
    assert chat.json()["choices"][0]["message"]["content"].startswith("Berlin")
    edit = gemma_server.post("/v1/edits", json={"model": "gemma", "instruction": "Name a city.", "temperature": 0,
                                                 "max_tokens": 3, "logit_bias": forced})
    assert edit.json()["choices"][0]["text"].lstrip().startswith("Berlin")


def test_logit_bias_holds_under_a_grammar(gemma_server):
    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Berlin"]}}, "required": ["city"]}
    body = {"model": "gemma", "messages": [{"role": "user", "content": "The capital of France, as JSON."}],
            "temperature": 0, "max_tokens": 20,
            "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}}
    plain = json.loads(gemma_server.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"])
    ban = plain["city"]
    tokens = gemma_server.post("/tokenize", json={"content": ban}).json()["tokens"]
    biased = gemma_server.post("/v1/chat/completions", json={**body, "logit_bias": {str(tokens[0]): -100}}).json()
    answer = json.loads(biased["choices"][0]["message"]["content"])
    assert answer["city"] != ban and answer["city"] in ("Paris", "Berlin")


# -- llama.cpp's samplers ------------------------------------------------------------------

def test_each_sampler_changes_sampling_as_it_should(gemma_server):
    warm = {"temperature": 0.9}
    plain = {complete(gemma_server, STORY, seed=seed, **warm) for seed in (1, 2, 3)}
    assert len(plain) > 1  # sampled: seeds differ
    greedy = complete(gemma_server, STORY, temperature=0)
    # typical-p this small keeps one candidate (the most typical, not the most likely): no seed matters.
    typical = {complete(gemma_server, STORY, seed=seed, typical_p=0.001, **warm) for seed in (1, 2, 3)}
    assert len(typical) == 1 and typical != {greedy}
    # Mirostat aiming at almost no surprise keeps only the likeliest token: greedy, whatever the seed.
    for version in (1, 2):
        mirostat = {complete(gemma_server, STORY, seed=seed, mirostat=version, mirostat_tau=0.01, **warm)
                    for seed in (1, 2, 3)}
        assert mirostat == {greedy}
    # Top-n-sigma this narrow keeps only the best logit (over a few tokens, before any near tie).
    narrow = {complete(gemma_server, STORY, seed=seed, max_tokens=3, top_n_sigma=0.001, **warm) for seed in (1, 2, 3)}
    assert narrow == {complete(gemma_server, STORY, temperature=0, max_tokens=3)}
    # XTC with certainty removes the likeliest tokens above its threshold, even when greedy.
    assert complete(gemma_server, STORY, temperature=0, seed=1, xtc_probability=1, xtc_threshold=0.05) != greedy
    # Seeded sampling with them repeats.
    once = complete(gemma_server, STORY, seed=9, typical_p=0.7, xtc_probability=0.5, **warm)
    assert complete(gemma_server, STORY, seed=9, typical_p=0.7, xtc_probability=0.5, **warm) == once


def test_penalty_window_and_dry(gemma_server):
    greedy = complete(gemma_server, COUNTING, temperature=0, max_tokens=16)
    assert "1, 2, 3" in greedy  # the model goes on counting
    # No window: no penalty at all.
    assert complete(gemma_server, COUNTING, temperature=0, max_tokens=16, repeat_penalty=1.5,
                    repeat_last_n=0) == greedy
    assert complete(gemma_server, COUNTING, temperature=0, max_tokens=16, repeat_penalty=1.5,
                    repeat_last_n=64) != greedy
    # DRY breaks the repeated sequence.
    dry = complete(gemma_server, COUNTING, temperature=0, max_tokens=16, dry_multiplier=2.0)
    assert dry != greedy and "1, 2, 3, 1, 2, 3" not in dry


def test_sampler_settings_from_the_model_file(make_server, models_dir):
    yaml_path = models_dir / "gemma.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("  temperature: 0.0\n",
                                                       "  temperature: 0.9\n  mirostat: 2\n  mirostat_tau: 0.01\n"))
    (models_dir / "bad.yaml").write_text(yaml_path.read_text().replace("name: gemma", "name: bad")
                                         .replace("  mirostat: 2\n", "  mirostat: 2\n  tfz: 0.5\n"))
    server = make_server(models_dir)
    greedy = complete(server, STORY, temperature=0)
    assert {complete(server, STORY, seed=seed) for seed in (1, 2)} == {greedy}
    invalid = server.get("/system").json()["invalid"]
    assert [(entry["file"], entry["field"]) for entry in invalid] == [("bad.yaml", "parameters.tfz")]


@pytest.mark.parametrize("fields, param", [
    ({"mirostat": 3}, "mirostat"),
    ({"typical_p": 1.5}, "typical_p"),
    ({"tfs_z": 0.9}, "tfs_z"),
    ({"tfz": 0.9}, "tfz"),
    ({"dry_base": 0.5}, "dry_base"),
    ({"repeat_last_n": -2}, "repeat_last_n"),
    ({"xtc_probability": 2}, "xtc_probability"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias.5"),
    ({"logit_bias": {"999999999": 1}}, "logit_bias"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
])
def test_refused_sampling_values(gemma_server, fields, param):
    for path, body in (("/v1/completions", {"prompt": "x"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})):
        response = gemma_server.post(path, json={"model": "gemma", **body, **fields})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


# -- integer ranges in grammars ------------------------------------------------------------

def test_integer_ranges_hold_over_seeded_samples(gemma_server):
    schema = {"type": "object", "required": ["age", "floor", "delta"], "properties": {
        "age": {"type": "integer", "minimum": 18, "maximum": 120},
        "floor": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 7},
        "delta": {"type": "integer", "maximum": -10}}}
    body = {"model": "gemma", "messages": [{"role": "user", "content": "A person, as JSON."}], "temperature": 1.3,
            "max_tokens": 60, "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}

    def sample(seed: int) -> dict:
        reply = gemma_server.post("/v1/chat/completions", json={**body, "seed": seed}).json()
        return json.loads(reply["choices"][0]["message"]["content"])

    with ThreadPoolExecutor(4) as pool:
        values = list(pool.map(sample, range(50)))
    for value in values:
        assert 18 <= value["age"] <= 120 and -3 < value["floor"] < 7 and value["delta"] <= -10, value
    assert len({v["age"] for v in values}) > 3  # sampled, not one value forced


# -- /tokenize and /detokenize ---------------------------------------------------------------

def test_tokenize_and_detokenize_round_trip(gemma_server):
    text = "Naïve llamas 🦙 say 日本語 <start_of_turn>"
    plain = gemma_server.post("/tokenize", json={"content": text}).json()["tokens"]
    assert all(isinstance(t, int) for t in plain)
    assert gemma_server.post("/detokenize", json={"tokens": plain}).json()["content"] == text
    special = gemma_server.post("/tokenize", json={"content": text, "add_special": True}).json()["tokens"]
    assert special == [2] + plain  # Gemma's BOS
    pieces = gemma_server.post("/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == plain
    raw = b"".join(p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces)
    assert raw.decode() == text
    # LocalAI's route and body.
    local = gemma_server.post("/v1/tokenize", json={"model": "gemma", "content": text}).json()
    assert local == {"tokens": plain}
    bad = gemma_server.post("/detokenize", json={"tokens": [1, 300000]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens[1]"
    # vLLM's shape, which lm-evaluation-harness tokenizes with: its BOS by default, `prompt` back.
    vllm = gemma_server.post("/tokenize", json={"prompt": text}).json()
    assert vllm == {"tokens": special, "count": len(special)}
    assert gemma_server.post("/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"] == plain
    assert gemma_server.post("/detokenize", json={"tokens": plain}).json()["prompt"] == text
    info = gemma_server.get("/tokenizer_info").json()
    assert (info["bos_token"], info["eos_token"], info["model_max_length"]) == ("<bos>", "<eos>", 1024)
    assert "Question:" in info["chat_template"]  # the model's YAML template
    for body in ({}, {"prompt": "a", "content": "a"}):
        assert gemma_server.post("/tokenize", json=body).json()["error"]["param"] == "content"


# -- token-id prompts, stream_options, --require-model ---------------------------------------

def test_the_four_prompt_shapes_give_the_same_completions(gemma_server):
    texts = [PROMPT, "Question: What colour is the sky?\nAnswer:"]
    ids = [gemma_server.post("/tokenize", json={"content": t, "add_special": True}).json()["tokens"] for t in texts]
    common = {"model": "gemma", "max_tokens": 6, "temperature": 0, "n": 2}

    def choices(prompt, stream=False) -> list[str]:
        if not stream:
            reply = gemma_server.post("/v1/completions", json={**common, "prompt": prompt}).json()
            return [c["text"] for c in sorted(reply["choices"], key=lambda c: c["index"])]
        out: dict[int, str] = {}
        for event in sse_events(gemma_server.post("/v1/completions", json={**common, "prompt": prompt,
                                                                            "stream": True}))[:-1]:
            for choice in json.loads(event)["choices"]:
                out[choice["index"]] = out.get(choice["index"], "") + choice["text"]
        return [out[i] for i in sorted(out)]

    one = choices(texts[0])
    assert len(one) == 2 and one[0]
    assert choices(ids[0]) == one and choices(ids[0], stream=True) == one
    both = choices(texts)
    assert both[:2] == one
    assert choices(ids) == both and choices(ids, stream=True) == both
    echoed = gemma_server.post("/v1/completions", json={**common, "n": 1, "prompt": ids[0], "echo": True}).json()
    assert echoed["choices"][0]["text"] == "<bos>" + texts[0] + one[0]


@pytest.mark.parametrize("prompt, param", [
    ([1, 2, 300000], "prompt[2]"),
    ([[5, 6], [7, 300000]], "prompt[1][1]"),
    ([], "prompt"),
    ([[1], []], "prompt"),
    ([1, -1], "prompt"),
])
def test_token_ids_out_of_the_vocabulary_are_refused(gemma_server, prompt, param):
    response = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": prompt})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_require_model(make_server, models_dir):
    server = make_server(models_dir, "--require-model")
    for path, body in (("/v1/completions", {"prompt": "x"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})):
        response = server.post(path, json=body)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "model" and "model" in response.json()["error"]["message"]
        assert server.post(path, json={**body, "model": "gemma", "max_tokens": 2}).status_code == 200


# -- what a second reading found -------------------------------------------------------------

ELLIPSES = "\u2026" * 16  # one Gemma token of 48 bytes (llama-cpp-python's detokenize cuts at 32)


def test_long_tokens_keep_all_their_bytes(gemma_server):
    tokens = gemma_server.post("/tokenize", json={"content": ELLIPSES, "with_pieces": True}).json()["tokens"]
    assert [t["piece"] for t in tokens] == [ELLIPSES]
    assert gemma_server.post("/detokenize", json={"tokens": [tokens[0]["id"]]}).json()["content"] == ELLIPSES
    forced = {str(tokens[0]["id"]): 100}
    assert complete(gemma_server, max_tokens=1, logit_bias=forced, temperature=0) == ELLIPSES


def test_a_bias_that_leaves_the_grammar_nothing_is_a_400(gemma_server):
    ends = {str(t): -100 for t in (1, 106, 212)}  # every end-of-generation token Gemma has
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    response = gemma_server.post("/v1/chat/completions", json={
        "model": "gemma", "messages": [{"role": "user", "content": "{}"}], "temperature": 0, "max_tokens": 20,
        "logit_bias": ends, "response_format": {"type": "json_schema", "json_schema": {"name": "e", "schema": schema}}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "logit_bias"
    assert complete(gemma_server, max_tokens=2, temperature=0)  # the model goes on serving


def test_edges_of_the_sampling_values(gemma_server):
    # A window far beyond the context is the context, not an allocation of its size.
    assert complete(gemma_server, COUNTING, temperature=0, max_tokens=8, repeat_penalty=1.5,
                    repeat_last_n=2**31 - 1, dry_multiplier=1.0, dry_penalty_last_n=2**31 - 1)
    # A banned token's log-probability is a number JSON can carry.
    prompt = gemma_server.post("/tokenize", json={"content": PROMPT, "add_special": True}).json()["tokens"]
    reply = gemma_server.post("/v1/completions", json={
        "model": "gemma", "prompt": prompt, "echo": True, "logprobs": 0, "max_tokens": 0,
        "logit_bias": {str(prompt[2]): -100}})
    assert reply.status_code == 200 and "Infinity" not in reply.text
    assert reply.json()["choices"][0]["logprobs"]["token_logprobs"][2] == -9999.0
    # Too many log-probabilities for one answer.
    many = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": [PROMPT] * 8, "n": 8,
                                                       "logprobs": 20})
    assert many.status_code == 400 and many.json()["error"]["code"] == "too_many_logprobs"
    # Integer bounds with an enum that breaks them, and bounds beyond 16 digits.
    for bounds, status in (({"enum": [1, 10], "maximum": 7}, 400), ({"minimum": -1e300, "maximum": 1e300}, 200)):
        schema = {"type": "object", "properties": {"n": {"type": "integer", **bounds}}, "required": ["n"]}
        response = gemma_server.post("/v1/chat/completions", json={
            "model": "gemma", "messages": [{"role": "user", "content": "A number as JSON."}], "max_tokens": 30,
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}})
        assert response.status_code == status, response.text
