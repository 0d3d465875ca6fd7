"""What one control period observed, and the sliding window of recent periods (frozen)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PrefillSample:
    """One finished prefill: the role of the cluster that ran it, uncached tokens, seconds."""

    cluster_role: str  # prfaas | pd
    tokens: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class LinkSample:
    """PrfaaS egress at one instant: configured capacity, measured rate and backlog (modelled)."""

    capacity_gbps: float
    egress_gbps: float = 0.0
    backlog_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PeriodObservation:
    """Everything a driver saw during one control period."""

    period_s: float
    incremental_tokens: tuple[int, ...] = ()  # uncached prefill lengths after prefix matching
    output_tokens: tuple[int, ...] = ()
    prefill: tuple[PrefillSample, ...] = ()
    decode_step_s: tuple[float, ...] = ()
    link: tuple[LinkSample, ...] = ()


@dataclass(frozen=True, slots=True)
class ObservationWindow:
    """The last few periods; statistics cover all of them."""

    periods: tuple[PeriodObservation, ...] = ()

    def push(self, obs: PeriodObservation, keep: int) -> ObservationWindow:
        return ObservationWindow((*self.periods, obs)[-max(keep, 1) :])

    @property
    def window_s(self) -> float:
        return sum(p.period_s for p in self.periods)

    @property
    def incremental_tokens(self) -> tuple[int, ...]:
        return tuple(x for p in self.periods for x in p.incremental_tokens)

    @property
    def output_tokens(self) -> tuple[int, ...]:
        return tuple(x for p in self.periods for x in p.output_tokens)

    @property
    def prefill(self) -> tuple[PrefillSample, ...]:
        return tuple(x for p in self.periods for x in p.prefill)

    @property
    def decode_step_s(self) -> tuple[float, ...]:
        return tuple(x for p in self.periods for x in p.decode_step_s)

    @property
    def link(self) -> tuple[LinkSample, ...]:
        return tuple(x for p in self.periods for x in p.link)
