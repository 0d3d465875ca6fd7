"""The engine over the hybrid prefix-cache pool: exact resumes, checkpoints, eviction."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.cache.pool import CacheEvent
from prfaas.model.engine import PRESETS, Engine
from prfaas.model.engine.prefix_cache import EnginePrefixCache

pytestmark = pytest.mark.engine
BLOCK = 8


@functools.cache
def engine(name: str) -> Engine:
    return Engine.from_preset(name, seed=0)


@pytest.mark.parametrize("name", sorted(PRESETS))
@settings(max_examples=5, deadline=None, derandomize=True)
@given(shared=st.integers(0, 60), extra=st.integers(1, 30), every=st.integers(1, 3))
def test_resumed_prefill_gives_one_pass_logits(
    name: str, shared: int, extra: int, every: int
) -> None:
    eng = engine(name)
    block = 2 * BLOCK  # few chunks: each KDA forward has a fixed ~50 ms cost on this CPU
    cache = EnginePrefixCache(eng, 64 << 20, block_tokens=block, checkpoint_every_blocks=every)
    first = [(5 * i + 1) % 256 for i in range(70)]
    cache.prefill(first)
    second = first[:shared] + [(11 * i + 3) % 256 for i in range(extra)]
    match = cache.match(second)
    result = cache.prefill(second, all_logits=True)
    assert result.reused_tokens == match.usable_tokens
    assert result.reused_tokens % block == 0 and result.reused_tokens <= shared
    assert result.reused_tokens < len(second)
    whole = eng.prefill(second, all_logits=True)
    torch.testing.assert_close(
        result.logits, whole.logits[result.reused_tokens :], atol=1e-4, rtol=0
    )


def test_hybrid_reuse_stops_at_the_last_state_checkpoint() -> None:
    """KV blocks match further than the last linear-state checkpoint; only the latter is used."""
    eng = engine("qwen3.5-tiny")
    cache = EnginePrefixCache(eng, 64 << 20, block_tokens=BLOCK, checkpoint_every_blocks=4)
    ids = [(3 * i) % 256 for i in range(61)]  # 7 full blocks; checkpoints after blocks 4 and 7
    cache.prefill(ids)
    probe = [*ids[:50], 1, 2, 3]  # shares 6 full blocks
    match = cache.match(probe)
    assert (match.kv_blocks, match.usable_blocks) == (6, 4)
    assert cache.prefill(probe).reused_tokens == 4 * BLOCK


def test_dense_reuse_needs_no_checkpoint() -> None:
    eng = engine("qwen3-tiny")
    cache = EnginePrefixCache(eng, 64 << 20, block_tokens=BLOCK, checkpoint_every_blocks=4)
    ids = [(3 * i) % 256 for i in range(61)]
    cache.prefill(ids)
    match = cache.match([*ids[:50], 1, 2, 3])
    assert match.kv_blocks == match.usable_blocks == 6


def test_whole_prompt_cached_still_computes_its_last_token() -> None:
    eng = engine("qwen3.5-tiny")
    cache = EnginePrefixCache(eng, 64 << 20, block_tokens=BLOCK, checkpoint_every_blocks=1)
    ids = [(3 * i) % 256 for i in range(4 * BLOCK)]
    cache.prefill(ids)
    again = cache.prefill(ids)
    assert again.reused_tokens == 3 * BLOCK
    assert again.first_token == eng.prefill(ids).first_token


def test_eviction_under_a_small_budget_keeps_results_exact_and_emits_events() -> None:
    eng = engine("qwen3.5-tiny")
    spec = eng.state_spec
    events: list[CacheEvent] = []
    budget = 6 * BLOCK * spec.bytes_per_token + 2 * spec.fixed_bytes
    cache = EnginePrefixCache(
        eng, budget, block_tokens=BLOCK, checkpoint_every_blocks=2, on_event=events.append
    )
    prompts = [[(7 * i + k) % 256 for i in range(40)] for k in range(4)]
    for p in prompts:
        result = cache.prefill(p, all_logits=True)
        whole = eng.prefill(p, all_logits=True)
        torch.testing.assert_close(
            result.logits, whole.logits[result.reused_tokens :], atol=1e-4, rtol=0
        )
        assert cache.pool.used_bytes <= budget
    kinds = {e.kind for e in events}
    assert kinds == {"stored", "evicted"}
    assert cache.pool.stats().evicted_blocks > 0


def test_transfer_reservation_covers_the_tail_and_the_state() -> None:
    eng = engine("qwen3.5-tiny")
    cache = EnginePrefixCache(eng, 64 << 20, block_tokens=BLOCK)
    result = cache.prefill(list(range(3 * BLOCK + 5)))
    before = cache.pool.used_bytes
    assert cache.reserve_transfer("r1", result)
    spec = eng.state_spec
    assert cache.pool.used_bytes - before == 5 * spec.bytes_per_token + spec.fixed_bytes
    cache.release_transfer("r1")
    assert cache.pool.used_bytes == before
