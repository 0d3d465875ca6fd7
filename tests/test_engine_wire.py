"""Serialised caches: corrupt, truncated, mismatched or foreign input is rejected, not decoded."""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.errors import UsageError
from prfaas.model.engine import Engine, RequestCache
from prfaas.model.engine.errors import WireFormatError
from prfaas.model.engine.wire import PREFIX, assemble, encode_layers, parse_header

pytestmark = pytest.mark.engine
IDS = list(range(20, 57))


@functools.cache
def engine(name: str = "qwen3.5-tiny", seed: int = 0) -> Engine:
    return Engine.from_preset(name, seed=seed)


@functools.cache
def message(dtype: torch.dtype = torch.float32) -> bytes:
    eng = engine()
    data: bytes = eng.export_cache(eng.prefill(IDS).cache, dtype).tobytes()
    return data


def _same(a: RequestCache, b: RequestCache) -> bool:
    return a.num_tokens == b.num_tokens and all(
        torch.equal(x.tensors[k], y.tensors[k])
        for x, y in zip(a.layers, b.layers, strict=True)
        for k in x.tensors
    )


def _rewrite_header(data: bytes, **changes: object) -> bytes:
    """A well-formed message (valid CRC) whose header says something else."""
    import json

    header = parse_header(data)
    end = PREFIX.size + PREFIX.unpack_from(data)[2]
    header.update(changes)
    blob = json.dumps(header).encode()
    return PREFIX.pack(b"PRFAASKV", 1, len(blob), zlib.crc32(blob)) + blob + data[end:]


def test_round_trip_is_bit_exact_for_fp32() -> None:
    eng = engine()
    original = eng.prefill(IDS).cache
    assert _same(eng.import_cache(message(), expect_tokens=IDS), original)
    assert issubclass(WireFormatError, UsageError)


@pytest.mark.parametrize(
    ("other", "seed"), [("kimi-linear-tiny", 0), ("qwen3-tiny", 0), ("qwen3.5-tiny", 1)]
)
def test_cache_of_another_model_is_rejected(other: str, seed: int) -> None:
    with pytest.raises(WireFormatError, match="cache is for model"):
        engine(other, seed).import_cache(message())


def test_other_format_version_is_rejected() -> None:
    data = bytearray(message())
    struct.pack_into("<H", data, 8, 2)
    with pytest.raises(WireFormatError, match="format version 2"):
        engine().import_cache(bytes(data))


@pytest.mark.parametrize("cut", [0, 5, PREFIX.size, PREFIX.size + 10, -1000, -1])
def test_truncated_message_is_rejected(cut: int) -> None:
    with pytest.raises(WireFormatError, match=r"truncated|wrong length|magic"):
        engine().import_cache(message()[:cut])


def test_extra_bytes_are_rejected() -> None:
    with pytest.raises(WireFormatError, match="wrong length"):
        engine().import_cache(message() + b"\0" * 8)


def test_wrong_token_count_or_shape_in_a_valid_header_is_rejected() -> None:
    header = parse_header(message())
    with pytest.raises(WireFormatError):
        engine().import_cache(_rewrite_header(message(), num_tokens=header["num_tokens"] + 1))
    layers = header["layers"]
    layers[3]["tensors"][0]["shape"][2] += 1
    with pytest.raises(WireFormatError, match="shape"):
        engine().import_cache(_rewrite_header(message(), layers=layers))


def test_cache_for_other_tokens_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="other tokens"):
        engine().import_cache(message(), expect_tokens=[*IDS[:-1], 0])


def test_not_a_cache_is_rejected() -> None:
    for junk in (b"", b"hello world, not a cache at all", b"PRFAASKV" + b"\xff" * 30):
        with pytest.raises(WireFormatError):
            engine().import_cache(junk)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_single_byte_corruption_is_rejected_or_harmless(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from([torch.float32, torch.bfloat16]))
    raw = bytearray(message(dtype))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    eng = engine()
    try:
        got = eng.import_cache(bytes(raw))
    except WireFormatError:
        return
    # Only alignment padding is outside every checksum; flipping it changes nothing decoded.
    assert _same(got, eng.import_cache(message(dtype)))


def test_streamed_layers_must_all_arrive_once() -> None:
    eng = engine()
    cache = eng.prefill(IDS).cache
    parts = [encode_layers(eng, [s], cache.num_tokens).tobytes() for s in cache.layers]
    assert _same(assemble(eng, parts), cache)
    with pytest.raises(WireFormatError, match="incomplete"):
        assemble(eng, parts[:-1])
    with pytest.raises(WireFormatError, match="twice"):
        assemble(eng, [*parts, parts[0]])
    shorter = eng.prefill(IDS[:-1]).cache
    odd = encode_layers(eng, [shorter.layers[0]], shorter.num_tokens).tobytes()
    with pytest.raises(WireFormatError, match="disagree"):
        assemble(eng, [odd, *parts[1:]])


def test_buffers_view_the_tensors_without_copies() -> None:
    eng = engine()
    cache = eng.prefill(IDS).cache
    wire = eng.export_cache(cache)
    keys = next(s for s in cache.layers if s.kind == "attention").tensors["keys"]
    owners: list[Any] = [memoryview(b).obj for b in wire.buffers[1:]]
    addresses = {
        o.__array_interface__["data"][0] for o in owners if hasattr(o, "__array_interface__")
    }
    assert keys.data_ptr() in addresses
    assert b"".join(wire.buffers) == wire.tobytes()
