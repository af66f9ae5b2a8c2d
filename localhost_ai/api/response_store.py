"""The Responses API's stored responses (`store: true`, the default): what
`previous_response_id`, `GET /v1/responses/{id}` and its input items read.  In memory,
bounded by count, time since last use, and size (--responses-store, --responses-store-ttl,
--responses-store-size); the oldest (least recently used) go first.  A response keeps its
own input and output and the id of the one it continued, so a long conversation is stored
once, not once per turn."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from localhost_ai.errors import InvalidRequest, NotFound


@dataclass
class Stored:
    response: dict[str, Any]  # the Response object, as it was answered
    input_items: list[dict[str, Any]]  # its own input, as items with ids
    previous: str | None  # the response it continued
    size: int  # bytes it is counted as
    at: float = field(default_factory=time.monotonic)


class ResponseStore:
    def __init__(self, count: int, ttl: float, size: int) -> None:
        self.count, self.ttl, self.size = count, ttl, size
        self._items: OrderedDict[str, Stored] = OrderedDict()
        self._bytes = 0

    def takes(self, size: int) -> bool:
        """Whether a response of `size` bytes would be kept."""
        return self.count > 0 and size <= self.size

    def put(self, stored: Stored) -> bool:
        if not self.takes(stored.size):
            return False
        self._drop(stored.response["id"])
        self._items[stored.response["id"]] = stored
        self._bytes += stored.size
        self._expire()
        while len(self._items) > self.count or self._bytes > self.size:
            self._drop(next(iter(self._items)))
        return stored.response["id"] in self._items

    def get(self, response_id: str) -> Stored | None:
        self._expire()
        stored = self._items.get(response_id)
        if stored is not None:  # in use: the last to go, and its time starts again
            self._items.move_to_end(response_id)
            stored.at = time.monotonic()
        return stored

    def find(self, response_id: str, param: str = "response_id") -> Stored:
        stored = self.get(response_id)
        if stored is None:
            raise NotFound(f"No response with id '{response_id}' is stored here (responses are kept in memory, "
                           "at most --responses-store of them for --responses-store-ttl).", param=param,
                           code="response_not_found")
        return stored

    def delete(self, response_id: str) -> bool:
        return self._drop(response_id)

    def conversation(self, response_id: str, param: str) -> list[dict[str, Any]]:
        """Every item of the conversation up to and including the response's output, oldest
        first: what a request that continues it reads before its own input."""
        chain = []
        current: str | None = response_id
        while current is not None:
            stored = self.get(current)
            if stored is None:
                raise InvalidRequest(
                    f"'{param}': the response '{current}' " + ("" if current == response_id else
                                                               f"(which '{response_id}' continues) ")
                    + "is not stored here (responses are kept in memory for --responses-store-ttl, at most "
                      "--responses-store of them); send the whole conversation as input instead.",
                    param=param, code="previous_response_not_found")
            chain.append(stored)
            current = stored.previous
        items: list[dict[str, Any]] = []
        for stored in reversed(chain):
            items += stored.input_items + stored.response["output"]
        return items

    def _drop(self, response_id: str) -> bool:
        stored = self._items.pop(response_id, None)
        if stored is None:
            return False
        self._bytes -= stored.size
        return True

    def _expire(self) -> None:
        """The entries are in the order of their last use (put and get move them to the end):
        the expired ones are at the front."""
        oldest = time.monotonic() - self.ttl
        while self._items:
            response_id, stored = next(iter(self._items.items()))
            if stored.at >= oldest:
                return
            self._drop(response_id)
