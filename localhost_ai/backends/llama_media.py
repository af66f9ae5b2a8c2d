"""Images and audio in a llama.cpp prompt, through libmtmd (llama.cpp's multimodal
library): the model's projector (`mmproj`) turns each into a run of embeddings that the
engine decodes into the sequence's own cells.

The files are decoded here, in the worker: images with Pillow (PNG, JPEG, WebP, GIF's first
frame), audio with PyAV, resampled to what the projector reads.  Each becomes an mtmd bitmap
named by the sha256 of its bytes, which is how the engine's prefix cache knows it again."""

from __future__ import annotations

import ctypes
import hashlib
import io
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

from localhost_ai.backends.audio import decode_audio
from localhost_ai.backends.optional import require
from localhost_ai.contract.generate import AudioPart, ImagePart, Part
from localhost_ai.errors import BackendError, InvalidRequest

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# Pixels of one image, decoded: 40 million (about 6300 x 6300) is 120 MB as RGB. Larger
# files are refused before their pixels are decoded; a request's images together may
# have twice that.
MAX_IMAGE_PIXELS = 40_000_000
MAX_REQUEST_PIXELS = 2 * MAX_IMAGE_PIXELS
# Cells of one image decoded in a batch: as llama.cpp's server's default batch, so that a
# model that reads an image's cells together (Gemma 3's) can.
MEDIA_BATCH = 512


@dataclass
class MediaRun:
    """One image or audio of a prompt, as the engine's `Media`: encoded and decoded when
    the engine reaches it."""

    projector: "Projector"
    chunk: Any  # the mtmd_input_chunk, owned by its Prompt's chunks
    key: str
    n_tokens: int

    def decode(self, ctx: Any, n_past: int, seq_id: int, n_batch: int) -> int:
        mtmd = self.projector.mtmd
        if mtmd.mtmd_encode_chunk(self.projector.ctx, self.chunk) != 0:
            raise RuntimeError("the projector could not encode an image or audio")
        embeddings = mtmd.mtmd_get_output_embd(self.projector.ctx)
        end = self.projector.llama_cpp.llama_pos(0)
        result = mtmd.mtmd_helper_decode_image_chunk(self.projector.ctx, ctx, self.chunk, embeddings, n_past, seq_id,
                                                     n_batch, ctypes.byref(end),
                                                     mtmd.mtmd_helper_post_decode_callback(), None)
        if result != 0:
            raise RuntimeError(f"decoding an image or audio's embeddings failed ({result})")
        return end.value


@dataclass
class Prompt:
    """A tokenized prompt with media: the engine's items (token ids, and (key, i) for each
    media cell) and where each media run starts.  `close` frees mtmd's chunks, once no
    sequence reads them any more."""

    tokens: list[Hashable]
    media: dict[int, MediaRun] = field(default_factory=dict)
    chunks: Any = None
    mtmd: Any = None
    added_bos: bool = True

    def close(self) -> None:
        if self.chunks is not None:
            self.mtmd.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


# ggml's log levels: libmtmd says "decoding image batch 1/1" at INFO for every image.
_GGML_LOG_WARN = 3
_log_callback: Any = None


def _quiet_mtmd(llama_cpp: Any, mtmd: Any) -> None:
    """libmtmd's warnings and errors go to this worker's log; its progress lines do not."""
    global _log_callback
    if _log_callback is not None:
        return

    def forward(level: int, text: bytes, user_data: Any) -> None:
        if level >= _GGML_LOG_WARN and text:
            log.warning("libmtmd: %s", text.decode("utf-8", errors="replace").rstrip())

    _log_callback = llama_cpp.llama_log_callback(forward)
    mtmd.mtmd_log_set(_log_callback, None)
    mtmd.mtmd_helper_log_set(_log_callback, None)


