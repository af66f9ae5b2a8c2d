"""Image generation: /v1/images/generations, /v1/images/edits, Nexa's /v1/txt2img and
/v1/img2img, and /generated-images/<name>.png for `url` responses."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import time
from pathlib import Path

from aiohttp import web

from localhost_ai.api.forms import read_form
from localhost_ai.api.generation import one
from localhost_ai.api.media import file_inside
from localhost_ai.api.keys import REGISTRY, SETTINGS
from localhost_ai.api import openapi
from localhost_ai.api.routes import OPENAI, SERVER
from localhost_ai.api.validation import read_json
from localhost_ai.config import IMAGE, ModelConfig
from localhost_ai.contract.events import Images
from localhost_ai.contract.image import ImageDefaults, ImageRequest
from localhost_ai.errors import InvalidRequest, NotFound

MAX_N = 4
MAX_STEPS = 100
_NAME = re.compile(r"^[0-9a-f]{32}\.png$")

_COMMON = {
    "model": {"type": ["string", "null"]},
    "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
    "negative_prompt": {"type": ["string", "null"], "maxLength": 4000},
    "seed": {"type": ["integer", "null"]},
}
GENERATIONS_SCHEMA = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        **_COMMON,
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_N},
        "size": {"type": ["string", "null"], "pattern": r"^\d{1,5}x\d{1,5}$"},
        "response_format": {"enum": ["url", "b64_json", None]},
        "step": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEPS},
        "steps": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEPS},
        "guidance_scale": {"type": ["number", "null"], "minimum": 0, "maximum": 50},
    },
}
NEXA_SCHEMA = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        **_COMMON,
        "cfg_scale": {"type": ["number", "null"], "minimum": 0, "maximum": 50},
        "width": {"type": ["integer", "null"], "minimum": 8},
        "height": {"type": ["integer", "null"], "minimum": 8},
        "sample_steps": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEPS},
        "image_path": {"type": ["string", "null"], "minLength": 1},
        "strength": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    },
}


EDITS_FORM = {
    "type": "object",
    "required": ["image", "prompt"],
    "properties": {
        "image": {"type": "string", "contentMediaType": "application/octet-stream"},
        "mask": {"type": "string", "contentMediaType": "application/octet-stream"},
        "prompt": {"type": "string", "minLength": 1},
        "model": {"type": "string"},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_N},
        "size": {"type": "string", "pattern": r"^\d{1,5}x\d{1,5}$"},
        "strength": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "steps": {"type": "integer", "minimum": 1, "maximum": MAX_STEPS},
        "seed": {"type": "integer"},
        "negative_prompt": {"type": "string"},
        "response_format": {"enum": ["url", "b64_json"]},
    },
}


def _check_size(request: web.Request, width: int, height: int, param: str) -> tuple[int, int]:
    limit = request.app[SETTINGS].max_image_size
    if width % 8 or height % 8 or not (8 <= width <= limit and 8 <= height <= limit):
        raise InvalidRequest(f"Invalid '{param}' {width}x{height}: width and height must be multiples of 8 "
                             f"between 8 and {limit}.", param=param, code="invalid_size")
    return width, height


def _split_prompt(prompt: str, negative: str | None) -> tuple[str, str | None]:
    """LocalAI's `positive|negative` form."""
    if "|" in prompt and not negative:
        positive, _, negative = prompt.partition("|")
        return positive.strip(), negative.strip() or None
    return prompt, negative


async def _generate(request: web.Request, config: ModelConfig, call: ImageRequest) -> list[bytes]:
    return (await one(request, config, call, Images)).images


def _store(request: web.Request, images: list[bytes]) -> list[str]:
    folder: Path = request.app[SETTINGS].generated_images_path
    folder.mkdir(parents=True, exist_ok=True)
    urls = []
    for data in images:
        name = f"{secrets.token_hex(16)}.png"
        (folder / name).write_bytes(data)
        urls.append(str(request.url.origin().join(request.app.router["generated_image"].url_for(name=name))))
    return urls


def _data(request: web.Request, images: list[bytes], response_format: str) -> list[dict[str, str]]:
    if response_format == "b64_json":
        return [{"b64_json": base64.b64encode(data).decode()} for data in images]
    return [{"url": url} for url in _store(request, images)]


def _size(value: str | None, defaults: ImageDefaults) -> tuple[int, int]:
    if not value:
        return defaults.width, defaults.height
    width, height = value.split("x")
    return int(width), int(height)


@OPENAI.post("/images/generations")
@openapi.document("Images from a prompt", body=GENERATIONS_SCHEMA, json=openapi.IMAGES)
async def generations(request: web.Request) -> web.Response:
    body = await read_json(request, GENERATIONS_SCHEMA)
    config = await request.app[REGISTRY].find(body.get("model"), IMAGE)
    defaults = ImageDefaults.of(config)
    width, height = _check_size(request, *_size(body.get("size"), defaults), "size")
    prompt, negative = _split_prompt(body["prompt"], body.get("negative_prompt"))
    call = ImageRequest(prompt=prompt, negative_prompt=negative, n=body.get("n") or 1, width=width, height=height,
                        steps=body.get("steps") or body.get("step") or defaults.steps,
                        guidance_scale=body.get("guidance_scale", defaults.guidance_scale), seed=body.get("seed"))
    images = await _generate(request, config, call)
    return web.json_response({"created": int(time.time()), "data": _data(request, images, body.get("response_format") or "url")})


