"""Ollama's API on the real server, through the official `ollama` client: the models' routes
(list, show, ps, pull from a gallery on loopback, delete, copy, create), chat and generate
(streamed and not, a JSON Schema format, a tool round trip), embeddings, keep_alive, the
measured durations, and Ollama's error shape."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from typing import Iterator

import jsonschema
import ollama
import pytest
import requests
import yaml

from tests.api.doors import PROBE_TEMPLATE, WEATHER, probed
from tests.api.test_tools import USER_DETAIL, model
from tests.conftest import GEMMA_FILE, Server, place, start_server, stop_server
from tests.gallery.conftest import gallery_env

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city",
                                         "parameters": WEATHER}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, gemma_gguf, minilm_path, hub) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(yaml.safe_dump(model("gemma", 0.0)))
    (folder / "probe.yaml").write_text(yaml.safe_dump({**model("probe", 0.0), "template": {"chat": PROBE_TEMPLATE}}))
    shutil.copytree(minilm_path, folder / "minilm")
    (folder / "minilm.yaml").write_text("name: minilm\nbackend: sentence-transformers\nparameters:\n  model: minilm\n")
    tiny = gemma_gguf.read_bytes()
    entry = {"name": "tiny", "license": "gemma", "config_file": yaml.safe_dump(model("tiny", 0.0)),
             "files": [{"filename": "tiny.gguf", "uri": hub.hf("acme/tiny", "tiny.gguf", tiny),
                        "sha256": hashlib.sha256(tiny).hexdigest()}]}
    entry["config_file"] = entry["config_file"].replace(GEMMA_FILE, "tiny.gguf")
    index = hub.github("acme/gallery", "index.yaml", yaml.safe_dump([entry]))
    server = start_server(folder, tmp_path_factory.mktemp("logs"), env=gallery_env(hub, index))
    yield server
    stop_server(server)


def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_list_show_and_the_digest_once_known(server, gemma_gguf):
    listed = {m.model: m for m in client(server).list().models}
    assert {"gemma", "probe", "minilm"} <= set(listed)
    details = listed["gemma"].details
    assert (details.format, details.family, details.quantization_level) == ("gguf", "gemma3", "Q4_K_M")
    assert details.parameter_size.endswith("M") and listed["gemma"].size == gemma_gguf.stat().st_size
    sha = hashlib.sha256(gemma_gguf.read_bytes()).hexdigest()
    server.wait_for(lambda: {m.model: m.digest for m in client(server).list().models}["gemma"] == sha, timeout=60)
    shown = client(server).show("gemma")
    assert shown.capabilities == ["completion", "tools"] and client(server).show("minilm").capabilities == ["embedding"]
    assert "Answer:" in shown.template and "temperature 0.0" in shown.parameters
    assert shown.modelinfo["general.architecture"] == "gemma3" and "FROM " in shown.modelfile
    assert client(server).show("gemma:latest").template == shown.template  # the default tag names it too


def test_chat_streamed_and_not_with_counts_as_the_openai_route_and_durations_that_add_up(server):
    whole = client(server).chat(model="gemma", messages=QUESTION, stream=False)
    assert "Paris" in whole.message.content and whole.done and whole.done_reason == "stop"
    openai = server.client().chat.completions.create(model="gemma", messages=QUESTION)
    assert (whole.prompt_eval_count, whole.eval_count) == (openai.usage.prompt_tokens, openai.usage.completion_tokens)
    parts = list(client(server).chat(model="gemma", messages=QUESTION, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == whole.message.content
    final = parts[-1]
    assert (final.prompt_eval_count, final.eval_count) == (whole.prompt_eval_count, whole.eval_count)
    for answer in (whole, final):
        assert answer.prompt_eval_duration > 0 and answer.eval_duration > 0
        assert answer.load_duration + answer.prompt_eval_duration + answer.eval_duration <= answer.total_duration
    with requests.post(server.url + "/api/chat", json={"model": "gemma", "messages": QUESTION}, stream=True,
                       timeout=60) as raw:
        assert raw.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in raw.iter_lines() if line]
    assert lines[-1]["done"] is True and lines[-1]["created_at"].endswith("Z")


def test_format_as_a_schema_and_as_json(server):
    answer = client(server).chat(model="gemma", messages=[{"role": "user", "content": "Tom is 30. Extract the user."}],
                                 format=USER_DETAIL, stream=False)
    jsonschema.validate(json.loads(answer.message.content), USER_DETAIL)
    assert isinstance(json.loads(client(server).generate(model="gemma", prompt="Describe Paris.", format="json",
                                                         stream=False).response), (dict, list))


def test_a_tool_round_trip(server):
    first = client(server).chat(model="gemma", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                tools=[TOOL], stream=False)
    (call,) = first.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(dict(call.function.arguments), WEATHER)
    conversation = [{"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
                    {"role": "tool", "content": "21 C and sunny", "tool_name": "get_weather"}]
    with pytest.raises(ollama.ResponseError) as probe:
        client(server).chat(model="probe", messages=conversation, tools=[TOOL], stream=False)
    messages, _ = probed(probe.value.error)
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                        "arguments": dict(call.function.arguments)}
    assert messages[2] == {"role": "tool", "tool_call_id": messages[1]["tool_calls"][0]["id"],
                           "content": "21 C and sunny"}
    answer = client(server).chat(model="gemma", messages=conversation, stream=False)
    assert answer.done and answer.message.role == "assistant"
    # Two calls answered in the other order: each result is tied to its call by tool_name.
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}},
             {"function": {"name": "get_time", "arguments": {"city": "Paris"}}}]
    with pytest.raises(ollama.ResponseError) as probe:
        client(server).chat(model="probe", stream=False, messages=[
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "12:00", "tool_name": "get_time"},
            {"role": "tool", "content": "21 C", "tool_name": "get_weather"}])
    messages, _ = probed(probe.value.error)
    ids = {c["function"]["name"]: c["id"] for c in messages[1]["tool_calls"]}
    assert (messages[2]["tool_call_id"], messages[3]["tool_call_id"]) == (ids["get_time"], ids["get_weather"])


def test_logprobs_and_samplers_through_the_ollama_client(server):
    asked = {"logprobs": True, "top_logprobs": 2, "options": {"seed": 5, "num_predict": 6}}
    whole = client(server).chat(model="gemma", messages=QUESTION, stream=False, **asked)
    assert whole.logprobs and all(len(entry.top_logprobs) == 2 for entry in whole.logprobs)
    assert "".join(entry.token for entry in whole.logprobs).strip() == whole.message.content.strip()
    openai = server.client().chat.completions.create(model="gemma", messages=QUESTION, seed=5, max_tokens=6,
                                                     logprobs=True, top_logprobs=2)
    assert [(e.token, e.logprob) for e in whole.logprobs] == \
        [(e.token, e.logprob) for e in openai.choices[0].logprobs.content]
    parts = list(client(server).chat(model="gemma", messages=QUESTION, stream=True, **asked))
    assert [e.logprob for p in parts for e in p.logprobs or []] == [e.logprob for e in whole.logprobs]
    raw = client(server).generate(model="gemma", prompt="The capital of France is", raw=True, stream=False,
                                  **asked)
    assert "".join(entry.token for entry in raw.logprobs) == raw.response
    # Ollama's samplers act: Mirostat aiming at no surprise is greedy whatever the seed.
    greedy = client(server).generate(model="gemma", prompt="Once upon a time", raw=True,
                                     options={"temperature": 0, "num_predict": 8}).response
    for seed in (1, 2):
        options = {"temperature": 0.9, "seed": seed, "mirostat": 2, "mirostat_tau": 0.01, "num_predict": 8}
        assert client(server).generate(model="gemma", prompt="Once upon a time", raw=True,
                                       options=options).response == greedy


def test_generate_streamed_plain_and_raw(server):
    whole = client(server).generate(model="gemma", prompt="What is the capital of France?", stream=False)
    assert "Paris" in whole.response and whole.done_reason == "stop"
    parts = list(client(server).generate(model="gemma", prompt="What is the capital of France?", stream=True))
    assert "".join(p.response for p in parts) == whole.response and parts[-1].eval_count == whole.eval_count
    raw = client(server).generate(model="gemma", prompt="The capital of France is", raw=True, stream=False,
                                  options={"num_predict": 3})
    assert raw.eval_count == 3 and raw.done_reason == "length"
    completion = server.client().completions.create(model="gemma", prompt="The capital of France is", max_tokens=3)
    assert raw.response == completion.choices[0].text


def test_embed_and_the_older_embeddings(server):
    embedded = client(server).embed(model="minilm", input=["a cat", "a dog"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 384
    openai = server.client().embeddings.create(model="minilm", input=["a cat", "a dog"])
    assert embedded.embeddings[0] == pytest.approx(openai.data[0].embedding, abs=1e-6)
    assert embedded.prompt_eval_count > 0 and embedded.total_duration > 0
    older = client(server).embeddings(model="minilm", prompt="a cat")
    assert older.embedding == pytest.approx(embedded.embeddings[0], abs=1e-6)


def test_ps_and_keep_alive(server):
    client(server).chat(model="gemma", messages=QUESTION, keep_alive="10m", stream=False)
    loaded = {m.model: m for m in client(server).ps().models}
    assert loaded["gemma"].size > 0 and loaded["gemma"].context_length == 2048
    left = loaded["gemma"].expires_at.timestamp() - time.time()
    assert 500 < left <= 600
    assert client(server).generate(model="gemma", keep_alive=0).done_reason == "unload"  # Ollama's way to unload
    assert "gemma" not in {m.model for m in client(server).ps().models}
    assert client(server).generate(model="gemma").done_reason == "load"
    assert "gemma" in {m.model for m in client(server).ps().models}
    # Durations: a load is measured as a load.
    assert client(server).generate(model="gemma", keep_alive="-1").done_reason == "load"  # for ever
    client(server).generate(model="gemma", keep_alive=0)
    loaded = client(server).chat(model="gemma", messages=QUESTION, stream=False, keep_alive="1h30m")
    assert loaded.load_duration > 0 and loaded.load_duration + loaded.prompt_eval_duration <= loaded.total_duration
    left = {m.model: m for m in client(server).ps().models}["gemma"].expires_at.timestamp() - time.time()
    assert 5000 < left <= 5400
    client(server).chat(model="gemma", messages=QUESTION, stream=False, keep_alive=1e20)  # for ever, not an error
    assert client(server).ps().models[0].expires_at.year > 2100
    # keep_alive 0 on an answer: unloaded once no call runs on it.
    client(server).chat(model="gemma", messages=QUESTION, stream=False, keep_alive=0)
    server.wait_for(lambda: "gemma" not in {m.model for m in client(server).ps().models}, timeout=10)


def test_pull_from_the_gallery_with_progress_then_delete(server, gemma_gguf):
    statuses = list(client(server).pull("tiny", stream=True))
    assert statuses[0].status == "pulling manifest" and statuses[-1].status == "success"
    progress = [s for s in statuses if s.digest]
    assert progress and progress[-1].completed == progress[-1].total == gemma_gguf.stat().st_size
    assert progress[-1].digest == "sha256:" + hashlib.sha256(gemma_gguf.read_bytes()).hexdigest()
    server.wait_for(lambda: "tiny" in {m.model for m in client(server).list().models})
    assert "Paris" in client(server).chat(model="tiny", messages=QUESTION, stream=False).message.content
    assert client(server).delete("tiny").status == "success"
    assert "tiny" not in {m.model for m in client(server).list().models}
    assert not (server.models_path / "tiny.gguf").exists()
    with pytest.raises(ollama.ResponseError) as missing:
        client(server).pull("no-such-model", stream=False)
    assert missing.value.status_code == 404 and "no-such-model" in missing.value.error


def test_copy_and_create(server):
    assert client(server).copy("gemma", "gemma-copy").status == "success"
    assert "Paris" in client(server).chat(model="gemma-copy", messages=QUESTION, stream=False).message.content
    done = list(client(server).create(model="terse", from_="gemma", system="Answer in one word.",
                                      parameters={"temperature": 0.2, "num_predict": 5, "stop": ["\n"]}, stream=True))
    assert done[-1].status == "success"
    written = yaml.safe_load((server.models_path / "terse.yaml").read_text())
    assert written["system_prompt"] == "Answer in one word." and written["stopwords"] == ["\n"]
    assert written["parameters"]["temperature"] == 0.2 and written["parameters"]["max_tokens"] == 5
    assert requests.post(server.url + "/api/show", json={"model": "terse"}, timeout=30).json()["system"] == \
        "Answer in one word."
    assert client(server).chat(model="terse", messages=QUESTION, stream=False).eval_count <= 5
    # Deleting the copy leaves the weights the first model uses.
    assert client(server).delete("gemma-copy").status == "success"
    assert (server.models_path / GEMMA_FILE).exists()


@pytest.mark.parametrize("path, body, status, says", [
    ("/api/chat", {"model": "nope", "messages": QUESTION}, 404, "nope"),
    ("/api/chat", {"model": "gemma", "messages": "hello"}, 400, "messages"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "think": True}, 400, "think"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "options": {"tfs_z": 0.95}}, 400, "options.tfs_z"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "options": {"mirostat": 3}}, 400, "options.mirostat"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "options": {"num_ctx": 100000}}, 400, "options.num_ctx"),
    ("/api/chat", {"model": "gemma", "messages": [{"role": "user", "content": "x", "images": ["AAAA"]}]}, 400,
     "messages[0].images[0]"),
    ("/api/generate", {"model": "gemma", "prompt": "x", "template": "{{ .Prompt }}"}, 400, "template"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "tools": [{}]}, 400, "tools"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "tools": [{"type": "function", "function": {"name": 5}}]},
     400, "tools[0].function.name"),
    ("/api/chat", {"model": "gemma", "messages": QUESTION, "keep_alive": "-garbage"}, 400, "keep_alive"),
    ("/api/create", {"model": "x", "from": "gemma", "parameters": {"stop": 5}}, 400, "parameters.stop"),
    ("/api/create", {"model": "x", "from": "nope"}, 404, "nope"),
    ("/api/generate", {"model": "minilm", "prompt": "x"}, 400, "model"),
    ("/api/embed", {"model": "gemma", "input": "x"}, 400, "model"),
    ("/api/show", {"model": "nope"}, 404, "nope"),
    ("/api/copy", {"source": "gemma", "destination": "gemma"}, 400, "exists"),
    ("/api/create", {"model": "x", "from": "gemma", "files": {"a.gguf": "sha256:00"}}, 400, "files"),
    ("/api/push", {"model": "gemma"}, 501, "push"),
    ("/api/blobs/sha256:00", None, 501, "blob"),
])
def test_errors_come_in_ollamas_shape(server, path, body, status, says):
    response = requests.post(server.url + path, json=body, timeout=60)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and says in response.json()["error"], response.json()
    if path == "/api/chat" and status == 404:
        with pytest.raises(ollama.ResponseError) as raised:
            client(server).chat(model="nope", messages=QUESTION)
        assert raised.value.status_code == 404
