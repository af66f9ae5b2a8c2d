"""piper backend: text to speech with a Piper voice (a `.onnx` file with its `.onnx.json`
beside it), through the piper-tts package, which is GPL-3.0 and so an optional extra."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

from localhost_ai.backends.audio_out import Encoder
from localhost_ai.backends.base import Backend, CallControl, register
from localhost_ai.backends.optional import require
from localhost_ai.config import option
from localhost_ai.config.options import BackendOptions
from localhost_ai.contract.events import Audio, Event, Usage
from localhost_ai.contract.speech import SpeechRequest
from localhost_ai.errors import InvalidRequest

log = logging.getLogger(__name__)

# The voice names OpenAI's clients send by default: a voice with one speaker answers to
# each of them, so those clients work unchanged.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                           "verse", "marin", "cedar"})


@dataclass(frozen=True)
class PiperOptions(BackendOptions):
    speaker: str | int | None = option({"type": ["string", "integer"]}, None, key="parameters.speaker")
    length_scale: float | None = option({"type": "number", "exclusiveMinimum": 0, "maximum": 10}, None,
                                        key="parameters.length_scale")
    noise_scale: float | None = option({"type": "number", "minimum": 0, "maximum": 10}, None,
                                       key="parameters.noise_scale")
    noise_w: float | None = option({"type": "number", "minimum": 0, "maximum": 10}, None, key="parameters.noise_w")
    sentence_silence: float = option({"type": "number", "minimum": 0, "maximum": 10}, 0.0,
                                     key="parameters.sentence_silence")


@register("piper")
class PiperBackend(Backend):
    Options = PiperOptions
    options: PiperOptions

    def load(self) -> None:
        (piper,) = require("The piper backend", "tts", "piper")
        path = self.config.model_path
        self.voice = piper.PiperVoice.load(str(path), config_path=str(path) + ".json")
        self._config_class = piper.SynthesisConfig
        self.sample_rate = self.voice.config.sample_rate
        self.speakers: dict[str, int] = dict(self.voice.config.speaker_id_map or {})
        self.num_speakers = self.voice.config.num_speakers

    def _speaker(self, voice: str | None) -> int | None:
        """A speaker of a multi-speaker voice by name or id; one-speaker voices answer to
        their model's name and OpenAI's voice names."""
        if self.num_speakers <= 1:
            if voice in (None, "", self.config.name, self.config.model_path.stem) or voice in OPENAI_VOICES:
                return None
            raise InvalidRequest(f"Model '{self.config.name}' has one voice; 'voice' may be its name or one of "
                                 f"OpenAI's voice names, not {str(voice)[:64]!r}.", param="voice", code="unknown_voice")
        # OpenAI's clients always send a voice name: those mean the YAML's speaker, as no voice does.
        wanted = self.options.speaker if voice in (None, "") or voice in OPENAI_VOICES else voice
        if wanted is None:
            return 0
        if isinstance(wanted, str) and wanted in self.speakers:
            return self.speakers[wanted]
        text = str(wanted)
        if text.isascii() and text.isdecimal() and int(text) < self.num_speakers:
            return int(text)
        names = ", ".join(sorted(self.speakers)[:20])
        raise InvalidRequest(f"Model '{self.config.name}' has no speaker {str(wanted)[:64]!r}; it has "
                             f"{self.num_speakers} (ids 0 to {self.num_speakers - 1}{', names: ' + names if names else ''}).",
                             param="voice", code="unknown_voice")

    def op_speech(self, request: SpeechRequest, cancel: CallControl) -> Iterator[Event]:
        """Each sentence's encoded audio as soon as it is spoken, then the usage in Piper's
        own units: phoneme ids in, 256-sample frames out."""
        options = self.options
        base_scale = options.length_scale or self.voice.config.length_scale
        synthesis = self._config_class(
            speaker_id=self._speaker(request.voice),
            length_scale=base_scale / request.speed,
            noise_scale=options.noise_scale if options.noise_scale is not None else self.voice.config.noise_scale,
            noise_w_scale=options.noise_w if options.noise_w is not None else self.voice.config.noise_w_scale,
        )
        silence = b"\0\0" * int(self.sample_rate * options.sentence_silence)
        encoder = Encoder(self.sample_rate, request.response_format)
        phonemes = samples = spoken = 0
        closed = False
        try:
            for chunk in self._sentences(request.input, synthesis):
                if cancel.is_set():
                    log.info("model %s: speech cancelled after %d sentence(s)", self.config.name, spoken)
                    return
                spoken += 1
                cancel.beat()
                pcm = chunk.audio_int16_bytes + silence
                phonemes += len(chunk.phoneme_ids)
                samples += len(pcm) // 2
                data = encoder.add(pcm)
                if data:
                    yield Audio(data, self.sample_rate, request.response_format)
            closed = True
            tail = encoder.close()
            if tail:
                yield Audio(tail, self.sample_rate, request.response_format)
            yield Usage(prompt_tokens=phonemes, completion_tokens=-(-samples // 256))
        finally:
            if not closed:  # cancelled or failed: the container is let go, its bytes unsent
                encoder.discard()

    def _sentences(self, text: str, synthesis: Any) -> Iterator[Any]:
        return iter(self.voice.synthesize(text, syn_config=synthesis))
