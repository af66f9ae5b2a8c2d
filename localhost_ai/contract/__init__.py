"""The typed contract between the API, the runtime and the backends: one module of
request types per capability, the closed set of events a backend gives back, and the
wire form both take between the server and a worker process."""

from __future__ import annotations

from typing import Any, Union

from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import from_wire as event_from_wire, to_wire as event_to_wire
from localhost_ai.contract.generate import ChatRequest, CompletionRequest, EditRequest
from localhost_ai.contract.image import ImageRequest
from localhost_ai.contract.rerank import RerankRequest
from localhost_ai.contract.speech import SpeechRequest
from localhost_ai.contract.tokenize import DetokenizeRequest, TokenizeRequest, TokenizerInfoRequest
from localhost_ai.contract.transcribe import TranscribeRequest
from localhost_ai.contract.wire import WireError, dump, load

Request = Union[ChatRequest, CompletionRequest, EditRequest, EmbedRequest, RerankRequest, TranscribeRequest,
                SpeechRequest, ImageRequest, TokenizeRequest, DetokenizeRequest, TokenizerInfoRequest]
REQUESTS: dict[str, Any] = {cls.OP: cls for cls in Request.__args__}  # type: ignore[attr-defined]


def request_to_wire(request: Request) -> dict[str, Any]:
    return {"op": request.OP, "request": dump(request)}


def request_from_wire(data: dict[str, Any]) -> Request:
    cls = REQUESTS.get(data.get("op"))  # type: ignore[arg-type]
    if cls is None:
        raise WireError(f"unknown request {data.get('op')!r}")
    try:
        return load(cls, data["request"])
    except (TypeError, KeyError, AttributeError) as exc:
        raise WireError(f"malformed {cls.OP} request: {exc}") from None


__all__ = ["REQUESTS", "Request", "WireError", "event_from_wire", "event_to_wire", "request_from_wire",
           "request_to_wire"]
