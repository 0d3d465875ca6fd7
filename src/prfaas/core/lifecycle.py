"""Request lifecycle: phases, the legal transitions between them, and per-request timestamps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import IntEnum

from prfaas.core.request import RequestSpec


class Phase(IntEnum):
    """Where a request is. Entry times are recorded per phase; metrics derive from them."""

    ARRIVED = 0
    ROUTED = 1
    CACHE_PULL = 2  # waiting for a cross-cluster prefix-cache pull before prefill
    PREFILL_QUEUED = 3
    PREFILLING = 4
    TRANSFERRING = 5  # prefill done; the KV tail is still on the wire (layer-wise pipelining)
    DECODE_QUEUED = 6  # KV at the decode node; waiting for a batch slot and KV memory
    DECODING = 7  # admitted: the first token is emitted at this instant
    FINISHED = 8
    REJECTED = 9  # refused with a reason (e.g. larger than any decode node's KV memory)


TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    Phase.ARRIVED: frozenset({Phase.ROUTED, Phase.REJECTED}),
    Phase.ROUTED: frozenset({Phase.CACHE_PULL, Phase.PREFILL_QUEUED, Phase.REJECTED}),
    Phase.CACHE_PULL: frozenset({Phase.PREFILL_QUEUED}),
    Phase.PREFILL_QUEUED: frozenset({Phase.PREFILLING}),
    Phase.PREFILLING: frozenset({Phase.TRANSFERRING}),
    Phase.TRANSFERRING: frozenset({Phase.DECODE_QUEUED}),
    Phase.DECODE_QUEUED: frozenset({Phase.DECODING}),
    Phase.DECODING: frozenset({Phase.FINISHED}),
    Phase.FINISHED: frozenset(),
    Phase.REJECTED: frozenset(),
}

# Flattened once so the hot path is a single set lookup on small ints.
_ALLOWED: frozenset[tuple[int, int]] = frozenset(
    (int(a), int(b)) for a, targets in TRANSITIONS.items() for b in targets
)
_N_PHASES = len(Phase)


class IllegalTransition(RuntimeError):
    """A request tried to move between phases the lifecycle does not connect (a bug)."""


class RequestRecord:
    """Mutable per-request state: current phase, entry time of each phase, where it ran."""

    __slots__ = (
        "decode_node",
        "kv_bytes",
        "offloaded",
        "phase",
        "prefill_cluster",
        "prefill_node",
        "prefix_tokens",
        "pulled_bytes",
        "reason",
        "spec",
        "times",
    )

    def __init__(self, spec: RequestSpec) -> None:
        self.spec = spec
        self.phase = Phase.ARRIVED
        self.times: list[float] = [math.nan] * _N_PHASES
        self.times[Phase.ARRIVED] = spec.arrival_s
        self.prefill_node = ""
        self.prefill_cluster = ""
        self.decode_node = ""
        self.prefix_tokens = 0
        self.pulled_bytes = 0
        self.kv_bytes = 0
        self.offloaded = False
        self.reason = ""

    def advance(self, phase: Phase, now_s: float) -> None:
        """Enter `phase` at `now_s`; raises IllegalTransition if the lifecycle forbids it."""
        if (self.phase, phase) not in _ALLOWED:
            raise IllegalTransition(
                f"request {self.spec.request_id}: {self.phase.name} -> {phase.name} is not allowed"
            )
        self.times[phase] = now_s
        self.phase = phase

    def time(self, phase: Phase) -> float:
        """Entry time of `phase` (NaN if the request never entered it)."""
        return self.times[phase]

    @property
    def ttft_s(self) -> float:
        """Arrival to first token (first token is emitted at decode admission)."""
        return self.times[Phase.DECODING] - self.spec.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first; NaN for single-token outputs."""
        n = self.spec.output_tokens - 1
        if n <= 0:
            return math.nan
        return (self.times[Phase.FINISHED] - self.times[Phase.DECODING]) / n