@OPENAI.post("/images/edits")
@openapi.document("Images from an image and a prompt, optionally within a mask", form=EDITS_FORM, json=openapi.IMAGES)
async def edits(request: web.Request) -> web.Response:
    form = await read_form(request, "image", "image")
    fields, files = form.fields, form.files
    if "image" not in files:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    if not fields.get("prompt"):
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    config = await request.app[REGISTRY].find(fields.get("model") or None, IMAGE)
    defaults = ImageDefaults.of(config)
    size = fields.get("size")
    if size and not re.fullmatch(r"\d{1,5}x\d{1,5}", size):
        raise InvalidRequest(f"Invalid 'size' {size!r}: use WIDTHxHEIGHT.", param="size")
    width, height = _check_size(request, *_size(size, defaults), "size")
    try:
        n = int(fields.get("n") or 1)
        strength = float(fields.get("strength") or 0.75)
        steps = int(fields.get("steps") or fields.get("step") or defaults.steps)
        seed = int(fields["seed"]) if fields.get("seed") else None
    except ValueError as exc:
        raise InvalidRequest(f"Invalid number in the form: {exc}", param="n") from None
    if not 1 <= n <= MAX_N or not 0 < strength <= 1 or not 1 <= steps <= MAX_STEPS:
        raise InvalidRequest(f"'n' must be 1 to {MAX_N}, 'strength' above 0 up to 1, 'steps' 1 to {MAX_STEPS}.",
                             param="n" if not 1 <= n <= MAX_N else ("strength" if not 0 < strength <= 1 else "steps"))
    response_format = fields.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        raise InvalidRequest(f"Invalid 'response_format' {response_format!r}.", param="response_format")
    prompt, negative = _split_prompt(fields["prompt"], fields.get("negative_prompt"))
    call = ImageRequest(prompt=prompt, negative_prompt=negative, n=n, width=width, height=height, steps=steps,
                        guidance_scale=defaults.guidance_scale, seed=seed, image=files["image"],
                        mask=files.get("mask"), strength=strength)
    images = await _generate(request, config, call)
    return web.json_response({"created": int(time.time()), "data": _data(request, images, response_format)})


def _image_from_path(request: web.Request, value: str) -> bytes:
    """A data URL, or a file inside --images-path; nothing else can be read."""
    if value.startswith("data:"):
        try:
            return base64.b64decode(value.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise InvalidRequest("'image_path' is not a valid base64 data URL.", param="image_path") from None
    if "\0" in value:
        raise InvalidRequest("'image_path' may not contain a NUL character.", param="image_path",
                             code="forbidden_path")
    root = request.app[SETTINGS].images_path
    if root is None:
        raise InvalidRequest("'image_path' may only be a data URL on this server (no --images-path is set).",
                             param="image_path", code="forbidden_path")
    candidate = file_inside(root, value)
    try:
        if candidate is not None:
            return candidate.read_bytes()
    except OSError:  # a file that went
        pass
    raise InvalidRequest("'image_path' must name a file inside the images folder.", param="image_path",
                         code="forbidden_path")


async def _nexa(request: web.Request, with_image: bool) -> web.Response:
    body = await read_json(request, NEXA_SCHEMA)
    config = await request.app[REGISTRY].find(body.get("model"), IMAGE)
    defaults = ImageDefaults.of(config)
    width = body.get("width") or defaults.width
    height = body.get("height") or defaults.height
    _check_size(request, width, height, "width")
    image, strength = None, 0.75
    if with_image:
        if not body.get("image_path"):
            raise InvalidRequest("Missing required parameter: 'image_path'.", param="image_path",
                                 code="missing_required_parameter")
        image = await asyncio.to_thread(_image_from_path, request, body["image_path"])  # a file read: off the loop
        strength = body.get("strength") or 0.75
    call = ImageRequest(prompt=body["prompt"], negative_prompt=body.get("negative_prompt"), width=width, height=height,
                        steps=body.get("sample_steps") or defaults.steps,
                        guidance_scale=body["cfg_scale"] if body.get("cfg_scale") is not None else defaults.guidance_scale,
                        seed=body.get("seed"), image=image, strength=strength)
    images = await _generate(request, config, call)
    urls = _store(request, images)
    return web.json_response({"created": int(time.time()), "data": [
        {"base64": base64.b64encode(data).decode(), "url": url} for data, url in zip(images, urls)]})


@OPENAI.post("/txt2img")
@openapi.document("Nexa's text to image", body=NEXA_SCHEMA, json=openapi.NEXA_IMAGES)
async def txt2img(request: web.Request) -> web.Response:
    return await _nexa(request, with_image=False)


@OPENAI.post("/img2img")
@openapi.document("Nexa's image to image", body=NEXA_SCHEMA, json=openapi.NEXA_IMAGES)
async def img2img(request: web.Request) -> web.Response:
    return await _nexa(request, with_image=True)


@SERVER.get("/generated-images/{name}", name="generated_image")
@openapi.document("A generated image, kept for its URL", other={"image/png": {"type": "string", "contentEncoding": "binary"}})
async def generated_image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = request.app[SETTINGS].generated_images_path / name
    if not _NAME.match(name) or not path.is_file():
        raise NotFound(f"No generated image {name}.", code="image_not_found")
    return web.FileResponse(path, headers={"Content-Type": "image/png"})


async def remove_old_images(app: web.Application) -> None:
    """Generated files are kept for their URLs, and removed after --generated-images-max-age."""
    settings = app[SETTINGS]
    while True:
        await asyncio.sleep(min(60.0, max(1.0, settings.generated_images_max_age / 4)))
        folder = settings.generated_images_path
        if not folder.is_dir():
            continue
        cutoff = time.time() - settings.generated_images_max_age
        for path in folder.iterdir():
            try:
                if _NAME.match(path.name) and path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass
