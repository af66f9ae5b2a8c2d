"""Stop words are never streamed, even when they arrive split across tokens."""

from localhost_ai.backends.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    out = ""
    for piece in pieces:
        out += matcher.feed(piece)
        if matcher.stopped:
            return out
    return out + matcher.flush()


def test_stop_word_split_across_pieces_is_cut():
    matcher = StopMatcher(["\nQuestion:"])
    assert feed_all(matcher, [" Paris", "\n", "Que", "stion", ":", " more"]) == " Paris"
    assert matcher.stopped


def test_possible_start_of_a_stop_word_is_held_then_released():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abc ST") == "abc "
    assert matcher.feed("ART") == "START"
    assert not matcher.stopped


def test_earliest_of_several_stop_words_wins():
    matcher = StopMatcher(["b", "a"])
    assert matcher.feed("xxab") == "xx"


def test_no_stop_words_passes_everything():
    matcher = StopMatcher(["", ""])
    assert matcher.feed("hello") == "hello"