class Projector:
    """The model's projector, loaded with libmtmd next to the text model."""

    def __init__(self, llama_cpp: Any, model: Any, path: Path, threads: int | None) -> None:
        (mtmd,) = require("Images and audio in chat", "llama", "llama_cpp.mtmd_cpp")
        _quiet_mtmd(llama_cpp, mtmd)
        self.mtmd = mtmd
        self.llama_cpp = llama_cpp
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.warmup = False
        params.n_threads = threads or os.cpu_count() or 1
        # A marker no client can write into its text: media goes only where a part put it.
        self.marker = f"<__media_{secrets.token_hex(8)}__>"
        self._marker_bytes = self.marker.encode()
        params.media_marker = self._marker_bytes
        self.ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not self.ctx:
            raise BackendError(f"The projector '{path.name}' could not be loaded with this model (its embedding width "
                               "or type does not fit; the worker's log says which).", code="model_load_failed")
        self.vision = bool(mtmd.mtmd_support_vision(self.ctx))
        self.audio = bool(mtmd.mtmd_support_audio(self.ctx))
        self.sample_rate = mtmd.mtmd_get_audio_sample_rate(self.ctx) if self.audio else 0

    def close(self) -> None:
        if self.ctx:
            self.mtmd.mtmd_free(self.ctx)
            self.ctx = None

    def prompt(self, text: str, parts: list[Part], drop_double_bos: int | None) -> Prompt:
        """`text` (with this projector's marker where each of `parts` goes) into tokens and
        media runs.  `drop_double_bos`: the BOS id, when a template that writes its own
        BOS should not get a second one."""
        mtmd = self.mtmd
        if text.count(self.marker) != len(parts):
            raise InvalidRequest(f"The chat template placed {text.count(self.marker)} of the request's {len(parts)} "
                                 "images and audio in the prompt; this model's template does not show every part.",
                                 param="messages", code="template_error")
        chunks = mtmd.mtmd_input_chunks_init()
        prompt = Prompt([], chunks=chunks, mtmd=mtmd)
        bitmaps: list[Any] = []
        try:
            pixels = 0
            for part in parts:  # each freed below, whichever part fails
                bitmaps.append(self._bitmap(part))
                if isinstance(part, ImagePart):
                    pixels += mtmd.mtmd_bitmap_get_nx(bitmaps[-1]) * mtmd.mtmd_bitmap_get_ny(bitmaps[-1])
                    if pixels > MAX_REQUEST_PIXELS:
                        raise InvalidRequest(f"The images of this request have more than {MAX_REQUEST_PIXELS:,} pixels "
                                             "together; send fewer or smaller ones.", param=part.label,
                                             code="image_too_large")
            encoded = text.encode("utf-8")
            text_in = mtmd.mtmd_input_text(encoded, len(encoded), True, True)
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            result = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text_in), array, len(bitmaps))
            if result != 0:
                raise InvalidRequest("The prompt's images and audio could not be prepared for this model "
                                     f"(mtmd_tokenize returned {result}).", param="messages", code="invalid_media")
            self._items(prompt, drop_double_bos)
            if prompt.tokens and isinstance(prompt.tokens[-1], tuple):
                raise InvalidRequest("The prompt ends with an image or audio: this model's chat template puts no text "
                                     "after the last message, and a prompt must end with text.", param="messages",
                                     code="invalid_media")
        except BaseException:
            prompt.close()
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return prompt

    def _items(self, prompt: Prompt, bos: int | None) -> None:
        mtmd = self.mtmd
        for i in range(mtmd.mtmd_input_chunks_size(prompt.chunks)):
            chunk = mtmd.mtmd_input_chunks_get(prompt.chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens = [pointer[j] for j in range(count.value)]
                if not prompt.tokens and bos is not None and tokens[:2] == [bos, bos]:
                    tokens = tokens[1:]  # the template wrote its own BOS
                prompt.tokens.extend(tokens)
                continue
            key = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
            n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            prompt.media[len(prompt.tokens)] = MediaRun(self, chunk, key, n_tokens)
            prompt.tokens.extend((key, j) for j in range(n_tokens))

    def _bitmap(self, part: Part) -> Any:
        mtmd = self.mtmd
        if isinstance(part, ImagePart):
            if not self.vision:
                raise InvalidRequest(f"This model's projector does not read images; '{part.label}' is one.",
                                     param=part.label, code="unsupported_content")
            width, height, pixels = decode_image(part)  # libmtmd copies the pixels: this array is dropped next
            bitmap = mtmd.mtmd_bitmap_init(width, height, pixels.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        elif isinstance(part, AudioPart):
            if not self.audio:
                raise InvalidRequest(f"This model's projector does not read audio; '{part.label}' is audio.",
                                     param=part.label, code="unsupported_content")
            samples = decode_audio(part.data, part.label, part.max_seconds, param=part.label,
                                   rate=self.sample_rate or 16_000, extra="llama")
            buffer = samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            bitmap = mtmd.mtmd_bitmap_init_from_audio(samples.size, buffer)
        else:
            raise InvalidRequest(f"A content part of kind {type(part).__name__} cannot go into a prompt.",
                                 param="messages")
        if not bitmap:
            raise BackendError("libmtmd could not make a bitmap of an image or audio part.")
        mtmd.mtmd_bitmap_set_id(bitmap, hashlib.sha256(part.data).hexdigest().encode())
        return bitmap


def decode_image(part: ImagePart) -> tuple[int, int, Any]:
    """RGB pixels (a height x width x 3 uint8 array) of a PNG, JPEG, WebP or GIF (its first
    frame); anything else, an image too large, or a file that does not decode is a 400
    naming the part."""
    image_module, np = require("Reading images", "llama", "PIL.Image", "numpy")
    where = part.label or "the image"
    try:
        with image_module.open(io.BytesIO(part.data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidRequest(f"'{where}' is {width} x {height} pixels; this server reads images of at most "
                                     f"{MAX_IMAGE_PIXELS:,} pixels.", param=part.label, code="image_too_large")
            image.seek(0)
            return width, height, np.ascontiguousarray(image.convert("RGB"), dtype=np.uint8)
    except InvalidRequest:
        raise
    except MemoryError:
        raise
    except Exception:  # Pillow's errors for files that are not an image it reads
        raise InvalidRequest(f"'{where}' could not be decoded as an image (PNG, JPEG, WebP or GIF).",
                             param=part.label, code="invalid_image") from None
