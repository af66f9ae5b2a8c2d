"""Running a parsed Go template over data, with Go's rules (text/template/exec.go): dot and
variables, field chains on structs and maps, pipelines feeding their value to the next
command's last argument, if / range / with, break and continue, and named templates."""

from __future__ import annotations

from typing import Any, Callable

from localhost_ai.config.gotemplate.errors import TemplateRuntimeError
from localhost_ai.config.gotemplate.parse import (Action, Branch, ChainNode, Command, DotNode, FieldNode, IdentNode,
                                                  Include, Literal, LoopControl, NilNode, Node, Pipe, Text, Tree,
                                                  VariableNode)
from localhost_ai.config.gotemplate.values import GoStruct, format_value, is_true

MAX_DEPTH = 100  # nested {{template}} calls, as Go's maxExecDepth guards recursion
MAX_OUTPUT = 1 << 20  # characters one rendering may write
MAX_ITERATIONS = 1 << 20  # range iterations one rendering may run
LAZY = frozenset({"and", "or"})  # their arguments are evaluated only as far as needed



# Functions whose result holds all their arguments' text (each at most MAX_OUTPUT already).
CONCATENATING = frozenset({"print", "printf", "println", "cat", "quote", "squote", "toJson", "mustToJson",
                           "toPrettyJson", "mustToPrettyJson", "toRawJson", "mustToRawJson", "toString",
                           "toStrings", "html", "js", "urlquery", "indent", "nindent"})


def _text_in(values: list, limit: int) -> int:
    """The text in `values` and the lists, maps and structs they hold, counted until past
    `limit` (the same string held many times counts each time, as it would be written)."""
    total, stack, seen = 0, list(values), 0
    while stack and total <= limit:
        value = stack.pop()
        seen += 1
        if seen > 1 << 20:
            return limit + 1
        if isinstance(value, str):
            total += len(value) + 2
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, GoStruct):
            stack.extend(value.fields.values())
        else:
            total += 24
    return total

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Missing:
    """The first argument a pipeline stage passes on when there is no previous stage."""


MISSING = _Missing()


