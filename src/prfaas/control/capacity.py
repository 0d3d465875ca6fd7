"""Link capacity from transfer telemetry: the configured rate, or the goodput at saturation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prfaas.control.window import LinkSample

SATURATED_BACKLOG_S = 0.1  # a backlog worth this long at the configured rate means "saturated"
MIN_SATURATED = 5  # samples at saturation before goodput may lower the estimate


@dataclass(frozen=True, slots=True)
class LinkEstimate:
    gbps: float
    samples: int
    source: str  # configured | window | goodput


def estimate_link(samples: Sequence[LinkSample], configured_gbps: float) -> LinkEstimate:
    """Mean configured capacity over the window; when the link was saturated often enough, the
    median goodput then, if lower (the configured rate is an upper bound)."""
    if not samples:
        return LinkEstimate(configured_gbps, 0, "configured")
    cap = float(np.mean([s.capacity_gbps for s in samples]))
    saturated = [
        s.egress_gbps
        for s in samples
        if s.capacity_gbps > 0
        and s.backlog_bytes * 8 / 1e9 >= SATURATED_BACKLOG_S * s.capacity_gbps
    ]
    if len(saturated) >= MIN_SATURATED:
        goodput = float(np.median(saturated))
        if 0 < goodput < cap:
            return LinkEstimate(goodput, len(samples), "goodput")
    return LinkEstimate(cap, len(samples), "window")
