"""The functions a template may call: Go's builtins, and the part of sprig that computes on
its arguments alone. Sprig's `env`, `expandenv`, `getHostByName`, the clock and random
functions are left out on purpose: a template is data, it reaches no environment, file,
network or Python object, and the same conversation always renders the same prompt."""

from __future__ import annotations

import base64
import hashlib
import html as html_module
import re
import urllib.parse
from typing import Any, Callable

from localhost_ai.config.gotemplate.errors import TemplateRuntimeError
from localhost_ai.config.gotemplate.values import GoStruct, format_value, is_true, to_json

# -- fmt ----------------------------------------------------------------------------------


def _nil_aware(value: Any) -> str:
    return format_value(value, top=False)


def sprint(*args: Any) -> str:
    """fmt.Sprint: a space between two operands when neither is a string."""
    out = ""
    for index, arg in enumerate(args):
        if index and not isinstance(arg, str) and not isinstance(args[index - 1], str):
            out += " "
        out += _nil_aware(arg)
    return out


def sprintln(*args: Any) -> str:
    return " ".join(_nil_aware(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")


_GO_CONTROL_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


def _quote(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif char in _GO_CONTROL_ESCAPES:
            out.append(_GO_CONTROL_ESCAPES[char])
        elif not char.isprintable():
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def sprintf(template: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %q %d %t %f %e %g %x %X %c %%, with
    flags, width and precision; a verb of the wrong type prints as Go does, `%!d(string=x)`."""
    out: list[str] = []
    position = 0
    next_arg = 0
    for match in _VERB.finditer(template):
        out.append(template[position:match.start()])
        position = match.end()
        flags, width, precision, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if next_arg >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[next_arg]
        next_arg += 1
        out.append(_pad(_verb(verb, arg, precision), flags, width))
    out.append(template[position:])
    if next_arg < len(args):
        extra = ", ".join(f"{_go_type(a)}={_nil_aware(a)}" for a in args[next_arg:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(value), type(value).__name__)


def _verb(verb: str, arg: Any, precision: str | None) -> str:
    if precision is not None and precision != "*" and int(precision) > 1_000_000:
        return "%!(BADPREC)"
    bad = f"%!{verb}(<nil>)" if arg is None else f"%!{verb}({_go_type(arg)}={_nil_aware(arg)})"
    if verb == "v":
        return _nil_aware(arg)
    if verb == "s":
        if isinstance(arg, (str, list, dict, tuple, GoStruct)) or arg is None:
            text = _nil_aware(arg) if arg is not None else "%!s(<nil>)"
            return text[:int(precision)] if precision is not None and isinstance(arg, str) else text
        return bad
    if verb == "q":
        return _quote(arg) if isinstance(arg, str) else bad
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else bad
    if verb in "dxXoc" and isinstance(arg, int) and not isinstance(arg, bool):
        if verb == "c":
            return chr(arg)
        return {"d": str(arg), "x": format(arg, "x"), "X": format(arg, "X"), "o": format(arg, "o")}[verb]
    if verb in "xX" and isinstance(arg, str):
        encoded = arg.encode().hex()
        return encoded.upper() if verb == "X" else encoded
    if verb in "feEgG" and isinstance(arg, (int, float)) and not isinstance(arg, bool) and isinstance(arg, float):
        digits = int(precision) if precision is not None else (6 if verb in "feE" else -1)
        if verb in "gG" and digits < 0:
            return _nil_aware(arg)
        return format(arg, f".{digits}{verb}")
    return bad


def _pad(text: str, flags: str, width: str | None) -> str:
    if not width or width == "*":
        return text
    size = int(width)
    if size > 1 << 16:
        raise TemplateRuntimeError(f"error calling printf: width {size} is too large")
    if "-" in flags:
        return text.ljust(size)
    if "0" in flags and text.lstrip("-").replace(".", "", 1).isdigit():
        sign = "-" if text.startswith("-") else ""
        return sign + text.lstrip("-").rjust(size - len(sign), "0")
    return text.rjust(size)


# -- Go's builtins --------------------------------------------------------------------------


def _and(*thunks: Callable[[], Any]) -> Any:
    value = None
    for thunk in thunks:
        value = thunk()
        if not is_true(value):
            return value
    return value


def _or(*thunks: Callable[[], Any]) -> Any:
    value = None
    for thunk in thunks:
        value = thunk()
        if is_true(value):
            return value
    return value


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))  # Go counts a string's bytes
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    raise TemplateRuntimeError(f"error calling len: len of type {_go_type(value)}")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if value is None:
            raise TemplateRuntimeError("error calling index: index of untyped nil")
        if isinstance(value, dict):
            value = value.get(key, getattr(value, "zero", None))  # a typed map's zero value, e.g. "" for strings
        elif isinstance(value, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateRuntimeError(f"error calling index: cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(value):
                raise TemplateRuntimeError(f"error calling index: index out of range: {key}")
            value = value[key] if not isinstance(value, str) else value.encode()[key]
        else:
            raise TemplateRuntimeError(f"error calling index: can't index item of type {_go_type(value)}")
    return value


def _slice(value: Any, *bounds: int) -> Any:
    """sprig's slice, which takes the place of Go's builtin: lists only."""
    if not isinstance(value, (list, tuple)):
        raise TemplateRuntimeError(f"error calling slice: list should be type of slice or array but {_go_type(value)}")
    if len(bounds) > 2:
        raise TemplateRuntimeError("error calling slice: too many slice indexes")
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(value)
    if not 0 <= start <= end <= len(value):
        raise TemplateRuntimeError(f"error calling slice: index out of range: {start}:{end}")
    return value[start:end]


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise TemplateRuntimeError("error calling eq: missing argument for comparison")
    for other in others:
        a, b = _kind(first), _kind(other)
        if a != b:
            if a != "nil" and b != "nil":
                raise TemplateRuntimeError("error calling eq: incompatible types for comparison")
            continue
        if a == "other":
            raise TemplateRuntimeError(f"error calling eq: non-comparable type {_go_type(first)}")
        if first == other:
            return True
    return False


def _ordered(name: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(a: Any, b: Any) -> bool:
        if _kind(a) != _kind(b):
            raise TemplateRuntimeError(f"error calling {name}: incompatible types for comparison")
        if _kind(a) not in ("int", "float", "string"):
            raise TemplateRuntimeError(f"error calling {name}: invalid type for comparison")
        return compare(a, b)
    return check


def _js(value: Any) -> str:
    text = _nil_aware(value)
    escapes = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}
    return "".join(escapes.get(c, c if c.isprintable() else f"\\u{ord(c):04X}") for c in text)


def _html(*args: Any) -> str:
    return html_module.escape(sprint(*args), quote=True).replace("&#x27;", "&#39;").replace("\0", "\uFFFD")


BUILTINS: dict[str, Callable[..., Any]] = {
    "and": _and, "or": _or, "not": lambda value: not is_true(value), "len": _length, "index": _index,
    "print": sprint, "printf": sprintf, "println": sprintln,
    "eq": _eq, "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered("lt", lambda a, b: a < b), "le": _ordered("le", lambda a, b: a <= b),
    "gt": _ordered("gt", lambda a, b: a > b), "ge": _ordered("ge", lambda a, b: a >= b),
    "html": _html, "js": lambda *args: _js(sprint(*args)),
    "urlquery": lambda *args: urllib.parse.quote_plus(sprint(*args)),
}

# -- sprig ----------------------------------------------------------------------------------


def strval(value: Any) -> str:
    """sprig's strval: a string as it is, anything else as %v."""
    return value if isinstance(value, str) else _nil_aware(value)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [strval(v) for v in value if v is not None]
    return [strval(value)]


def _wrap(number: int) -> int:
    """Go's int64: arithmetic wraps instead of growing without bound."""
    return ((number + (1 << 63)) % (1 << 64)) - (1 << 63)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return _wrap(int(value)) if value == value and abs(value) != float("inf") else 0
    if isinstance(value, int):
        return _wrap(value)
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                return 0
    return 0


def _float(value: Any) -> float:
    try:
        return float(value) if not isinstance(value, (list, dict, GoStruct)) and value is not None else 0.0
    except ValueError:
        return 0.0


def _empty(value: Any) -> bool:
    return not is_true(value)


def _default(default: Any, *given: Any) -> Any:
    return default if not given or _empty(given[0]) else given[0]


def _indent(spaces: int, text: str) -> str:
    if spaces * (text.count("\n") + 1) > 1 << 20:
        raise TemplateRuntimeError("error calling indent: the result would be too long")
    pad = " " * spaces
    return pad + text.replace("\n", "\n" + pad)


def _dict(*pairs: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for index in range(0, len(pairs), 2):
        result[strval(pairs[index])] = pairs[index + 1] if index + 1 < len(pairs) else ""
    return result


def _split(separator: str, text: str) -> dict[str, str]:
    return {f"_{i}": part for i, part in enumerate(text.split(separator))}


def _list_of(value: Any, name: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TemplateRuntimeError(f"error calling {name}: cannot find {name} on type {_go_type(value)}")


def _first(value: Any) -> Any:
    items = _list_of(value, "first")
    return items[0] if items else None


def _last(value: Any) -> Any:
    items = _list_of(value, "last")
    return items[-1] if items else None


def _div(a: Any, b: Any) -> int:
    a, b = _int(a), _int(b)
    if b == 0:
        raise TemplateRuntimeError("error calling div: integer divide by zero")
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient  # Go truncates toward zero


def _mod(a: Any, b: Any) -> int:
    a, b = _int(a), _int(b)
    if b == 0:
        raise TemplateRuntimeError("error calling mod: integer divide by zero")
    return a - _div(a, b) * b


def _repeat(count: int, text: str) -> str:
    if count * len(text) > 1 << 20:
        raise TemplateRuntimeError("error calling repeat: the result would be too long")
    return text * max(0, count)


def _go_separator(char: str) -> bool:
    """strings.Title's word boundary: ASCII letters, digits and `_` join a word, other ASCII
    parts words; beyond ASCII, letters and digits join and only spaces part."""
    if char <= "\x7f":
        return not (char.isalnum() or char == "_")
    return not (char.isalpha() or char.isdigit()) and char.isspace()


def _title(text: str) -> str:
    """sprig's title (Go's strings.Title): each word's first letter in title case."""
    out, previous = [], " "
    for char in text:
        titled = char.title() if _go_separator(previous) else char
        out.append(titled if len(titled) == 1 else char.upper() if len(char.upper()) == 1 else char)
        previous = char
    return "".join(out)


def _bytes_slice(text: Any, start: int, end: int | None = None) -> str:
    """Go's s[start:end]: bytes (a cut inside a character leaves U+FFFD), and a panic
    outside the string."""
    data = strval(text).encode("utf-8")
    stop = len(data) if end is None else end
    if not 0 <= start <= stop <= len(data):
        raise ValueError(f"runtime error: slice bounds out of range [{start}:{stop}] with length {len(data)}")
    return data[start:stop].decode("utf-8", errors="replace")


def _substr(start: int, end: int, text: Any) -> str:
    size = len(strval(text).encode("utf-8"))
    if start < 0:
        return _bytes_slice(text, 0, end)
    if end < 0 or end > size:
        return _bytes_slice(text, start)
    return _bytes_slice(text, start, end)


def _trunc(count: int, text: Any) -> str:
    size = len(strval(text).encode("utf-8"))
    if count < 0 and size + count > 0:
        return _bytes_slice(text, size + count)
    if count >= 0 and size > count:
        return _bytes_slice(text, 0, count)
    return strval(text)


def _has(item: Any, value: Any) -> bool:
    """Only a plain value is looked for: comparing lists that share their parts is unbounded work."""
    if isinstance(item, (list, tuple, dict, GoStruct)):
        raise TemplateRuntimeError("error calling has: only a string, number, bool or nil can be looked for")
    return any(type(x) is type(item) and x == item for x in _list_of(value, "has"))


def _sized(total: int, name: str) -> None:
    if total > 1 << 20:
        raise TemplateRuntimeError(f"error calling {name}: the result would be too long")


def _replace(old: str, new: str, text: Any) -> str:
    text = strval(text)
    _sized(len(text) + (text.count(old) if old else len(text) + 1) * max(0, len(new) - len(old)), "replace")
    return text.replace(old, new)


def _join(separator: str, value: Any) -> str:
    parts = _strings(value)
    _sized(sum(map(len, parts)) + len(separator) * max(0, len(parts) - 1), "join")
    return separator.join(parts)


def _fail(message: str) -> None:
    raise TemplateRuntimeError(f"error calling fail: {message}")


SPRIG: dict[str, Callable[..., Any]] = {
    # strings
    "trim": lambda s: strval(s).strip(" \t\n\r\v\f\x85\xa0"), "trimAll": lambda cut, s: strval(s).strip(cut),
    "trimPrefix": lambda prefix, s: strval(s)[len(prefix):] if strval(s).startswith(prefix) else strval(s),
    "trimSuffix": lambda suffix, s: strval(s)[:-len(suffix)] if suffix and strval(s).endswith(suffix) else strval(s),
    "upper": lambda s: strval(s).upper(), "lower": lambda s: strval(s).lower(),
    "title": lambda s: _title(strval(s)),
    "contains": lambda sub, s: sub in strval(s), "hasPrefix": lambda p, s: strval(s).startswith(p),
    "hasSuffix": lambda p, s: strval(s).endswith(p),
    "replace": _replace, "repeat": _repeat, "substr": _substr,
    "trunc": _trunc, "nospace": lambda s: re.sub(r"\s", "", strval(s)), "indent": _indent,
    "nindent": lambda spaces, text: "\n" + _indent(spaces, text),
    "quote": lambda *args: " ".join(_quote(strval(a)) for a in args if a is not None),
    "squote": lambda *args: " ".join(f"'{strval(a)}'" for a in args if a is not None),
    "cat": lambda *args: " ".join(strval(a) for a in args if a is not None),
    "toString": strval, "toStrings": _strings, "join": _join,
    "split": _split, "splitList": lambda sep, text: text.split(sep),
    "b64enc": lambda s: base64.b64encode(strval(s).encode()).decode(),
    "b64dec": lambda s: base64.b64decode(strval(s).encode()).decode(errors="replace"),
    "sha256sum": lambda s: hashlib.sha256(strval(s).encode()).hexdigest(),
    # JSON
    "toJson": lambda v: to_json(v), "mustToJson": lambda v: to_json(v),
    "toPrettyJson": lambda v: to_json(v, indent="  "), "mustToPrettyJson": lambda v: to_json(v, indent="  "),
    "toRawJson": lambda v: to_json(v, html=False),
    # defaults and logic
    "default": _default, "empty": _empty, "coalesce": lambda *args: next((a for a in args if not _empty(a)), None),
    "ternary": lambda yes, no, condition: yes if condition else no, "fail": _fail,
    # numbers
    "add": lambda *args: _wrap(sum(_int(a) for a in args)), "add1": lambda a: _wrap(_int(a) + 1),
    "sub": lambda a, b: _wrap(_int(a) - _int(b)), "mul": lambda *args: _product(args), "div": _div, "mod": _mod,
    "max": lambda first, *rest: max([_int(first)] + [_int(r) for r in rest]),
    "min": lambda first, *rest: min([_int(first)] + [_int(r) for r in rest]),
    "int": _int, "int64": _int, "atoi": _int, "float64": _float,
    # lists and dicts
    "list": lambda *items: list(items), "slice": _slice, "first": _first, "last": _last,
    "rest": lambda v: _list_of(v, "rest")[1:], "initial": lambda v: _list_of(v, "initial")[:-1],
    "append": lambda v, item: _list_of(v, "append") + [item], "push": lambda v, item: _list_of(v, "push") + [item],
    "has": _has,
    "dict": _dict, "hasKey": lambda d, key: isinstance(d, dict) and key in d,
    "get": lambda d, key: d.get(key, "") if isinstance(d, dict) else "",
    "keys": lambda *ds: [k for d in ds for k in d], "pluck": lambda key, *ds: [d[key] for d in ds if key in d],
}


def _product(args: tuple) -> int:
    result = 1
    for arg in args:
        result = _wrap(result * _int(arg))
    return result


FUNCTIONS: dict[str, Callable[..., Any]] = {**BUILTINS, **SPRIG}  # sprig's win, as Funcs() does over builtins
