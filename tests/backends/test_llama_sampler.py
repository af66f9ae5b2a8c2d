"""The grammar sampler's shortcut (pick first, filter only on a rejection) picks what
filtering the whole vocabulary would, on the real Gemma model."""

from __future__ import annotations

import json

import pytest

from localhost_ai.backends.llama_sampler import GrammarError, Sampler
from localhost_ai.backends.llama_tools import response_format_grammar
from localhost_ai.config.sampling import SAMPLING_DEFAULTS

llama_cpp = pytest.importorskip("llama_cpp")

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "kind": {"enum": ["capital", "port"]},
                                           "sights": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
          "required": ["city", "kind", "sights"]}
GREEDY = {**SAMPLING_DEFAULTS, "temperature": 0.0}


@pytest.fixture(scope="module")
def llm(gemma_gguf):
    model = llama_cpp.Llama(str(gemma_gguf), n_ctx=512, n_threads=2, verbose=False)
    yield model
    model.close()


def decode(llm, sampler: Sampler, prompt: str, limit: int = 60) -> str:
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.reset()
    llm.eval(tokens)
    out = []
    try:
        while len(out) < limit:
            token = sampler.sample(llm._ctx.ctx, -1)
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            out.append(token)
            llm.eval([token])
    finally:
        sampler.close()
    return llm.detokenize(out).decode()


def new(llm, settings, grammar=None, seed=1) -> Sampler:
    return Sampler(llama_cpp, llm._model.vocab, llm.n_vocab(), settings, seed, grammar)


def test_the_shortcut_picks_what_filtering_everything_picks(llm):
    grammar = response_format_grammar({"type": "json_schema", "schema": SCHEMA})
    prompt = "Question: Describe Paris as JSON.\nAnswer:"
    quick = new(llm, GREEDY, grammar)
    quick_text = decode(llm, quick, prompt)
    full = new(llm, GREEDY, grammar)
    full._needed = None  # always filter the whole vocabulary
    full_text = decode(llm, full, prompt)
    assert quick_text == full_text
    assert isinstance(json.loads(quick_text), dict)


def test_a_seeded_sampler_repeats_itself(llm):
    settings = {**GREEDY, "temperature": 0.9}
    prompt = "Question: Name three colours.\nAnswer:"
    first = decode(llm, new(llm, settings, seed=42), prompt, 20)
    assert decode(llm, new(llm, settings, seed=42), prompt, 20) == first


def test_a_grammar_llama_cpp_refuses_is_an_error(llm):
    with pytest.raises(GrammarError):
        new(llm, GREEDY, "root ::= undefined-rule")
