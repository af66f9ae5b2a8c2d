"""gallery/mirror.py: an install's record checked as any YAML input, and a file in place
counted only with its checksum (what a Ray node without the models folder relies on)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from localhost_ai.errors import InvalidRequest
from localhost_ai.gallery import mirror


@pytest.mark.parametrize("entry", [
    {"filename": "../outside.gguf", "uri": "huggingface://a/b/c"},
    {"filename": "/etc/passwd", "uri": "huggingface://a/b/c"},
    {"filename": ".hidden", "uri": "huggingface://a/b/c"},
    {"filename": "other.yaml", "uri": "huggingface://a/b/c"},
    {"filename": "ok.tar", "uri": "huggingface://a/b/c", "unpacked": {"../../escape": "0" * 64}},
    {"filename": "ok.tar", "uri": "huggingface://a/b/c", "unpacked": {"m/model.YML": "0" * 64}},
    {"filename": "ok.gguf"},
])
def test_a_record_naming_anything_outside_the_folder_or_a_definition_is_refused(tmp_path, entry):
    with pytest.raises(InvalidRequest):
        mirror.items(tmp_path, [entry])


def test_a_file_counts_only_with_its_checksum_even_when_its_size_is_unchanged(tmp_path):
    target = tmp_path / "w.gguf"
    target.write_bytes(b"weights-1")
    digest = hashlib.sha256(b"weights-1").hexdigest()
    [item] = mirror.items(tmp_path, [{"filename": "w.gguf", "uri": "huggingface://a/b/w.gguf", "sha256": digest}])
    assert mirror.missing([item]) == []
    assert (tmp_path / ".w.gguf.sha256").exists()  # the check, remembered
    target.write_bytes(b"weights-2")  # the same size, other content
    os.utime(target, ns=(1, 1))
    assert mirror.missing([item]) == [item]
    assert mirror.missing([item], verify=False) == []  # the front-end's own folder: a file there is never replaced


def test_fetches_of_one_file_on_a_node_take_turns_and_its_lock_file_is_beside_it(tmp_path):
    [item] = mirror.items(tmp_path, [{"filename": "sub/w.gguf", "uri": "huggingface://a/b/w.gguf"}])
    order = []

    async def fetch(n: int) -> None:
        async with mirror.node_lock([item]):
            order.append(("in", n))
            await asyncio.sleep(0.05)
            order.append(("out", n))

    async def both() -> None:
        await asyncio.gather(fetch(1), fetch(2))

    asyncio.run(both())
    assert [kind for kind, _ in order] == ["in", "out", "in", "out"]
    assert (tmp_path / "sub" / ".w.gguf.fetch.lock").exists()
