"""Last in the suite (by name): every error body its clients received, scanned for what a
client must never be told: exception text (a Python class name, a traceback, an errno, an
object's address) or a path on the server (its Python, its working folder, temporary
files, home)."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

from tests.error_bodies import MESSAGES

INTERNALS = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b|\[Errno|\bat 0x[0-9a-f]{6,}|bad_alloc")
ROOTS = sorted({sys.prefix, sys.base_prefix, tempfile.gettempdir() + "/", str(Path.home()),
                str(Path(__file__).resolve().parent.parent)})


def test_no_error_body_holds_exception_text_or_a_server_path():
    if len(MESSAGES) < 100:
        pytest.skip(f"only {len(MESSAGES)} error bodies were received: run it after the rest of the suite")
    leaks = [(test, message) for test, message in MESSAGES
             if INTERNALS.search(message) or any(root in message for root in ROOTS)]
    print(f"\n{len(MESSAGES)} error bodies scanned")
    assert not leaks, "\n".join(f"{test}: {message[:300]}" for test, message in leaks[:40])
