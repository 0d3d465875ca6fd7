"""Exact accounting: bytes held after prefill == StateSpec.kv_bytes(l), compute and wire dtype."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.model.engine import PRESETS, Engine, LayerState
from prfaas.model.engine.cache_ops import LINEAR
from prfaas.model.engine.hf_spec import count_params
from prfaas.model.engine.prefix_cache import EnginePrefixCache
from prfaas.model.presets import get_model

pytestmark = pytest.mark.engine
PRESET_NAMES = sorted(PRESETS)
FIXED_LENGTHS = [1, 2, 3, 63, 64, 65, 128, 200]


@functools.cache
def engine(name: str) -> Engine:
    return Engine.from_preset(name, seed=0)


def _check_length(eng: Engine, length: int) -> None:
    spec = eng.state_spec
    ids = [(7 * i) % 256 for i in range(length)]
    result = eng.prefill(ids)
    assert result.cache.nbytes == spec.kv_bytes(length)
    for dtype, kv_bytes in ((torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)):
        wire = eng.export_cache(result.cache, dtype)
        tensors = [t for rec in wire.header["layers"] for t in rec["tensors"]]
        held = sum(t["nbytes"] for t in tensors)
        assert held == spec.with_dtypes(kv=kv_bytes, conv=kv_bytes).kv_bytes(length)
        # What goes on the wire: prefix + header + tensors + < 64 B alignment each.
        assert 0 <= wire.header["payload_bytes"] - held < 64 * len(tensors)
        assert wire.total_bytes == sum(b.nbytes for b in wire.buffers)


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("length", FIXED_LENGTHS)
def test_bytes_held_after_prefill_equal_state_spec(name: str, length: int) -> None:
    _check_length(engine(name), length)


@pytest.mark.parametrize("name", PRESET_NAMES)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(length=st.integers(1, 300))
def test_bytes_held_equal_state_spec_for_any_length(name: str, length: int) -> None:
    _check_length(engine(name), length)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_transformers_cache_holds_only_one_extra_conv_column_per_linear_layer(name: str) -> None:
    """transformers keeps `kernel` conv columns; the engine keeps and ships kernel-1 (vLLM's
    layout) because the oldest column is never read. Nothing else differs."""
    from transformers import DynamicCache

    from prfaas.model.engine.cache_ops import build_cache, cache_nbytes

    eng = engine(name)
    result = eng.prefill(list(range(50)))
    hf: DynamicCache = build_cache(eng.config, result.cache.layers, 50)
    extra = sum(s.tensors["conv"].shape[1] * 4 for s in result.cache.layers if s.kind == LINEAR)
    assert cache_nbytes(hf) == eng.state_spec.kv_bytes(50) + extra


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_json_equals_the_transformers_config_derivation(name: str) -> None:
    eng = engine(name)
    preset = get_model(name)
    assert preset.spec == eng.state_spec
    total, active = count_params(eng.model)
    assert (preset.params_total, preset.params_active) == (total, active)


def test_hybrid_presets_hold_far_less_than_the_dense_baseline() -> None:
    dense = get_model("qwen3-tiny").spec
    for name in ("qwen3.5-tiny", "kimi-linear-tiny"):
        hybrid = get_model(name).spec
        for length in (1024, 8192, 32768):
            assert hybrid.kv_bytes(length) * 3 < dense.kv_bytes(length)
        assert hybrid.fixed_bytes > 0 and dense.fixed_bytes == 0


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_pool_bytes_equal_the_tensors_it_holds(name: str) -> None:
    eng = engine(name)
    cache = EnginePrefixCache(eng, 1 << 30, block_tokens=16, checkpoint_every_blocks=2)
    blocks: list[tuple[tuple[torch.Tensor, torch.Tensor], ...]] = []
    states: list[tuple[LayerState, ...]] = []
    insert = cache.pool.insert

    def spy(hashes, kv_payloads=None, state_payloads=None):  # type: ignore[no-untyped-def]
        fresh = [h not in cache.pool for h in hashes]
        blocks.extend(p for p, new in zip(kv_payloads, fresh, strict=True) if new)
        states.extend(
            p
            for i, p in (state_payloads or {}).items()
            if fresh[i] or cache.pool.peek(hashes[: i + 1]).usable_blocks <= i
        )
        return insert(hashes, kv_payloads, state_payloads)

    cache.pool.insert = spy  # type: ignore[method-assign]
    ids = [(3 * i) % 256 for i in range(90)]
    cache.prefill(ids)
    cache.prefill([*ids[:40], *range(100, 150)])  # shares 2 blocks, adds new ones
    kv_held = sum(t.numel() * t.element_size() for blk in blocks for pair in blk for t in pair)
    state_held = sum(s.nbytes for group in states for s in group)
    assert kv_held + state_held == cache.pool.used_bytes > 0
    spec = eng.state_spec
    assert kv_held == len(blocks) * 16 * spec.bytes_per_token
    assert state_held == len(states) * spec.fixed_bytes
