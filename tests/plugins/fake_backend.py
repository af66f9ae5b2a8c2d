"""A test-only backend plugin (LOCALHOST_AI_BACKENDS=fake_backend) that answers from the
request alone, so the layers above a backend are tested without a model's weights."""

from __future__ import annotations

import json
import struct
import time

from localhost_ai.backends.base import Backend, register
from localhost_ai.config import CHAT, COMPLETION, EMBEDDINGS, SPEECH, CapabilityRule
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import Audio, Embeddings, Finish, TextDelta, ToolArgumentsDelta, ToolCallStart, Usage
from localhost_ai.errors import BackendError, InvalidRequest


@register("test-fake", capabilities=CapabilityRule(frozenset({CHAT, COMPLETION, SPEECH}),
                                                  embeddings=frozenset({EMBEDDINGS})))
class FakeBackend(Backend):
    """Chat answers with the last message's words (or calls the first tool with the
    message as its `text`; "fail" after the first word fails it mid-answer); a completion
    echoes its prompt, "fail" fails it and "junk"
    yields what is not an event; an embedding is [length, index in the batch]."""

    def load(self):
        self.batches = 0

    def concurrency(self):
        return 2

    def batching(self):
        return {EmbedRequest.OP: (64, 0.05)} if self.config.embeddings else {}

    def op_chat(self, request, cancel):
        last = request.messages[-1].text
        for index in range(request.generation.n):
            if request.offers_tools:
                arguments = json.dumps({"text": last})
                yield ToolCallStart(index, 0, f"call_{index}", request.forced_tool or request.tools[0].name)
                yield ToolArgumentsDelta(index, 0, arguments[:5])
                yield ToolArgumentsDelta(index, 0, arguments[5:])
                yield Finish(index, "tool_calls")
                continue
            for number, word in enumerate(last.split()):
                if word == "fail" and number:
                    raise BackendError("The fake model broke down mid-answer.")
                yield TextDelta(index, word + " ")
            yield Finish(index, "stop")
        yield Usage(prompt_tokens=len(last), completion_tokens=len(last.split()), cached_tokens=0)

    def op_speech(self, request, cancel):
        """Each word's bytes as a sentence of 'audio'; "fail" after the first word fails."""
        for number, word in enumerate(request.input.split()):
            if word == "fail" and number:
                raise BackendError("The fake voice broke down mid-sentence.")
            yield Audio(word.encode(), 8000, request.response_format)
        yield Usage(prompt_tokens=len(request.input), completion_tokens=1)

    def op_completion(self, request, cancel):
        for index, prompt in enumerate(request.prompts):
            if prompt == "fail":
                raise InvalidRequest("The fake model refuses this prompt.", param="prompt", code="fake_refusal")
            if prompt == "junk":
                yield {"type": "text", "index": index, "text": "not an event"}
                return
            if prompt == "slow":
                while not cancel.is_set():
                    time.sleep(0.01)
                return
            yield TextDelta(index, prompt)
            yield Finish(index, "length")
        yield Usage(prompt_tokens=1, completion_tokens=1)

    def batch_size(self, request):
        return len(request.inputs)

    def run_batch(self, requests):
        results = []
        for position, request in enumerate(requests):
            if any(item == "bad" for item in request.inputs):
                results.append(InvalidRequest("'bad' is not embeddable.", param="input"))
                continue
            rows = [struct.pack("<2f", float(len(item)), float(position)) for item in request.inputs]
            results.append(Embeddings(b"".join(rows), len(rows), 2, prompt_tokens=len(rows)))
        return results
