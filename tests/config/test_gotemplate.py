"""The Go template renderer against Go itself: every Go template in LocalAI's gallery and
every construct the renderer promises (tests/config/gotemplate/*.yaml), over a conversation
with a system prompt, turns, tools, tool calls and tool results, rendered by Go's own
text/template and sprig (tests/config/gotemplate/golden/main.go). Go's outputs are
committed in golden.json; the Python renderer must give the same bytes, and fail where Go
fails. When Go is installed, a test renders them again and checks the committed file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from localhost_ai.config.go_prompts import GoPrompts
from localhost_ai.config.templates import PromptTemplateError, within
from localhost_ai.config.gotemplate import (GoStruct, GoTemplate, NilDict, NilList, NilStringMap, StringMap,
                                            TemplateError, TemplateRuntimeError, TemplateSyntaxError)

HERE = Path(__file__).parent / "gotemplate"
GOLDEN = HERE / "golden.json"
GO_ENV = {"GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "-mod=mod"}

WEATHER = {"type": "object", "required": ["city"], "properties": {
    "city": {"type": "string", "description": "The city, e.g. \"Paris\" <FR>"},
    "days": {"type": "integer", "minimum": 1, "maximum": 10.5, "default": 1000000}}}
ANSWER = {"properties": {"message": {"type": "string", "description": "The message to reply the user with"}}}
CALLS = [{"index": 0, "id": "call_1", "type": "function",
          "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":2}"}},
         {"index": 1, "id": "call_2", "type": "function", "function": {"name": "", "arguments": "{}"}},
         {"index": 2, "id": "call_3", "type": "function", "function": {"name": "answer", "arguments": "{\"message\":\"x\"}"}}]
TRANSCRIPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat's the weather "
              "in Paris?<|im_end|>")

# Each data set as LocalAI fills ChatMessageTemplateData for one message of the conversation.
MESSAGES: dict[str, dict[str, Any]] = {
    "system": {"RoleName": "system", "Content": "You are a helpful assistant.", "MessageIndex": 0},
    "user": {"RoleName": "user", "Content": "  What's the weather in Paris? <b>&</b>  ", "MessageIndex": 1,
             "SystemPrompt": "Be brief."},
    "assistant": {"RoleName": "assistant", "Content": "Let me check.", "MessageIndex": 2},
    "tool_calls": {"RoleName": "assistant", "Content": "", "MessageIndex": 3, "FunctionCall": CALLS},
    "tool_result": {"RoleName": "tool", "FunctionName": "get_weather", "Content": "{\"temp\": 21.5}",
                    "MessageIndex": 4},
    "legacy_call": {"RoleName": "assistant", "MessageIndex": 5,
                    "FunctionCall": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
    "mapped_call": {"RoleName": "assistant_function_call", "Role": "ASSISTANT:", "MessageIndex": 6,
                    "FunctionCall": CALLS[:1]},
    "last": {"RoleName": "user", "Role": "USER:", "Content": "Thanks, you.", "MessageIndex": 7,
             "LastMessage": True, "Function": True},
    "empty": {"RoleName": "user", "Content": "", "MessageIndex": 8},
}
# Each as LocalAI fills PromptTemplateData for chat, function, completion and edit.
PROMPTS: dict[str, dict[str, Any]] = {
    "chat": {"Input": TRANSCRIPT},
    "system": {"Input": TRANSCRIPT, "SystemPrompt": "Be brief & kind.", "SuppressSystemPrompt": False},
    "suppressed": {"Input": TRANSCRIPT, "SystemPrompt": "Be brief.", "SuppressSystemPrompt": True},
    "tools": {"Input": TRANSCRIPT, "Functions": [
        {"name": "get_weather", "description": "Get the weather's forecast", "strict": False, "parameters": WEATHER},
        {"name": "answer", "description": "use this action to answer without performing any action", "strict": False,
         "parameters": ANSWER},
        {"name": "ping", "description": "", "strict": True}]},
    "edit": {"Input": "The captial of France is Paris.", "Instruction": "Fix the spelling.", "MessageIndex": 3,
             "ReasoningEffort": "high", "Metadata": {"user": "ada", "app": "<x>"}},
}
KINDS = {"chat_message": "message", "chat": "prompt", "function": "prompt", "completion": "prompt", "edit": "prompt"}

# Whole conversations, assembled as LocalAI assembles them, through each gallery config's settings.
TOOLS = [{"name": "get_weather", "description": "Get the weather's forecast", "strict": False, "parameters": WEATHER},
         {"name": "answer", "description": "use this action to answer without performing any action",
          "strict": False, "parameters": ANSWER}]
CONVERSATIONS: dict[str, dict[str, Any]] = {
    "plain": {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    "turns": {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi <there> & welcome"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is the capital of France?"}]},
    "tools": {"use_function": True, "grammar": True, "functions": TOOLS, "messages": [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}]},
        {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21}"},
        {"role": "tool", "name": "get_weather", "content": "{\"temp\": 19.5}"},
        {"role": "user", "content": "And tomorrow?"}]},
    "legacy_call": {"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "user", "content": ""}]},
}


# -- the data as the renderer takes it (Go's types) -------------------------------------------


def _json_numbers(value: Any) -> Any:
    """Numbers decoded into interface{} by encoding/json are float64."""
    return json.loads(json.dumps(value), parse_int=float)


def _tool_call(call: dict[str, Any]) -> GoStruct:
    function = GoStruct("FunctionCall", {"Name": call["function"]["name"], "Arguments": call["function"]["arguments"]},
                        {"Name": "name,omitempty", "Arguments": "arguments"})
    return GoStruct("ToolCall", {"Index": call["index"], "ID": call["id"], "Type": call["type"], "FunctionCall": function},
                    {"Index": "index", "ID": "id", "Type": "type", "FunctionCall": "function"})


def go_data(kind: str, data: dict[str, Any]) -> Any:
    if kind == "message":
        call = data.get("FunctionCall")
        if isinstance(call, list):
            call = [_tool_call(c) for c in call]
        elif call is not None:
            call = _json_numbers(call)
        return GoStruct("ChatMessageTemplateData", {
            "SystemPrompt": data.get("SystemPrompt", ""), "Role": data.get("Role", ""), "RoleName": data["RoleName"],
            "FunctionName": data.get("FunctionName", ""), "Content": data.get("Content", ""),
            "MessageIndex": data.get("MessageIndex", 0), "Function": data.get("Function", False),
            "FunctionCall": call, "LastMessage": data.get("LastMessage", False)})
    functions = data.get("Functions")
    return GoStruct("PromptTemplateData", {
        "SystemPrompt": data.get("SystemPrompt", ""), "SuppressSystemPrompt": data.get("SuppressSystemPrompt", False),
        "Input": data.get("Input", ""), "Instruction": data.get("Instruction", ""),
        "Functions": NilList() if functions is None else [
            GoStruct("Function", {"Name": f["name"], "Description": f["description"], "Strict": f["strict"],
                                  "Parameters": _json_numbers(f["parameters"]) if "parameters" in f else NilDict()},
                     {"Name": "name", "Description": "description", "Strict": "strict", "Parameters": "parameters"})
            for f in functions],
        "MessageIndex": data.get("MessageIndex", 0), "ReasoningEffort": data.get("ReasoningEffort", ""),
        "Metadata": StringMap(data["Metadata"]) if data.get("Metadata") is not None else NilStringMap()})


# -- the cases --------------------------------------------------------------------------------


def cases() -> list[dict[str, Any]]:
    gallery = yaml.safe_load((HERE / "localai_gallery.yaml").read_text())
    constructs = yaml.safe_load((HERE / "constructs.yaml").read_text())
    templates: list[tuple[str, str, str]] = []
    for key, source in sorted(gallery.items()):
        kind = KINDS.get(key.rsplit(".", 1)[1])
        if kind is not None:
            templates.append((f"gallery/{key}", kind, source))
    for kind, group in constructs.items():
        for name, source in group.items():
            templates.append((f"constructs/{name}", kind, source))
    out = []
    settings = yaml.safe_load((HERE / "localai_configs.yaml").read_text())
    for config_name, config in sorted(settings.items()):
        for conversation_name, conversation in CONVERSATIONS.items():
            out.append({"name": f"conversation/{config_name}@{conversation_name}", "template": "", "kind": "conversation",
                        "data": {"settings": config, **conversation}})
    for name, kind, source in templates:
        for data_name, data in (MESSAGES if kind == "message" else PROMPTS).items():
            out.append({"name": f"{name}@{data_name}", "template": source, "kind": kind, "data": data})
    return out


def render(case: dict[str, Any]) -> dict[str, Any]:
    if case["kind"] == "conversation":
        data = case["data"]
        settings = data["settings"]
        prompts = GoPrompts(chat=settings.get("chat"), chat_message=settings.get("chat_message"),
                            function=settings.get("function"), roles=settings.get("roles") or {},
                            join=settings.get("join_chat_messages_by_character"),
                            system_prompt=settings.get("system_prompt") or "")
        return {"name": case["name"], "output": prompts.chat_prompt(
            data["messages"], data.get("functions"), use_function=data.get("use_function", False),
            grammar=data.get("grammar", False))}
    try:
        template = GoTemplate(case["template"])
    except TemplateSyntaxError as exc:
        return {"name": case["name"], "error": str(exc), "stage": "parse"}
    try:
        return {"name": case["name"], "output": template.render(go_data(case["kind"], case["data"]))}
    except TemplateRuntimeError as exc:
        return {"name": case["name"], "error": str(exc), "stage": "execute"}


def go_render(all_cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    completed = subprocess.run(["go", "run", str(HERE / "golden" / "main.go")], input=json.dumps(all_cases),
                               capture_output=True, text=True, timeout=600, env={**os.environ, **GO_ENV}, cwd=HERE)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


# -- the tests --------------------------------------------------------------------------------


def test_every_case_gives_the_bytes_go_gives():
    golden = {r["name"]: r for r in json.loads(GOLDEN.read_text())}
    all_cases = cases()
    assert {c["name"] for c in all_cases} == set(golden), "golden.json is stale: regenerate it (see below)"
    mismatches = []
    for case in all_cases:
        ours, theirs = render(case), golden[case["name"]]
        if "output" in theirs:
            if ours.get("output") != theirs["output"]:
                mismatches.append((case["name"], theirs["output"], ours))
        elif ours.get("stage") != theirs["stage"]:
            mismatches.append((case["name"], theirs, ours))
    assert not mismatches, f"{len(mismatches)} of {len(all_cases)} differ; first: {mismatches[:3]}"
    assert sum("output" in r for r in golden.values()) > 0.8 * len(golden)  # mostly renderings, not errors


@pytest.mark.skipif(shutil.which("go") is None or not Path("/usr/share/gocode/src/github.com/Masterminds/sprig").is_dir(),
                    reason="Go and sprig (Debian's golang-go, golang-github-masterminds-sprig-dev) are not installed")
def test_golden_outputs_are_what_go_renders_now():
    """Regenerate with: python -c 'from tests.config.test_gotemplate import regenerate; regenerate()'"""
    assert go_render(cases()) == json.loads(GOLDEN.read_text())


def regenerate() -> None:
    GOLDEN.write_text(json.dumps(go_render(cases()), indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize(("source", "line", "column", "words"), [
    ("Hello {{ .Input ", 1, 7, "unclosed action"),
    ("a\n{{ if .Input }}\nb", 2, 4, "has no {{end}}"),
    ("{{ readFile \"/etc/passwd\" }}", 1, 4, "function 'readFile' not defined"),
    ("{{ env \"HOME\" }}", 1, 4, "function 'env' not defined"),
    ("x\n\n  {{ .Input | }}", 3, 13, "missing command"),
    ("{{ .Input }}{{ end }}", 1, 16, "unexpected {{end}}"),
])
def test_a_bad_template_is_refused_with_its_line_and_column(source, line, column, words):
    with pytest.raises(TemplateSyntaxError) as raised:
        GoTemplate(source)
    assert (raised.value.line, raised.value.column) == (line, column), str(raised.value)
    assert words in str(raised.value)


def test_templates_are_data_they_reach_no_python_object():
    data = go_data("prompt", PROMPTS["chat"])
    for source in ("{{ .Input.__class__ }}", "{{ .__class__ }}", "{{ .fields }}", "{{ .type_name }}"):
        with pytest.raises(TemplateError):
            GoTemplate(source).render(data)
    assert GoTemplate("{{ .__class__ }}").render({"a": 1}) == "<no value>"  # a map has no such key


def test_output_and_recursion_are_bounded():
    with pytest.raises(TemplateRuntimeError, match="longer than"):
        GoTemplate("{{ range $i := 2000 }}{{ repeat 1000 \"x\" }}{{ end }}").render({})
    with pytest.raises(TemplateRuntimeError, match="depth"):
        GoTemplate('{{ define "a" }}{{ template "a" . }}{{ end }}{{ template "a" . }}').render({})
    with pytest.raises(TemplateRuntimeError, match="iterations"):
        GoTemplate("{{ range 1000000000000 }}{{ end }}").render({})
    with pytest.raises(TemplateRuntimeError, match="iterations"):
        GoTemplate("{{ range $a := 1024 }}{{ range $b := 1024 }}{{ range $c := 8 }}{{ end }}{{ end }}{{ end }}").render({})
    for source in ('{{$x := "a"}}{{range 60}}{{$x = print $x $x}}{{end}}{{len $x}}',  # doubling text
                   '{{$l := list 1}}{{range 60}}{{$l = list $l $l}}{{end}}{{toJson $l}}',  # shared lists as JSON
                   '{{$l := list 1}}{{range 60}}{{$l = list $l $l}}{{end}}{{$l}}',  # and printed
                   '{{ indent 1000000 (repeat 1000 "\\n") }}', '{{ printf "%999999999d" 1 }}'):
        with pytest.raises(TemplateRuntimeError, match="too l|longer than"):
            GoTemplate(source).render({})
    # many large arguments are refused before their text is put together, not after
    big = '{{ $b := repeat 600000 "x" }}'
    for call in ("print $b $b", "cat $b $b", "quote $b $b", "toJson (list $b $b)", 'printf "%s%s" $b $b'):
        with pytest.raises(TemplateRuntimeError, match="would be longer"):
            GoTemplate(big + "{{ " + call + " }}").render({})
    assert len(GoTemplate(big + "{{ print $b }}").render({})) == 600000
    with pytest.raises(TemplateRuntimeError, match="only a string"):  # no unbounded deep comparison
        GoTemplate("{{$a := list 1}}{{range 30}}{{$a = list $a $a}}{{end}}{{has $a (list $a)}}").render({})
    assert GoTemplate("{{$n := 3}}{{range 40}}{{$n = mul $n $n}}{{end}}{{$n}}").render({})  # int64 wraps, as Go's
    assert GoTemplate("{{ mul 4294967296 4294967296 }}").render({}) == "0"
    with pytest.raises(TemplateSyntaxError, match="outside"):  # a range's else is not its loop
        GoTemplate("{{range .x}}{{else}}{{break}}{{end}}")
    with pytest.raises(TemplateRuntimeError):
        GoTemplate('{{ join 1 (list "a") }}').render({})
    with pytest.raises(TemplateSyntaxError, match="nests too deeply"):
        GoTemplate("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")


def test_a_chat_s_templates_share_one_time_limit():
    """Each message's template within its own limit could still add up to minutes over a long chat."""
    slow = GoPrompts(chat="{{.Input}}", chat_message="{{ range $i := 200000 }}{{ end }}{{ .Content }}")
    messages = [{"role": "user", "content": f"message {i}"} for i in range(200)]
    timings = []
    for _ in range(3):  # the quickest of three: a busy moment of the machine must not stretch the limit
        started = time.monotonic()
        slow.chat_prompt(messages[:1])
        timings.append(time.monotonic() - started)
    one = min(timings)
    # Five messages' time for two hundred: the limit stops the chat (an inner template's own
    # limit used to swallow it, and the chat went on message by message).
    with pytest.raises(PromptTemplateError, match="longer than"):
        within(one * 5, lambda: slow.chat_prompt(messages))


def test_a_time_limit_holds_when_its_first_stop_is_lost(monkeypatch):
    """Python discards an exception raised inside a finalizer (here one that runs as the stop
    comes, as the garbage collector runs them in a long test session): the limit still holds."""
    class Finalized:
        def __del__(self):
            until = time.monotonic() + 0.6
            while time.monotonic() < until:  # the stop lands here, and is lost with the finalizer
                pass

    def work():
        Finalized()  # finalized at once
        until = time.monotonic() + 10
        while time.monotonic() < until:
            pass
        return "ran to its end"

    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lost.append)
    started = time.monotonic()
    with pytest.raises(PromptTemplateError, match="longer than 0.2"):
        within(0.2, work)
    assert time.monotonic() - started < 2
    assert [type(one.exc_value).__name__ for one in lost] == ["_Timeout"]  # the first stop was lost
