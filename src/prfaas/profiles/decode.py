"""Decode capacity of one instance: BS_max sequences at T_decode seconds per step (Eq 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prfaas.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DecodeProfile:
    """BS_max and T_decode are SLO-governed constants (paper §3.4.1, Eq 5)."""

    bs_max: int
    t_decode_s: float
    name: str = "decode"
    provenance: str = ""

    def __post_init__(self) -> None:
        if int(self.bs_max) != self.bs_max or self.bs_max <= 0:
            raise ConfigError(f"decode bs_max must be an integer > 0, got {self.bs_max!r}")
        if not (math.isfinite(self.t_decode_s) and self.t_decode_s > 0):
            raise ConfigError(f"decode t_decode_s must be > 0, got {self.t_decode_s!r}")

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second one instance sustains: BS_max / T_decode."""
        return self.bs_max / self.t_decode_s

    def requests_per_s(self, output_tokens: float) -> float:
        """Theta_pd-d of one instance for a mean output length (Eq 5 with N_d = 1)."""
        return self.tokens_per_s / output_tokens
