"""Go text/template's parser (text/template/parse/parse.go): the tree of text, actions,
if / range / with (with `else if` and `else with`), break, continue, define, template and
block, and pipelines of commands. Functions are checked here, as Go checks them."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Union

from localhost_ai.config.gotemplate.errors import TemplateSyntaxError
from localhost_ai.config.gotemplate.lex import Token, position, tokenize


@dataclass
class Text:
    text: str


@dataclass
class FieldNode:
    names: tuple[str, ...]
    offset: int


@dataclass
class VariableNode:
    name: str
    names: tuple[str, ...]
    offset: int


@dataclass
class DotNode:
    offset: int


@dataclass
class NilNode:
    offset: int


@dataclass
class IdentNode:
    name: str
    offset: int


@dataclass
class Literal:
    value: Any
    offset: int


@dataclass
class ChainNode:
    node: "Arg"
    names: tuple[str, ...]
    offset: int


@dataclass
class Command:
    args: list["Arg"]
    offset: int


@dataclass
class Pipe:
    decl: list[str]
    assign: bool  # `=` rather than `:=`
    commands: list[Command]
    offset: int


Arg = Union[FieldNode, VariableNode, DotNode, NilNode, IdentNode, Literal, ChainNode, Pipe]


@dataclass
class Action:
    pipe: Pipe


@dataclass
class Branch:
    kind: str  # if, range, with
    pipe: Pipe
    body: list["Node"]
    otherwise: list["Node"] | None


@dataclass
class LoopControl:
    kind: str  # break, continue
    offset: int


@dataclass
class Include:
    name: str
    pipe: Pipe | None
    offset: int


Node = Union[Text, Action, Branch, LoopControl, Include]


@dataclass
class Tree:
    body: list[Node]
    defines: dict[str, list[Node]] = field(default_factory=dict)


class _Parser:
    def __init__(self, source: str, functions: set[str]) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0
        self.functions = functions
        self.defines: dict[str, list[Node]] = {}
        self.loops = 0

    # -- tokens --------------------------------------------------------------------------

    def error(self, offset: int, message: str) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, *position(self.source, offset))

    def peek(self, skip_space: bool = True) -> Token | None:
        index = self.index
        while skip_space and index < len(self.tokens) and self.tokens[index].kind == "space":
            index += 1
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self, skip_space: bool = True) -> Token:
        while skip_space and self.index < len(self.tokens) and self.tokens[self.index].kind == "space":
            self.index += 1
        if self.index >= len(self.tokens):
            raise self.error(len(self.source), "unexpected end of template")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect_close(self, context: str) -> None:
        token = self.next()
        if token.kind != "close":
            raise self.error(token.offset, f"unexpected {token.value!r} in {context}")

    # -- lists and actions ---------------------------------------------------------------

    def parse(self) -> Tree:
        body, end = self.items(top=True)
        if end is not None:
            raise self.error(end.offset, f"unexpected {{{{{end.value}}}}}")
        return Tree(body, self.defines)

    def items(self, top: bool = False) -> tuple[list[Node], Token | None]:
        """Nodes up to an `{{end}}` or `{{else ...}}` (returned, after its keyword), or the end."""
        nodes: list[Node] = []
        while self.index < len(self.tokens):
            token = self.next(skip_space=False)
            if token.kind == "text":
                nodes.append(Text(token.value))
                continue
            head = self.peek()
            if head is not None and head.kind == "keyword":
                if head.value in ("end", "else"):
                    self.next()
                    if top:
                        raise self.error(head.offset, f"unexpected {{{{{head.value}}}}}")
                    return nodes, head
                node = self.control(self.next())
                if node is not None:
                    nodes.append(node)
                continue
            pipe = self.pipeline("command", allow_decl=True)
            nodes.append(Action(pipe))
        return nodes, None  # the end of the template: a structure still open says so

    def control(self, keyword: Token) -> Node | None:
        kind = keyword.value
        if kind in ("if", "with"):
            return self.branch(kind, keyword)
        if kind == "range":
            return self.branch(kind, keyword)
        if kind in ("break", "continue"):
            if not self.loops:
                raise self.error(keyword.offset, f"{{{{{kind}}}}} outside {{{{range}}}}")
            self.expect_close(kind)
            return LoopControl(kind, keyword.offset)
        if kind in ("template", "block", "define"):
            name_token = self.next()
            if name_token.kind not in ("string", "raw"):
                raise self.error(name_token.offset, f"unexpected {name_token.value!r} in {kind} clause")
            name = _string(name_token, self)
            if kind == "define":
                self.expect_close("define clause")
                body, end = self.items()
                if end is None or end.value != "end":
                    raise self.error(keyword.offset, "define has no {{end}}")
                self.expect_close("end")
                self.defines[name] = body
                return None
            pipe = None
            if self.peek() is not None and self.peek().kind != "close":  # type: ignore[union-attr]
                pipe = self.pipeline(f"{kind} clause")
            else:
                self.expect_close(f"{kind} clause")
            if kind == "block":
                body, end = self.items()
                if end is None or end.value != "end":
                    raise self.error(keyword.offset, "block has no {{end}}")
                self.expect_close("end")
                self.defines[name] = body
            return Include(name, pipe, keyword.offset)
        raise self.error(keyword.offset, f"unexpected {kind!r}")

    def branch(self, kind: str, keyword: Token) -> Branch:
        pipe = self.pipeline(kind, allow_decl=True, allow_two=kind == "range")
        self.loops += kind == "range"  # break and continue belong to a range's body, not its else
        try:
            body, end = self.items()
        finally:
            self.loops -= kind == "range"
        otherwise: list[Node] | None = None
        if end is not None and end.value == "else":
            following = self.peek()
            if following is not None and following.kind == "keyword" and following.value == kind and kind in ("if", "with"):
                # `{{else if x}}` is `{{else}}{{if x}}...{{end}}{{end}}` sharing the one {{end}}
                self.next()
                otherwise = [self.branch(kind, following)]
                return Branch(kind, pipe, body, otherwise)
            self.expect_close("else")
            otherwise, end = self.items()
            if end is not None and end.value == "else":
                raise self.error(end.offset, "expected end; found {{else}}")
        if end is None:  # the template ended inside it
            raise self.error(keyword.offset, f"{kind} has no {{{{end}}}}")
        self.expect_close("end")
        return Branch(kind, pipe, body, otherwise)

    # -- pipelines -----------------------------------------------------------------------

    def pipeline(self, context: str, allow_decl: bool = False, allow_two: bool = False,
                 until: str = "close") -> Pipe:
        start = self.peek()
        offset = start.offset if start else len(self.source)
        decl: list[str] = []
        assign = False
        if allow_decl:
            decl, assign = self.declaration(allow_two)
        commands: list[Command] = []
        while True:
            token = self.peek()
            if token is None:
                raise self.error(len(self.source), f"unclosed action in {context}")
            if token.kind == until:
                self.next()
                break
            commands.append(self.command(until))
            token = self.peek()
            if token is not None and token.kind == "pipe":
                self.next()
                if self.peek() is not None and self.peek().kind == until:  # type: ignore[union-attr]
                    raise self.error(token.offset, "missing command after |")
        if not commands and not decl:
            raise self.error(offset, f"missing value for {context}")
        if decl and not commands:
            raise self.error(offset, f"missing value for {context}")
        for later in commands[1:]:
            if isinstance(later.args[0], (Literal, NilNode, DotNode)):
                raise self.error(later.offset, f"non executable command in pipeline stage {commands.index(later) + 1}")
        return Pipe(decl, assign, commands, offset)

    def declaration(self, allow_two: bool) -> tuple[list[str], bool]:
        """`$x :=`, `$x =`, or in range `$i, $x :=`; nothing when the pipeline does not start so."""
        saved = self.index
        first = self.peek()
        if first is None or first.kind != "var" or "." in first.value:
            return [], False
        self.next()
        token = self.peek()
        if token is not None and token.kind in ("declare", "assign"):
            self.next()
            return [first.value], token.kind == "assign"
        if token is not None and token.kind == "comma" and allow_two:
            self.next()
            second = self.next()
            if second.kind != "var" or "." in second.value:
                raise self.error(second.offset, "range can only initialize variables")
            operator = self.next()
            if operator.kind not in ("declare", "assign"):
                raise self.error(operator.offset, "expected := or = after the range variables")
            return [first.value, second.value], operator.kind == "assign"
        if token is not None and token.kind == "comma":
            raise self.error(token.offset, "too many declarations in command")
        self.index = saved
        return [], False

    def command(self, until: str) -> Command:
        args: list[Arg] = []
        start = self.peek()
        offset = start.offset if start else len(self.source)
        while True:
            token = self.peek(skip_space=False)
            if token is not None and token.kind == "space":
                self.next(skip_space=False)
                token = self.peek(skip_space=False)
            if token is None or token.kind in (until, "pipe", "close", "rparen"):
                break
            args.append(self.operand())
            after = self.peek(skip_space=False)
            if after is not None and after.kind not in ("space", "pipe", "close", "rparen", until):
                raise self.error(after.offset, f"missing space? unexpected {after.value!r} in operand")
        if not args:
            raise self.error(offset, "empty command")
        if isinstance(args[0], NilNode):
            raise self.error(args[0].offset, "nil is not a command")
        return Command(args, offset)

    def operand(self) -> Arg:
        node = self.term()
        token = self.peek(skip_space=False)
        if token is not None and token.kind == "field":
            self.next(skip_space=False)
            names = tuple(token.value[1:].split("."))
            if isinstance(node, FieldNode):
                return FieldNode(node.names + names, node.offset)
            if isinstance(node, VariableNode):
                return VariableNode(node.name, node.names + names, node.offset)
            if isinstance(node, (Literal, NilNode)):
                raise self.error(token.offset, "unexpected . after term")
            return ChainNode(node, names, token.offset)
        return node

    def term(self) -> Arg:
        token = self.next(skip_space=False)
        kind, value, offset = token.kind, token.value, token.offset
        if kind == "ident":
            if value not in self.functions:
                raise self.error(offset, f"function {value!r} not defined")
            return IdentNode(value, offset)
        if kind == "dot":
            return DotNode(offset)
        if kind == "nil":
            return NilNode(offset)
        if kind == "bool":
            return Literal(value == "true", offset)
        if kind == "field":
            return FieldNode(tuple(value[1:].split(".")), offset)
        if kind == "var":
            name, _, rest = value.partition(".")
            return VariableNode(name, tuple(rest.split(".")) if rest else (), offset)
        if kind in ("string", "raw"):
            return Literal(_string(token, self), offset)
        if kind == "char":
            return Literal(ord(_string(token, self)), offset)
        if kind == "number":
            return Literal(_number(token, self), offset)
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", until="rparen")
        raise self.error(offset, f"unexpected {value!r} in operand")


def _string(token: Token, parser: _Parser) -> str:
    if token.kind == "raw":
        return token.value[1:-1]
    try:
        text = ast.literal_eval(token.value if token.kind == "string" else '"' + token.value[1:-1].replace('"', '\\"') + '"')
    except (ValueError, SyntaxError):
        raise parser.error(token.offset, f"bad quoted string {token.value}") from None
    if not isinstance(text, str) or (token.kind == "char" and len(text) != 1):
        raise parser.error(token.offset, f"bad character constant {token.value}")
    return text


def _number(token: Token, parser: _Parser) -> int | float:
    text = token.value.replace("_", "")
    try:
        if any(c in text for c in ".eE") and not text.lower().startswith(("0x", "-0x", "+0x")):
            return float(text)
        if text.lstrip("+-").startswith("0") and len(text.lstrip("+-")) > 1 and text.lstrip("+-")[1].isdigit():
            return int(text.replace("0", "0o", 1) if text[0] == "0" else text[0] + "0o" + text[2:], 0)
        return int(text, 0)
    except ValueError:
        raise parser.error(token.offset, f"bad number syntax: {token.value!r}") from None


def parse(source: str, functions: set[str]) -> Tree:
    """The template's tree; a TemplateSyntaxError names the line and column at fault."""
    try:
        return _Parser(source, functions).parse()
    except RecursionError:
        raise TemplateSyntaxError("the template nests too deeply", 1, 1) from None
