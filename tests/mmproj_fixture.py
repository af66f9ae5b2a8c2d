"""Tiny random-weight multimodal projector ("mmproj") GGUF files for tests.

llama.cpp's libmtmd (``llama_cpp.mtmd_cpp``) pairs a text model with an
"mmproj" GGUF that holds a media encoder plus a projector into the text
model's embedding space.  Real projectors are hundreds of MB; the builders
here write structurally valid ones of a few hundred KB with seeded random
weights, so tests can exercise the whole multimodal path (load, tokenize with
the media marker, encode, decode into the LLM) in well under a second on CPU.
The outputs are meaningless but deterministic: the same input gives the same
embeddings, different inputs give different ones.

Both builders target text models that decode media causally with plain RoPE
(e.g. Gemma 3 270M, n_embd 640): projector types "mlp" (vision) and
"ultravox" (audio) make ``mtmd_decode_use_non_causal`` and
``mtmd_decode_use_mrope`` both false.  (M-RoPE depends only on the text
model's rope type.)

Key/tensor names follow tools/mtmd/clip-impl.h in the vendored llama.cpp.
Tensor shapes below are numpy (row-major) shapes, i.e. ggml ``ne`` reversed.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

# Vision defaults: 32x32 input, 8x8 patches -> 4x4 = 16 image tokens.
VISION_IMAGE_SIZE = 32
VISION_PATCH_SIZE = 8
VISION_N_EMBD = 32
VISION_N_HEAD = 4
VISION_N_FF = 64          # must differ from n_embd (clip.cpp's legacy up/down swap heuristic)
VISION_N_BLOCK = 2        # llava graph runs n_layer - 1 blocks (penultimate layer features)
VISION_PROJ_HIDDEN = 64

# Audio defaults (Whisper-style encoder, "ultravox" projector).  mtmd always
# pads/splits audio into 30 s windows of 3000 mel frames -> 1500 encoder
# positions; stacking 60 frames gives 25 LLM tokens per 30 s window.
AUDIO_N_MEL = 80
AUDIO_N_EMBD = 32
AUDIO_N_HEAD = 4
AUDIO_N_FF = 64
AUDIO_N_BLOCK = 1
AUDIO_N_POS = 1500        # position table must cover 3000 frames / conv stride 2
AUDIO_STACK_FACTOR = 60   # must divide 1500, else clip.cpp's token-count check aborts
AUDIO_PROJ_HIDDEN = 64


def _writer(path: Path, name: str) -> gguf.GGUFWriter:
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_string("general.name", name)
    w.add_string("general.description", "tiny random-weight test projector")
    w.add_uint32("general.file_type", 0)  # all F32
    return w


def _finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _add_encoder_keys(w, kind: str, n_embd: int, n_ff: int, n_block: int, n_head: int, n_proj: int) -> None:
    """The encoder's sizes, under clip.vision.* or clip.audio.*."""
    w.add_uint32(f"clip.{kind}.embedding_length", n_embd)
    w.add_uint32(f"clip.{kind}.feed_forward_length", n_ff)
    w.add_uint32(f"clip.{kind}.block_count", n_block)
    w.add_uint32(f"clip.{kind}.attention.head_count", n_head)
    w.add_float32(f"clip.{kind}.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32(f"clip.{kind}.projection_dim", n_proj)


def _add_encoder_layers(w, rng, prefix, n_block, n_embd, n_ff, scale, k_bias):
    """Pre-LN transformer blocks: ln1, attn q/k/v/out, ln2, ffn up/down."""
    f32 = np.float32

    def rnd(*shape):
        return (rng.standard_normal(shape) * scale).astype(f32)

    for i in range(n_block):
        p = f"{prefix}.blk.{i}"
        w.add_tensor(f"{p}.ln1.weight", np.ones(n_embd, f32))
        w.add_tensor(f"{p}.ln1.bias", np.zeros(n_embd, f32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{p}.{t}.weight", rnd(n_embd, n_embd))
            if t != "attn_k" or k_bias:  # Whisper has no k bias (asserted by mtmd)
                w.add_tensor(f"{p}.{t}.bias", rnd(n_embd))
        w.add_tensor(f"{p}.ln2.weight", np.ones(n_embd, f32))
        w.add_tensor(f"{p}.ln2.bias", np.zeros(n_embd, f32))
        w.add_tensor(f"{p}.ffn_up.weight", rnd(n_ff, n_embd))
        w.add_tensor(f"{p}.ffn_up.bias", rnd(n_ff))
        w.add_tensor(f"{p}.ffn_down.weight", rnd(n_embd, n_ff))
        w.add_tensor(f"{p}.ffn_down.bias", rnd(n_embd))


def build_vision_projector(path, n_embd_text: int = 640, seed: int = 0, *,
                           image_size: int = VISION_IMAGE_SIZE,
                           patch_size: int = VISION_PATCH_SIZE,
                           scale: float = 0.02, proj_scale: float = 0.02) -> Path:
    """Write a tiny LLaVA-style vision mmproj (CLIP ViT + 2-layer MLP) to ``path``.

    Projector type "mlp" is the simplest vision type mtmd accepts: fixed-size
    preprocessing (every image is resized to ``image_size`` square), no extra
    begin/end tokens, causal decoding, no M-RoPE.  Each image yields
    ``(image_size // patch_size) ** 2`` embeddings (16 by default) of width
    ``n_embd_text``.  Why: lets tests run real image inputs through libmtmd
    without a real (large) vision model.  ``scale`` is the std of the encoder
    weights; ``proj_scale`` that of the final projection (output std ~0.1 at
    0.02; ~0.2 makes Gemma's greedy token start to vary with the image).
    """
    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    path = Path(path)
    rng = np.random.default_rng(seed)
    f32 = np.float32
    n_embd, n_patches = VISION_N_EMBD, (image_size // patch_size) ** 2

    def rnd(*shape, s=scale):
        return (rng.standard_normal(shape) * s).astype(f32)

    w = _writer(path, "tiny-vision-mmproj")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    _add_encoder_keys(w, "vision", n_embd, VISION_N_FF, VISION_N_BLOCK, VISION_N_HEAD, n_embd_text)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    # patch embedding: ggml conv2d kernel ne=[P, P, 3, n_embd]
    w.add_tensor("v.patch_embd.weight", rnd(n_embd, 3, patch_size, patch_size, s=0.1))
    w.add_tensor("v.patch_embd.bias", rnd(n_embd))
    w.add_tensor("v.position_embd.weight", rnd(n_patches, n_embd))
    w.add_tensor("v.pre_ln.weight", np.ones(n_embd, f32))
    w.add_tensor("v.pre_ln.bias", np.zeros(n_embd, f32))
    _add_encoder_layers(w, rng, "v", VISION_N_BLOCK, n_embd, VISION_N_FF, scale, k_bias=True)
    w.add_tensor("v.post_ln.weight", np.ones(n_embd, f32))
    w.add_tensor("v.post_ln.bias", np.zeros(n_embd, f32))
    # projector: mm.0 (n_embd -> hidden), GELU, mm.2 (hidden -> n_embd_text)
    w.add_tensor("mm.0.weight", rnd(VISION_PROJ_HIDDEN, n_embd, s=1 / np.sqrt(n_embd)))
    w.add_tensor("mm.0.bias", np.zeros(VISION_PROJ_HIDDEN, f32))
    w.add_tensor("mm.2.weight", rnd(n_embd_text, VISION_PROJ_HIDDEN, s=proj_scale))
    w.add_tensor("mm.2.bias", np.zeros(n_embd_text, f32))
    _finish(w)
    return path


def build_audio_projector(path, n_embd_text: int = 640, seed: int = 0, *,
                          stack_factor: int = AUDIO_STACK_FACTOR,
                          scale: float = 0.02, proj_scale: float = 0.02) -> Path:
    """Write a tiny Ultravox-style audio mmproj (Whisper encoder + SwiGLU MLP).

    Projector type "ultravox" adds no begin/end text around the audio and
    decodes causally without M-RoPE.  mtmd resamples nothing: it expects mono
    float32 PCM at 16 kHz, computes an 80-bin log-mel spectrogram and splits
    it into 30 s windows (3000 frames; shorter clips are zero-padded to one
    window), each becoming one audio chunk of ``1500 // stack_factor`` tokens
    (25 by default).  Why: lets tests send real audio through libmtmd without
    a real (large) audio model.  ``scale``/``proj_scale`` as for vision.
    """
    if AUDIO_N_POS % stack_factor:
        raise ValueError("stack_factor must divide 1500")
    path = Path(path)
    rng = np.random.default_rng(seed)
    f32 = np.float32
    n_embd, n_mel = AUDIO_N_EMBD, AUDIO_N_MEL
    n_stacked = n_embd * stack_factor

    def rnd(*shape, s=scale):
        return (rng.standard_normal(shape) * s).astype(f32)

    w = _writer(path, "tiny-audio-mmproj")
    w.add_bool("clip.has_vision_encoder", False)
    w.add_bool("clip.has_audio_encoder", True)
    w.add_string("clip.projector_type", "ultravox")
    w.add_uint32("clip.audio.num_mel_bins", n_mel)
    _add_encoder_keys(w, "audio", n_embd, AUDIO_N_FF, AUDIO_N_BLOCK, AUDIO_N_HEAD, n_embd_text)
    w.add_uint32("clip.audio.projector.stack_factor", stack_factor)

    # conv1d kernels: ggml ne=[K, in, out]; biases ne=[1, out] (broadcast over time)
    w.add_tensor("a.conv1d.1.weight", rnd(n_embd, n_mel, 3, s=0.1))
    w.add_tensor("a.conv1d.1.bias", rnd(n_embd, 1))
    w.add_tensor("a.conv1d.2.weight", rnd(n_embd, n_embd, 3, s=0.1))
    w.add_tensor("a.conv1d.2.bias", rnd(n_embd, 1))
    w.add_tensor("a.position_embd.weight", rnd(AUDIO_N_POS, n_embd))
    _add_encoder_layers(w, rng, "a", AUDIO_N_BLOCK, n_embd, AUDIO_N_FF, scale, k_bias=False)
    w.add_tensor("a.post_ln.weight", np.ones(n_embd, f32))
    w.add_tensor("a.post_ln.bias", np.zeros(n_embd, f32))
    # projector: rms_norm*w -> mm.a.mlp.1 (-> 2*hidden) -> swiglu -> rms_norm*w -> mm.a.mlp.2
    w.add_tensor("mm.a.norm_pre.weight", np.ones(n_stacked, f32))
    w.add_tensor("mm.a.mlp.1.weight", rnd(2 * AUDIO_PROJ_HIDDEN, n_stacked, s=1 / np.sqrt(n_stacked)))
    w.add_tensor("mm.a.norm_mid.weight", np.ones(AUDIO_PROJ_HIDDEN, f32))
    w.add_tensor("mm.a.mlp.2.weight", rnd(n_embd_text, AUDIO_PROJ_HIDDEN, s=proj_scale))
    _finish(w)
    return path
