"""Request lifecycle: legal paths advance and stamp times; every other transition raises."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prfaas.core.lifecycle import TRANSITIONS, IllegalTransition, Phase, RequestRecord
from prfaas.core.request import RequestSpec

HAPPY = [
    Phase.ROUTED,
    Phase.PREFILL_QUEUED,
    Phase.PREFILLING,
    Phase.TRANSFERRING,
    Phase.DECODE_QUEUED,
    Phase.DECODING,
    Phase.FINISHED,
]


def _rec(output_tokens: int = 11) -> RequestRecord:
    return RequestRecord(RequestSpec("r1", 1.0, 100, output_tokens))


def test_happy_path_stamps_times_and_derives_ttft_tpot() -> None:
    rec = _rec()
    for i, phase in enumerate(HAPPY):
        rec.advance(phase, 2.0 + i)
    assert rec.phase == Phase.FINISHED
    assert rec.time(Phase.PREFILLING) == 4.0
    assert rec.ttft_s == pytest.approx(7.0 - 1.0)  # first token at decode admission
    assert rec.tpot_s == pytest.approx((8.0 - 7.0) / 10)


def test_cache_pull_path_and_rejection() -> None:
    rec = _rec()
    rec.advance(Phase.ROUTED, 1.0)
    rec.advance(Phase.CACHE_PULL, 1.0)
    rec.advance(Phase.PREFILL_QUEUED, 1.5)
    assert rec.time(Phase.CACHE_PULL) == 1.0
    rejected = _rec()
    rejected.advance(Phase.REJECTED, 1.0)
    with pytest.raises(IllegalTransition):
        rejected.advance(Phase.ROUTED, 1.0)


@pytest.mark.parametrize(
    ("src", "dst"),
    [(a, b) for a in Phase for b in Phase if b not in TRANSITIONS[a]],
)
def test_every_unlisted_transition_raises(src: Phase, dst: Phase) -> None:
    rec = _rec()
    rec.phase = src
    with pytest.raises(IllegalTransition, match=f"{src.name} -> {dst.name}"):
        rec.advance(dst, 5.0)
    assert rec.phase == src
    if dst != Phase.ARRIVED:
        assert math.isnan(rec.time(dst))


def test_single_token_output_has_no_tpot() -> None:
    rec = _rec(output_tokens=1)
    for i, phase in enumerate(HAPPY):
        rec.advance(phase, 2.0 + i)
    assert math.isnan(rec.tpot_s)


@given(st.lists(st.sampled_from(list(Phase)), max_size=12))
def test_random_walks_only_follow_the_table(steps: list[Phase]) -> None:
    rec = _rec()
    for phase in steps:
        before = rec.phase
        if phase in TRANSITIONS[before]:
            rec.advance(phase, 1.0)
            assert rec.phase == phase
        else:
            with pytest.raises(IllegalTransition):
                rec.advance(phase, 1.0)
            assert rec.phase == before


def test_request_spec_rejects_empty_lengths() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        RequestSpec("x", 0.0, 0, 5)
    with pytest.raises(ValueError, match="output_tokens"):
        RequestSpec("x", 0.0, 5, 0)
