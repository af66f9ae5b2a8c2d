"""Reading tool calls out of model output, whatever the chunking of the text."""

from __future__ import annotations

import json

import pytest

from localhost_ai.backends.tool_calls import CallShaper, ToolCallParser, canonical_arguments, find_calls
from localhost_ai.contract.events import TextDelta, ToolArgumentsDelta, ToolCallStart

LIST = (' [{"name": "UserDetail", "arguments": {"name": "Ja\\"{son", "age": 25, "x": [1, {"a": "]"}]}},'
        ' {"name": "answer", "arguments": {"message": "Hi \\u00e9 there"}}, {"name":"B","arguments":{}}] ')


def run(parser: ToolCallParser, text: str, step: int) -> list:
    events = []
    for i in range(0, len(text), step):
        events += parser.feed(text[i:i + step])
    return events


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_a_list_of_calls_reads_the_same_in_any_chunking(step):
    parser = ToolCallParser(parallel=True, no_action="answer")
    events = run(parser, LIST, step)
    calls = [(e.call, e.name) for e in events if isinstance(e, ToolCallStart)]
    assert calls == [(0, "UserDetail"), (1, "B")]
    arguments: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolArgumentsDelta):
            arguments[event.call] = arguments.get(event.call, "") + event.text
    assert json.loads(arguments[0]) == {"name": 'Ja"{son', "age": 25, "x": [1, {"a": "]"}]}
    assert arguments[1] == "{}"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi é there"
    assert parser.complete and parser.calls == 2


def test_the_space_before_arguments_is_not_part_of_them():
    parser = ToolCallParser(parallel=False)
    events = parser.feed('{"name": "X", "arguments":') + parser.feed(" ") + parser.feed('{"a": 1}} ')
    assert "".join(e.text for e in events if isinstance(e, ToolArgumentsDelta)) == '{"a": 1}'
    assert parser.complete


def test_a_truncated_call_is_not_complete():
    parser = ToolCallParser(parallel=False)
    parser.feed('{"name": "X", "arguments": {"a": "unfinished')
    assert not parser.complete and parser.calls == 0


def test_canonical_arguments_escape_raw_control_characters():
    assert json.loads(canonical_arguments('{"a": "line\nbreak"}')) == {"a": "line\nbreak"}
    assert canonical_arguments("not json") == "not json"


def test_free_text_calls_are_found_anywhere_and_only_for_declared_names():
    text = 'Sure. <tool_call>{"name": "X", "arguments": {"a": 1}}</tool_call> then [{"name": "Y", "arguments": "{}"}]' \
           ' and {"name": "Z", "arguments": {}}'
    assert find_calls(text, {"X", "Y"}) == [("X", '{"a": 1}'), ("Y", "{}")]
    assert find_calls("no calls {here", {"X"}) == []
    regex = [r"CALL (?P<name>\w+) (?P<arguments>\{.*?\})"]
    assert find_calls('CALL X {"b": 2} CALL Q {}', {"X"}, regex) == [("X", '{"b": 2}')]
    assert find_calls('{"function": "X", "params": {"c": 3}}', {"X"}, None, "function", "params") == [("X", '{"c": 3}')]


def test_a_shaper_without_grammar_answers_text_when_no_call_is_found():
    shaper = CallShaper(0, {"X"}, parallel=False, no_action=None, grammar=False)
    assert shaper.feed("just ") == [] and shaper.feed("words") == []
    assert shaper.finish() == [TextDelta(index=0, text="just words")]
    assert shaper.calls == 0


def test_free_text_with_odd_names_is_text_not_a_crash():
    assert find_calls('{"name": ["X"], "arguments": {}} {"name": {"a": 1}}', {"X"}) == []


def test_the_no_action_message_streams_and_survives_truncation():
    text = '{"name": "answer", "arguments": {"message": "Hi \\"you\\" \\u00e9 \\ud83d\\ude00 done"}}'
    for step in (1, 2, 5):
        parser = ToolCallParser(parallel=False, no_action="answer")
        pieces = [e.text for e in run(parser, text, step) if isinstance(e, TextDelta)]
        assert "".join(pieces) == 'Hi "you" é 😀 done' and len(pieces) > 1
    cut = ToolCallParser(parallel=False, no_action="answer")
    assert [e.text for e in cut.feed('{"name": "answer", "arguments": {"message": "cut of')] == ["cut of"]


def test_templates_that_know_tools_get_openai_shaped_history():
    from localhost_ai.backends.tool_prompt import messages_for_template

    messages = messages_for_template([
        {"role": "assistant", "content": "ok", "tool_calls": None},
        {"role": "assistant", "content": None, "function_call": {"name": "F", "arguments": '{"a": 1}'}},
        {"role": "function", "name": "F", "content": "42"},
    ])
    assert "tool_calls" not in messages[0]
    assert "content" not in messages[1]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "F", "arguments": {"a": 1}}
    assert messages[2]["role"] == "tool" and messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