class Runner:
    def __init__(self, tree: Tree, functions: dict[str, Callable[..., Any]], name: str) -> None:
        self.tree = tree
        self.functions = functions
        self.name = name
        self.out: list[str] = []
        self.size = 0
        self.depth = 0
        self.iterations = 0

    def run(self, data: Any) -> str:
        try:
            self.walk(self.tree.body, data, [("$", data)])
        except (_Break, _Continue):
            raise TemplateRuntimeError("break or continue outside a range") from None
        return "".join(self.out)

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise TemplateRuntimeError(f"the output is longer than {MAX_OUTPUT} characters")
        self.out.append(text)

    # -- nodes ---------------------------------------------------------------------------

    def walk(self, nodes: list[Node], dot: Any, scope: list[tuple[str, Any]]) -> None:
        mark = len(scope)
        for node in nodes:
            if isinstance(node, Text):
                self.write(node.text)
            elif isinstance(node, Action):
                value = self.pipeline(node.pipe, dot, scope)
                if not node.pipe.decl:
                    try:
                        self.write(format_value(value))
                    except ValueError as exc:
                        raise TemplateRuntimeError(str(exc)) from None
            elif isinstance(node, Branch):
                self.branch(node, dot, scope)
            elif isinstance(node, LoopControl):
                raise _Break() if node.kind == "break" else _Continue()
            elif isinstance(node, Include):
                self.include(node, dot, scope)
        del scope[mark:]  # variables live until the end of their control structure

    def branch(self, node: Branch, dot: Any, scope: list[tuple[str, Any]]) -> None:
        mark = len(scope)
        if node.kind == "range":
            self.range(node, dot, scope)
        else:
            value = self.pipeline(node.pipe, dot, scope)
            if is_true(value):
                self.walk(node.body, value if node.kind == "with" else dot, scope)
            elif node.otherwise is not None:
                self.walk(node.otherwise, dot, scope)
        del scope[mark:]

    def range(self, node: Branch, dot: Any, scope: list[tuple[str, Any]]) -> None:
        pipe = node.pipe
        value = self.pipeline(Pipe([], False, pipe.commands, pipe.offset), dot, scope)
        if isinstance(value, dict):
            items = [(key, value[key]) for key in sorted(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if value > MAX_ITERATIONS:
                raise TemplateRuntimeError(f"range over {value}: more than {MAX_ITERATIONS} iterations")
            items = [(i, i) for i in range(value)]
        elif value is None:
            items = []
        else:
            raise TemplateRuntimeError(f"range can't iterate over {format_value(value)}")
        if not items:
            if node.otherwise is not None:
                self.walk(node.otherwise, dot, scope)
            return
        mark = len(scope)
        for key, element in items:
            self.iterations += 1
            if self.iterations > MAX_ITERATIONS:
                raise TemplateRuntimeError(f"more than {MAX_ITERATIONS} range iterations")
            del scope[mark:]
            if len(pipe.decl) == 1:
                self.set_variable(scope, pipe.decl[0], element, pipe.assign)
            elif len(pipe.decl) == 2:
                self.set_variable(scope, pipe.decl[0], key, pipe.assign)
                self.set_variable(scope, pipe.decl[1], element, pipe.assign)
            try:
                self.walk(node.body, element, scope)
            except _Continue:
                continue
            except _Break:
                break

    def include(self, node: Include, dot: Any, scope: list[tuple[str, Any]]) -> None:
        body = self.tree.defines.get(node.name)
        if body is None:
            raise TemplateRuntimeError(f"no such template {node.name!r}")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TemplateRuntimeError(f"exceeded maximum template depth ({MAX_DEPTH})")
        value = self.pipeline(node.pipe, dot, scope) if node.pipe is not None else None
        self.walk(body, value, [("$", value)])
        self.depth -= 1

    # -- pipelines -----------------------------------------------------------------------

    def set_variable(self, scope: list[tuple[str, Any]], name: str, value: Any, assign: bool) -> None:
        if assign:
            for index in range(len(scope) - 1, -1, -1):
                if scope[index][0] == name:
                    scope[index] = (name, value)
                    return
            raise TemplateRuntimeError(f"undefined variable: {name}")
        scope.append((name, value))

    def variable(self, scope: list[tuple[str, Any]], name: str) -> Any:
        for variable, value in reversed(scope):
            if variable == name:
                return value
        raise TemplateRuntimeError(f"undefined variable: {name}")

    def pipeline(self, pipe: Pipe, dot: Any, scope: list[tuple[str, Any]]) -> Any:
        value: Any = MISSING
        for command in pipe.commands:
            value = self.command(command, dot, scope, value)
        for name in pipe.decl:
            self.set_variable(scope, name, value, pipe.assign)
        return value

    def command(self, command: Command, dot: Any, scope: list[tuple[str, Any]], final: Any) -> Any:
        first, args = command.args[0], command.args[1:]
        if isinstance(first, IdentNode):
            return self.call(first.name, args, dot, scope, final)
        if args or final is not MISSING:
            if isinstance(first, (FieldNode, VariableNode, ChainNode)):
                raise TemplateRuntimeError(f"{self.describe(first)} is not a method but has arguments")
            raise TemplateRuntimeError(f"can't give argument to non-function {self.describe(first)}")
        return self.argument(first, dot, scope)

    def call(self, name: str, args: list, dot: Any, scope: list[tuple[str, Any]], final: Any) -> Any:
        function = self.functions[name]
        if name in LAZY:
            thunks = [lambda a=a: self.argument(a, dot, scope) for a in args]
            if final is not MISSING:
                thunks.append(lambda: final)
            return function(*thunks)
        values = [self.argument(a, dot, scope) for a in args]
        if final is not MISSING:
            values.append(final)
        if name in CONCATENATING and _text_in(values, MAX_OUTPUT) > MAX_OUTPUT:
            # checked before the call: `print $big $big ...` would build the whole text first
            raise TemplateRuntimeError(f"error calling {name}: its result would be longer than {MAX_OUTPUT} characters")
        try:
            result = function(*values)
        except TemplateRuntimeError:
            raise
        except TypeError as exc:
            raise TemplateRuntimeError(f"error calling {name}: wrong arguments ({exc})") from None
        except (ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError, RecursionError, AttributeError) as exc:
            raise TemplateRuntimeError(f"error calling {name}: {exc}") from None
        if isinstance(result, str) and len(result) > MAX_OUTPUT:  # `$x = print $x $x` in a loop doubles
            raise TemplateRuntimeError(f"error calling {name}: its result is longer than {MAX_OUTPUT} characters")
        return result

    def argument(self, node: Any, dot: Any, scope: list[tuple[str, Any]]) -> Any:
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NilNode):
            return None
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, FieldNode):
            return self.fields(dot, node.names)
        if isinstance(node, VariableNode):
            return self.fields(self.variable(scope, node.name), node.names)
        if isinstance(node, ChainNode):
            return self.fields(self.argument(node.node, dot, scope), node.names)
        if isinstance(node, IdentNode):
            return self.call(node.name, [], dot, scope, MISSING)
        if isinstance(node, Pipe):
            inner = list(scope)
            return self.pipeline(node, dot, inner)
        raise TemplateRuntimeError(f"can't evaluate {node!r}")

    def fields(self, receiver: Any, names: tuple[str, ...]) -> Any:
        for name in names:
            if isinstance(receiver, GoStruct):
                if name not in receiver.fields:
                    raise TemplateRuntimeError(f"can't evaluate field {name} in type {receiver.type_name}")
                receiver = receiver.fields[name]
            elif isinstance(receiver, dict):
                receiver = receiver.get(name)  # a missing key is nothing (`<no value>`)
            elif receiver is None:
                return None  # a field of nothing is nothing, as Go's missing map keys chain
            else:
                raise TemplateRuntimeError(f"can't evaluate field {name} in type {_type_name(receiver)}")
        return receiver

    def describe(self, node: Any) -> str:
        if isinstance(node, FieldNode):
            return "." + ".".join(node.names)
        if isinstance(node, VariableNode):
            return node.name + "".join("." + n for n in node.names)
        if isinstance(node, Literal):
            return repr(node.value)
        return type(node).__name__


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}"}.get(type(value),
                                                                                                type(value).__name__)
