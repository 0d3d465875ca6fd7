"""Request lists for the simulator: the paper's workload, trace replay, bursty arrivals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from prfaas.cache.hashing import chain_hashes
from prfaas.core.request import RequestSpec
from prfaas.errors import UsageError
from prfaas.profiles import KvSizeProfile
from prfaas.workload.arrivals import (
    gamma_arrivals,
    onoff_arrivals,
    poisson_arrivals,
    uniform_arrivals,
)
from prfaas.workload.lengths import LengthDistribution
from prfaas.workload.trace import TRACE_BLOCK_TOKENS, TraceData, TraceRequest

ARRIVALS = ("uniform", "poisson", "onoff", "gamma")


@dataclass(frozen=True, slots=True)
class ArrivalSpec:
    """An arrival process: kind plus the burst knobs of onoff (seconds) and gamma (CV)."""

    kind: str = "uniform"
    on_s: float = 30.0
    off_s: float = 30.0
    gamma_cv: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in ARRIVALS:
            raise UsageError(
                f"unknown arrival process {self.kind!r}; choose one of: " + ", ".join(ARRIVALS)
            )


def arrival_times(
    spec: ArrivalSpec, rate: float, n: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    if spec.kind == "uniform":
        return uniform_arrivals(rate, n)
    if spec.kind == "poisson":
        return poisson_arrivals(rate, n, rng)
    if spec.kind == "gamma":
        return gamma_arrivals(rate, spec.gamma_cv, n, rng)
    return onoff_arrivals(rate, n, rng, on_s=spec.on_s, off_s=spec.off_s)


def _kv_bytes(kv: KvSizeProfile, tokens: npt.NDArray[np.int64]) -> list[int]:
    sizes = np.ceil(np.asarray(kv.bytes(tokens.astype(np.float64)), dtype=np.float64))
    return [int(b) for b in sizes.astype(np.int64).tolist()]


def synthetic_requests(
    lengths: LengthDistribution,
    output_tokens: int,
    rate: float,
    n: int,
    arrivals: ArrivalSpec,
    rng: np.random.Generator,
    kv: KvSizeProfile,
) -> list[RequestSpec]:
    """The paper's workload: i.i.d. input lengths, a fixed output length, no prefix sharing."""
    if n < 1:
        raise UsageError(f"--requests must be >= 1, got {n}")
    inputs = np.maximum(lengths.sample(rng, n), 1)
    times = arrival_times(arrivals, rate, n, rng)
    out = max(int(output_tokens), 1)
    kv_b = _kv_bytes(kv, inputs + out)
    return [
        RequestSpec(f"r{i}", float(t), int(l_in), out, (), int(b))
        for i, (t, l_in, b) in enumerate(zip(times.tolist(), inputs.tolist(), kv_b, strict=True))
    ]


def trace_requests(
    trace: TraceData,
    kv: KvSizeProfile,
    *,
    speedup: float = 1.0,
    limit: int | None = None,
    block_tokens: int = TRACE_BLOCK_TOKENS,
) -> list[RequestSpec]:
    """Replay a Mooncake trace; time is compressed by `speedup`; hash_ids become chained hashes.

    Only full blocks get hashes (a trailing partial block is never reusable). Outputs of 0 tokens
    are kept as 1 (the prefill's own token), so no request is dropped silently.
    """
    if not speedup > 0:
        raise UsageError(f"--speedup must be > 0, got {speedup}")
    rows: Sequence[TraceRequest] = trace.requests if limit is None else trace.requests[:limit]
    if not rows:
        raise UsageError(f"trace {trace.path} holds no requests")
    t0 = min(r.timestamp_s for r in rows)
    order = sorted(range(len(rows)), key=lambda i: (rows[i].timestamp_s, i))
    totals = np.array([max(r.input_length, 1) + max(r.output_length, 1) for r in rows])
    kv_b = _kv_bytes(kv, totals)
    out: list[RequestSpec] = []
    for i in order:
        r = rows[i]
        l_in = max(r.input_length, 1)
        full = min(l_in // block_tokens, len(r.hash_ids))
        hashes = tuple(chain_hashes(r.hash_ids[:full])) if full else ()
        out.append(
            RequestSpec(
                f"t{i}",
                (r.timestamp_s - t0) / speedup,
                l_in,
                max(r.output_length, 1),
                hashes,
                int(kv_b[i]),
            )
        )
    return out
