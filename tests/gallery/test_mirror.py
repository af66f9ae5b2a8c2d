"""gallery/mirror.py: an install's record checked as any YAML input, and a file in place
counted only with its checksum (what a Ray node without the models folder relies on)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

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
    {"filename": "ok.gguf", "uri": "huggingface://a/b/c", "sha256": 12},
    {"filename": "ok.tar", "uri": "huggingface://a/b/c", "unpacked": ["model.gguf"]},
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


def test_a_fetch_cancelled_while_it_waits_for_a_file_s_lock_leaves_the_lock_free(tmp_path):
    [item] = mirror.items(tmp_path, [{"filename": "w.gguf", "uri": "huggingface://a/b/w.gguf"}])

    async def run() -> list[str]:
        # One thread for the loop's blocking work, as a node's other work (hashing) needs it.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        order = []

        async def waiter() -> None:
            async with mirror.node_lock([item]):
                order.append("waiter")

        async with mirror.node_lock([item]):
            waiting = asyncio.create_task(waiter())
            await asyncio.sleep(0.5)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await asyncio.wait_for(asyncio.to_thread(order.append, "thread free"), 2)  # the wait held none
        async with mirror.node_lock([item]):  # free at once: nothing still waits for it
            order.append("next")
        return order

    assert asyncio.run(asyncio.wait_for(run(), 10)) == ["thread free", "next"]


def _define(folder, name: str, model: str, record: list | None = None) -> None:
    data = {"name": name, "parameters": {"model": model}}
    if record is not None:
        data["installed_from"] = record
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))


def test_a_record_giving_another_model_s_file_other_content_is_refused_before_any_node_replaces_it(tmp_path):
    (tmp_path / "b.gguf").write_bytes(b"model b")
    b_sum, other_sum = hashlib.sha256(b"model b").hexdigest(), hashlib.sha256(b"model a").hexdigest()
    _define(tmp_path, "b", "b.gguf")  # a user's own model: no record, the file is its
    claim = [{"filename": "b.gguf", "uri": "huggingface://x/y/b.gguf", "sha256": other_sum}]
    with pytest.raises(InvalidRequest) as refused:
        mirror.check_owned(tmp_path, "a", claim)
    assert refused.value.code == "file_not_owned" and "model 'b'" in refused.value.message
    mirror.check_owned(tmp_path, "a", [{**claim[0], "sha256": b_sum}])  # the same bytes: shared, not replaced
    mirror.check_owned(tmp_path, "b", claim)  # its own file: its record decides

    # Another install recording other content for the same file, or for a file in a folder
    # another model names (a diffusers folder, say), is refused as well.
    _define(tmp_path, "c", "c.gguf", [{"filename": "c.gguf", "uri": "huggingface://x/y/c.gguf", "sha256": b_sum}])
    with pytest.raises(InvalidRequest):
        mirror.check_owned(tmp_path, "a", [{"filename": "c.gguf", "uri": "huggingface://x/y/c", "sha256": other_sum}])
    mirror.check_owned(tmp_path, "a", [{"filename": "c.gguf", "uri": "huggingface://x/y/c", "sha256": b_sum}])
    # A record claiming the file with other content does not lock out the model whose
    # content the front-end's copy has.
    (tmp_path / "c.gguf").write_bytes(b"model a")
    mirror.check_owned(tmp_path, "a", [{"filename": "c.gguf", "uri": "huggingface://x/y/c", "sha256": other_sum}])
    _define(tmp_path, "pics", "pics")
    with pytest.raises(InvalidRequest):
        mirror.check_owned(tmp_path, "a", [{"filename": "pics.tar", "uri": "huggingface://x/y/p", "sha256": b_sum,
                                            "unpacked": {"pics/unet.bin": other_sum}}])
    mirror.check_owned(tmp_path, "a", [{"filename": "mine.gguf", "uri": "huggingface://x/y/m", "sha256": other_sum}])


def _tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FETCH = {"allow_file_uris": True}


def test_in_the_front_end_s_folder_an_archive_fetch_writes_only_what_is_missing(tmp_path):
    archive = _tar(tmp_path / "src.tar", {"m/model.onnx": b"weights", "m/model.onnx.json": b"{}", "m/README": b"orig"})
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    (root / "m" / "README").write_bytes(b"user edited")  # a user's change: theirs
    (root / "m" / "model.onnx").write_bytes(b"retrained")
    (root / "bundle.tar").write_bytes(b"a user's file of the archive's name")
    record = [{"filename": "bundle.tar", "uri": archive.as_uri(), "sha256": _sha(archive.read_bytes()),
               "unpacked": {"m/model.onnx": _sha(b"weights"), "m/model.onnx.json": _sha(b"{}"),
                            "m/README": _sha(b"orig")}}]
    wanted = mirror.items(root, record)
    lacking = mirror.missing(wanted, verify=False)
    assert lacking == wanted  # the .json is missing
    asyncio.run(mirror.put_in_place(lacking, FETCH, lambda *report: None, verify=False))
    assert (root / "m" / "model.onnx.json").read_bytes() == b"{}"
    assert (root / "m" / "README").read_bytes() == b"user edited"
    assert (root / "m" / "model.onnx").read_bytes() == b"retrained"
    assert (root / "bundle.tar").read_bytes() == b"a user's file of the archive's name"
    assert sorted(path.name for path in root.iterdir()) == ["bundle.tar", "m"]  # no archive, no marks left
    assert sorted(path.name for path in (root / "m").iterdir()) == ["README", "model.onnx", "model.onnx.json"]

    # In a node's own folder the same fetch puts the install's files back.
    asyncio.run(mirror.put_in_place(mirror.missing(wanted), FETCH, lambda *report: None))
    assert (root / "m" / "README").read_bytes() == b"orig" and (root / "m" / "model.onnx").read_bytes() == b"weights"


def test_a_link_the_folder_s_owner_placed_is_read_through_and_never_written_through(tmp_path):
    elsewhere = tmp_path / "disk"
    elsewhere.mkdir()
    (elsewhere / "w.gguf").write_bytes(b"weights")
    root = tmp_path / "models"
    root.mkdir()
    (root / "w.gguf").symlink_to(elsewhere / "w.gguf")
    source = tmp_path / "w-new.gguf"
    source.write_bytes(b"new weights")
    [item] = mirror.items(root, [{"filename": "w.gguf", "uri": source.as_uri(), "sha256": _sha(b"weights")}])
    assert mirror.missing([item]) == [] and mirror.missing([item], verify=False) == []

    [other] = mirror.items(root, [{"filename": "w.gguf", "uri": source.as_uri(), "sha256": _sha(b"new weights")}])
    assert mirror.missing([other]) == [other]
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(mirror.put_in_place([other], FETCH, lambda *report: None))
    assert refused.value.code == "file_exists"
    assert (elsewhere / "w.gguf").read_bytes() == b"weights" and (root / "w.gguf").is_symlink()

    (root / "linked").symlink_to(elsewhere, target_is_directory=True)  # a folder leading out: nothing written there
    [inside] = mirror.items(root, [{"filename": "linked/x.gguf", "uri": source.as_uri(), "sha256": _sha(b"x")}])
    with pytest.raises(InvalidRequest):
        asyncio.run(mirror.put_in_place([inside], FETCH, lambda *report: None))
    assert sorted(path.name for path in elsewhere.iterdir()) == ["w.gguf"]


def test_another_model_s_malformed_record_claims_nothing(tmp_path):
    (tmp_path / "odd.yaml").write_text("name: odd\nparameters: {model: o.gguf}\ninstalled_from: 1\ninstalled_files: 1\n")
    mirror.check_owned(tmp_path, "a", [{"filename": "o2.gguf", "uri": "huggingface://x/y/o", "sha256": "0" * 64}])


def test_a_cancelled_copy_of_a_file_uri_stops_and_leaves_no_partial(tmp_path):
    source = tmp_path / "big.gguf"
    source.write_bytes(os.urandom(64 << 20))
    root = tmp_path / "models"
    root.mkdir()
    [item] = mirror.items(root, [{"filename": "big.gguf", "uri": source.as_uri(), "sha256": "0" * 64}])
    reports = []

    def progress(name, done, total):
        reports.append(done)
        time.sleep(0.05)  # a slow disk: the copy takes seconds

    async def run() -> int:
        fetching = asyncio.ensure_future(mirror.put_in_place([item], FETCH, progress))
        while not reports:
            await asyncio.sleep(0.01)
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetching
        return len(reports)

    at_cancel = asyncio.run(run())
    time.sleep(0.5)
    assert len(reports) <= at_cancel + 1  # the copy stopped with the cancel
    assert sorted(path.name for path in root.iterdir()) == []


def test_a_lock_for_a_file_under_a_linked_folder_leading_out_makes_no_folder_there(tmp_path):
    elsewhere = tmp_path / "disk"
    elsewhere.mkdir()
    root = tmp_path / "models"
    root.mkdir()
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    [item] = mirror.items(root, [{"filename": "linked/a/b/x.gguf", "uri": "huggingface://a/b/x", "sha256": "0" * 64}])

    async def lock() -> None:
        async with mirror.node_lock([item]):
            pass

    with pytest.raises(InvalidRequest):
        asyncio.run(lock())
    assert list(elsewhere.iterdir()) == []


def test_in_the_front_end_s_folder_a_file_that_appears_during_the_fetch_is_kept(tmp_path):
    source = tmp_path / "w.gguf"
    source.write_bytes(os.urandom(3 << 20))
    root = tmp_path / "models"
    root.mkdir()
    [item] = mirror.items(root, [{"filename": "w.gguf", "uri": source.as_uri(), "sha256": _sha(source.read_bytes())}])

    def progress(name, done, total):
        if not (root / "w.gguf").exists():
            (root / "w.gguf").write_bytes(b"an install's, or a user's")
        assert not (root / "w.gguf.partial").exists()  # the fetch writes under a name of its own

    asyncio.run(mirror.put_in_place([item], FETCH, progress, verify=False))
    assert (root / "w.gguf").read_bytes() == b"an install's, or a user's"
    assert sorted(path.name for path in root.iterdir()) == ["w.gguf"]


def test_a_name_that_is_no_file_in_another_yaml_claims_nothing(tmp_path):
    (tmp_path / "w.gguf").write_bytes(b"mine")
    (tmp_path / "odd.yaml").write_text('name: odd\nparameters: {model: "."}\ninstalled_files: ["", "/abs"]\n')
    mirror.check_owned(tmp_path, "a", [{"filename": "w.gguf", "uri": "huggingface://x/y/w", "sha256": _sha(b"new")}])


def test_without_hard_links_the_fetch_still_puts_files_in_place_and_keeps_what_appeared(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise PermissionError(errno.EPERM, "no hard links on this mount")
    monkeypatch.setattr(os, "link", no_links)
    archive = _tar(tmp_path / "src.tar", {"m/a.bin": b"same", "m/b.bin": b"same", "m/c.bin": b"other"})
    source = tmp_path / "w.gguf"
    source.write_bytes(b"weights")
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    (root / "m" / "c.bin").write_bytes(b"a user's")
    record = [{"filename": "bundle.tar", "uri": archive.as_uri(), "sha256": _sha(archive.read_bytes()),
               "unpacked": {"m/a.bin": _sha(b"same"), "m/b.bin": _sha(b"same"), "m/c.bin": _sha(b"other")}},
              {"filename": "w.gguf", "uri": source.as_uri(), "sha256": _sha(b"weights")}]
    wanted = mirror.items(root, record)
    asyncio.run(mirror.put_in_place(mirror.missing(wanted, verify=False), FETCH, lambda *report: None, verify=False))
    assert [(root / "m" / name).read_bytes() for name in ("a.bin", "b.bin", "c.bin")] == [b"same", b"same", b"a user's"]
    assert (root / "w.gguf").read_bytes() == b"weights"
    assert sorted(path.name for path in root.iterdir()) == ["m", "w.gguf"]
    asyncio.run(mirror.put_in_place(mirror.missing(wanted), FETCH, lambda *report: None))  # a node's own folder
    assert (root / "m" / "c.bin").read_bytes() == b"other"



def test_a_link_to_a_file_the_same_unpack_puts_in_place_reads_through(tmp_path):
    archive = _tar(tmp_path / "src.tar", {"m/a.bin": b"new", "m/b.bin": b"new"})
    root = tmp_path / "models"
    (root / "m").mkdir(parents=True)
    (root / "m" / "b.bin").symlink_to("a.bin")  # the folder's owner: one file under two names
    record = [{"filename": "bundle.tar", "uri": archive.as_uri(), "sha256": _sha(archive.read_bytes()),
               "unpacked": {"m/a.bin": _sha(b"new"), "m/b.bin": _sha(b"new")}}]
    asyncio.run(mirror.put_in_place(mirror.missing(mirror.items(root, record)), FETCH, lambda *report: None))
    assert (root / "m" / "b.bin").is_symlink() and (root / "m" / "b.bin").read_bytes() == b"new"
