"""Engine decode: wire round trip keeps greedy tokens, batched == single, sampling and stops."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from prfaas.model.engine import PRESETS, Engine, SamplingParams
from prfaas.model.engine.wire import assemble, encode_layers

pytestmark = pytest.mark.engine
PRESET_NAMES = sorted(PRESETS)


@functools.cache
def engine(name: str) -> Engine:
    return Engine.from_preset(name, seed=0)


def _decode(eng: Engine, cache, first: int, params: SamplingParams) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    batch = eng.decode_batch()
    seq = batch.add("r", cache, first, params)
    while batch.active:
        batch.step()
    return tuple(seq.generated)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_generation_after_wire_round_trip_equals_uninterrupted(name: str) -> None:
    eng = engine(name)
    ids = eng.tokenizer.encode("Prefill as a service ships the cache across datacenters.")
    params = SamplingParams(max_tokens=32, ignore_eos=True)  # random weights may emit EOS
    reference = eng.generate(ids, params)
    assert len(reference.token_ids) == 32 and reference.finish_reason == "length"
    prefilled = eng.prefill(ids, params=params)
    data = eng.export_cache(prefilled.cache).tobytes()
    received = eng.import_cache(bytearray(data), expect_tokens=ids)
    assert _decode(eng, received, prefilled.first_token, params) == reference.token_ids


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_layer_by_layer_stream_rebuilds_the_same_cache(name: str) -> None:
    eng = engine(name)
    ids = list(range(60, 110))
    messages: list[bytes] = []

    def send(state):  # type: ignore[no-untyped-def]
        messages.append(encode_layers(eng, [state], len(ids), token_ids=ids).tobytes())

    prefilled = eng.prefill(ids, on_layer=send)
    assert len(messages) == len(eng.layer_kinds)
    rebuilt = assemble(eng, reversed(messages), expect_tokens=ids)  # any arrival order
    for a, b in zip(rebuilt.layers, prefilled.cache.layers, strict=True):
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in b.tensors)
    params = SamplingParams(max_tokens=12)
    assert (
        _decode(eng, rebuilt, prefilled.first_token, params) == eng.generate(ids, params).token_ids
    )


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_half_precision_wire_keeps_next_token_logits_close(name: str) -> None:
    eng = engine(name)
    ids = list(range(10, 70))
    prefilled = eng.prefill(ids)
    whole = eng.prefill([*ids, prefilled.first_token]).logits
    for dtype in (torch.bfloat16, torch.float16):
        cache = eng.import_cache(eng.export_cache(prefilled.cache, dtype).tobytes())
        resumed = eng.prefill([*ids, prefilled.first_token], cache_prefix=cache).logits
        assert (resumed - whole).abs().max().item() < 2e-2
        assert int(resumed.argmax()) == int(whole.argmax())


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("batched", [True, False])
def test_concurrent_decode_equals_single_request_decode(name: str, batched: bool) -> None:
    eng = engine(name)
    prompts = [list(range(3, 3 + n)) for n in (5, 31, 12, 20)]
    params = [
        SamplingParams(
            max_tokens=6 + 4 * i, temperature=0.8 * (i % 2), top_p=0.9, seed=i, ignore_eos=True
        )
        for i in range(len(prompts))
    ]
    singles = [eng.generate(p, sp).token_ids for p, sp in zip(prompts, params, strict=True)]
    batch = eng.decode_batch(batched=batched)
    seqs = []
    for i, (p, sp) in enumerate(zip(prompts, params, strict=True)):
        result = eng.prefill(p, params=sp)
        seqs.append(batch.add(f"r{i}", result.cache, result.first_token, sp))
        batch.step()  # requests join a batch that is already running, and leave it early
    while batch.active:
        batch.step()
    assert [tuple(s.generated) for s in seqs] == singles
    assert all(s.finish_reason == "length" for s in seqs)


def test_batched_logits_match_single_within_float_noise() -> None:
    eng = engine("qwen3.5-tiny")
    prompts = [list(range(7, 7 + n)) for n in (3, 17, 40)]
    rows = []
    batch = eng.decode_batch()
    for i, p in enumerate(prompts):
        r = eng.prefill(p)
        batch.add(str(i), r.cache, r.first_token, SamplingParams(max_tokens=4))
        rows.append(eng.prefill([*p, r.first_token]).logits)
    logits = batch._batched_forward()
    for got, want in zip(logits, rows, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    eng = engine("qwen3.5-tiny")
    ids = list(range(20, 40))
    a = eng.generate(ids, SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=11))
    b = eng.generate(ids, SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=11))
    c = eng.generate(ids, SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=12))
    greedy = eng.generate(ids, SamplingParams(max_tokens=16))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids
    assert a.token_ids != greedy.token_ids


def test_tiny_top_p_is_greedy() -> None:
    eng = engine("qwen3.5-tiny")
    ids = list(range(50, 70))
    nucleus = eng.generate(ids, SamplingParams(max_tokens=10, temperature=1.0, top_p=1e-9, seed=3))
    assert nucleus.token_ids == eng.generate(ids, SamplingParams(max_tokens=10)).token_ids


def test_stops_on_stop_string_and_on_eos() -> None:
    eng = engine("qwen3.5-tiny")
    ids = list(range(30, 50))
    free = eng.generate(ids, SamplingParams(max_tokens=20))
    stop = eng.tokenizer.decode(free.token_ids[4:6])
    assert stop
    stopped = eng.generate(ids, SamplingParams(max_tokens=20, stop=[stop]))
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text and free.text.startswith(stopped.text)
    assert len(stopped.token_ids) < 20
    # Make the 5th greedy token the EOS id: generation must stop right there.
    original = eng.eos_token_ids
    eng.eos_token_ids = frozenset({free.token_ids[4]})
    try:
        eos = eng.generate(ids, SamplingParams(max_tokens=20))
        kept = eng.generate(ids, SamplingParams(max_tokens=20, ignore_eos=True))
    finally:
        eng.eos_token_ids = original
    first_eos = free.token_ids.index(free.token_ids[4])
    assert eos.finish_reason == "stop" and eos.token_ids == free.token_ids[: first_eos + 1]
    assert kept.token_ids == free.token_ids


def test_max_tokens_one_finishes_at_prefill() -> None:
    eng = engine("qwen3-tiny")
    result = eng.generate([1, 2, 3], SamplingParams(max_tokens=1))
    assert len(result.token_ids) == 1 and result.finish_reason == "length"


def test_batched_decode_is_the_default_only_for_verified_architectures() -> None:
    from prfaas.model.engine.engine import BATCH_VERIFIED_MODEL_TYPES

    assert {engine(n).config.model_type for n in PRESET_NAMES} == BATCH_VERIFIED_MODEL_TYPES
    assert engine("qwen3.5-tiny").decode_batch().batched


def test_aborted_request_leaves_the_batch_and_others_continue() -> None:
    eng = engine("qwen3.5-tiny")
    params = SamplingParams(max_tokens=8, ignore_eos=True)
    batch = eng.decode_batch()
    seqs = []
    for i, p in enumerate(([1, 2, 3], [4, 5, 6, 7, 8])):
        r = eng.prefill(p)
        seqs.append(batch.add(str(i), r.cache, r.first_token, params))
    batch.step()
    aborted = batch.abort("0")
    assert aborted is seqs[0] and aborted.finish_reason == "abort"
    assert batch.abort("missing") is None
    while batch.active:
        batch.step()
    assert tuple(seqs[1].generated) == eng.generate([4, 5, 6, 7, 8], params).token_ids


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_equal_length_batch_without_padding_equals_single(name: str) -> None:
    eng = engine(name)
    params = SamplingParams(max_tokens=6, ignore_eos=True)
    prompts = [list(range(1, 11)), list(range(11, 21)), list(range(100, 110))]
    batch = eng.decode_batch(batched=True)
    seqs = []
    for i, p in enumerate(prompts):
        r = eng.prefill(p)
        seqs.append(batch.add(str(i), r.cache, r.first_token, params))
    while batch.active:
        batch.step()
    assert [tuple(s.generated) for s in seqs] == [
        eng.generate(p, params).token_ids for p in prompts
    ]
