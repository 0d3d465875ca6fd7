"""Open-loop request plans: a Mooncake trace replayed (sped up) or the paper's workload."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from prfaas.bench.prompts import TRACE_TOKENS_PER_BLOCK, scaled_length, synthesize_prompt
from prfaas.errors import ConfigError, UsageError
from prfaas.workload.trace import read_trace

# The paper's workload (§5): input ~ truncated log-normal(9.90, 1.00) on [128, 128K], output 1024.
PAPER_MU, PAPER_SIGMA, PAPER_MIN_TOKENS, PAPER_MAX_TOKENS = 9.90, 1.00, 128, 131_072
PAPER_OUTPUT_TOKENS = 1024
_PAPER_ID_BASE = 1_000_000_000  # hash ids of the synthetic workload never collide with a trace's


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request of the plan; the prompt text is synthesised when it is sent."""

    index: int
    send_at_s: float
    hash_ids: tuple[int, ...]
    input_tokens: int
    max_tokens: int
    tokens_per_block: int

    def prompt(self) -> str:
        return synthesize_prompt(self.hash_ids, self.input_tokens, self.tokens_per_block,
                                 filler_id=self.index + 1)


@dataclass(frozen=True, slots=True)
class Shaping:
    """How trace/workload lengths become request lengths (see prompts.py for the convention)."""

    tokens_per_block: int = TRACE_TOKENS_PER_BLOCK
    max_input_tokens: int | None = None
    output_tokens: int | None = None  # fixed output length; None: the trace's / workload's
    max_output_tokens: int | None = None

    def input_len(self, trace_tokens: int) -> int:
        n = scaled_length(trace_tokens, self.tokens_per_block)
        return min(n, self.max_input_tokens) if self.max_input_tokens else n

    def output_len(self, trace_tokens: int) -> int:
        n = self.output_tokens if self.output_tokens is not None else max(1, trace_tokens)
        return min(n, self.max_output_tokens) if self.max_output_tokens else n


def trace_plan(path: Path, *, speedup: float, duration_s: float, limit: int | None,
               shaping: Shaping) -> list[PlannedRequest]:
    """The trace's requests sent at timestamp / speedup, those arriving within duration_s."""
    if not path.is_file():
        raise UsageError(f"trace file not found: {path}")
    if speedup <= 0:
        raise UsageError(f"--speedup must be > 0, got {speedup}")
    rows = list(read_trace(path).requests)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise ConfigError(f"trace {path} holds no requests")
    t0 = min(r.timestamp_s for r in rows)
    plan = []
    for i, row in enumerate(sorted(rows, key=lambda r: r.timestamp_s)):
        send_at = (row.timestamp_s - t0) / speedup
        if send_at >= duration_s:
            break
        plan.append(PlannedRequest(
            i, send_at, tuple(row.hash_ids), shaping.input_len(row.input_length),
            shaping.output_len(row.output_length), shaping.tokens_per_block))
    return plan


def arrival_times(rate_rps: float, duration_s: float, arrival: str, seed: int) -> list[float]:
    """Send times in [0, duration_s): evenly spaced ("uniform", as in the paper) or Poisson."""
    import numpy as np

    if rate_rps <= 0 or not math.isfinite(rate_rps):
        raise UsageError(f"--rate must be a positive number, got {rate_rps}")
    if arrival == "uniform":
        return [i / rate_rps for i in range(math.ceil(duration_s * rate_rps))]
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_rps, size=int(duration_s * rate_rps * 2 + 16))
    times = np.cumsum(gaps) - gaps[0]  # the first request goes at t = 0
    return [float(t) for t in times if t < duration_s]


def paper_plan(*, rate_rps: float, duration_s: float, length_scale: float, arrival: str,
               seed: int, shaping: Shaping) -> list[PlannedRequest]:
    """The paper's workload: log-normal inputs, 1024 outputs, both times length_scale.

    Prompts are unique (no prefix sharing); tokens_per_block only sets the synthesis block size.
    """
    import numpy as np

    from prfaas.workload.lengths import TruncatedLogNormal

    if not 0 < length_scale <= 1e3:
        raise UsageError(f"--length-scale must be in (0, 1000], got {length_scale}")
    times = arrival_times(rate_rps, duration_s, arrival, seed)
    dist = TruncatedLogNormal(PAPER_MU, PAPER_SIGMA, PAPER_MIN_TOKENS, PAPER_MAX_TOKENS)
    lengths = dist.sample(np.random.default_rng(seed + 1), len(times))
    out_default = max(1, round(PAPER_OUTPUT_TOKENS * length_scale))
    plan, next_id, block = [], _PAPER_ID_BASE, shaping.tokens_per_block
    for i, (t, raw) in enumerate(zip(times, lengths, strict=True)):
        n_in = max(1, round(int(raw) * length_scale))
        if shaping.max_input_tokens:
            n_in = min(n_in, shaping.max_input_tokens)
        n_blocks = -(-n_in // block)
        ids = tuple(range(next_id, next_id + n_blocks))
        next_id += n_blocks
        plan.append(PlannedRequest(i, t, ids, n_in, shaping.output_len(out_default), block))
    return plan
