"""A real browser (Debian's chromium, driven by Playwright) on the web page of a real server.
Every page a test opens is checked when the test ends: no console error, no uncaught
exception, no request to any host but the server. Screenshots go to artifacts/webui/."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.audio.conftest import faster_whisper_path, speech_wav  # noqa: F401  (fixtures used here)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("WEBUI_SCREENSHOTS", Path(__file__).parents[2] / "artifacts" / "webui"))
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 780}


@pytest.fixture(scope="module")
def browser():
    """Per module: Playwright's sync API keeps an event loop running while it is open, which
    the async tests that come after it must not find."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the README's test command installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Debian's own build, not one Playwright downloads (nothing is fetched at test time).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        yield browser
        browser.close()


@dataclass
class Watched:
    """A page and what it did that it should not: console errors, exceptions, dialogs
    (an `alert` that ran), and requests to any host but the server."""

    page: object
    origin: str
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def goto(self, hash_: str = "") -> None:
        self.page.goto(self.origin + "/" + hash_)
        self.page.wait_for_selector("header nav a")

    def shoot(self, name: str) -> None:
        """Screenshots at desktop and phone width; at phone width nothing is wider than the screen."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page = self.page
        size = page.viewport_size
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(100)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name}: the page is {width} px wide at {PHONE['width']} px"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
        page.set_viewport_size(size)


@pytest.fixture
def open_page(browser) -> Iterator:
    opened: list[Watched] = []

    def open_(origin: str, viewport: dict | None = None) -> Watched:
        context = browser.new_context(viewport=viewport or DESKTOP)
        page = context.new_page()
        watched = Watched(page, origin)
        page.on("console", lambda m: watched.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: watched.problems.append(f"uncaught: {error}"))
        page.on("dialog", lambda dialog: (watched.dialogs.append(dialog.message), dialog.dismiss())
                if dialog.type == "alert" else dialog.accept())
        page.on("request", lambda request: watched.requests.append(request.url))
        opened.append(watched)
        return watched

    yield open_
    for watched in opened:
        watched.page.context.close()
        assert not watched.problems, watched.problems
        assert not watched.dialogs, f"a dialog ran: {watched.dialogs}"
        foreign = [url for url in watched.requests
                   if not url.startswith(watched.origin + "/") and not url.startswith(("data:", "blob:"))]
        assert not foreign, f"requests to other hosts: {foreign}"
