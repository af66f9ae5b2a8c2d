"""The contract's types cross to a worker process and back unchanged."""

from __future__ import annotations

import pytest

from localhost_ai.backends import backend_options
from localhost_ai.config import load_yaml_config
from localhost_ai.config.model_config import ModelConfig
from localhost_ai.contract import WireError, event_from_wire, event_to_wire, request_from_wire, request_to_wire
from localhost_ai.contract import events as ev
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.generate import (
    AudioPart, ChatRequest, CompletionRequest, EditRequest, Generation, ImagePart, Logprobs, Message, ResponseFormat,
    Sampling, TextPart, Tool, ToolCall,
)
from localhost_ai.contract.image import ImageRequest
from localhost_ai.contract.rerank import RerankRequest
from localhost_ai.contract.speech import SpeechRequest
from localhost_ai.contract.tokenize import DetokenizeRequest, TokenizeRequest, TokenizerInfoRequest
from localhost_ai.contract.transcribe import TranscribeRequest
from localhost_ai.runtime.protocol import HEADER, decode, encode

GENERATION = Generation(Sampling(temperature=0.2, seed=7, mirostat=2, dry_sequence_breakers=("\n", ":"),
                                 logit_bias=((5, -100.0), (7, 2.5))),
                        max_tokens=9, stop=("x",), n=2, logprobs=Logprobs(top=3, prompt=True))
REQUESTS = [
    ChatRequest(messages=(
        Message("system", (TextPart("be brief"),)),
        Message("user", (TextPart("what is this?"), ImagePart(b"\x89PNG\0", "image/png"), AudioPart(b"RIFF", "wav"))),
        Message("assistant", tool_calls=(ToolCall("f", '{"a": 1}', "call_1"), ToolCall("g"))),
        Message("tool", (TextPart("42"),), name="f", tool_call_id="call_1"),
    ), generation=GENERATION, tools=(Tool("f", "does f", {"type": "object"}, "tools[0].function.parameters"),),
        tool_choice="required", forced_tool="f", parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", {"type": "object"}, "answer")),
    CompletionRequest(prompts=("a", "b"), generation=GENERATION, echo=True),
    CompletionRequest(prompts=((2, 818, 5279), "text"), listed=True),
    TokenizeRequest(content="hé <b>", add_special=True, with_pieces=True),
    DetokenizeRequest(tokens=(2, 818)),
    TokenizerInfoRequest(),
    EditRequest(instruction="fix", input="teh"),
    EmbedRequest(inputs=("text", [1, 2, 3]), dimensions=8, truncate=False),
    RerankRequest(query="q", documents=("a", "b")),
    TranscribeRequest(audio=b"\0\1" * 10, filename="a.wav", task="translate", language="de", temperature=0.0),
    SpeechRequest(input="hello", voice="joe", speed=1.5),
    ImageRequest(prompt="cat", width=64, height=64, steps=2, guidance_scale=7.5, image=b"img", mask=None, seed=3),
]
EVENTS = [
    ev.TextDelta(0, "hé"), ev.ToolCallStart(1, 0, "call_x", "f"), ev.ToolArgumentsDelta(1, 0, '{"a"'),
    ev.Finish(0, "length"), ev.Usage(3, 4, None), ev.Usage(3, 4, 2),
    ev.Embeddings(b"\0" * 16, 2, 2, 5), ev.Scores([0.5, -1.0], 7),
    ev.Transcription("transcribe", "hi", "en", 1.5, [ev.Segment(0, 0, 0.0, 1.5, "hi", [1, 2], 0.0, -0.2, 1.1, 0.01)]),
    ev.Images([b"png1", b"png2"], 42), ev.Audio(b"\0\0" * 8, 22050),
    ev.Logprobs(0, [ev.TokenLogprob("<bos>", [60], None, 0),
                    ev.TokenLogprob(" é", [32, 195, 169], -0.25, 5, [ev.Alternative(" é", [32, 195, 169], -0.25),
                                                                     ev.Alternative("\\xe2", [226], -3.5)])]),
    ev.Tokens([2, 818], [[], [84, 104, 101]]), ev.Tokens([2], text="<bos>"),
    ev.TokenizerInfo("<bos>", "<eos>", None, "{{ messages }}", 2048),
]


def through_a_frame(message: dict) -> dict:
    frame = encode(message)
    body_len, blob_len = HEADER.unpack(frame[:HEADER.size])
    return decode(frame[HEADER.size:HEADER.size + body_len], frame[HEADER.size + body_len:])


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_type_crosses_a_frame_unchanged(request_):
    assert request_from_wire(through_a_frame(request_to_wire(request_))) == request_


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_type_crosses_a_frame_unchanged(event):
    assert event_from_wire(through_a_frame(event_to_wire(event))) == event


@pytest.mark.parametrize("wire", [{"type": "nonsense"}, {}, {"type": "text", "index": 0}, {"type": "finish"}])
def test_a_malformed_event_is_a_wire_error(wire):
    with pytest.raises(WireError):
        event_from_wire(wire)


def test_an_unknown_request_is_a_wire_error():
    with pytest.raises(WireError):
        request_from_wire({"op": "divine", "request": {}})


def test_a_model_config_crosses_with_its_backends_typed_options(tmp_path):
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    (tmp_path / "m.yaml").write_text("name: m\nparameters:\n  model: w.gguf\n  temperature: 0.1\nparallel: 2\n"
                                     "stopwords: [END]\nmatryoshka: true\n")
    options = backend_options()
    config = load_yaml_config(tmp_path / "m.yaml", tmp_path, options)
    assert config.options.parallel == 2 and config.options.prefill_chunk == 128 and config.options.matryoshka
    back = ModelConfig.from_wire(through_a_frame(config.to_wire()), options["llama-cpp"])
    assert back == config and back.options == config.options


def test_a_backends_own_field_is_checked_and_named(tmp_path):
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    (tmp_path / "m.yaml").write_text("parameters:\n  model: w.gguf\nprefill_chunk: 3\n")
    from localhost_ai.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_yaml_config(tmp_path / "m.yaml", tmp_path, backend_options())
    assert caught.value.field == "prefill_chunk"


def test_empty_bytes_cross_as_bytes():
    assert event_from_wire(through_a_frame(event_to_wire(ev.Audio(b"", 16000)))) == ev.Audio(b"", 16000)
    empty = TranscribeRequest(audio=b"")
    assert request_from_wire(through_a_frame(request_to_wire(empty))) == empty


def test_what_is_not_an_event_does_not_cross():
    with pytest.raises(WireError):
        event_to_wire({"type": "text", "index": 0, "text": "x"})
