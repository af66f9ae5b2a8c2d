"""diffusers backend: a Stable Diffusion pipeline folder (or one .safetensors checkpoint),
text-to-image, image-to-image and inpainting with the same loaded weights."""

from __future__ import annotations

import io
import os
import random
from typing import Any, Iterator

from localhost_ai.backends.base import IMAGE, Backend, CallControl, Piece, register
from localhost_ai.backends.optional import require
from localhost_ai.errors import BackendError, InvalidRequest

SCHEDULERS = {
    "ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler", "lms": "LMSDiscreteScheduler",
}


def _open_image(data: bytes, param: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidRequest(f"'{param}' is not an image this server can read: {exc}", param=param,
                             code="invalid_image") from None
    return image.convert("RGB")


@register("diffusers")
class DiffusersBackend(Backend):
    @classmethod
    def capabilities(cls, config: dict[str, Any]) -> frozenset[str]:
        return frozenset({IMAGE})

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the models folder only
        diffusers, torch = require("The diffusers backend", "images", "diffusers", "torch")
        self.torch = torch
        torch.set_num_threads(self.config.get("threads") or self.defaults.get("threads") or 1)
        path = self.config["model_path"]
        parameters = self.config.get("parameters") or {}
        if path.endswith((".safetensors", ".ckpt")):
            pipeline = diffusers.StableDiffusionPipeline.from_single_file(path, torch_dtype=torch.float32)
        else:
            pipeline = diffusers.StableDiffusionPipeline.from_pretrained(path, torch_dtype=torch.float32,
                                                                        safety_checker=None, requires_safety_checker=False)
        scheduler = parameters.get("scheduler")
        if scheduler:
            if scheduler not in SCHEDULERS:
                raise BackendError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
            pipeline.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        self.text2image = pipeline
        self.image2image = diffusers.StableDiffusionImg2ImgPipeline(**pipeline.components)
        self.inpaint = diffusers.StableDiffusionInpaintPipeline(**pipeline.components)
        for extra in (self.image2image, self.inpaint):
            extra.set_progress_bar_config(disable=True)

    def op_generate(self, payload: dict[str, Any], cancel: CallControl) -> Iterator[Piece]:
        torch = self.torch
        seed = payload.get("seed")
        if seed is None or seed < 0:
            seed = random.getrandbits(31)
        generator = torch.Generator("cpu").manual_seed(seed)
        width, height = payload["width"], payload["height"]

        def on_step(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            cancel.beat()
            if cancel.is_set():
                pipe._interrupt = True
            return kwargs

        common = {
            "prompt": payload["prompt"],
            "negative_prompt": payload.get("negative_prompt") or None,
            "num_inference_steps": payload["steps"],
            "guidance_scale": payload["guidance_scale"],
            "num_images_per_prompt": payload["n"],
            "generator": generator,
            "callback_on_step_end": on_step,
        }
        if payload.get("image") is not None:
            init = _open_image(payload["image"], "image").resize((width, height))
            strength = payload.get("strength", 0.75)
            if payload.get("mask") is not None:
                mask = _open_image(payload["mask"], "mask").resize((width, height))
                images = self.inpaint(image=init, mask_image=mask, width=width, height=height, strength=strength,
                                      **common).images
            else:
                images = self.image2image(image=init, strength=strength, **common).images
        else:
            images = self.text2image(width=width, height=height, **common).images
        if cancel.is_set():
            return
        encoded = []
        for image in images:
            out = io.BytesIO()
            image.save(out, format="PNG")
            encoded.append(out.getvalue())
        yield {"type": "images", "images": encoded, "seed": seed}
