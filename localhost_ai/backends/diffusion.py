"""diffusers backend: a Stable Diffusion pipeline folder (or one .safetensors checkpoint),
text-to-image, image-to-image and inpainting with the same loaded weights."""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from typing import Any, Iterator

from localhost_ai.backends.base import Backend, CallControl, register
from localhost_ai.backends.optional import require
from localhost_ai.config import BackendOptions, option
from localhost_ai.contract.events import Images
from localhost_ai.contract.image import ImageRequest
from localhost_ai.errors import InvalidRequest

SCHEDULERS = {
    "ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler", "lms": "LMSDiscreteScheduler",
}


def _open_image(data: bytes, param: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidRequest(f"'{param}' is not an image this server can read (PNG, JPEG, WebP ...).", param=param,
                             code="invalid_image") from None
    return image.convert("RGB")


@dataclass(frozen=True)
class DiffusersOptions(BackendOptions):
    """The pipeline's scheduler.  The request defaults under `parameters` (steps, size,
    guidance_scale) are the requests' business: `contract.image.ImageDefaults`."""

    scheduler: str | None = option({"enum": list(SCHEDULERS)}, key="parameters.scheduler")
    # Checked here, read by ImageDefaults: a request's own limits (api/images.py).
    size: str | None = option({"type": "string", "pattern": r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$"}, key="parameters.size")
    steps: int | None = option({"type": "integer", "minimum": 1, "maximum": 100}, key="parameters.steps")
    step: int | None = option({"type": "integer", "minimum": 1, "maximum": 100})
    guidance_scale: float | None = option({"type": "number", "minimum": 0, "maximum": 50},
                                          key="parameters.guidance_scale")


@register("diffusers")
class DiffusersBackend(Backend):
    Options = DiffusersOptions

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the models folder only
        diffusers, torch = require("The diffusers backend", "images", "diffusers", "torch")
        self.torch = torch
        torch.set_num_threads(self.config.threads or 1)
        path = str(self.config.model_path)
        if path.endswith((".safetensors", ".ckpt")):
            pipeline = diffusers.StableDiffusionPipeline.from_single_file(path, torch_dtype=torch.float32)
        else:
            pipeline = diffusers.StableDiffusionPipeline.from_pretrained(path, torch_dtype=torch.float32,
                                                                        safety_checker=None, requires_safety_checker=False)
        scheduler = self.options.scheduler
        if scheduler:
            pipeline.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        self.text2image = pipeline
        self.image2image = diffusers.StableDiffusionImg2ImgPipeline(**pipeline.components)
        self.inpaint = diffusers.StableDiffusionInpaintPipeline(**pipeline.components)
        for extra in (self.image2image, self.inpaint):
            extra.set_progress_bar_config(disable=True)

    def op_generate(self, request: ImageRequest, cancel: CallControl) -> Iterator[Images]:
        torch = self.torch
        seed = request.seed
        if seed is None or seed < 0:
            seed = random.getrandbits(31)
        generator = torch.Generator("cpu").manual_seed(seed)
        width, height = request.width, request.height

        def on_step(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            cancel.beat()
            if cancel.is_set():
                pipe._interrupt = True
            return kwargs

        common = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "num_images_per_prompt": request.n,
            "generator": generator,
            "callback_on_step_end": on_step,
        }
        if request.image is not None:
            init = _open_image(request.image, "image").resize((width, height))
            strength = request.strength
            if request.mask is not None:
                mask = _open_image(request.mask, "mask").resize((width, height))
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
        yield Images(images=encoded, seed=seed)
