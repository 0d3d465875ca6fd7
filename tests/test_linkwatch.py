"""Per-second egress from the router's cumulative link counters, and the over-capacity stretch."""

from __future__ import annotations

import pytest

from approx import assert_close
from prfaas.bench.linkwatch import LinkSample, egress_series, longest_over


def _samples(gb_per_s: list[float], caps: list[float]) -> list[LinkSample]:
    out, total = [LinkSample(0.0, "prfaas->pd", 0, caps[0])], 0.0
    for k, (gb, cap) in enumerate(zip(gb_per_s, caps, strict=True), 1):
        total += gb * 1e9 / 8
        out.append(LinkSample(float(k), "prfaas->pd", int(total), cap))
        out.append(LinkSample(float(k), "pd->prfaas", 0, cap))  # other links are ignored
    return out


def test_egress_per_interval_against_the_capacity_then() -> None:
    series = egress_series(_samples([50.0, 8.0, 12.0], [100.0, 10.0, 10.0]), "prfaas->pd")
    assert [t for t, _, _ in series] == [1.0, 2.0, 3.0]
    assert_close([e for _, e, _ in series], [50.0, 8.0, 12.0], rel=1e-6)
    assert [c for _, _, c in series] == [100.0, 10.0, 10.0]


def test_an_emulated_wall_second_is_time_scale_modelled_seconds() -> None:
    """Counters are modelled bytes: 20 Gbit of them in a wall second of a 2x engine is 10 Gbit/s."""
    series = egress_series(_samples([20.0], [10.0]), "prfaas->pd", time_scale=2.0)
    assert_close([e for _, e, _ in series], [10.0], rel=1e-6)


def test_longest_stretch_counts_only_consecutive_seconds_beyond_the_tolerance() -> None:
    caps = [10.0] * 8
    #          over  over  ok(+5%) over over over ok   over
    gbps = [12.0, 11.5, 10.5, 12.0, 13.0, 11.2, 9.0, 20.0]
    series = egress_series(_samples(gbps, caps), "prfaas->pd")
    assert longest_over(series, 0.10) == pytest.approx(3.0)
    assert longest_over(series, 1.0) == pytest.approx(0.0)
    assert longest_over([], 0.10) == pytest.approx(0.0)
