"""One bad request never hurts another: exact JSON, grammars within bounds, prompts counted
before they are read whole, templates and YAML files that cannot hold a process, batches
that fail one member at a time, and model loads that back off."""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from localhost_ai.backends import llama_tools
from localhost_ai.config import templates
from localhost_ai.config.templates import PromptTemplateError, render
from localhost_ai.errors import InvalidRequest
from localhost_ai.runtime.batching import Batcher
from tests.conftest import GEMMA_FILE, place
from tests.gallery.conftest import gallery_env, wait_job
from tests.gallery.fakehub import running_hub
from tests.inprocess import PLUGINS, app_for, fake_models

HI = [{"role": "user", "content": "hi"}]
FAKE_ENV = {"PYTHONPATH": PLUGINS, "LOCALHOST_AI_BACKENDS": "fake_backend"}


@pytest.fixture
async def app(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", PLUGINS)
    monkeypatch.setenv("LOCALHOST_AI_BACKENDS", "fake_backend")
    return app_for(fake_models(tmp_path / "models", embeddings=True))


# -- exact JSON ----------------------------------------------------------------------------

@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-2.5e999"])
async def test_nan_and_infinity_are_not_json(aiohttp_client, app, constant):
    client = await aiohttp_client(app)
    body = f'{{"model": "fake", "messages": [{{"role": "user", "content": "hi"}}], "repeat_penalty": {constant}}}'
    response = await client.post("/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    error = (await response.json())["error"]
    assert response.status == 400 and error["code"] == "invalid_json" and constant.lstrip("-") in error["message"]


async def test_nesting_is_capped_before_anything_walks_the_body(aiohttp_client, app):
    client = await aiohttp_client(app)
    body = b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], "user": ' + b"[" * 300 + b"]" * 300 + b"}"
    response = await client.post("/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    error = (await response.json())["error"]
    assert response.status == 400 and "256 levels" in error["message"]
    shallow = b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], "user": "x", "vendor_extra": {"a": [[[1]]]}}'
    response = await client.post("/v1/chat/completions", data=shallow, headers={"Content-Type": "application/json"})
    assert response.status == 200


# -- grammars within bounds ----------------------------------------------------------------

def _deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


BEYOND = [
    ({"type": "string", "maxLength": 1_000_000_000}, "'maxLength'"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 1_000_000}, "'maxItems'"),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 5000}, "'minItems'"),
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "^a{1,100000}$"}}}, "'pattern'"),
    ({"type": "string", "pattern": "^(a{0,1000}){0,1000}$"}, "10,000 elements"),
    (_deep(70), "64 levels"),
]


@pytest.fixture(scope="module")
def grammar_models(tmp_path_factory, gemma_gguf):
    """Gemma twice: with grammars (the default), and with them turned off in its YAML."""
    from tests.conftest import start_server, stop_server

    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(f"name: gemma\nparameters:\n  model: {GEMMA_FILE}\ncontext_size: 512\n")
    (folder / "free.yaml").write_text(f"name: free\nparameters:\n  model: {GEMMA_FILE}\ncontext_size: 512\n"
                                      "function:\n  grammar:\n    disable: true\n")
    server = start_server(folder, tmp_path_factory.mktemp("logs"))
    yield server
    stop_server(server)


@pytest.mark.parametrize(("schema", "named"), BEYOND)
def test_a_schema_beyond_the_grammar_bounds_is_a_400_naming_its_keyword(grammar_models, schema, named):
    formats = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    tool = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "v": schema}}}}]
    for extra, param in [({"response_format": formats}, "response_format.json_schema.schema"),
                         ({"tools": tool}, "tools[0].function.parameters")]:
        started = time.monotonic()
        response = grammar_models.post("/v1/chat/completions", json={"model": "gemma", "messages": HI, **extra})
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "schema_too_complex", error
        assert error["param"] == param and named in error["message"], error
        assert time.monotonic() - started < 1.0
    assert grammar_models.get("/backend/monitor?model=gemma").json()["state"] == "unloaded"  # never reached it


def test_a_model_that_builds_no_grammar_takes_any_schema(grammar_models):
    tool = [{"type": "function", "function": {"name": "note", "parameters": {"type": "object", "properties": {
        "text": {"type": "string", "maxLength": 100_000}}}}}]
    response = grammar_models.post("/v1/chat/completions", json={"model": "free", "messages": HI, "tools": tool,
                                                                 "max_tokens": 4})
    assert response.status_code == 200, response.text


