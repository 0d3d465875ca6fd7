"""Stop strings cut streamed output exactly where an online check of the text so far would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.server.generation import StopMatcher

ALPHABET = "abc"


def reference(chunks: list[str], stops: tuple[str, ...]) -> tuple[str, bool]:
    """After each chunk, look for stops in all text so far; cut at the earliest one found."""
    text = ""
    for chunk in chunks:
        text += chunk
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        if hits:
            return text[: min(hits)], True
    return text, False


@settings(max_examples=300)
@given(
    chunks=st.lists(st.text(ALPHABET, max_size=5), max_size=12),
    stops=st.lists(st.text(ALPHABET, min_size=1, max_size=4), max_size=4).map(tuple),
)
def test_streamed_stop_matches_reference(chunks: list[str], stops: tuple[str, ...]) -> None:
    matcher, out, stopped = StopMatcher(stops), [], False
    for chunk in chunks:
        emitted, stopped = matcher.feed(chunk)
        out.append(emitted)
        if stopped:
            break
    if not stopped:
        out.append(matcher.flush())
    assert ("".join(out), stopped) == reference(chunks, stops)


def test_held_back_text_is_released_when_no_stop_follows() -> None:
    m = StopMatcher(("STOP",))
    assert m.feed("go ST") == ("go ", False)
    assert m.feed("ay") == ("STay", False)
    assert m.feed("xx S") == ("xx ", False)
    assert m.flush() == "S"
