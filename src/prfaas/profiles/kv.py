"""KV/state size profiles S_kv(l) in bytes: measured fits or a model's StateSpec."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from prfaas.errors import ConfigError

if TYPE_CHECKING:
    from prfaas.model.state_spec import StateSpec

FloatArray = npt.NDArray[np.float64]
MIB = 2**20


class KvSizeProfile(ABC):
    """Bytes of KVCache plus linear/SWA state a request of l tokens ships after prefill."""

    name: str
    provenance: str

    @abstractmethod
    def _bytes(self, l_tokens: FloatArray) -> FloatArray: ...

    def bytes(self, l_tokens: Any) -> Any:
        """S_kv(l) in bytes; a float for scalar input, an ndarray for array input."""
        out = self._bytes(np.asarray(l_tokens, dtype=np.float64))
        return float(out) if np.ndim(l_tokens) == 0 else out

    def bits(self, l_tokens: Any) -> Any:
        return self.bytes(l_tokens) * 8


@dataclass(frozen=True, slots=True)
class LinearKvSize(KvSizeProfile):
    """S_kv(l) = fixed_bytes + bytes_per_token * l (+ an SWA part capped at a window)."""

    fixed_bytes: float
    bytes_per_token: float
    name: str
    provenance: str
    swa_bytes_per_token: float = 0.0
    swa_window_tokens: float = 0.0

    def __post_init__(self) -> None:
        values = (self.fixed_bytes, self.bytes_per_token, self.swa_bytes_per_token)
        if any(not np.isfinite(v) or v < 0 for v in values):
            raise ConfigError(f"kv profile {self.name}: sizes must be finite and >= 0")
        if self.fixed_bytes + self.bytes_per_token + self.swa_bytes_per_token <= 0:
            raise ConfigError(f"kv profile {self.name}: S_kv(l) is zero for every l")

    def _bytes(self, l_tokens: FloatArray) -> FloatArray:
        swa = self.swa_bytes_per_token * np.minimum(l_tokens, self.swa_window_tokens)
        return np.asarray(self.fixed_bytes + self.bytes_per_token * l_tokens + swa, np.float64)

    @classmethod
    def from_state_spec(cls, spec: StateSpec, *, provenance: str = "") -> LinearKvSize:
        """Exact S_kv(l) of a model preset (bf16 KV, state dtypes as the spec says)."""
        return cls(
            fixed_bytes=float(spec.fixed_bytes),
            bytes_per_token=float(spec.bytes_per_token),
            swa_bytes_per_token=float(spec.swa_bytes_per_token),
            swa_window_tokens=float(spec.swa_window_tokens),
            name=spec.name,
            provenance=provenance or f"StateSpec arithmetic of model preset {spec.name}",
        )


def fit_linear_kv(
    tokens: Sequence[float], sizes_bytes: Sequence[float], *, name: str, provenance: str
) -> LinearKvSize:
    """Least-squares line S(l) = fixed + per_token * l through measured sizes."""
    if len(tokens) < 2 or len(tokens) != len(sizes_bytes):
        raise ConfigError(f"kv profile {name}: need >= 2 (tokens, bytes) pairs")
    slope, intercept = np.polyfit(np.asarray(tokens, float), np.asarray(sizes_bytes, float), 1)
    return LinearKvSize(
        fixed_bytes=float(intercept),
        bytes_per_token=float(slope),
        name=name,
        provenance=provenance,
    )
