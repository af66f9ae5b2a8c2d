"""The GBNF for bounded integers spells out exactly the integers in range, checked by
reading its (small) GBNF subset as a regular expression over every number near the bounds."""

from __future__ import annotations

import re

import pytest

from localhost_ai.backends.llama_tools import MAX_INTEGER, integer_grammar, integer_range


def as_regex(grammar: str) -> re.Pattern:
    body = grammar.removesuffix(" space")
    body = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), body)
    return re.compile("^" + body.replace(" ", "") + "$")


@pytest.mark.parametrize("low, high", [
    (0, 100), (5, 5), (-20, 13), (None, -3), (7, None), (None, None), (-1005, -17), (123, 4567), (0, None),
    (-5, None), (None, 0), (10, 99), (1, 1_000_000), (None, 250), (999, 1000),
])
def test_exactly_the_integers_in_range(low, high):
    pattern = as_regex(integer_grammar(low, high))
    least = -MAX_INTEGER if low is None else low
    most = MAX_INTEGER if high is None else high
    near = set(range(max(least - 60, -30_000), min(most + 60, 30_000)))
    near |= {least - 1, least, most, most + 1, 10 ** 15, -(10 ** 15)}
    for number in near:
        assert bool(pattern.match(str(number))) == (least <= number <= most), number
    for text in ("01", "-0", "00", "+1", "", "1.0", "1e3"):
        assert not pattern.match(text), text


def test_bounds_read_from_the_schema():
    assert integer_range({"minimum": 1.5, "maximum": 9.9}) == (2, 9)
    assert integer_range({"exclusiveMinimum": -3, "exclusiveMaximum": 7}) == (-2, 6)
    assert integer_range({"minimum": 0, "exclusiveMinimum": 4}) == (5, None)
    assert integer_range({}) == (None, None)
