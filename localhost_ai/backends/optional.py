"""The heavy libraries a backend needs, imported when it loads, or an error that names
the extra which installs them (the server itself never imports them)."""

from __future__ import annotations

import importlib
from types import ModuleType

from localhost_ai.errors import BackendError


def require(needer: str, extra: str, *modules: str) -> list[ModuleType]:
    """Import `modules` for `needer` (as said in the error), or fail with a BackendError."""
    try:
        return [importlib.import_module(name) for name in modules]
    except ImportError:
        raise BackendError(f"{needer} needs its extra: pip install 'localhost-ai[{extra}]'",
                           code="backend_not_installed") from None
