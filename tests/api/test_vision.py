"""Images and audio in chat: the real Gemma 3 270M with tiny random projectors (written by
tests/mmproj_fixture.py and loaded by llama.cpp's own libmtmd), on a real server, through
the openai client.  Only the projectors' weights are random; the loading, tokenizing,
encoding, batching and caching are the ones a real VLM goes through."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from tests.conftest import GEMMA_FILE, Server, assert_error, assert_schema, place, start_server, stop_server
from tests.mmproj_fixture import build_audio_projector, build_vision_projector

IMAGE_TOKENS = 16  # the vision projector: a 32 x 32 image in 8 x 8 patches
AUDIO_TOKENS = 25  # the audio projector: per 30 seconds of audio
QUESTION = {"type": "text", "text": "What is in this picture?"}
# SmolVLM's own chat template, which reads content as a list of typed parts.
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def model(name: str, mmproj: str | None, **extra: Any) -> dict[str, Any]:
    config = {"name": name, "backend": "llama-cpp", "context_size": 1024, "threads": 2, "parallel": 4,
              "parameters": {"model": GEMMA_FILE, "temperature": 0.0, "max_tokens": 12}, **extra}
    if mmproj:
        config["mmproj"] = mmproj
    return config


def png(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def wav(seconds: float, frequency: float) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        t = np.arange(int(seconds * 16000)) / 16000
        frame = av.AudioFrame.from_ndarray((np.sin(2 * np.pi * frequency * t) * 8000).astype(np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves the images folder; /to-file redirects to a file:// URL."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/slow":  # longer than the server's --media-fetch-timeout
            time.sleep(4)
        if self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(png(i))
    (folder / "big.png").write_bytes(png(9, (400, 400)))
    (folder / "tone.wav").write_bytes(wav(1.0, 440))
    return folder


@pytest.fixture(scope="module")
def file_server(media_folder: Path) -> Iterator[str]:
    handler = lambda *args: _Files(*args, directory=str(media_folder))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Path:
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    # A larger projection than the fixture's default, so that different images change the greedy answer.
    build_vision_projector(folder / "mmproj-vision.gguf", proj_scale=0.3)
    build_audio_projector(folder / "mmproj-audio.gguf", proj_scale=0.3)
    # A template with no text after the last message: a prompt may end with an image.
    bare = model("bare", "mmproj-vision.gguf", template={"chat": "{% for m in messages %}{{ m.content }}{% endfor %}"})
    typed = model("typed", "mmproj-vision.gguf", template={"chat": SMOLVLM_TEMPLATE})
    # LocalAI's Go templates: a message's media placed by template.multimodal (LocalAI's default: before the text).
    go = {"chat": "{{.Input}}\n", "chat_message": "{{.Content}}"}
    bare_nl = model("bare-nl", "mmproj-vision.gguf", template={"chat": "{% for m in messages %}{{ m.content }}{% endfor %}{{ '\\n' }}"})
    go_first = model("go-first", "mmproj-vision.gguf", template=go)
    go_after = model("go-after", "mmproj-vision.gguf",
                     template={**go, "multimodal": "{{.Text}}{{ range .Images }}<__media__>{{end}}"})
    for config in (model("plain", None), model("vision", "mmproj-vision.gguf"), model("hears", "mmproj-audio.gguf"),
                   bare, typed, go_first, go_after, bare_nl):
        (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_folder: Path, media_folder: Path) -> Iterator[Server]:
    started = start_server(models_folder, tmp_path_factory.mktemp("logs"), "--images-path", str(media_folder),
                           "--max-media-size", "100KiB", "--media-fetch-timeout", "2s", "--max-media-parts", "4",
                           env={"ALLOW_PRIVATE_URLS": "1"})
    yield started
    stop_server(started)


def ask(server: Server, model_name: str, *parts: dict[str, Any], **extra: Any) -> requests.Response:
    body = {"model": model_name, "messages": [{"role": "user", "content": [QUESTION, *parts]}], **extra}
    return server.post("/v1/chat/completions", json=body)


def answer(server: Server, model_name: str, *parts: dict[str, Any], **extra: Any) -> tuple[str, dict[str, Any]]:
    response = ask(server, model_name, *parts, **extra)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_schema(body, "CreateChatCompletionResponse")
    return body["choices"][0]["message"]["content"], body["usage"]


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def engine(server: Server, name: str) -> dict[str, Any]:
    return server.get("/backend/monitor", params={"model": name}).json()["engine"]


# -- what a model reads ------------------------------------------------------------------------

def test_capabilities_say_what_the_projector_reads(server):
    system = {m["id"]: m["capabilities"] for m in server.get("/system").json()["models"]}
    assert "vision" in system["vision"] and "audio" not in system["vision"]
    assert "audio" in system["hears"] and "vision" not in system["hears"]
    assert "vision" not in system["plain"] and "audio" not in system["plain"]
    listed = {m["id"]: m for m in server.get("/v1/models").json()["data"]}
    assert "vision" in listed["vision"]["capabilities"]
    # The projector files are no models of their own.
    assert set(listed) == {"plain", "vision", "hears", "bare", "typed", "go-first", "go-after",
                           "bare-nl"}


def test_an_image_counts_its_tokens_and_changes_the_answer(server, media_folder):
    text_only, text_usage = answer(server, "vision")
    answers = {}
    for i in range(3):
        reply, usage = answer(server, "vision", image(data_url((media_folder / f"img{i}.png").read_bytes())))
        assert usage["prompt_tokens"] == text_usage["prompt_tokens"] + IMAGE_TOKENS, (usage, text_usage)
        answers[i] = reply
    again, _ = answer(server, "vision", image(data_url((media_folder / "img0.png").read_bytes())))
    assert again == answers[0]
    assert len(set(answers.values())) > 1, answers  # the images are read: different ones change the answer


def test_every_image_source_and_shape_reads_the_same_image(server, media_folder, file_server):
    raw = (media_folder / "img1.png").read_bytes()
    encoded = base64.b64encode(raw).decode()
    expected, _ = answer(server, "vision", image(data_url(raw)))
    sources = [
        image(encoded),  # bare base64
        {"type": "image_url", "image_url": data_url(raw)},  # Nexa's bare string
        image(f"{file_server}/img1.png"),  # fetched by the server
        image("img1.png"),  # a path inside --images-path
        image(f"file://{media_folder / 'img1.png'}"),
        {"type": "image_url", "image_url": str(media_folder / "img1.png")},
    ]
    for part in sources:
        reply, usage = answer(server, "vision", part)
        assert reply == expected, part["image_url"] if isinstance(part["image_url"], str) else part["image_url"]["url"][:60]


def test_a_template_that_reads_typed_parts_gets_the_text_and_the_image(server):
    """Given content as a string, such a template would render none of it (and no image)."""
    reply, usage = answer(server, "typed", image(data_url(png(2))))
    _, text_usage = answer(server, "typed")
    # (the text either side of the image is tokenized apart: a token more or less at the seam)
    assert abs(usage["prompt_tokens"] - (text_usage["prompt_tokens"] + IMAGE_TOKENS)) <= 1, (usage, text_usage)
    assert text_usage["prompt_tokens"] > 10  # "What is in this picture?" is in the prompt


def test_jpeg_webp_and_gif_are_read(server):
    for fmt, mime in (("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")):
        reply, usage = answer(server, "vision", image(data_url(png(3, fmt=fmt), mime)))
        assert usage["prompt_tokens"] > IMAGE_TOKENS


def test_the_openai_client_sends_an_image_streamed_and_not(server, media_folder):
    client = server.client()
    messages = [{"role": "user", "content": [QUESTION, image(data_url((media_folder / "img2.png").read_bytes()))]}]
    whole = client.chat.completions.create(model="vision", messages=messages)
    assert whole.usage.prompt_tokens > IMAGE_TOKENS
    chunks = list(client.chat.completions.create(model="vision", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    for chunk in chunks:
        assert_schema(chunk.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_the_second_turn_about_an_image_reuses_its_cells(server, media_folder):
    picture = image(data_url(png(21)))
    history: list[dict[str, Any]] = [{"role": "user", "content": [QUESTION, picture]}]
    before = engine(server, "vision")
    first, _ = answer_messages(server, history)
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "And what colour is it?"}]
    _, usage = answer_messages(server, history)
    after = engine(server, "vision")
    assert after["media"] - before["media"] == 2
    assert after["media_decoded"] - before["media_decoded"] == 1  # encoded once, for the first turn
    assert after["media_tokens_reused"] - before["media_tokens_reused"] == IMAGE_TOKENS
    assert usage["prompt_tokens_details"]["cached_tokens"] > IMAGE_TOKENS
    # A different image after the same text matches only up to it.
    before = after
    answer_messages(server, [{"role": "user", "content": [QUESTION, image(data_url(png(22)))]}])
    after = engine(server, "vision")
    assert after["media_decoded"] - before["media_decoded"] == 1
    assert after["media_tokens_reused"] == before["media_tokens_reused"]


def answer_messages(server: Server, messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    response = server.post("/v1/chat/completions", json={"model": "vision", "messages": messages})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"], response.json()["usage"]


def test_concurrent_image_and_text_requests_batch_and_each_gets_its_own_answer(server):
    # Seeded: read afresh, so alone and together decode the same cells.
    requests_ = [[image(data_url(png(30 + i)))] for i in range(4)] + [[] for _ in range(2)]
    alone = [answer(server, "vision", *parts, seed=5, max_tokens=8)[0] for parts in requests_]
    before = engine(server, "vision")
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda parts: answer(server, "vision", *parts, seed=5, max_tokens=8)[0], requests_))
    after = engine(server, "vision")
    assert together == alone
    # Images and prompts were read in steps that also decoded the others' next tokens.
    assert after["steps_with_prompt_and_generation"] > before["steps_with_prompt_and_generation"]
    assert after["max_sequences_in_step"] >= 2
    assert after["media_decoded"] - before["media_decoded"] == 4


def test_streaming_tools_and_response_format_work_with_an_image(server, media_folder):
    picture = image(data_url((media_folder / "img0.png").read_bytes()))
    response = ask(server, "vision", picture, response_format={"type": "json_object"}, max_tokens=30)
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    if response.json()["choices"][0]["finish_reason"] == "stop":
        json.loads(content)
    tool = {"type": "function", "function": {"name": "describe", "parameters": {
        "type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}}}
    response = ask(server, "vision", picture, tools=[tool], tool_choice="required", max_tokens=40)
    assert response.status_code == 200, response.text
    calls = response.json()["choices"][0]["message"]["tool_calls"]
    assert calls and calls[0]["function"]["name"] == "describe"
    stopped = ask(server, "vision", picture, stop=["e"], max_tokens=30)
    assert "e" not in stopped.json()["choices"][0]["message"]["content"]


def test_audio_is_read_by_a_model_whose_projector_hears(server, media_folder):
    _, text_usage = answer(server, "hears")
    tone = (media_folder / "tone.wav").read_bytes()
    reply, usage = answer(server, "hears", {"type": "input_audio", "input_audio": {
        "data": base64.b64encode(tone).decode(), "format": "wav"}})
    assert usage["prompt_tokens"] == text_usage["prompt_tokens"] + AUDIO_TOKENS
    for form in ({"type": "input_audio", "input_audio": base64.b64encode(tone).decode()},  # Nexa's bare string
                 {"type": "input_audio", "input_audio": "tone.wav"}):
        assert answer(server, "hears", form)[0] == reply
    other, _ = answer(server, "hears", {"type": "input_audio", "input_audio": {
        "data": base64.b64encode(wav(1.0, 1500)).decode(), "format": "wav"}})
    assert usage == answer(server, "hears", {"type": "input_audio", "input_audio": "tone.wav"})[1]
    assert isinstance(other, str)


def test_a_stream_about_an_image_stops_when_its_client_goes(server):
    body = {"model": "vision", "max_tokens": 200, "stream": True, "stop": [],
            "messages": [{"role": "user", "content": [QUESTION, image(data_url(png(40)))]}]}
    before = engine(server, "vision")
    with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=60) as response:
        assert response.status_code == 200
        next(line for line in response.iter_lines() if b'"content": "' in line and b'"content": ""' not in line)
    server.wait_for(lambda: engine(server, "vision")["active"] == 0)
    after = engine(server, "vision")
    assert after["tokens_generated"] - before["tokens_generated"] < 200
    assert answer(server, "vision", image(data_url(png(40))))[1]["prompt_tokens"] > IMAGE_TOKENS


# -- what is refused ----------------------------------------------------------------------------

def refused(response: requests.Response, status: int, code: str, where: str = "messages[0].content[1]") -> str:
    error = assert_error(response, status, where)
    assert error["code"] == code, error
    return error["message"]


def test_a_model_without_a_projector_refuses_media_naming_model_and_part(server):
    message = refused(ask(server, "plain", image(data_url(png(1)))), 400, "unsupported_content")
    assert "'plain'" in message and "messages[0].content[1]" in message
    message = refused(ask(server, "vision", {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
                      400, "unsupported_content")
    assert "'vision'" in message and "audio" in message
    refused(ask(server, "hears", image(data_url(png(1)))), 400, "unsupported_content")


def test_bad_media_is_refused_and_the_worker_keeps_serving(server, media_folder, file_server, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(5))
    link = media_folder / "link-out.png"
    if not link.exists():
        link.symlink_to(outside)  # inside the folder, leading out of it
    cases = [
        (image("data:image/png;base64,@@@not base64@@@"), 400, "invalid_media"),
        (image("data:image/png,rawbytes"), 400, "invalid_media"),
        (image(data_url(b"this is not an image at all")), 400, "invalid_image"),
        (image(data_url(png(4, fmt="BMP"), "image/bmp")), 400, "invalid_image"),  # a format not read
        (image(data_url((media_folder / "big.png").read_bytes())), 413, "media_too_large"),  # --max-media-size
        (image("big.png"), 413, "media_too_large"),
        (image(f"{file_server}/big.png"), 413, "media_too_large"),
        (image(f"../{tmp_path.name}/outside.png"), 400, "forbidden_path"),
        (image(str(outside)), 400, "forbidden_path"),
        (image("link-out.png"), 400, "forbidden_path"),
        (image(f"{file_server}/slow"), 400, "media_fetch_failed"),  # --media-fetch-timeout
        (image("file:///etc/passwd"), 400, "forbidden_path"),
        (image("ftp://example.com/x.png"), 400, "invalid_media"),
        (image(f"{file_server}/missing.png"), 400, "media_fetch_failed"),
        (image(f"{file_server}/to-file"), 400, "media_fetch_failed"),  # a redirect to another scheme
        ({"type": "input_audio", "input_audio": {"data": base64.b64encode(png(1)).decode(), "format": "wav"}}, 400,
         "invalid_audio"),
    ]
    for part, status, code in cases:
        model_name = "hears" if part["type"] == "input_audio" else "vision"
        refused(ask(server, model_name, part), status, code)
    schema_error = assert_error(ask(server, "vision", {"type": "input_audio", "input_audio": {"data": "AAAA",
                                                                                            "format": "midi"}}), 400)
    assert "format" in schema_error["param"]
    assert_error(ask(server, "vision", {"type": "image_url"}), 400)
    # A later part that fails fails the request; the parts before it are let go.
    refused(ask(server, "vision", image(data_url(png(1))), image(data_url(b"broken"))), 400, "invalid_image",
            "messages[0].content[2]")
    many = [image(data_url(png(1)))] * 5
    refused(ask(server, "vision", *many), 400, "too_many_media_parts", "messages")  # --max-media-parts 4
    # A template that ends the prompt with the image: refused, as no answer can start there.
    refused(server.post("/v1/chat/completions", json={"model": "bare", "messages": [
        {"role": "user", "content": [QUESTION, image(data_url(png(1)))]}]}), 400, "invalid_media", "messages")
    reply, usage = answer(server, "vision", image(data_url(png(1))))
    assert usage["prompt_tokens"] > IMAGE_TOKENS


def test_private_addresses_and_local_files_are_refused_without_their_settings(make_server, models_folder, file_server):
    guarded = make_server(models_folder)
    message = refused(ask(guarded, "vision", image(f"{file_server}/img0.png")), 400, "forbidden_url")
    assert "--allow-private-urls" in message
    message = refused(ask(guarded, "vision", image("img0.png")), 400, "forbidden_path")
    assert "--images-path" in message
    assert guarded.get("/v1/models").ok


def test_the_responses_and_messages_apis_send_images_too(server, media_folder):
    """Both doors read an image as the chat route does: the same answer and the same count."""
    import anthropic

    picture = (media_folder / "img1.png").read_bytes()
    reply, usage = answer(server, "vision", image(data_url(picture)))
    response = server.client().responses.create(model="vision", input=[{"role": "user", "content": [
        {"type": "input_text", "text": QUESTION["text"]}, {"type": "input_image", "image_url": data_url(picture)}]}])
    assert response.output_text == reply and response.usage.input_tokens == usage["prompt_tokens"]
    claude = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    message = claude.messages.create(model="vision", max_tokens=usage["completion_tokens"] + 8, messages=[
        {"role": "user", "content": [{"type": "text", "text": QUESTION["text"]}, {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": base64.b64encode(picture).decode()}}]}])
    assert message.content[0].text == reply
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == usage["prompt_tokens"]


def test_ollama_chat_sends_images_too(server, media_folder):
    import ollama

    picture = (media_folder / "img1.png").read_bytes()
    reply, usage = answer(server, "vision", image(data_url(picture)))
    chat = ollama.Client(host=server.url).chat(model="vision", stream=False, messages=[
        {"role": "user", "content": QUESTION["text"], "images": [picture]}])
    assert chat.message.content == reply and chat.prompt_eval_count == usage["prompt_tokens"]


def test_localai_go_templates_place_media_by_template_multimodal(server):
    picture = image(data_url(png(5)))

    def read(name: str, *parts: dict[str, Any]) -> tuple[str, int]:
        response = server.post("/v1/chat/completions", json={
            "model": name, "messages": [{"role": "user", "content": list(parts)}]})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"], response.json()["usage"]["prompt_tokens"]

    # LocalAI's default puts the image before the text, wherever the part was
    assert read("go-first", QUESTION, picture) == read("bare-nl", picture, QUESTION)
    assert read("go-first", QUESTION, picture) != read("bare-nl", QUESTION, picture)
    # a multimodal template that puts it after
    assert read("go-after", picture, QUESTION) == read("bare-nl", QUESTION, picture)
    # a user's own <__media__> is text, not a second image
    sneaky = {"type": "text", "text": "What is <__media__> in this picture?"}
    reply = server.post("/v1/chat/completions", json={
        "model": "go-first", "messages": [{"role": "user", "content": [sneaky, picture]}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] > IMAGE_TOKENS + 5
