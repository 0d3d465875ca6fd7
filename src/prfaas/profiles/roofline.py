"""Roofline fallback T(l) = FLOPs(l) / (GPUs x peak x MFU) + overhead, for pairs with no profile."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from prfaas.errors import ConfigError
from prfaas.profiles.hardware import HardwareSpec
from prfaas.profiles.prefill import FloatArray, PrefillProfile

if TYPE_CHECKING:
    from prfaas.model.state_spec import StateSpec


@dataclass(frozen=True, slots=True)
class RooflinePrefill(PrefillProfile):
    """Compute-bound prefill estimate from a model's FLOPs and a hardware peak.

    FLOPs(l) = a2 * l^2 + a1 * l + swa * pairs(l, window), the StateSpec's own FLOP terms.
    """

    spec: StateSpec
    hardware: HardwareSpec
    gpus: int
    mfu: float
    overhead_s: float
    dtype: str
    name: str
    provenance: str

    def __post_init__(self) -> None:
        if self.gpus <= 0:
            raise ConfigError(f"roofline {self.name}: gpus must be > 0")
        if not (0 < self.mfu <= 1):
            raise ConfigError(f"roofline {self.name}: mfu must be in (0, 1], got {self.mfu}")
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise ConfigError(f"roofline {self.name}: overhead_s must be >= 0")

    def flops(self, l_tokens: FloatArray) -> FloatArray:
        terms = self.spec.prefill_flop_terms()
        w = terms.swa_window_tokens
        near = np.minimum(l_tokens, w)
        pairs = l_tokens * near - near * near / 2.0
        out = terms.quadratic * l_tokens**2 + terms.linear * l_tokens + terms.swa_per_pair * pairs
        return np.asarray(out, dtype=np.float64)

    def _time(self, l_tokens: FloatArray) -> FloatArray:
        rate = self.gpus * self.hardware.peak_flops(self.dtype) * self.mfu
        return self.flops(l_tokens) / rate + self.overhead_s


def roofline_prefill(
    spec: StateSpec,
    hardware: HardwareSpec,
    *,
    gpus: int = 8,
    mfu: float = 0.4,
    overhead_s: float = 0.05,
    dtype: str = "bf16",
) -> RooflinePrefill:
    return RooflinePrefill(
        spec=spec,
        hardware=hardware,
        gpus=gpus,
        mfu=mfu,
        overhead_s=overhead_s,
        dtype=dtype,
        name=f"roofline:{spec.name}@{gpus}x{hardware.name}",
        provenance=(
            f"ROOFLINE ESTIMATE (not measured): FLOPs(l) of {spec.name} / ({gpus} x "
            f"{hardware.name} {dtype} peak x MFU {mfu}) + {overhead_s} s"
        ),
    )
