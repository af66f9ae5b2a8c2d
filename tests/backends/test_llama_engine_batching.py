"""Prompt reading and drafting in the engine, on the real Gemma 3 270M in-process: prompts
that arrive together share a step's prompt batch unless they must be exact (seeded), which
are read alone and stay repeatable bit for bit; drafts from prompt lookup change nothing
of a greedy answer but how many steps it takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from localhost_ai.backends.base import CallControl
from localhost_ai.backends.llama_engine import Engine, Sequence
from localhost_ai.config.sampling import SAMPLING_DEFAULTS

QUESTIONS = {
    "What is the capital of France?": "Paris", "What is the capital of Japan?": "Tokyo",
    "Who wrote Hamlet?": "Shakespeare", "What is the capital of Italy?": "Rome",
    "What is the capital of Germany?": "Berlin", "What is the capital of Spain?": "Madrid",
    "What is the capital of England?": "London", "What is the capital of Russia?": "Moscow",
}


@pytest.fixture(scope="module")
def engine(gemma_gguf: Path):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gemma_gguf), n_ctx=64, n_threads=2, verbose=False)
    running = Engine(llama_cpp, llm._model.model, context_per_slot=512, slots=8, threads=2, chunk=128,
                     draft_max=8)
    yield running, llm
    running.close()
    llm.close()


def sequence(llm, question: str, seed: int | None = None, budget: int = 12, drafter=None,
             prompt: str | None = None) -> Sequence:
    import llama_cpp

    from localhost_ai.backends.llama_sampler import Sampler

    sampling = {**SAMPLING_DEFAULTS, "temperature": 0.0 if seed is None else 0.9}
    sampler = Sampler(llama_cpp, llm._model.vocab, llm.n_vocab(), sampling, 1 if seed is None else seed, None)
    tokens = llm.tokenize((prompt or f"Question: {question}\nAnswer:").encode())
    return Sequence(list(tokens), sampler, budget, CallControl(), reuse=seed is None, exact=seed is not None,
                    drafter=drafter)


def answer(llm, seq: Sequence) -> tuple[str, str]:
    tokens = []
    while True:
        kind, value = seq.output.get(timeout=120)
        if kind == "token":
            tokens.append(value[0])
        elif kind == "end":
            return llm.detokenize(tokens).decode(errors="replace"), value
        else:
            raise AssertionError(value)


def submit_together(running: Engine, sequences: list[Sequence]) -> None:
    """All at once: the engine admits them in one go, as requests that arrive together."""
    with running._wake:
        running.incoming.extend(sequences)
        running._wake.notify()


def test_unseeded_prompts_that_arrive_together_are_read_in_fewer_steps(engine):
    running, llm = engine
    before = running.snapshot()
    sequences = [sequence(llm, q) for q in QUESTIONS]
    submit_together(running, sequences)
    answers = [answer(llm, s) for s in sequences]
    after = running.snapshot()
    assert after["prompt_steps"] - before["prompt_steps"] < len(QUESTIONS), after
    assert after["max_prompts_in_step"] >= 4, after
    assert after["max_prompt_tokens_in_step"] <= 128  # the step's budget, shared
    for (question, expected), (text, finish) in zip(QUESTIONS.items(), answers):
        assert finish in ("stop", "length"), question
        assert expected in text, (question, text)


def test_seeded_prompts_are_read_alone_and_repeat_exactly_alone_and_together(engine):
    running, llm = engine
    alone = []
    for i, question in enumerate(QUESTIONS):
        seq = sequence(llm, question, seed=100 + i, budget=16)
        running.submit(seq)
        alone.append(answer(llm, seq))
    before = running.snapshot()
    sequences = [sequence(llm, q, seed=100 + i, budget=16) for i, q in enumerate(QUESTIONS)]
    submit_together(running, sequences)
    together = [answer(llm, s) for s in sequences]
    after = running.snapshot()
    assert after["prompt_steps"] - before["prompt_steps"] >= len(QUESTIONS)  # one prompt a step
    assert after["max_sequences_in_step"] >= 4  # yet generated together
    assert together == alone


PARAGRAPH = ("The committee met on Tuesday to review the budget for the new library. After a long discussion, "
             "the members agreed to fund the children's reading room, to extend the opening hours on weekends, "
             "and to replace the old heating system before the winter. The chair thanked the volunteers.")


def test_prompt_lookup_drafts_are_kept_only_as_far_as_greedy_picks_agree(engine):
    from localhost_ai.backends.llama_speculative import PromptLookup

    running, llm = engine
    prompt = f"Copy the text exactly.\nText: {PARAGRAPH}\nCopy: "
    plain = sequence(llm, "", budget=60, prompt=prompt)
    start = running.snapshot()
    running.submit(plain)
    expected = answer(llm, plain)
    before = running.snapshot()
    drafted = sequence(llm, "", budget=60, prompt=prompt, drafter=PromptLookup())
    running.submit(drafted)
    assert answer(llm, drafted) == expected
    after = running.snapshot()
    assert PARAGRAPH[:40] in expected[0]  # the model copies: drafting has something to find
    accepted, tried = after["draft_accepted"] - before["draft_accepted"], after["drafted"] - before["drafted"]
    assert 0 < accepted <= tried
    # fewer steps than the plain answer took
    assert after["steps"] - before["steps"] < before["steps"] - start["steps"], (start, before, after)
    print("steps", before["steps"] - start["steps"], after["steps"] - before["steps"], "drafted", tried,
          "accepted", accepted)


def test_a_draft_model_changes_no_greedy_answer(engine, gemma_gguf):
    import llama_cpp

    from localhost_ai.backends.llama_speculative import DraftModel

    running, llm = engine
    draft_llm = llama_cpp.Llama(model_path=str(gemma_gguf), n_ctx=64, n_threads=2, verbose=False)
    draft = DraftModel(llama_cpp, draft_llm._model.model, 512, 8, 2)
    try:
        # (one at a time: a batch's layout shifts llama.cpp's logits in their last bits, and a
        # near tie in a long greedy answer can turn either way; these have none)
        prompts = [f"Copy the text exactly.\nText: {PARAGRAPH}\nCopy: ", "Question: What is the capital of France?\nAnswer:"]
        expected = []
        for prompt in prompts:
            plain = sequence(llm, "", budget=40, prompt=prompt)
            running.submit(plain)
            expected.append(answer(llm, plain))
        before = running.snapshot()
        for prompt, wanted in zip(prompts, expected):
            drafted = sequence(llm, "", budget=40, prompt=prompt, drafter=draft)
            running.submit(drafted)
            assert answer(llm, drafted) == wanted
        after = running.snapshot()
        tried, kept = after["drafted"] - before["drafted"], after["draft_accepted"] - before["draft_accepted"]
        # the model drafting for itself: nearly every draft is kept
        assert tried > 0 and kept >= 0.8 * tried, (tried, kept)
        assert draft.tokens_decoded > 0
    finally:
        draft.close()
        draft_llm.close()


def test_a_lone_sequence_verifies_as_many_drafts_as_pay_at_the_measured_cost():
    from localhost_ai.backends.llama_engine import RowCosts, worth_verifying

    costs = RowCosts()
    drafts = list(range(8))
    assert worth_verifying(drafts, 0, 0, costs) == 8  # nothing measured yet: all are tried
    costs.note(1, 0.0215)
    assert worth_verifying(drafts, 0, 0, costs) == 8  # 2 to 9 rows not measured: guessed as cheap as 1
    costs.note(9, 0.067)  # as measured here: 9 rows cost three times one
    costs.note(2, 0.0231)
    assert costs.estimate(5) == pytest.approx(0.0231 + (0.067 - 0.0231) * 3 / 7)
    assert worth_verifying(drafts, 90, 2, costs) == 8  # nearly every draft kept: all pay
    assert worth_verifying(drafts, 5, 5, costs) == 1  # half kept: one draft, in a row that costs little
    assert worth_verifying(drafts, 0, 40, costs) == 0  # none kept: none verified
    costs.note(2, 0.2)
    assert costs.seconds[2] == pytest.approx(0.0231 + (0.2 - 0.0231) * 0.2)  # an average, not the last


def test_a_sequence_that_drafts_alone_gets_no_drafts_in_company_and_the_same_answer(engine):
    from localhost_ai.backends.llama_speculative import PromptLookup

    running, llm = engine
    prompt = f"Copy the text exactly.\nText: {PARAGRAPH}\nCopy: "
    plain = sequence(llm, "", budget=30, prompt=prompt)
    running.submit(plain)
    expected = answer(llm, plain)
    before = running.snapshot()
    pair = [sequence(llm, "", budget=30, prompt=prompt, drafter=PromptLookup()) for _ in range(2)]
    for seq in pair:
        seq.draft_alone = True
    submit_together(running, pair)
    assert [answer(llm, seq) for seq in pair] == [expected, expected]
    together = running.snapshot()
    assert together["drafted"] == before["drafted"]  # the two ended in the same step, never alone
    lone = sequence(llm, "", budget=30, prompt=prompt, drafter=PromptLookup())
    lone.draft_alone = True
    running.submit(lone)
    assert answer(llm, lone) == expected
    after = running.snapshot()
    assert after["draft_accepted"] > together["draft_accepted"]


def test_a_lone_sequence_whose_drafts_seemed_not_to_pay_tries_again_and_keeps_them(engine):
    """Row costs measured at a busy moment (or two early rejections) must not end drafting
    for good: a record that says drafts do not pay would otherwise never change."""
    from localhost_ai.backends.llama_engine import RowCosts
    from localhost_ai.backends.llama_speculative import PromptLookup

    running, llm = engine
    saved = running.costs
    running.costs = RowCosts()
    for rows in range(1, 34):  # every extra row looks as dear as a whole step: no draft pays
        running.costs.note(rows, 0.02 * rows)
    try:
        before = running.snapshot()
        lone = sequence(llm, "", budget=60, prompt=f"Copy the text exactly.\nText: {PARAGRAPH}\nCopy: ",
                        drafter=PromptLookup())
        running.submit(lone)
        assert PARAGRAPH[:40] in answer(llm, lone)[0]
        after = running.snapshot()
    finally:
        running.costs = saved
    assert after["drafted"] - before["drafted"] >= 60 // 8 - 1  # one draft every eight steps at least
    assert after["draft_accepted"] > before["draft_accepted"]
