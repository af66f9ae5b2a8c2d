"""`localhost-ai serve --demo` makes the demo model servable from installed packages alone."""

from __future__ import annotations

from tests.conftest import assert_schema


def test_demo_serves_gemma_and_answers_the_readme_curl(tmp_path, make_server):
    folder = tmp_path / "models"
    server = make_server(folder, "--demo")
    assert (folder / "gemma-3-270m.yaml").exists()
    assert [m["id"] for m in server.get("/v1/models").json()["data"]] == ["gemma-3-270m"]

    # The README's curl: no model named, one servable.
    reply = server.post("/v1/chat/completions", data=b'{"messages":[{"role":"user","content":"Hi"}]}')
    assert reply.status_code == 200, reply.text
    assert_schema(reply.json(), "CreateChatCompletionResponse")
    assert reply.json()["usage"]["completion_tokens"] >= 1

    client = server.client()
    answer = client.chat.completions.create(
        model="gemma-3-270m", messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0
    )
    assert answer.choices[0].message.content.startswith("Paris")
    assert answer.choices[0].finish_reason == "stop"


def test_demo_keeps_files_already_there(tmp_path, make_server):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "gemma-3-270m.yaml").write_text("name: mine\nparameters:\n  model: gemma-3-270m-q4_k_m.gguf\n")
    server = make_server(folder, "--demo")
    assert [m["id"] for m in server.get("/v1/models").json()["data"]] == ["mine"]
