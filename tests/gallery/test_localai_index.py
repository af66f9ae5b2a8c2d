"""LocalAI's whole gallery index (thousands of entries, anchors and merge keys, `url:` base
configs), served from a loopback hub: it loads, it is searched, filtered and paged, an entry
whose backend this server lacks says so before anything downloads, and an entry built on a
`url:` base config installs and answers with LocalAI's own Go templates."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_error
from tests.gallery.conftest import sha, wait_job

LOCALAI = Path(__file__).parent / "localai"
CONFIG_FILE = Path(__file__).parents[1] / "config" / "gotemplate" / "localai_gemma_config_file.yaml"
ENTRIES = 1709  # in the index; two have names this server refuses (non-ASCII), so 1707 are offered


@pytest.fixture
def localai_gallery(hub, gemma_gguf):
    index = hub.github("mudler/LocalAI", "gallery/index.yaml", gzip.decompress((LOCALAI / "index.yaml.gz").read_bytes()),
                       ref="master")
    hub.github("mudler/LocalAI", "gallery/gemma.yaml", yaml.safe_dump(
        {"config_file": CONFIG_FILE.read_text(), "name": "gemma"}), ref="master")
    hub.hf("ggml-org/gemma-3-270m-it-qat-GGUF", "gemma-3-270m-it-qat-Q4_0.gguf", gemma_gguf)
    return index


@pytest.fixture
def server(tmp_path, hub, localai_gallery, make_server):
    env = {**hub.env, "GALLERIES": f'[{{"name": "localai", "url": "{localai_gallery}"}}]'}
    return make_server(tmp_path / "models", env=env)


def test_the_whole_index_loads_and_is_searched_filtered_and_paged(server):
    everything = server.get("/models/available", timeout=60)
    assert everything.status_code == 200
    assert len(everything.json()) == int(everything.headers["X-Total-Count"]) == ENTRIES - 2
    assert everything.headers["X-Gallery-Problems"] == "2"
    by_id = {m["id"]: m for m in everything.json()}
    # An anchor's entry and one that merges it (`<<: *anchor`) are both whole.
    qat = by_id["localai@gemma-3-270m-it-qat"]
    assert qat["files"][0]["filename"] == "gemma-3-270m-it-qat-Q4_0.gguf" and qat["supported"]

    found = server.get("/models/available", params={"search": "gemma 270M"}).json()
    assert "localai@gemma-3-270m-it-qat" in [m["id"] for m in found]
    assert all("gemma" in (m["name"] + m["description"]).lower() for m in found)
    tts = server.get("/models/available", params={"tag": "TTS"}).json()
    assert tts and all("tts" in [t.lower() for t in m["tags"]] for m in tts)
    llama = server.get("/models/available", params={"backend": "llama-cpp"})
    assert int(llama.headers["X-Total-Count"]) > 400 and all(m["backend"] == "llama-cpp" for m in llama.json())

    first = server.get("/models/available", params={"page_size": 25}).json()
    second = server.get("/models/available", params={"page_size": 25, "page": 2}).json()
    assert len(first) == len(second) == 25 and not {m["id"] for m in first} & {m["id"] for m in second}
    assert [m["id"] for m in first + second] == [m["id"] for m in everything.json()[:50]]
    past = server.get("/models/available", params={"page_size": 25, "page": 1000})
    assert past.json() == [] and past.headers["X-Total-Count"] == str(ENTRIES - 2)
    assert_error(server.get("/models/available", params={"page": "0"}), 400, "page")
    assert_error(server.get("/models/available", params={"page_size": "x"}), 400, "page_size")


def test_the_index_is_filtered_by_gallery_and_installed_and_its_tags_are_counted(server, hub):
    def total(**params) -> int:
        reply = server.get("/models/available", params={**params, "page_size": 1})
        assert reply.status_code == 200, reply.text
        return int(reply.headers["X-Total-Count"])

    tags = server.get("/models/available/tags", timeout=60).json()
    names = [t["tag"].lower() for t in tags]
    assert names == sorted(set(names)) and len(names) > 500  # by name, each once
    counted = {t["tag"].lower(): t["count"] for t in tags}
    assert "en_gb" in counted  # written en_GB and en_gb in the index: one tag, as ?tag= matches both
    for tag in ("gguf", "TTS", "en_gb"):
        assert counted[tag.lower()] == total(tag=tag) > 0, tag

    small = [{"name": "tiny-one", "description": "A small voice.", "tags": ["TTS", "acme-only"]},
             {"name": "gemma-3-270m-it-qat", "description": "The same name as LocalAI's."}]
    index = hub.github("acme/small", "index.yaml", yaml.safe_dump(small))
    assert server.post("/models/galleries", json={"name": "small", "url": index}).status_code == 200
    assert [m["id"] for m in server.get("/models/available", params={"gallery": "small"}).json()] == [
        "small@tiny-one", "small@gemma-3-270m-it-qat"]
    second = server.get("/models/available", params={"gallery": "small", "page_size": 1, "page": 2})
    assert [m["id"] for m in second.json()] == ["small@gemma-3-270m-it-qat"] and second.headers["X-Total-Count"] == "2"
    assert total(gallery="localai") == ENTRIES - 2 and total(gallery="elsewhere") == 0
    assert total(gallery="small", search="voice", tag="tts") == 1
    after = {t["tag"].lower(): t["count"] for t in server.get("/models/available/tags").json()}
    assert after["acme-only"] == 1 and after["tts"] == counted["tts"] + 1

    assert total(installed="true") == 0 and total(installed="false") == ENTRIES
    server.models_path.mkdir(exist_ok=True)
    (server.models_path / "tiny-one.yaml").write_text("name: tiny-one\nbackend: piper\nparameters:\n  model: one.onnx\n")
    installed = server.get("/models/available", params={"installed": "true"})
    assert [(m["id"], m["installed"]) for m in installed.json()] == [("small@tiny-one", True)]
    assert installed.headers["X-Total-Count"] == "1"
    assert total(installed="true", gallery="localai") == 0 and total(installed="false") == ENTRIES - 1
    for wrong in ("yes", "True", "1", ""):
        error = assert_error(server.get("/models/available", params={"installed": wrong}), 400, "installed")
        assert error["code"] == "invalid_value" and error["type"] == "invalid_request_error"


def test_an_entry_whose_backend_this_server_lacks_says_so_before_any_download(server, hub):
    entries = server.get("/models/available", params={"backend": "crispasr"}).json()
    assert entries and not any(m["supported"] for m in entries)
    entry = entries[0]
    reply = server.post("/models/apply", json={"id": entry["id"]})
    error = assert_error(reply, 400, "id")
    assert error["code"] == "unsupported_backend" and "crispasr" in error["message"]
    assert "llama-cpp" in error["message"]  # it names what this server has
    assert not [r for r in hub.requests if "/resolve/" in r.path]  # nothing was downloaded


def test_an_entry_on_a_url_base_config_installs_and_answers_with_localais_templates(server, gemma_gguf):
    # LocalAI's entry as it is; only its weights are this project's test copy of Gemma 3 270M
    # (the entry names the QAT build), served under the entry's own file name and URI.
    entry = server.get("/models/available", params={"search": "gemma-3-270m-it-qat"}).json()[0]
    weights = {**entry["files"][0], "sha256": sha(gemma_gguf.read_bytes())}
    job = wait_job(server, server.post("/models/apply", json={"id": entry["id"], "files": [weights]}).json()["uuid"],
                   timeout=120)
    assert job["error"] is None, job
    config = yaml.safe_load((server.models_path / "gemma-3-270m-it-qat.yaml").read_text())
    assert "{{if eq .RoleName \"assistant\" }}model" in config["template"]["chat_message"]  # kept, not dropped
    reply = server.client().chat.completions.create(
        model="gemma-3-270m-it-qat", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=8, temperature=0)
    assert reply.choices[0].message.content.strip()
