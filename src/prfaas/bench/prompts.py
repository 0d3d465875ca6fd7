"""Prompt text synthesised from Mooncake `hash_ids`, so equal leading ids give equal leading text.

Convention (byte-level tokens): one token is one byte of ASCII text. Each hash id maps to a fixed
block of `tokens_per_block` bytes (lowercase letters and spaces, ending in a newline so that block
boundaries are also word boundaries for BPE tokenizers; blocks under 8 bytes have no newline).
A prompt is the concatenation of its blocks, cut to its input length. Two requests whose first
k hash ids agree therefore share their first k * tokens_per_block bytes exactly: the prefix
sharing of the trace becomes real. With a byte-level tokenizer (FakeBackend, the emulated
engine) the prompt has exactly `input_tokens` tokens; a BPE tokenizer counts fewer, but the
shared prefixes stay shared.

Scaling: the trace's blocks are 512 tokens. Synthesising `tokens_per_block = B` blocks scales every
input length by B / 512 while keeping the block structure, so small CPU models get short prompts
with the trace's prefix-sharing pattern intact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

TRACE_TOKENS_PER_BLOCK = 512
MIN_TERMINATED_BLOCK = 8
# 26 letters and 6 spaces: 256 % 32 == 0, so every byte value maps evenly (mean word ~4.3 letters)
_SYMBOLS = b"abcdefghijklmnopqrstuvwxyz      "
_TABLE = bytes(_SYMBOLS[b % len(_SYMBOLS)] for b in range(256))


@lru_cache(maxsize=16_384)
def block_text(hash_id: int, tokens_per_block: int) -> str:
    """The fixed text of one block: `tokens_per_block` ASCII bytes, a function of hash_id only."""
    if tokens_per_block < 1:
        raise ValueError("tokens_per_block must be >= 1")
    seed = f"prfaas-block:{hash_id}".encode()
    text = hashlib.shake_256(seed).digest(tokens_per_block).translate(_TABLE).decode("ascii")
    # a newline ends every block of a useful size; tiny blocks keep all bytes random (distinct)
    return text[:-1] + "\n" if tokens_per_block >= MIN_TERMINATED_BLOCK else text


def scaled_length(trace_tokens: int, tokens_per_block: int) -> int:
    """A trace length in synthesised tokens: scaled by tokens_per_block / 512, at least 1."""
    return max(1, round(trace_tokens * tokens_per_block / TRACE_TOKENS_PER_BLOCK))


def synthesize_prompt(hash_ids: Sequence[int], input_tokens: int, tokens_per_block: int,
                      filler_id: int | None = None) -> str:
    """The prompt of `input_tokens` bytes built from the blocks of `hash_ids`.

    If the blocks are too few (a malformed trace line), the rest comes from blocks of `filler_id`
    (a request-unique id, so the filler is never shared).
    """
    if input_tokens < 1:
        raise ValueError("input_tokens must be >= 1")
    needed = -(-input_tokens // tokens_per_block)
    ids = list(hash_ids[:needed])
    if len(ids) < needed:
        base = filler_id if filler_id is not None else -1
        ids += [-(abs(base) * 1_000_003 + j + 1) for j in range(needed - len(ids))]
    text = "".join(block_text(h, tokens_per_block) for h in ids)
    return text[:input_tokens]


def shared_prefix_tokens(a: str, b: str) -> int:
    """Length of the common prefix of two prompts, in (byte) tokens."""
    n = min(len(a), len(b))
    lo, hi = 0, n  # binary search on prefix equality: C-speed slices, no per-char loop
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
