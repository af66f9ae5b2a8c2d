"""Bad input gets OpenAI's error shape with the right status, and the server keeps serving."""

from __future__ import annotations

import pytest

from tests.conftest import GEMMA_FILE, assert_error

HI = [{"role": "user", "content": "Hi"}]


def still_serves(server) -> None:
    reply = server.post("/v1/chat/completions", json={"model": "gemma", "messages": HI, "max_tokens": 2})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_400(gemma_server, body):
    response = gemma_server.post("/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    error = assert_error(response, 400)
    assert error["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": HI, "temperature": "hot"}, "temperature"),
        ({"messages": HI, "temperature": 9}, "temperature"),
        ({"messages": HI, "max_tokens": 0}, "max_tokens"),
        ({"messages": HI, "max_tokens": 1.5}, "max_tokens"),
        ({"messages": HI, "stream": "yes"}, "stream"),
        ({"messages": HI, "stop": [1, 2]}, "stop[0]"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"messages": HI, "model": 3}, "model"),
    ],
)
def test_wrong_types_name_the_param(gemma_server, body, param):
    error = assert_error(gemma_server.post("/v1/chat/completions", json=body), 400, param)
    assert param.split("[")[0].split(".")[0] in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [({}, "prompt"), ({"prompt": 5}, "prompt"), ({"prompt": "x", "echo": 1}, "echo"), ({"prompt": "x", "n": 99}, "n")],
)
def test_completion_body_errors(gemma_server, body, param):
    assert_error(gemma_server.post("/v1/completions", json=body), 400, param)


def test_edit_needs_an_instruction_and_does_not_stream(gemma_server):
    assert_error(gemma_server.post("/v1/edits", json={"input": "x"}), 400, "instruction")
    assert_error(gemma_server.post("/v1/edits", json={"instruction": "x", "stream": True}), 400, "stream")


def test_max_tokens_beyond_the_context_is_400(gemma_server):
    response = gemma_server.post("/v1/chat/completions", json={"model": "gemma", "messages": HI, "max_tokens": 5000})
    error = assert_error(response, 400, "max_tokens")
    assert "1024" in error["message"] and error["code"] == "context_length_exceeded"
    stream = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": "x", "max_tokens": 5000, "stream": True})
    assert_error(stream, 400, "max_tokens")
    still_serves(gemma_server)


def test_a_prompt_longer_than_the_context_is_400(gemma_server):
    response = gemma_server.post("/v1/completions", json={"model": "gemma", "prompt": "word " * 3000})
    error = assert_error(response, 400)
    assert error["code"] == "context_length_exceeded"
    still_serves(gemma_server)


def test_unknown_endpoint_and_wrong_method(gemma_server):
    assert_error(gemma_server.get("/v1/nothing-here"), 404)
    response = gemma_server.get("/v1/chat/completions")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_a_body_over_the_limit_is_413(models_dir, make_server):
    server = make_server(models_dir, "--upload-limit", "1")
    big = {"model": "gemma", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    error = assert_error(server.post("/v1/chat/completions", json=big), 413)
    assert "1 MB" in error["message"]
    still_serves(server)


def test_a_corrupt_model_file_is_500_naming_the_model_and_others_keep_serving(models_dir, make_server):
    (models_dir / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 4096)
    (models_dir / "broken.yaml").write_text("name: broken\nbackend: llama-cpp\nparameters:\n  model: broken.gguf\n")
    server = make_server(models_dir)
    for _ in range(2):  # a failed load is tried again on the next request, and fails the same way
        error = assert_error(server.post("/v1/chat/completions", json={"model": "broken", "messages": HI}), 500)
        assert "broken" in error["message"]
        assert "Traceback" not in error["message"]
    still_serves(server)


def test_a_model_file_removed_after_start_is_a_clear_error(models_dir, make_server, gemma_gguf):
    from tests.conftest import place

    place(gemma_gguf, models_dir / "extra.gguf")
    (models_dir / "extra.yaml").write_text("name: extra\nparameters:\n  model: extra.gguf\n")
    server = make_server(models_dir)
    (models_dir / "extra.gguf").unlink()
    response = server.post("/v1/chat/completions", json={"model": "extra", "messages": HI})
    assert response.status_code in (404, 500)
    assert_error(response, response.status_code)
    assert "extra" in response.json()["error"]["message"]
    still_serves(server)


def test_several_models_and_no_name_is_400_listing_them(models_dir, make_server):
    (models_dir / "other.yaml").write_text(f"name: other\nparameters:\n  model: {GEMMA_FILE}\n")
    server = make_server(models_dir)
    error = assert_error(server.post("/v1/chat/completions", json={"messages": HI}), 400, "model")
    assert "gemma" in error["message"] and "other" in error["message"]
