"""One module per backend; importing this package registers them all.

Backend modules import their heavy libraries only inside `load`, so importing them
here costs nothing at start-up."""

from localhost_ai.backends import llamacpp  # noqa: F401  (registers "llama-cpp")
from localhost_ai.backends.base import Backend, backend_class, backend_names

__all__ = ["Backend", "backend_class", "backend_names"]
