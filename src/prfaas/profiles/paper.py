"""The paper's case-study inputs (arXiv 2604.15039 §4) with provenance: measured, fitted, INFERRED.

Units (docs/paper-notes.md): "K" in lengths is 1000 tokens; sizes binary MiB; rates decimal Gbps.
"""

from __future__ import annotations

from prfaas.profiles.decode import DecodeProfile
from prfaas.profiles.kv import MIB, LinearKvSize, fit_linear_kv
from prfaas.profiles.prefill import MeasuredPoint, PolynomialPrefill, fit_polynomial

TOKENS_PER_K = 1000

# Table 5 of the paper [MEASURED by the authors]: internal 1T hybrid (KDA:MLA 3:1), 8xH200, in-house
# vLLM. Columns: sequence length, KVCache size (MiB), prefill latency (s).
TABLE5_SOURCE = "arXiv 2604.15039 Table 5 (internal 1T KDA:MLA 3:1 model, 8xH200, in-house vLLM)"
TABLE5_ROWS: tuple[tuple[int, float, float], ...] = (
    (1, 190.8, 0.44),
    (8, 308.9, 0.72),
    (32, 701.3, 1.84),
    (128, 2316.3, 7.40),
)
TABLE5_POINTS: tuple[MeasuredPoint, ...] = tuple(
    MeasuredPoint(tokens=k * TOKENS_PER_K, prefill_s=t, kv_bytes=mib * MIB)
    for k, mib, t in TABLE5_ROWS
)

# H20 prefill points INFERRED from Table 6 (docs/paper-notes.md), not measured by anyone:
#   T(l_short = 10,224) = N_p / Theta_pd-p = 3 / 1.64      (PrfaaS-PD column)
#   T(L_avg   = 27,486) = N_p / Theta_pd-p = 9 / 2.11      (homogeneous column)
#   T(P90     = 62,410) = 9.73 s                            (homogeneous P90 TTFT)
# The lengths are the truncated log-normal's E[L | L <= 19,400], mean and P90 (docs/paper-notes.md).
H20_INFERRED_POINTS: tuple[MeasuredPoint, ...] = (
    MeasuredPoint(tokens=10_224, prefill_s=3 / 1.64),
    MeasuredPoint(tokens=27_486, prefill_s=9 / 2.11),
    MeasuredPoint(tokens=62_410, prefill_s=9.73),
)


def h200_prefill() -> PolynomialPrefill:
    """Least-squares quadratic T(l) through the four Table 5 latencies (docs/paper-notes.md)."""
    return fit_polynomial(
        TABLE5_POINTS,
        2,
        name="paper-h200",
        provenance=f"least-squares quadratic fit of {TABLE5_SOURCE}, 1K = 1000 tokens",
    )


def h20_prefill_inferred() -> PolynomialPrefill:
    """Quadratic through three points back-solved from Table 6 (docs/paper-notes.md; circular)."""
    return fit_polynomial(
        H20_INFERRED_POINTS,
        2,
        name="paper-h20-inferred",
        provenance=(
            "INFERRED, not measured: quadratic through 8xH20 prefill times back-solved from the "
            "paper's Table 6 (docs/paper-notes.md); reproduces Table 6 partly by construction"
        ),
    )


def table5_kv_size() -> LinearKvSize:
    """Least-squares line S_kv(l) through the four Table 5 sizes (bytes; 1K = 1000 tokens)."""
    return fit_linear_kv(
        [p.tokens for p in TABLE5_POINTS],
        [p.kv_bytes or 0.0 for p in TABLE5_POINTS],
        name="paper-table5",
        provenance=f"least-squares linear fit of the KVCache column of {TABLE5_SOURCE}",
    )


def h20_decode() -> DecodeProfile:
    """BS_max / T_decode = 800 tokens/s per 8xH20 instance, INFERRED (docs/paper-notes.md)."""
    return DecodeProfile(
        bs_max=20,
        t_decode_s=0.025,
        name="paper-h20-decode",
        provenance=(
            "INFERRED: Theta_pd-d per instance 0.78125 req/s x 1024 output tokens = 800 tokens/s "
            "(docs/paper-notes.md); T_decode = 1/40 s from the 40 tokens/s SLO, so BS_max = 20"
        ),
    )
