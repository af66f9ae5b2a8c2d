"""Go text/template's lexer (text/template/parse/lex.go): text and actions, `{{- `/` -}}`
trimming, comments, and the tokens inside an action, each with its line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass

from localhost_ai.config.gotemplate.errors import TemplateSyntaxError

KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"})
SPACE = " \t\r\n"


@dataclass(frozen=True)
class Token:
    # text, open, close, ident, keyword, field, var, dot, string, raw, char, number, bool, nil,
    # pipe, lparen, rparen, declare, assign, comma, space
    kind: str
    value: str
    offset: int


_INSIDE = re.compile(r"""
    (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]+(?![.\deE])|
                   (?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset`."""
    return source.count("\n", 0, offset) + 1, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _error(source: str, offset: int, message: str) -> TemplateSyntaxError:
    return TemplateSyntaxError(message, *position(source, offset))


def _right_delim(source: str, offset: int) -> tuple[int, bool] | None:
    """At a right delimiter: (the offset after it, whether it trims the text after)."""
    if offset + 1 < len(source) and source[offset] in SPACE and source[offset + 1] == "-" \
            and source.startswith("}}", offset + 2):
        return offset + 4, True
    if source.startswith("}}", offset):
        return offset + 2, False
    return None


def tokenize(source: str) -> list[Token]:
    """Text runs (trimmed where a marker says) and each action's tokens between `open` and
    `close`; comments leave nothing."""
    tokens: list[Token] = []
    position_ = 0
    trim_next = False
    while True:
        start = source.find("{{", position_)
        text = source[position_:] if start < 0 else source[position_:start]
        if trim_next:
            text = text.lstrip(SPACE)
        inner = start + 2
        trims = start >= 0 and source[inner:inner + 1] == "-" and source[inner + 1:inner + 2] != "" \
            and source[inner + 1] in SPACE
        if trims:
            text = text.rstrip(SPACE)
        if text:
            tokens.append(Token("text", text, position_))
        if start < 0:
            return tokens
        if trims:
            inner += 2
        if source.startswith("/*", inner):
            position_, trim_next = _comment(source, start, inner)
        else:
            position_, trim_next = _action(source, start, inner, tokens)


def _comment(source: str, start: int, inner: int) -> tuple[int, bool]:
    end = source.find("*/", inner + 2)
    if end < 0:
        raise _error(source, start, "unclosed comment")
    closing = _right_delim(source, end + 2)
    if closing is None:
        raise _error(source, end, "comment ends before closing delimiter")
    return closing


def _action(source: str, start: int, offset: int, tokens: list[Token]) -> tuple[int, bool]:
    tokens.append(Token("open", "{{", start))
    depth = 0
    while True:
        if offset >= len(source):
            raise _error(source, start, "unclosed action")
        closing = _right_delim(source, offset)
        if closing is not None:
            if depth:
                raise _error(source, offset, "unclosed left paren")
            tokens.append(Token("close", "}}", offset))
            return closing
        if source[offset] in SPACE:
            end = offset
            while end < len(source) and source[end] in SPACE:
                end += 1
            if _right_delim(source, end - 1) is not None:  # `  -}}`: the last space belongs to the delimiter
                end -= 1
            tokens.append(Token("space", source[offset:end], offset))
            offset = end
            continue
        match = _INSIDE.match(source, offset)
        if match is None:
            raise _error(source, offset, f"unexpected {source[offset]!r} in command")
        kind, value = match.lastgroup or "", match.group()
        if kind == "lparen":
            depth += 1
        elif kind == "rparen":
            depth -= 1
            if depth < 0:
                raise _error(source, offset, "unexpected right paren")
        elif kind == "ident" and value in KEYWORDS:
            kind = "keyword"
        elif kind == "ident" and value in ("true", "false"):
            kind = "bool"
        elif kind == "ident" and value == "nil":
            kind = "nil"
        tokens.append(Token(kind, value, offset))
        offset = match.end()
