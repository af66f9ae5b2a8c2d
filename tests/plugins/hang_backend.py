"""A test-only backend plugin (loaded through LOCALHOST_AI_BACKENDS) whose completion
call hangs without output, or crashes the process, as real native code sometimes does."""

from __future__ import annotations

import os
import time

from localhost_ai.backends.base import Backend, register
from localhost_ai.config import COMPLETION, CapabilityRule
from localhost_ai.contract.events import TextDelta


@register("test-hang", capabilities=CapabilityRule(frozenset({COMPLETION})))
class HangBackend(Backend):
    def load(self):
        pass

    def op_completion(self, request, cancel):
        if request.prompts[0] == "crash":
            os.abort()
        yield TextDelta(index=0, text="working")
        while True:  # no output, no progress, cancel ignored: a hung native call
            time.sleep(3600)
