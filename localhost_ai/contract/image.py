"""Image generation requests, and the defaults a model's YAML gives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from localhost_ai.config import ModelConfig

DEFAULT_IMAGE_SIZE = 512
DEFAULT_IMAGE_STEPS = 25
DEFAULT_GUIDANCE = 7.5


@dataclass(frozen=True)
class ImageRequest:
    OP: ClassVar[str] = "generate"
    prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    negative_prompt: str | None = None
    n: int = 1
    seed: int | None = None
    image: bytes | None = None  # image-to-image (and inpainting with `mask`)
    mask: bytes | None = None
    strength: float = 0.75


@dataclass(frozen=True)
class ImageDefaults:
    """What an image request leaves out: the model's YAML, then these defaults."""

    width: int
    height: int
    steps: int
    guidance_scale: float

    @classmethod
    def of(cls, config: ModelConfig) -> "ImageDefaults":
        parameters: dict[str, Any] = config.parameters
        size = parameters.get("size") or f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE}"
        width, height = (int(x) for x in size.split("x"))
        return cls(width, height, parameters.get("steps") or config.raw.get("step") or DEFAULT_IMAGE_STEPS,
                   parameters.get("guidance_scale", DEFAULT_GUIDANCE))
