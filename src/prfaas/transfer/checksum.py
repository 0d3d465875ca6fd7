"""Payload checksums: zlib CRC32 (always there) and XXH3-64 (much faster; needs `xxhash`).

The algorithm is negotiated per connection: the server lists what it supports in AUTH_OK and the
client picks the fastest common one. Hashers are incremental so the receiver can hash bytes as they
land (cache-hot) instead of re-reading a whole chunk before its acknowledgement.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, Protocol

_xxhash: Any
try:  # optional accelerator: ~5x zlib.crc32 on this machine
    import xxhash as _xxhash
except ImportError:  # pragma: no cover - depends on the environment
    _xxhash = None

CRC32 = 1
XXH3_64 = 2
NAMES = {CRC32: "crc32", XXH3_64: "xxh3-64"}


class Hasher(Protocol):
    def update(self, data: memoryview | bytes) -> None: ...

    def intdigest(self) -> int: ...


class _Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: memoryview | bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def intdigest(self) -> int:
        return self._value


def supported() -> int:
    """Bit mask of the algorithms this process can compute."""
    mask = 1 << CRC32
    if _xxhash is not None:
        mask |= 1 << XXH3_64
    return mask


def best_common(mask: int) -> int:
    """The fastest algorithm in both `mask` and this process's set; CRC32 is always shared."""
    common = mask & supported()
    if common & (1 << XXH3_64):
        return XXH3_64
    if common & (1 << CRC32):
        return CRC32
    raise ValueError(f"no common checksum algorithm (peer mask {mask:#x})")


def pick(mask: int, name: str | None) -> int:
    """The algorithm called `name` if both ends support it, else the best common one."""
    if name is None:
        return best_common(mask)
    ids = {v: k for k, v in NAMES.items()}
    alg = ids.get(name)
    if alg is None or not (mask & supported() & (1 << alg)):
        raise ValueError(f"checksum {name!r} is not supported by both ends")
    return alg


def new_hasher(alg: int) -> Hasher:
    if alg == CRC32:
        return _Crc32()
    if alg == XXH3_64 and _xxhash is not None:
        hasher: Hasher = _xxhash.xxh3_64()
        return hasher
    raise ValueError(f"checksum algorithm {alg} is not available here")


def one_shot(alg: int) -> Callable[[memoryview | bytes], int]:
    """A function computing the whole-buffer digest of `alg` in one call."""
    if alg == CRC32:
        return zlib.crc32
    if alg == XXH3_64 and _xxhash is not None:
        fn: Callable[[memoryview | bytes], int] = _xxhash.xxh3_64_intdigest
        return fn
    raise ValueError(f"checksum algorithm {alg} is not available here")
