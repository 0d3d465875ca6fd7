"""Engine prefill: resume from a cached prefix, chunked and layer-wise prefill equal one pass."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.model.engine import PRESETS, Engine, LayerState
from prfaas.model.engine.errors import StateMismatchError

pytestmark = pytest.mark.engine
ATOL = 1e-4
PRESET_NAMES = sorted(PRESETS)
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True)


@functools.cache
def engine(name: str) -> Engine:
    return Engine.from_preset(name, seed=0)


@st.composite
def prompt_and_split(draw: st.DrawFn, max_len: int = 48) -> tuple[list[int], int]:
    ids = draw(st.lists(st.integers(0, 258), min_size=2, max_size=max_len))
    return ids, draw(st.integers(1, len(ids) - 1))


@pytest.mark.parametrize("name", PRESET_NAMES)
@SETTINGS
@given(case=prompt_and_split())
def test_resume_from_prefix_gives_the_logits_of_one_pass(
    name: str, case: tuple[list[int], int]
) -> None:
    ids, split = case
    eng = engine(name)
    whole = eng.prefill(ids, all_logits=True)
    prefix = eng.prefill(ids[:split])
    resumed = eng.prefill(ids, cache_prefix=prefix.cache, all_logits=True)
    assert resumed.reused_tokens == split
    assert resumed.logits.shape == (len(ids) - split, eng.vocab_size)
    torch.testing.assert_close(resumed.logits, whole.logits[split:], atol=ATOL, rtol=0)
    assert resumed.first_token == whole.first_token


@pytest.mark.parametrize("name", PRESET_NAMES)
@SETTINGS
@given(case=prompt_and_split(), chunk=st.integers(1, 20))
def test_chunked_prefill_and_checkpoints_match_one_pass(
    name: str, case: tuple[list[int], int], chunk: int
) -> None:
    ids, split = case
    eng = engine(name)
    whole = eng.prefill(ids, all_logits=True)
    chunked = eng.prefill(ids, chunk_tokens=chunk, checkpoint_at=[split], all_logits=True)
    torch.testing.assert_close(chunked.logits, whole.logits, atol=ATOL, rtol=0)
    # The checkpoint is the state at exactly `split`: resuming from it reproduces the tail.
    states = {s.index: s for s in chunked.checkpoints.get(split, ())}
    assert all(s.num_tokens == split for s in states.values())
    kv = [s for s in chunked.cache.layers if s.kind == "attention"]
    layers = tuple(
        states[i] if i in states else _cut(kv, i, split) for i in range(len(eng.layer_kinds))
    )
    from prfaas.model.engine import RequestCache

    resumed = eng.prefill(ids, cache_prefix=RequestCache(layers, split), all_logits=True)
    torch.testing.assert_close(resumed.logits, whole.logits[split:], atol=ATOL, rtol=0)


def _cut(kv: list[LayerState], index: int, n: int) -> LayerState:
    state = next(s for s in kv if s.index == index)
    tensors = {k: v[:, :, :n] for k, v in state.tensors.items()}
    return LayerState(index, "attention", n, tensors)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_layerwise_handoff_streams_each_final_layer_once_in_order(name: str) -> None:
    eng = engine(name)
    ids = list(range(40, 90))
    seen: list[LayerState] = []
    started: list[int] = []
    # A pre-hook records when each layer starts: layer i must be handed off before i+1 starts.
    handles = [
        m.register_forward_pre_hook(lambda *_a, i=i: started.append(i))
        for i, m in enumerate(eng._layers)
    ]

    def on_layer(state: LayerState) -> None:
        seen.append(state)
        started.append(-1 - state.index)

    try:
        result = eng.prefill(ids, chunk_tokens=16, on_layer=on_layer)
    finally:
        for h in handles:
            h.remove()
    assert [s.index for s in seen] == list(range(len(eng.layer_kinds)))
    last_chunk = started[-2 * len(seen) :]
    assert last_chunk == [x for i in range(len(seen)) for x in (i, -1 - i)]
    for streamed, final in zip(seen, result.cache.layers, strict=True):
        assert streamed.kind == final.kind and streamed.num_tokens == len(ids)
        for key, tensor in final.tensors.items():
            assert torch.equal(streamed.tensors[key], tensor)


@pytest.mark.parametrize("name", ["qwen3.5-tiny", "kimi-linear-tiny"])
def test_linear_state_is_never_reused_at_another_length(name: str) -> None:
    eng = engine(name)
    ids = list(range(1, 60))
    at_20 = eng.prefill(ids[:20]).cache
    at_30 = eng.prefill(ids[:30]).cache
    # KV of 30 tokens could be cut to 20, but the linear states summarise 30 tokens: refuse.
    from prfaas.model.engine import RequestCache
    from prfaas.model.engine.cache_ops import slice_prefix

    with pytest.raises(StateMismatchError, match=r"exact length|not 20"):
        slice_prefix(at_30.layers, 20)
    mixed = RequestCache(at_30.layers, 20)
    with pytest.raises(StateMismatchError, match="exact length"):
        eng.prefill(ids, cache_prefix=mixed)
    swapped = tuple(
        a if a.kind == "attention" else b for a, b in zip(at_20.layers, at_30.layers, strict=True)
    )
    with pytest.raises(StateMismatchError):
        eng.prefill(ids, cache_prefix=RequestCache(swapped, 20))
    assert eng.prefill(ids, cache_prefix=at_20).reused_tokens == 20


def test_dense_kv_can_be_cut_to_any_shorter_prefix() -> None:
    eng = engine("qwen3-tiny")
    ids = list(range(3, 50))
    from prfaas.model.engine import RequestCache
    from prfaas.model.engine.cache_ops import slice_prefix

    long_cache = eng.prefill(ids[:40]).cache
    cut = RequestCache(tuple(slice_prefix(long_cache.layers, 25)), 25)
    resumed = eng.prefill(ids, cache_prefix=cut, all_logits=True)
    whole = eng.prefill(ids, all_logits=True)
    torch.testing.assert_close(resumed.logits, whole.logits[25:], atol=ATOL, rtol=0)


def test_prefix_with_other_tokens_or_no_remaining_token_is_refused() -> None:
    eng = engine("qwen3.5-tiny")
    cache = eng.prefill([5, 6, 7, 8]).cache
    with pytest.raises(StateMismatchError, match="other tokens"):
        eng.prefill([5, 6, 9, 8, 1], cache_prefix=cache)
    with pytest.raises(StateMismatchError, match="at least one prompt token"):
        eng.prefill([5, 6, 7, 8], cache_prefix=cache)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a = Engine.from_preset("qwen3.5-tiny", seed=7)
    b = Engine.from_preset("qwen3.5-tiny", seed=7)
    c = Engine.from_preset("qwen3.5-tiny", seed=8)
    ids = [1, 2, 3, 4]
    assert torch.equal(a.prefill(ids).logits, b.prefill(ids).logits)
    assert not torch.equal(a.prefill(ids).logits, c.prefill(ids).logits)
    assert a.config_hash == b.config_hash != c.config_hash


def test_a_cancelled_prefill_stops_at_the_next_layer_boundary() -> None:
    from prfaas.model.engine.layerwise import PrefillAborted

    eng = engine("qwen3.5-tiny")
    ids = list(range(40, 90))
    asked: list[int] = []
    stop_after = len(eng._layers) + 2  # cancelled during the second chunk's third layer

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > stop_after

    seen: list[LayerState] = []
    with pytest.raises(PrefillAborted):
        eng.prefill(ids, chunk_tokens=25, on_layer=seen.append, should_stop=should_stop)
    assert len(asked) == stop_after + 1  # no layer ran after the one that saw the cancel
    # the last chunk handed off its layers 0 and 1 (KV already on its way), then stopped
    assert [s.index for s in seen] == [0, 1]
    # the hooks are gone: the engine serves the next request normally
    full = eng.prefill(ids)
    assert full.cache.num_tokens == len(ids)
