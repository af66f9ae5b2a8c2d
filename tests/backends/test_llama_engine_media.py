"""The engine's media runs, on the real Gemma 3 270M in-process: an image or audio that
fails to decode fails its own sequence only, and a prefix holding media matches only the
same media, never half of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from localhost_ai.backends.base import CallControl
from localhost_ai.backends.llama_engine import Engine, Sequence, Slot, common_prefix
from localhost_ai.config.sampling import SAMPLING_DEFAULTS


class BrokenMedia:
    n_tokens = 4

    def decode(self, ctx, n_past, seq_id, n_batch):
        raise RuntimeError("the projector could not encode an image or audio")


@pytest.fixture(scope="module")
def engine(gemma_gguf: Path):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gemma_gguf), n_ctx=64, n_threads=2, verbose=False)
    running = Engine(llama_cpp, llm._model.model, context_per_slot=256, slots=2, threads=2, chunk=32)
    yield running, llm
    running.close()
    llm.close()


def sequence(llm, tokens, media=None) -> Sequence:
    import llama_cpp

    from localhost_ai.backends.llama_sampler import Sampler

    sampling = {**SAMPLING_DEFAULTS, "temperature": 0.0}
    sampler = Sampler(llama_cpp, llm._model.vocab, llm.n_vocab(), sampling, 1, None)
    return Sequence(tokens, sampler, 8, CallControl(), media=media or {})


def outcome(seq: Sequence) -> tuple[str, object]:
    while True:
        kind, value = seq.output.get(timeout=60)
        if kind in ("end", "error"):
            return kind, value


def test_a_media_run_that_fails_fails_its_sequence_alone(engine):
    running, llm = engine
    text = llm.tokenize(b"Question: What is the capital of France?\nAnswer:")
    bad_tokens = text[:3] + [("k", i) for i in range(4)] + text[3:]
    good, bad = sequence(llm, list(text)), sequence(llm, bad_tokens, {3: BrokenMedia()})
    running.submit(good)
    running.submit(bad)
    assert outcome(bad)[0] == "error"
    assert outcome(good) == ("end", "length")
    assert running.alive
    again = sequence(llm, list(text))
    running.submit(again)
    assert outcome(again) == ("end", "length")


def test_a_shared_prefix_never_ends_inside_a_media_run():
    image_a = [("a", i) for i in range(4)]
    image_b = [("b", i) for i in range(4)]
    assert common_prefix([1, 2, *image_a, 3], [1, 2, *image_a, 3, 4]) == 7
    assert common_prefix([1, 2, *image_a, 3], [1, 2, *image_b, 3]) == 2
    assert common_prefix([1, 2, *image_a[:2]], [1, 2, *image_a, 3]) == 2  # half an image is not the image


def test_a_slot_cut_back_returns_the_position_where_the_rest_began():
    slot = Slot(0)
    slot.extend([1, 2], 0, 2)
    slot.extend([("a", i) for i in range(4)], 2, 5)  # a run of 4 cells over 3 positions (M-RoPE)
    slot.extend([3], 5, 6)
    assert slot.starts == [0, 1, 2, 2, 2, 2, 5] and slot.end == 6
    assert slot.cut(6) == 5 and slot.end == 5
    assert slot.cut(2) == 2 and slot.cells == [1, 2] and slot.end == 2


def test_a_prompt_ending_inside_a_cached_image_fails_alone(engine, tmp_path):
    """A prompt that matches a slot's cells up to the middle of an image is cut back to the
    image's start, and one that ends with an image fails on its own."""
    import io

    import llama_cpp
    import numpy as np
    from PIL import Image

    from localhost_ai.backends.llama_media import Projector
    from localhost_ai.contract.generate import ImagePart
    from tests.mmproj_fixture import build_vision_projector

    running, llm = engine
    projector = Projector(llama_cpp, llm._model.model, build_vision_projector(tmp_path / "mmproj.gguf"), 2)
    picture = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(picture, format="PNG")
    prompt = projector.prompt(f"Question: {projector.marker} What is it?\nAnswer:", [ImagePart(picture.getvalue())], None)
    try:
        (start, run), = prompt.media.items()
        first = sequence(llm, list(prompt.tokens), dict(prompt.media))
        running.submit(first)
        assert outcome(first)[0] == "end"
        cut = prompt.tokens[:start + run.n_tokens]  # ends with the image whose cells the slot holds
        text = llm.tokenize(b"Question: What is the capital of France?\nAnswer:")
        bad, good = sequence(llm, cut, {start: run}), sequence(llm, list(text))
        running.submit(good)
        running.submit(bad)
        assert outcome(bad)[0] == "error"
        assert outcome(good)[0] == "end"
    finally:
        prompt.close()
        projector.close()
