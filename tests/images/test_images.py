"""Image generation with a tiny random Stable Diffusion pipeline built in a fixture."""

from __future__ import annotations

import base64
import io

import aiohttp
import pytest
import requests
from PIL import Image

from tests.conftest import GEMMA_FILE, assert_error, assert_schema, place, start_server, stop_server


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "red.png")
    return folder


@pytest.fixture(scope="module")
def image_server(tmp_path_factory, images_dir, gemma_gguf):
    from tests.images.tinysd import build_tiny_sd

    folder = tmp_path_factory.mktemp("models")
    build_tiny_sd(folder / "tiny-sd")
    (folder / "sd.yaml").write_text(
        "name: sd\nbackend: diffusers\nparameters:\n  model: tiny-sd\n  steps: 2\n  size: 64x64\n")
    place(gemma_gguf, folder / GEMMA_FILE)
    (folder / "gemma.yaml").write_text(f"name: gemma\nparameters:\n  model: {GEMMA_FILE}\n")
    outputs = tmp_path_factory.mktemp("generated")
    server = start_server(folder, tmp_path_factory.mktemp("logs"), "--images-path", str(images_dir),
                          "--generated-images-path", str(outputs), "--max-image-size", "128", "--upload-limit", "1")
    yield server
    stop_server(server)


def png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


def test_openai_client_generates_pngs_of_the_size_and_count(image_server):
    client = image_server.client()
    result = client.images.generate(model="sd", prompt="a red fox", n=2, size="64x48", response_format="b64_json")
    assert_schema(result.model_dump(exclude_unset=True), "ImagesResponse")
    assert len(result.data) == 2
    for item in result.data:
        assert png(base64.b64decode(item.b64_json)).size == (64, 48)


def test_url_response_serves_the_same_image(image_server):
    body = {"model": "sd", "prompt": "a boat", "size": "64x64", "seed": 5, "response_format": "url"}
    by_url = image_server.post("/v1/images/generations", json=body).json()
    assert_schema(by_url, "ImagesResponse")
    url = by_url["data"][0]["url"]
    assert url.startswith(image_server.url + "/generated-images/") and url.endswith(".png")
    served = requests.get(url, timeout=10)
    assert served.headers["Content-Type"] == "image/png"
    by_b64 = image_server.post("/v1/images/generations", json={**body, "response_format": "b64_json"}).json()
    assert served.content == base64.b64decode(by_b64["data"][0]["b64_json"])
    assert_error(requests.get(image_server.url + "/generated-images/../../etc/passwd", timeout=10), 404)


async def test_same_seed_same_bytes_other_seed_differs_with_aiohttp(image_server):
    async with aiohttp.ClientSession() as session:
        async def one(seed: int) -> bytes:
            body = {"model": "sd", "prompt": "a tree|blurry", "size": "64x64", "seed": seed, "response_format": "b64_json"}
            async with session.post(image_server.url + "/v1/images/generations", json=body) as response:
                assert response.status == 200
                return base64.b64decode((await response.json())["data"][0]["b64_json"])

        first, again, other = await one(42), await one(42), await one(43)
    assert first == again
    assert first != other


def test_image_edit_changes_the_input_image(image_server, images_dir):
    red = (images_dir / "red.png").read_bytes()
    client = image_server.client()
    with (images_dir / "red.png").open("rb") as handle:
        result = client.images.edit(model="sd", image=handle, prompt="make it blue", size="64x64",
                                    response_format="b64_json")
    edited = png(base64.b64decode(result.data[0].b64_json))
    assert edited.size == (64, 64) and edited.tobytes() != Image.open(io.BytesIO(red)).tobytes()
    mask = io.BytesIO()
    Image.new("L", (64, 64), 255).save(mask, format="PNG")
    inpaint = requests.post(image_server.url + "/v1/images/edits", timeout=120,
                            files={"image": ("red.png", red), "mask": ("mask.png", mask.getvalue())},
                            data={"model": "sd", "prompt": "a window", "size": "64x64", "response_format": "b64_json"})
    assert inpaint.status_code == 200, inpaint.text
    assert png(base64.b64decode(inpaint.json()["data"][0]["b64_json"])).size == (64, 64)


def test_nexa_txt2img_and_img2img(image_server, images_dir):
    made = image_server.post("/v1/txt2img", json={"model": "sd", "prompt": "a cat", "width": 64, "height": 32,
                                                  "sample_steps": 2, "cfg_scale": 5, "seed": 1}).json()
    item = made["data"][0]
    assert isinstance(made["created"], int) and png(base64.b64decode(item["base64"])).size == (64, 32)
    assert requests.get(item["url"], timeout=10).content == base64.b64decode(item["base64"])
    changed = image_server.post("/v1/img2img", json={"model": "sd", "prompt": "a cat", "width": 64, "height": 64,
                                                     "image_path": "red.png", "seed": 1}).json()
    out = png(base64.b64decode(changed["data"][0]["base64"]))
    assert out.tobytes() != Image.open(images_dir / "red.png").tobytes()
    data_url = "data:image/png;base64," + base64.b64encode((images_dir / "red.png").read_bytes()).decode()
    assert image_server.post("/v1/img2img", json={"model": "sd", "prompt": "x", "width": 64, "height": 64,
                                                  "image_path": data_url}).status_code == 200


@pytest.mark.parametrize("path", ["../models/sd.yaml", "/etc/passwd", "../../../../etc/hostname", "missing.png",
                                  "a\x00b.png", "a" * 5000, "/".join(["d"] * 3000)])
def test_image_path_outside_the_images_folder_is_refused(image_server, path):
    response = image_server.post("/v1/img2img", json={"model": "sd", "prompt": "x", "width": 64, "height": 64,
                                                      "image_path": path})
    assert_error(response, 400, "image_path")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sd", "prompt": "x", "size": "65x64"}, "size"),
        ({"model": "sd", "prompt": "x", "size": "256x256"}, "size"),
        ({"model": "sd", "prompt": "x", "size": "big"}, "size"),
        ({"model": "sd", "prompt": "x", "n": 9}, "n"),
        ({"model": "sd", "prompt": "x", "steps": 500}, "steps"),
        ({"model": "sd"}, "prompt"),
        ({"model": "sd", "prompt": "x", "response_format": "gif"}, "response_format"),
        ({"model": "gemma", "prompt": "x"}, "model"),
    ],
)
def test_generation_errors(image_server, body, param):
    assert_error(image_server.post("/v1/images/generations", json=body), 400, param)


def test_edit_errors(image_server, images_dir):
    url = image_server.url + "/v1/images/edits"
    assert_error(requests.post(url, files={"image": ("a.png", b"not an image")}, data={"model": "sd", "prompt": "x", "size": "64x64"},
                               timeout=30), 400, "image")
    assert_error(requests.post(url, data={"model": "sd", "prompt": "x"}, files={"other": ("a", b"a")}, timeout=30), 400, "image")
    assert_error(requests.post(url, files={"image": ("a.png", b"\0" * (2 * 1024 * 1024))}, data={"model": "sd", "prompt": "x"},
                               timeout=30), 413)
    red = (images_dir / "red.png").read_bytes()
    assert_error(requests.post(url, files={"image": ("red.png", red)}, data={"model": "gemma", "prompt": "x"}, timeout=30),
                 400, "model")
    assert image_server.post("/v1/images/generations", json={"model": "sd", "prompt": "still", "size": "64x64"}).status_code == 200
