"""Model output to tool calls, as the text arrives.

Under a grammar the output has a fixed shape: `{"name": "<function>", "arguments": {...}}`,
or a JSON list of those when parallel calls are allowed.  The parser announces a call as
soon as its name is known and passes its arguments on as they are generated, which is
how OpenAI streams them.  A call to the no-action function is the model choosing to
answer in text: its `message` is returned as text.

Without a grammar (the model's grammar turned off) the whole output is read at the end:
JSON calls anywhere in it, or the YAML's `response_regex`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Union

from localhost_ai.contract.events import TextDelta, ToolArgumentsDelta, ToolCallStart

# A call's head, matched once its arguments' first character is in (so that the space
# before it is not taken for part of the arguments).
_CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')
_LIST_OPEN = re.compile(r"\s*\[")
# The no-action call's message so far: its JSON string, perhaps not yet closed.
_MESSAGE_SO_FAR = re.compile(r'\{\s*"message"\s*:\s*"((?:[^"\\]|\\.)*)(\\?)')
# The end of a partial JSON string that cannot be decoded yet: half an escape, or a high
# surrogate whose low half is still to come.
_UNFINISHED_ESCAPE = re.compile(r'(\\u[0-9a-fA-F]{0,3}|\\u[dD][89abAB][0-9a-fA-F]{2})$')


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


CallEvent = Union[TextDelta, ToolCallStart, ToolArgumentsDelta]


@dataclass
class ToolCallParser:
    """Incremental reader of grammar-shaped output (see the module's docstring)."""

    parallel: bool
    no_action: str | None = None
    index: int = 0  # the choice its events belong to
    calls: int = 0
    _buffer: str = ""
    _state: str = "start"  # start, head, arguments, close, between, done
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False
    _silent: bool = False  # inside the no-action call: its message becomes text
    _held: list[str] = field(default_factory=list)
    _told: int = 0  # characters of the message already given out as text

    def feed(self, text: str) -> list[CallEvent]:
        self._buffer += text
        events: list[CallEvent] = []
        while self._step(events):
            pass
        return events

    @property
    def complete(self) -> bool:
        return self._state == "done"

    def _step(self, events: list[CallEvent]) -> bool:
        state = self._state
        if state == "start":
            match = _LIST_OPEN.match(self._buffer) if self.parallel else None
            if self.parallel and not match:
                return False
            self._buffer = self._buffer[match.end():] if match else self._buffer
            self._state = "head"
            return True
        if state == "head":
            match = _CALL_HEAD.match(self._buffer)
            if not match:
                return False
            name = json.loads(f'"{match.group(1)}"')
            self._buffer = self._buffer[match.end():]
            self._state = "arguments"
            self._silent = name == self.no_action
            if not self._silent:
                events.append(ToolCallStart(self.index, self.calls, new_call_id(), name))
            return True
        if state == "arguments":
            return self._scan_arguments(events)
        if state in ("close", "between"):
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return False
            char, self._buffer = self._buffer[0], self._buffer[1:]
            if state == "close":  # the call object's "}"
                self._state = "between" if self.parallel else "done"
            else:  # "," then another call, or the list's "]"
                self._state = "head" if char == "," else "done"
            return True
        return False

    def _scan_arguments(self, events: list[CallEvent]) -> bool:
        taken, complete = 0, False
        for char in self._buffer:
            taken += 1
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    complete = True
                    break
        piece, self._buffer = self._buffer[:taken], self._buffer[taken:]
        if self._silent:
            self._held.append(piece)
            held = "".join(self._held)
            if complete:
                message = _message(json.loads(held, strict=False))
                self._held, told, self._told = [], self._told, 0
            else:
                message, told = _message_so_far(held), self._told
                self._told = max(told, len(message))
            if message[told:]:
                events.append(TextDelta(self.index, message[told:]))
        elif piece:
            events.append(ToolArgumentsDelta(self.index, self.calls, piece))
        if not complete:
            return False
        self.calls += 0 if self._silent else 1
        self._state = "close"
        return True


def _message_so_far(held: str) -> str:
    """The decodable start of the no-action message, so that a text answer streams."""
    match = _MESSAGE_SO_FAR.match(held)
    if not match:
        return ""
    raw = match.group(1)
    while _UNFINISHED_ESCAPE.search(raw):  # a surrogate pair's first half waits for its second
        raw = _UNFINISHED_ESCAPE.sub("", raw)
    try:
        return json.loads(f'"{raw}"', strict=False)
    except ValueError:
        return ""


def _message(arguments: Any) -> str:
    if isinstance(arguments, dict) and isinstance(arguments.get("message"), str):
        return arguments["message"]
    return json.dumps(arguments, ensure_ascii=False)


def canonical_arguments(text: str) -> str:
    """Arguments as compact JSON: a grammar's string rule lets raw control characters
    through, which strict JSON readers refuse; re-encoding escapes them."""
    try:
        return json.dumps(json.loads(text, strict=False), ensure_ascii=False)
    except ValueError:
        return text


def find_calls(text: str, names: set[str], regexes: list[str] | None = None,
               name_key: str = "name", arguments_key: str = "arguments") -> list[tuple[str, str]]:
    """Calls written freely by a model (no grammar): the YAML's named-group regexes
    first (`name`, `arguments`), else every JSON object naming a declared function."""
    found: list[tuple[str, str]] = []
    for pattern in regexes or []:
        for match in re.finditer(pattern, text, re.DOTALL):
            groups = match.groupdict()
            if isinstance(groups.get("name"), str) and groups["name"] in names:
                found.append((groups["name"], canonical_arguments(groups.get("arguments") or "{}")))
    if found:
        return found
    decoder = json.JSONDecoder(strict=False)
    position = 0
    while True:
        start = min((i for i in (text.find("{", position), text.find("[", position)) if i >= 0), default=-1)
        if start < 0:
            return found
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and isinstance(item.get(name_key), str) and item[name_key] in names:
                arguments = item.get(arguments_key, {})
                found.append((item[name_key], arguments if isinstance(arguments, str) else
                              json.dumps(arguments, ensure_ascii=False)))
        position = end


class CallShaper:
    """One choice's text turned into events: text, or tool calls (a start with id and
    name, then fragments of the arguments)."""

    def __init__(self, index: int, names: set[str], parallel: bool, no_action: str | None, grammar: bool,
                 regexes: tuple[str, ...] = (), name_key: str = "name", arguments_key: str = "arguments") -> None:
        self.index = index
        self.names = names
        self.grammar = grammar
        self.parser = ToolCallParser(parallel=parallel, no_action=no_action, index=index)
        self.regexes = list(regexes)
        self.keys = (name_key, arguments_key)
        self.calls = 0
        self._text: list[str] = []

    def feed(self, text: str) -> list[CallEvent]:
        if not self.grammar:
            self._text.append(text)  # free text is read whole at the end
            return []
        events = self.parser.feed(text)
        self.calls += sum(1 for event in events if isinstance(event, ToolCallStart))
        return events

    def finish(self) -> list[CallEvent]:
        if self.grammar:
            return []
        text = "".join(self._text)
        found = find_calls(text, self.names, self.regexes, *self.keys)
        if not found:
            return [TextDelta(self.index, text)] if text else []
        events: list[CallEvent] = []
        for k, (name, arguments) in enumerate(found):
            events += [ToolCallStart(self.index, k, new_call_id(), name), ToolArgumentsDelta(self.index, k, arguments)]
        self.calls = len(found)
        return events
