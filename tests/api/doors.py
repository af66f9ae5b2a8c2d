"""The models the Responses and Messages tests share: Gemma 3 270M under a transcript
template (greedy, so a streamed answer can be compared with a whole one), and a probe whose
template fails with the chat messages it was given, which shows what a request was
translated into."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.api.test_tools import WEATHER, model
from tests.conftest import GEMMA_FILE, Server, place, start_server

# It names `tools`, so it gets calls and results as structured messages and the tools as a list.
PROBE_TEMPLATE = "{{ raise_exception('MESSAGES' ~ (messages | tojson) ~ 'TOOLS' ~ (tools | tojson) ~ 'END') }}"


def start(tmp_path_factory, gemma_gguf: Path, *args: str) -> Server:
    folder = tmp_path_factory.mktemp("models")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(yaml.safe_dump(model("gemma", 0.0)))
    (folder / "probe.yaml").write_text(yaml.safe_dump({**model("probe", 0.0), "template": {"chat": PROBE_TEMPLATE}}))
    return start_server(folder, tmp_path_factory.mktemp("logs"), *args)


def probed(message: str) -> tuple[list[dict], list[dict] | None]:
    """The chat messages and tools a probe's error reports."""
    found = re.search(r"MESSAGES(.*)TOOLS(.*)END", message, re.S)
    assert found, message
    return json.loads(found.group(1)), json.loads(found.group(2))


__all__ = ["WEATHER", "probed", "start"]
