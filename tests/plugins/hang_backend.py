"""A test-only backend plugin (loaded through LOCALHOST_AI_BACKENDS) whose completion
call hangs without output, or crashes the process, as real native code sometimes does."""

from __future__ import annotations

import os
import time

from localhost_ai.backends.base import COMPLETION, Backend, register


@register("test-hang")
class HangBackend(Backend):
    @classmethod
    def capabilities(cls, config):
        return frozenset({COMPLETION})

    def load(self):
        pass

    def op_completion(self, payload, cancel):
        prompt = payload["prompts"][0]
        if prompt == "crash":
            os.abort()
        yield {"type": "text", "index": 0, "text": "working"}
        while True:  # no output, no progress, cancel ignored: a hung native call
            time.sleep(3600)
