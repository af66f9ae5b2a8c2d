"""What a GGUF file says of itself (architecture, size, quantisation, its scalar metadata),
as Ollama's /api/tags and /api/show report it; and a model file's sha256, computed once per
version of the file, in the background.  Both are cached by the file's size and time."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localhost_ai.config.filecache import FileCache, version_key

log = logging.getLogger(__name__)

# llama.cpp's LLAMA_FTYPE values (general.file_type), as Ollama names the quantisation.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
    20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}
_MAX_STRING = 4096  # metadata strings longer than this (chat templates aside) are left out of model_info


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str = ""
    parameters: int = 0
    quantization: str = ""
    context_length: int | None = None
    chat_template: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # scalar keys, and short lists

    @property
    def parameter_size(self) -> str:
        """Ollama's spelling: '268.10M', '8.0B'."""
        if self.parameters >= 1e9:
            return f"{self.parameters / 1e9:.1f}B"
        return f"{self.parameters / 1e6:.2f}M" if self.parameters else ""


_digests: dict[tuple[str, int, int], str] = {}
_hashing: set[tuple[str, int, int]] = set()
_lock = threading.Lock()


def _value(field_: Any) -> Any:
    if len(field_.data) > 64:
        return None  # the vocabulary, merges and the like: left out (and not read), as Ollama leaves them out
    try:
        value = field_.contents()
    except Exception:  # a type the reader cannot turn into Python
        return None
    if isinstance(value, str) and len(value) > _MAX_STRING:
        return None
    return value


def _read(path: Path) -> GGUFInfo:
    try:
        import gguf

        reader = gguf.GGUFReader(path)
    except Exception:  # not a GGUF, or the gguf package is not installed
        return GGUFInfo()
    fields = reader.fields
    metadata = {}
    for name, field_ in fields.items():
        if name.startswith("GGUF.") or name == "tokenizer.chat_template":
            continue
        value = _value(field_)
        if value is not None:
            metadata[name] = value
    architecture = str(metadata.get("general.architecture") or "")
    file_type = metadata.get("general.file_type")
    template = fields.get("tokenizer.chat_template")
    context = metadata.get(f"{architecture}.context_length")
    return GGUFInfo(
        architecture=architecture,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        quantization=FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
        context_length=int(context) if isinstance(context, int) else None,
        chat_template=_value_text(template),
        metadata=metadata,
    )


def _value_text(field_: Any) -> str | None:
    if field_ is None:
        return None
    try:
        value = field_.contents()
    except Exception:
        return None
    return value if isinstance(value, str) else None


# The file's metadata (empty for a file that is not a GGUF this reader reads).
gguf_info = FileCache(_read)


def known_digest(path: Path) -> str | None:
    """The file's sha256 when it has been computed; else None, and it is computed in the
    background (one file at a time), for the next ask."""
    try:
        key = version_key(path)
    except OSError:
        return None
    with _lock:
        if key in _digests:
            return _digests[key]
        if _hashing:
            return None
        _hashing.add(key)
    try:
        threading.Thread(target=_hash, args=(path, key), name="model-digest", daemon=True).start()
    except RuntimeError:  # no thread to be had now: the next ask tries again
        with _lock:
            _hashing.discard(key)
    return None


def _hash(path: Path, key: tuple[str, int, int]) -> None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        with _lock:
            _digests[key] = digest.hexdigest()
    except OSError as exc:
        log.info("sha256 of %s: %s", path.name, exc.strerror)
    finally:
        with _lock:
            _hashing.discard(key)
