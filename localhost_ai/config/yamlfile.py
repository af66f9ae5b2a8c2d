"""YAML read with a bound.  Anchors and aliases let a few hundred bytes stand for millions
of nodes (an alias bomb: nine aliases of nine aliases, seven deep); PyYAML builds them
shared and cheaply, but whatever walks the document afterwards (validation, copying, the
trip to a worker) pays for every one.  So the document is composed first, its nodes are
counted as if every alias were written out, and only then is it built."""

from __future__ import annotations

from typing import Any

import yaml

# A model file has a few dozen nodes; a gallery index a few hundred thousand.
MAX_NODES = 100_000
MAX_INDEX_NODES = 2_000_000


try:
    from yaml._yaml import CParser as _Events
except ImportError:  # PyYAML built without libyaml
    _Events = None
_EVENT_BASES: tuple[type, ...] = (_Events,) if _Events else (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)


class _EventLoader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver, *_EVENT_BASES):
    """libyaml's scanner and parser (five times faster: LocalAI's 2.4 MB gallery index in
    half a second), with Python's composer: libyaml's composer recurses in C, so a deeply
    nested document would crash the process, where Python's stops with a RecursionError.
    Without libyaml, Python's all through."""

    def __init__(self, stream: str | bytes) -> None:
        if _Events is not None:
            _Events.__init__(self, stream)
        else:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_Loader = _EventLoader


class YAMLTooLarge(yaml.YAMLError):
    """A document that would be too large once its aliases are written out."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_size(root: yaml.Node, limit: int) -> None:
    """Each node's size with its aliases written out, found without recursion: a node's
    size is known once its children's are, and an alias is one more use of a known node."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the chain being counted: an alias to one of them is a loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            open_nodes.discard(key)
            if sizes[key] > limit:
                raise YAMLTooLarge(f"the document has more than {limit:,} nodes once its aliases are written out")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YAMLTooLarge("an alias refers to a node that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


# Go's YAML (LocalAI's) reads \' in a double-quoted string as ', where libyaml refuses it;
# LocalAI's own gallery files use it.  Each one is mended where the scanner stops, and the
# document read again: a file with more than this many is refused as libyaml refuses it.
MAX_GO_ESCAPES = 64


def _go_escape(text: str | bytes, error: yaml.MarkedYAMLError) -> str | None:
    """The text with the \' the scanner stopped at turned into ', or None."""
    mark = error.problem_mark
    if mark is None or "unknown escape character" not in str(error.problem):
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    at = mark.index
    for backslash in (at, at - 1):  # libyaml marks the backslash, Python's scanner the character after it
        if 0 <= backslash and text[backslash:backslash + 2] == "\\'":
            return text[:backslash] + text[backslash + 1:]
    return None


def load(text: str | bytes, max_nodes: int = MAX_NODES) -> Any:
    """`yaml.safe_load`, refusing a document larger than `max_nodes` (YAMLTooLarge), and
    reading Go's \' escape as LocalAI does."""
    for _ in range(MAX_GO_ESCAPES):
        try:
            return _load(text, max_nodes)
        except yaml.scanner.ScannerError as exc:
            mended = _go_escape(text, exc)
            if mended is None:
                raise
            text = mended
    return _load(text, max_nodes)


def _load(text: str | bytes, max_nodes: int) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, max_nodes)
        return loader.construct_document(node)
    except RecursionError:
        raise YAMLTooLarge("the document nests too deeply") from None
    finally:
        loader.dispose()
