"""What a multimodal projector (a YAML's `mmproj` GGUF) reads: images, audio or both, told
from the file's own metadata, so that a model's capabilities say it before it is loaded."""

from __future__ import annotations

from pathlib import Path

from localhost_ai.config.filecache import FileCache

IMAGE = "image"
AUDIO = "audio"


class ProjectorError(ValueError):
    """A file that is not a projector GGUF this server can read."""


def _read(path: Path) -> frozenset[str]:
    try:
        import gguf
    except ImportError:
        raise ProjectorError("reading a projector needs the 'gguf' package: pip install 'localhost-ai[llama]'") from None
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # not a GGUF, a truncated one, a version the reader does not know
        raise ProjectorError(f"is not a GGUF file this server can read ({exc})") from None
    fields = reader.fields

    def flag(key: str) -> bool:
        field = fields.get(key)
        return bool(field is not None and field.types and field.contents())

    if not any(name.startswith("clip.") for name in fields):
        raise ProjectorError("is a GGUF file but not a projector (it has no clip.* metadata): "
                             "mmproj names the model's mmproj-*.gguf file")
    media = set()
    # Older projectors (LLaVA 1.5's) name no encoder flags; their vision keys say it.
    if flag("clip.has_vision_encoder") or ("clip.has_vision_encoder" not in fields and "clip.vision.image_size" in fields):
        media.add(IMAGE)
    if flag("clip.has_audio_encoder"):
        media.add(AUDIO)
    if not media:
        raise ProjectorError("is a projector with neither a vision nor an audio encoder")
    return frozenset(media)


# The media the projector encodes: a subset of {IMAGE, AUDIO}, read once per version of the file.
projector_media = FileCache(_read)
