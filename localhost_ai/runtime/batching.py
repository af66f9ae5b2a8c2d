"""Dynamic batching inside a worker: calls for a batchable operation that arrive
together are run as one batch (up to `max_items` inputs, waiting at most `max_wait`
seconds for company), and each caller gets exactly its own result back."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from localhost_ai.backends.base import CallControl
from localhost_ai.contract import Request


@dataclass
class BatchItem:
    call_id: str
    request: Request
    control: CallControl
    size: int


class Batcher:
    def __init__(
        self,
        name: str,
        process: Callable[[list[Any]], list[Any]],
        size_of: Callable[[Any], int],
        max_items: int,
        max_wait: float,
        on_start: Callable[[BatchItem, int], None],
        on_done: Callable[[BatchItem, Any], None],
    ) -> None:
        self.process = process
        self.size_of = size_of
        self.max_items = max(1, max_items)
        self.max_wait = max(0.0, max_wait)
        self.on_start = on_start
        self.on_done = on_done
        self.waiting: "queue.Queue[BatchItem]" = queue.Queue()
        threading.Thread(target=self._loop, name=f"batch-{name}", daemon=True).start()

    def submit(self, call_id: str, request: Request, control: CallControl) -> None:
        try:
            size = max(1, int(self.size_of(request)))
        except Exception:
            size = 1  # a malformed request fails in `process`, alone
        self.waiting.put(BatchItem(call_id, request, control, size))

    def _collect(self) -> list[BatchItem]:
        batch = [self.waiting.get()]
        count = batch[0].size
        deadline = time.monotonic() + self.max_wait
        while count < self.max_items:
            try:
                # Whatever already waits joins at once; then wait briefly for more.
                item = self.waiting.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.waiting.get(timeout=remaining)
                except queue.Empty:
                    break
            if count + item.size > self.max_items:
                self.waiting.queue.appendleft(item)  # it starts the next batch
                break
            batch.append(item)
            count += item.size
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            live = []
            for item in batch:
                if item.control.is_set():
                    self.on_done(item, None)  # its caller left while it waited
                else:
                    live.append(item)
            if not live:
                continue
            for position, item in enumerate(live):
                self.on_start(item, len(live) if position == 0 else 0)  # the first reports the batch
            for item, result in zip(live, self._run(live)):
                self.on_done(item, result)

    def _run(self, live: list[BatchItem]) -> list[Any]:
        """The batch's results; when the batch as a whole fails, each call is run again
        alone, so that only the one that fails alone fails."""
        try:
            return self.process([item.request for item in live])
        except BaseException as exc:  # whatever it is, each caller must hear an answer
            if len(live) == 1:
                return [exc]
        results: list[Any] = []
        for item in live:
            try:
                results += self.process([item.request])
            except BaseException as exc:
                results.append(exc)
        return results
