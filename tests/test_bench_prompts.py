"""Prompts synthesised from hash_ids: deterministic, exact lengths, and real prefix sharing."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.bench.prompts import (
    block_text,
    scaled_length,
    shared_prefix_tokens,
    synthesize_prompt,
)

ids = st.lists(st.integers(0, 50), min_size=1, max_size=8)


def common_ids(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading hash ids two requests share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_blocks_are_fixed_ascii_and_distinct() -> None:
    a = block_text(7, 64)
    assert a == block_text(7, 64) and len(a.encode()) == 64 and a.isascii()
    assert a.endswith("\n") and " " in a
    assert block_text(8, 64) != a
    assert block_text(7, 32)[:31] != "" and len(block_text(7, 32)) == 32


@settings(max_examples=200)
@given(a=ids, b=ids, block=st.integers(8, 40), data=st.data())
def test_equal_leading_ids_share_exactly_those_blocks(
    a: list[int], b: list[int], block: int, data: st.DataObject
) -> None:
    n_a = data.draw(st.integers(1, len(a) * block))
    n_b = data.draw(st.integers(1, len(b) * block))
    pa, pb = synthesize_prompt(a, n_a, block), synthesize_prompt(b, n_b, block)
    assert len(pa.encode()) == n_a and len(pb.encode()) == n_b  # 1 token = 1 byte
    common = common_ids(a, b)
    shared = shared_prefix_tokens(pa, pb)
    # at least the common blocks (cut to the shorter prompt) are shared ...
    assert shared >= min(common * block, n_a, n_b)
    # ... and a differing block differs within itself (blocks of distinct ids are distinct)
    if common < min(len(a), len(b)) and min(n_a, n_b) >= (common + 1) * block:
        assert shared < (common + 1) * block


def test_trace_like_requests_share_their_system_prompt() -> None:
    first = synthesize_prompt([0, 1, 2, 3], 1900, 512)
    second = synthesize_prompt([0, 1, 9], 1300, 512)
    other = synthesize_prompt([5, 6], 900, 512)
    assert first[:1024] == second[:1024] and first[1024:1100] != second[1024:1100]
    assert shared_prefix_tokens(first, other) < 512


def test_missing_blocks_are_filled_uniquely() -> None:
    a = synthesize_prompt([1], 100, 16, filler_id=1)
    b = synthesize_prompt([1], 100, 16, filler_id=2)
    assert len(a) == len(b) == 100 and a[:16] == b[:16] and a[16:] != b[16:]


def test_scaled_length() -> None:
    assert scaled_length(6758, 512) == 6758
    assert scaled_length(6758, 16) == round(6758 / 32)
    assert scaled_length(3, 1) == 1


def test_real_trace_prefix_sharing_survives_scaling(conversation_trace: Path) -> None:
    from prfaas.bench.workload import Shaping, trace_plan

    plan = trace_plan(
        conversation_trace,
        speedup=1.0,
        duration_s=1e9,
        limit=300,
        shaping=Shaping(tokens_per_block=16),
    )
    assert len(plan) == 300
    prompts = [p.prompt() for p in plan]
    assert all(len(t) == p.input_tokens for t, p in zip(prompts, plan, strict=True))
    checked = 0
    for a, b in itertools.pairwise(plan):
        common = common_ids(a.hash_ids, b.hash_ids)
        expected = min(common * 16, a.input_tokens, b.input_tokens)
        got = shared_prefix_tokens(prompts[a.index], prompts[b.index])
        assert got >= expected
        checked += common > 0
    assert checked > 50  # the trace really shares prefixes (its block 0 is a common system prompt)