def test_the_worker_checks_the_bounds_again_and_the_grammar_it_builds(monkeypatch):
    from localhost_ai.contract.generate import ResponseFormat

    with pytest.raises(InvalidRequest) as caught:
        llama_tools.check_request([], ResponseFormat(type="json_schema", name="x", schema={"type": "string",
                                                                                        "maxLength": 10**9}))
    assert caught.value.code == "schema_too_complex"
    assert llama_tools.nesting('root ::= ("(" [(] (a (b)?)?)  # ((((\n') == 3
    ok = {"type": "json_schema", "schema": {"type": "array", "items": {"type": "integer"}, "maxItems": 1000}}
    assert llama_tools.nesting(llama_tools.response_format_grammar(ok)) == 1000
    monkeypatch.setattr(llama_tools, "MAX_GRAMMAR_NESTING", 999)
    with pytest.raises(InvalidRequest) as caught:
        llama_tools.response_format_grammar(ok)
    assert caught.value.code == "schema_too_complex"


def _worker_pid(server, model: str) -> int:
    return server.get(f"/backend/monitor?model={model}").json()["pid"]


def test_a_huge_grammar_never_reaches_the_worker_and_one_at_the_bound_works(gemma_server):
    assert gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": "Hi", "max_tokens": 1}).ok
    pid = _worker_pid(gemma_server, "gemma")
    for schema, _ in BEYOND[:3]:
        started = time.monotonic()
        response = gemma_server.post("/v1/chat/completions", json={
            "model": "gemma", "messages": HI, "max_tokens": 4,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
        assert response.status_code == 400 and time.monotonic() - started < 1.0
    at_bound = {"type": "array", "items": {"type": "integer"}, "maxItems": 1000}
    response = gemma_server.post("/v1/chat/completions", json={
        "model": "gemma", "messages": [{"role": "user", "content": "Some numbers?"}], "max_tokens": 12,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": at_bound}}})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].lstrip().startswith("[")
    assert _worker_pid(gemma_server, "gemma") == pid


# -- prompts too long for the context, found in linear time --------------------------------

def test_a_prompt_of_many_short_lines_is_refused_without_reading_it_whole(gemma_server):
    # 30,000 characters fit the cheap character bound of a 1,024-token context, but are 30,000
    # tokens: llama.cpp would take seconds to tokenize them whole.
    pid = _worker_pid(gemma_server, "gemma")
    for path, body, param in [("/v1/completions", {"prompt": "a\n" * 15_000}, "prompt"),
                              ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a\n" * 15_000}]},
                               "messages")]:
        started = time.monotonic()
        response = gemma_server.post(path, json={"model": "gemma", "max_tokens": 2, **body})
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "context_length_exceeded", error
        assert error["param"] == param and time.monotonic() - started < 1.0
    near = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": "word " * 900, "max_tokens": 2})
    assert near.status_code == 200, near.text  # longer than the context in characters, within it in tokens
    assert _worker_pid(gemma_server, "gemma") == pid


@pytest.mark.parametrize("text", ["<end_of_turn>" * 3000, ("<start_of_turn>" + "x" * 7) * 2000, "word " * 3000,
                                  "\u6f22\u5b57" * 4000, "a\n" * 3000, "QUJD" * 3000, "1234567890" * 1000])
def test_the_token_floor_never_exceeds_the_real_count(gemma_gguf, text):
    from types import SimpleNamespace

    import llama_cpp

    from localhost_ai.backends.llamacpp import LlamaCppBackend

    vocab = llama_cpp.Llama(str(gemma_gguf), vocab_only=True, verbose=False)
    real = len(vocab.tokenize(text.encode(), add_bos=False, special=True))
    floor_of = SimpleNamespace(llm=vocab, n_ctx=real)  # refused only if the floor is over the real count
    LlamaCppBackend._refuse_if_surely_too_long(floor_of, text, "prompt")
    with pytest.raises(InvalidRequest):
        LlamaCppBackend._refuse_if_surely_too_long(SimpleNamespace(llm=vocab, n_ctx=real // 2), text, "prompt")


# -- templates -----------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "says"), [
    ("{{ 3**(10**7) }}", "too large"),
    ("{{ 'a' * 10**9 }}", "too large"),
    ("{{ [1] * 10**9 }}", "too large"),
    ("{{ '%999999999d' % 1 }}", "too large"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "longer than"),
    ("{{ '%(a)200000000s' % {'a': 1} }}", "too large"),
    ("{{ 'x'|center(200000000) }}", "too large"),
    ("{{ '%200000000s'|format(1) }}", "too large"),
    ("{{ 'x'.ljust(200000000) }}", "too large"),
    ("{{ '{:>200000000}'.format(1) }}", "too large"),
    ("{{ ('a' * 4000000)|replace('a', 'aa') }}", "too large"),
])
def test_a_template_cannot_compute_or_write_something_huge(source, says):
    started = time.monotonic()
    templates.compile_template(source)  # compiling computes nothing
    assert time.monotonic() - started < 0.1
    with pytest.raises(PromptTemplateError, match=says):
        render(source)
    assert time.monotonic() - started < 1.0


def test_a_template_that_loops_for_long_is_stopped_and_the_thread_goes_on(monkeypatch):
    monkeypatch.setattr(templates, "RENDER_SECONDS", 0.3)
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(PromptTemplateError, match="longer than 0.3 seconds"):
        render(source)
    assert time.monotonic() - started < 1.0
    time.sleep(0.5)  # a stop that came late is not delivered to what runs next
    assert render("{{ 2**10 }} {{ 'ab' * 2 }} {{ '%3d' % 7 }} {{ 'a-b'|replace('-', '+') }} {{ '{:>3}'.format(1) }}"
                  " {{ 'ab'|center(6) }}") == "1024 abab   7 a+b   1   ab  "
    monkeypatch.setattr(templates, "RENDER_SECONDS", 0.00001)
    for _ in range(300):  # a stop that fires as the render starts is a template error too, never a stray one
        try:
            render(source)
        except PromptTemplateError:
            pass


@pytest.fixture
def hub():
    with running_hub() as fake:
        yield fake


def test_healthz_stays_fast_while_a_folding_template_is_applied(tmp_path, hub, gemma_gguf, make_server):
    models = tmp_path / "models"
    models.mkdir()
    place(gemma_gguf, models / GEMMA_FILE)
    config = hub.github("acme/defs", "fold.yaml", f"name: fold\nparameters:\n  model: {GEMMA_FILE}\n")
    server = make_server(models, env=gallery_env(hub, "http://127.0.0.1:9/index.yaml"))
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            began = time.monotonic()
            assert requests.get(server.url + "/healthz", timeout=5).ok
            latencies.append(time.monotonic() - began)
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        uuid = server.post("/models/apply", json={"config_url": config, "overrides": {
            "template": {"chat": "{{ 3**(10**7) }}"}}}).json()["uuid"]
        job = wait_job(server, uuid)
        server.wait_for(lambda: "fold" in [m["id"] for m in server.get("/v1/models").json()["data"]])
        started = time.monotonic()
        response = server.post("/v1/chat/completions", json={"model": "fold", "messages": HI, "max_tokens": 2})
    finally:
        stop.set()
        poller.join()
    assert job["error"] is None, job
    assert response.status_code == 400 and response.json()["error"]["code"] == "template_error"
    assert "too large" in response.json()["error"]["message"] and time.monotonic() - started < 10
    print(f"healthz: max {max(latencies) * 1000:.1f} ms, median {statistics.median(latencies) * 1000:.1f} ms")
    assert len(latencies) > 10 and max(latencies) < 0.1
    assert server.get("/v1/models/nothing-like-it").status_code == 404  # the table still follows the folder


# -- the models folder ---------------------------------------------------------------------

def _alias_bomb(name: str) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for previous, anchor in zip("abcdef", "bcdefg"):
        text += f"{anchor}: &{anchor} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    return text + f"name: {name}\nparameters:\n  model: fake.bin\nbackend: test-fake\n"


def test_an_alias_bomb_is_left_out_at_once_and_the_other_files_stay(make_server, tmp_path):
    models = fake_models(tmp_path / "models")
    bomb = _alias_bomb("bomb")
    assert len(bomb) < 500
    server = make_server(models, env=FAKE_ENV)
    started = time.monotonic()
    (models / "bomb.yaml").write_text(bomb)
    (models / "loop.yaml").write_text("name: loop\nx: &x [*x]\nparameters:\n  model: fake.bin\n")
    response = server.post("/v1/chat/completions", json={"model": "bomb", "messages": HI})
    assert response.status_code == 404 and time.monotonic() - started < 1.0
    invalid = {bad["file"]: bad["error"] for bad in server.get("/system").json()["invalid"]}
    assert "100,000 nodes" in invalid["bomb.yaml"] and "contains it" in invalid["loop.yaml"]
    assert server.post("/v1/chat/completions", json={"model": "fake", "messages": HI}).ok


def test_a_file_that_breaks_the_reader_is_listed_and_the_rest_still_update(make_server, tmp_path, monkeypatch):
    from localhost_ai.registry import Registry

    models = fake_models(tmp_path / "models")
    (models / "odd.yaml").write_text("name: odd\nparameters:\n  model: fake.bin\nbackend: test-fake\n")
    registry = Registry(models)

    def breaks(path, *args):
        if path.name == "odd.yaml":
            raise OverflowError("an unexpected failure")
        return real(path, *args)

    import localhost_ai.registry as registry_module

    real = registry_module.load_yaml_file
    monkeypatch.setattr(registry_module, "load_yaml_file", breaks)
    registry.refresh(force=True)
    assert [c.name for c in registry.models()] == ["fake"]
    assert [(bad.file, "log" in bad.error) for bad in registry.invalid()] == [("odd.yaml", True)]
    (models / "new.yaml").write_text("name: new\nparameters:\n  model: fake.bin\nbackend: test-fake\n")
    registry.refresh(now=True)
    assert [c.name for c in registry.models()] == ["fake", "new"]


# -- batches -------------------------------------------------------------------------------

def test_a_failing_batch_is_run_again_member_by_member():
    done: dict[str, object] = {}
    finished = threading.Event()
    batches: list[list[str]] = []

    def process(requests_: list[str]) -> list[str]:
        batches.append(list(requests_))
        if "poison" in requests_:
            raise RuntimeError("one member breaks the batch")
        return [r.upper() for r in requests_]

    def on_done(item, result):
        done[item.call_id] = result
        if len(done) == 8:
            finished.set()

    from localhost_ai.backends import CallControl

    batcher = Batcher("test", process, lambda r: 1, max_items=8, max_wait=0.5, on_start=lambda *a: None,
                      on_done=on_done)
    for n in range(8):
        batcher.submit(str(n), "poison" if n == 3 else f"ok{n}", CallControl())
    assert finished.wait(5)
    assert isinstance(done["3"], RuntimeError)
    assert {k: v for k, v in done.items() if k != "3"} == {str(n): f"OK{n}" for n in range(8) if n != 3}
    assert len(batches[0]) == 8 and all(len(b) == 1 for b in batches[1:])


def test_seven_embeddings_batched_with_a_bad_one_all_succeed(tmp_path, minilm_path, make_server):
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(minilm_path, models / "minilm")
    (models / "minilm.yaml").write_text("name: minilm\nbackend: sentence-transformers\nbatch_wait_ms: 200\n"
                                        "parameters:\n  model: minilm\n")
    server = make_server(models)
    texts = [f"sentence number {n} about the sea" for n in range(7)]
    alone = {text: server.post("/v1/embeddings", json={"model": "minilm", "input": text}).json()["data"][0]["embedding"]
             for text in texts}
    bodies = [{"model": "minilm", "input": text} for text in texts] + [{"model": "minilm", "input": [99_999_999]}]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda body: server.post("/v1/embeddings", json=body), bodies))
    assert [r.status_code for r in responses] == [200] * 7 + [400]
    for text, response in zip(texts, responses):
        assert response.json()["data"][0]["embedding"] == pytest.approx(alone[text], abs=1e-5)
    metrics = server.get("/metrics").text
    assert any(line.startswith("localhost_ai_batch_calls_count") and float(line.rsplit(" ", 1)[1]) < 15
               for line in metrics.splitlines())  # they were batched: fewer batches than the 15 calls


# -- loads that fail -----------------------------------------------------------------------

def test_a_model_that_fails_to_load_backs_off_instead_of_respawning(make_server, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # not a model llama.cpp can read
    (models / "broken.yaml").write_text("name: broken\nbackend: llama-cpp\nparameters:\n  model: broken.gguf\n")
    server = make_server(models)
    first = server.post("/v1/completions", json={"model": "broken", "prompt": "x"})
    assert first.status_code == 500 and first.json()["error"]["code"] == "model_load_failed"
    started = time.monotonic()
    again = [server.post("/v1/completions", json={"model": "broken", "prompt": "x"}) for _ in range(5)]
    assert time.monotonic() - started < 1.0  # answered from the failure, no worker started
    assert all(r.json() == first.json() for r in again) and int(again[0].headers["Retry-After"]) >= 1
    assert server.log().count("worker pid") == 1
    assert str(tmp_path) not in json.dumps(first.json())


# -- headers that are not UTF-8 --------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "status"), [
    (b"Authorization", b"Bearer \xff", 401),
    (b"Authorization", b"Bearer secret\xff", 401),
    (b"X-Request-Id", b"id\xff", 200),
    (b"Origin", b"http://\xff.example", 200),
])
async def test_header_bytes_that_are_not_utf8_are_no_500(aiohttp_client, tmp_path, name, value, status):
    import asyncio

    client = await aiohttp_client(app_for(fake_models(tmp_path / "models"), api_keys=["secret"], cors=True,
                                          cors_allow_origins=["http://ok.example"]))
    key = b"" if name == b"Authorization" else b"Authorization: Bearer secret\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key + name + b": " + value +
                 b"\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:300]
    if status >= 400:
        assert json.loads(body)["error"]["message"]
    else:
        assert b"X-Request-Id: " in head and b"\xff" not in head


async def test_names_not_found_read_the_folder_again_at_most_once_a_second(tmp_path, monkeypatch):
    from localhost_ai.registry import Registry

    import localhost_ai.registry as registry_module

    monkeypatch.setattr(registry_module, "FORCED_INTERVAL", 60.0)  # however slow the machine, one window
    models = fake_models(tmp_path / "models")
    registry = Registry(models)
    registry.refresh(force=True)
    rebuilds = []
    real = registry._rebuild
    monkeypatch.setattr(registry, "_rebuild", lambda entries: (rebuilds.append(1), real(entries)))
    for n in range(50):
        assert await registry.lookup(f"missing-{n}") is None
    assert len(rebuilds) == 1  # one forced reading; the others only looked at the files' stamps
    (models / "late.yaml").write_text("name: late\nparameters:\n  model: fake.bin\nbackend: test-fake\n")
    assert (await registry.lookup("late")).name == "late"  # a file that changed is read at once
    assert len(rebuilds) == 2


async def test_whole_floats_in_integer_fields_and_a_megabyte_header_line(aiohttp_client, app):
    client = await aiohttp_client(app)
    body = b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], "n": 2.0, "seed": 3.0, "top_k": 2.0}'
    response = await client.post("/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200 and len((await response.json())["choices"]) == 2
    line = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nX-Long: " + b"a" * 1_000_000
    response = await client.post("/v1/audio/transcriptions", data=line + b"\r\n\r\nx\r\n--xyz--\r\n",
                                 headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_multipart"


def test_an_alias_bomb_in_a_remote_config_fails_its_job_at_once(tmp_path, hub, make_server):
    config = hub.github("acme/defs", "bomb.yaml", _alias_bomb("remote-bomb"))
    server = make_server(tmp_path / "models", env=gallery_env(hub, "http://127.0.0.1:9/index.yaml"))
    started = time.monotonic()
    job = wait_job(server, server.post("/models/apply", json={"config_url": config}).json()["uuid"])
    assert "100,000 nodes" in job["error"] and time.monotonic() - started < 2.0
    assert not list((tmp_path / "models").glob("*.yaml"))


@pytest.mark.parametrize(("value", "limit"), [("2GiB", 2 << 30), ("2gb", 2 << 30), ("1.5 G", 3 << 29),
                                              ("512MiB", 512 << 20), (1 << 30, 1 << 30), ("2", None), ("0", None),
                                              ("lots", None)])
def test_memory_limit_in_a_model_file(tmp_path, value, limit):
    from localhost_ai.backends import backend_options
    from localhost_ai.config import ConfigError, load_yaml_config

    models = fake_models(tmp_path / "models")
    (models / "m.yaml").write_text(f"name: m\nbackend: test-fake\nparameters:\n  model: fake.bin\nmemory_limit: {value}\n")
    if limit is None:
        with pytest.raises(ConfigError) as caught:
            load_yaml_config(models / "m.yaml", models, backend_options())
        assert caught.value.field == "memory_limit"
    else:
        assert load_yaml_config(models / "m.yaml", models, backend_options()).memory_limit == limit
