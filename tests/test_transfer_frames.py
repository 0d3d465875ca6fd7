"""Frame encoding and the bounded incremental decoder (sans-IO), including fuzzing."""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.transfer import frames as fr
from prfaas.transfer.errors import FrameError, ProtocolError

U8, U16, U32, U64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))
LAYER = st.integers(0, fr.MAX_LAYERS - 1)
LENGTH = st.integers(1, fr.MAX_CHUNK_BYTES)
TEXT = st.text(max_size=60)

B16, B32 = st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32)

FRAMES = st.one_of(
    st.builds(fr.Hello, B16, B32, U16),
    st.builds(fr.Challenge, B32, B32),
    st.builds(fr.Auth, B32),
    st.builds(fr.AuthOk, U32, U32, U64),
    st.builds(
        fr.Begin, U64, st.integers(0, fr.MAX_LAYERS), U64,
        st.integers(fr.MIN_CHUNK_BYTES, fr.MAX_CHUNK_BYTES), U8, TEXT,
    ),
    st.builds(fr.Layer, U64, LAYER, U64),
    st.builds(fr.Ack, U64, LAYER, U64, LENGTH),
    st.builds(fr.Nack, U64, LAYER, U64, LENGTH, U8),
    st.builds(fr.Commit, U64, st.integers(1, fr.MAX_LAYERS), U64),
    st.builds(fr.Committed, U64, U64),
    st.builds(fr.Abort, U64, TEXT),
    st.builds(fr.Error, U16, TEXT),
)  # fmt: skip


@given(FRAMES, st.integers(1, 64))
def test_every_frame_round_trips_under_any_split(frame: fr.Frame, step: int) -> None:
    wire = fr.encode(frame)
    dec = fr.FrameDecoder()
    out: list[object] = []
    for i in range(0, len(wire), step):
        out += dec.feed(wire[i : i + step])
    assert out == [frame]
    assert dec.want() == fr.HEADER_BYTES


def test_data_payload_is_handed_out_as_views_and_accounted() -> None:
    payload = bytes(range(256)) * 40
    hdr = fr.encode(fr.Data(7, 3, 8192, len(payload), 1234))
    dec = fr.FrameDecoder()
    events = dec.feed(hdr + payload[:100])
    assert events[0] == fr.Data(7, 3, 8192, len(payload), 1234)
    part = events[1]
    assert isinstance(part, fr.PayloadPart) and not part.last
    assert bytes(part.data) == payload[:100]
    assert dec.in_payload and dec.want() == len(payload) - 100
    # The zero-copy path: the caller reads the rest itself and only accounts for it.
    assert dec.consume_payload(len(payload) - 200) is False
    events = dec.feed(payload[-100:] + fr.encode(fr.Committed(7, 1)))
    assert isinstance(events[0], fr.PayloadPart) and events[0].last
    assert events[1] == fr.Committed(7, 1)


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"XX" + bytes(6), "magic"),
        (fr.HEADER.pack(fr.MAGIC, 9, 1, 50), "version"),
        (fr.HEADER.pack(fr.MAGIC, fr.VERSION, 99, 0), "unknown frame type"),
        (fr.HEADER.pack(fr.MAGIC, fr.VERSION, fr.Data.TYPE, 2**32 - 1), "metadata length"),
        (fr.HEADER.pack(fr.MAGIC, fr.VERSION, fr.Auth.TYPE, 31), "metadata length"),
    ],
)
def test_bad_headers_raise_frame_errors(wire: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        fr.FrameDecoder().feed(wire)


def test_field_ranges_are_checked_before_anything_is_sized_from_them() -> None:
    huge = fr.HEADER.pack(fr.MAGIC, fr.VERSION, fr.Data.TYPE, 32) + fr._SPECS[
        fr.Data.TYPE
    ].fixed.pack(1, 0, 0, fr.MAX_CHUNK_BYTES + 1, 0)
    with pytest.raises(FrameError, match="chunk length"):
        fr.FrameDecoder().feed(huge)
    tiny_chunks = fr.encode(fr.Begin(1, 1, 0, 16, 1, "x"))
    with pytest.raises(FrameError, match="chunk size"):
        fr.FrameDecoder().feed(tiny_chunks)


def test_decoder_stays_broken_after_an_error() -> None:
    dec = fr.FrameDecoder()
    with pytest.raises(FrameError):
        dec.feed(b"garbage!")
    with pytest.raises(FrameError):
        dec.feed(fr.encode(fr.Auth(bytes(32))))


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_only_ever_raise_protocol_errors(chunks: list[bytes]) -> None:
    dec = fr.FrameDecoder()
    try:
        for chunk in chunks:
            dec.feed(chunk)
            # The internal buffer never holds more than one header plus bounded metadata.
            assert len(dec._buf) <= fr.HEADER_BYTES + fr.MAX_META_BYTES
    except ProtocolError:
        pass


@settings(max_examples=100)
@given(st.binary(min_size=8, max_size=8), st.binary(max_size=4096))
def test_random_bytes_after_a_valid_prefix_are_safe(header: bytes, rest: bytes) -> None:
    dec = fr.FrameDecoder()
    with contextlib.suppress(ProtocolError):
        dec.feed(fr.encode(fr.Layer(1, 2, 3)) + header + rest)
    assert len(dec._buf) <= fr.HEADER_BYTES + fr.MAX_META_BYTES


def test_hostile_lengths_do_not_allocate() -> None:
    """A DATA header announcing 64 MiB followed by bytes: memory stays flat (views, no buffers)."""
    dec = fr.FrameDecoder()
    hdr = fr.encode(fr.Data(1, 0, 0, fr.MAX_CHUNK_BYTES, 0))
    blob = bytes(1 << 20)
    tracemalloc.start()
    try:
        dec.feed(hdr)
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(16):
            dec.feed(blob)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert dec.in_payload
    assert grown < 64 << 10
