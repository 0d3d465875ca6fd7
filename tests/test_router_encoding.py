"""router/encoding.py: the edge's token count and the backend's encoding share one tokenization."""

from __future__ import annotations

import gc

from prfaas.router.encoding import OnceEncoder


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        return list(text.encode())


def test_the_same_string_is_encoded_once_and_only_reused_once() -> None:
    inner = Counting()
    enc = OnceEncoder(inner)
    prompt = "x" * 5000
    first = enc.encode(prompt)
    assert enc.encode(prompt) is first and inner.calls == 1  # the backend after the edge
    assert enc.encode(prompt) == first and inner.calls == 2  # one reuse only


def test_an_equal_but_different_string_or_an_interleaved_one_is_encoded_afresh() -> None:
    inner = Counting()
    enc = OnceEncoder(inner)
    a, b = "".join(["ab"] * 100), "".join(["ab"] * 100)  # equal, not the same object
    assert a == b and a is not b
    enc.encode(a)
    assert enc.encode(b) == tuple(b.encode()) and inner.calls == 2
    enc.encode("other")  # another request's count came in between
    assert enc.encode(a) == tuple(a.encode()) and inner.calls == 4


def test_token_ids_are_a_tuple_the_gc_stops_tracking() -> None:
    ids = OnceEncoder(Counting()).encode("y" * 100_000)
    assert isinstance(ids, tuple)
    gc.collect()
    assert not gc.is_tracked(ids)  # a list of 100K ints would be scanned by every collection
