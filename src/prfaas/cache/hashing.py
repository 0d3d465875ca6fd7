"""Chained block hashes: one definition shared by the engine, the simulator and the router.

A block's hash folds in its parent's hash, so equal hashes imply equal *prefixes*, not just equal
blocks. That makes "longest matching prefix" a walk over leading blocks with no token comparison.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections.abc import Sequence

ROOT_HASH = 0
_PARENT = struct.Struct("<Q")


def _digest(parent: int, payload: bytes) -> int:
    h = hashlib.blake2b(_PARENT.pack(parent), digest_size=8)
    h.update(payload)
    # 0 is reserved for the root so a chain can never collide with "no parent".
    return int.from_bytes(h.digest(), "little") or 1


def chain_hashes(block_ids: Sequence[int], parent: int = ROOT_HASH) -> list[int]:
    """Chain opaque block ids (e.g. Mooncake `hash_ids`) so each hash identifies a whole prefix."""
    out: list[int] = []
    for block_id in block_ids:
        parent = _digest(parent, _PARENT.pack(block_id & 0xFFFF_FFFF_FFFF_FFFF))
        out.append(parent)
    return out


def token_block_hashes(
    token_ids: Sequence[int], block_tokens: int, parent: int = ROOT_HASH
) -> list[int]:
    """Hash every *full* block of `block_tokens` tokens; a trailing partial block gets no hash."""
    if block_tokens <= 0:
        raise ValueError(f"block_tokens must be positive, got {block_tokens}")
    tokens = array("q", token_ids)
    raw = tokens.tobytes()
    step = block_tokens * tokens.itemsize
    out: list[int] = []
    for start in range(0, len(tokens) // block_tokens * step, step):
        parent = _digest(parent, raw[start : start + step])
        out.append(parent)
    return out
