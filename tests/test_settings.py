"""Settings from flags and LocalAI's environment names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localhost_ai.cli import build_parser
from localhost_ai.settings import from_args, parse_address, parse_duration


def settings_for(argv: list[str], env: dict[str, str] | None = None):
    return from_args(build_parser().parse_args(["serve", *argv]), environ=env or {})


def test_defaults():
    settings = settings_for([])
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.models_path == Path("./models").resolve()
    assert settings.api_keys == [] and settings.cors is False


def test_environment_names_of_localai():
    settings = settings_for([], {
        "MODELS_PATH": "/srv/models", "ADDRESS": ":9090", "THREADS": "3", "CONTEXT_SIZE": "4096",
        "API_KEY": "a, b", "CORS": "true", "CORS_ALLOW_ORIGINS": "*", "UPLOAD_LIMIT": "2",
    })
    assert settings.models_path == Path("/srv/models")
    assert (settings.host, settings.port) == ("0.0.0.0", 9090)
    assert settings.threads == 3 and settings.context_size == 4096
    assert settings.api_keys == ["a", "b"] and settings.cors is True and settings.upload_limit_mb == 2


def test_flags_win_over_environment():
    settings = settings_for(["--threads", "1", "--address", "127.0.0.1:7000"], {"THREADS": "4", "ADDRESS": ":9"})
    assert settings.threads == 1 and settings.port == 7000


@pytest.mark.parametrize("value", ["8080", "host:", "host:99999", "host:abc"])
def test_bad_address_is_refused(value):
    with pytest.raises(ValueError):
        parse_address(value)


def test_ipv6_address():
    assert parse_address("[::1]:8080") == ("::1", 8080)


def test_bad_setting_exits_with_a_message():
    out = subprocess.run([sys.executable, "-m", "localhost_ai", "serve", "--threads", "0"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "threads" in out.stderr
    out = subprocess.run([sys.executable, "-m", "localhost_ai", "serve"], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "CONTEXT_SIZE": "big"})
    assert out.returncode == 2 and "CONTEXT_SIZE" in out.stderr


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("500ms", 0.5), ("2.5m", 150)])
def test_durations_as_localai_writes_them(text, seconds):
    assert parse_duration(text) == seconds


def test_worker_lifecycle_settings():
    settings = settings_for(["--max-loaded-models", "2", "--idle-timeout", "15m"], {"BUSY_TIMEOUT": "1m", "MAX_QUEUE": "5"})
    assert settings.max_loaded_models == 2 and settings.idle_timeout == 900
    assert settings.busy_timeout == 60 and settings.max_queue == 5
    with pytest.raises(ValueError):
        settings_for([], {"IDLE_TIMEOUT": "soon"})
    with pytest.raises(ValueError):
        settings_for(["--max-queue", "0"])
