"""Agreement of simulated and live routing decisions: rates per field, TTFT, a markdown table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prfaas.bench.simlive import FIELDS, Decided, cause


@dataclass(frozen=True, slots=True)
class Mismatch:
    sim: Decided
    live: Decided
    fields: tuple[str, ...]
    cause: str


@dataclass(slots=True)
class Agreement:
    policy: str
    planned: int
    joined: int  # requests with a decision on both sides
    agree: dict[str, int] = field(default_factory=dict)  # per FIELDS entry
    mismatches: list[Mismatch] = field(default_factory=list)
    ttft_live_s: float = float("nan")  # mean over requests finished on both sides
    ttft_sim_s: float = float("nan")
    offload_live: float = 0.0
    offload_sim: float = 0.0

    def rate(self, name: str) -> float:
        return self.agree.get(name, 0) / self.planned if self.planned else 0.0

    @property
    def ttft_ratio(self) -> float:
        return self.ttft_live_s / self.ttft_sim_s if self.ttft_sim_s > 0 else float("nan")


def compare(
    policy: str, planned: int, sim: Mapping[int, Decided], live: Mapping[int, Decided]
) -> Agreement:
    """Per-request agreement; a request missing on either side counts as a disagreement."""
    both = sorted(set(sim) & set(live))
    out = Agreement(policy, planned, len(both), {f: 0 for f in FIELDS})
    for i in both:
        s, lv = sim[i], live[i]
        differ = tuple(f for f in FIELDS if getattr(s, f) != getattr(lv, f))
        for f in FIELDS:
            out.agree[f] += f not in differ
        if differ:
            out.mismatches.append(Mismatch(s, lv, differ, cause(s, lv)))
    timed = [i for i in both if sim[i].ttft_s is not None and live[i].ttft_s is not None]
    if timed:
        out.ttft_live_s = sum(live[i].ttft_s or 0.0 for i in timed) / len(timed)
        out.ttft_sim_s = sum(sim[i].ttft_s or 0.0 for i in timed) / len(timed)
    if both:
        out.offload_live = sum(live[i].offloaded for i in both) / len(both)
        out.offload_sim = sum(sim[i].offloaded for i in both) / len(both)
    return out


def table(rows: Sequence[Agreement]) -> str:
    head = (
        "| policy | requests | offloaded | prefill cluster | prefill node | decode node | "
        "offload live / sim | mean TTFT live / sim (s) | ratio |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in rows:
        pct = [f"{100 * a.rate(f):.1f}%" for f in FIELDS]
        lines.append(
            f"| {a.policy} | {a.joined}/{a.planned} | "
            + " | ".join(pct)
            + f" | {100 * a.offload_live:.1f}% / {100 * a.offload_sim:.1f}% | "
            f"{a.ttft_live_s:.3f} / {a.ttft_sim_s:.3f} | {a.ttft_ratio:.3f} |"
        )
    return "\n".join(lines)


def mismatch_lines(a: Agreement) -> list[str]:
    out = []
    for m in a.mismatches:
        s, lv = m.sim, m.live
        what = ", ".join(f"{f} sim={getattr(s, f)} live={getattr(lv, f)}" for f in m.fields)
        out.append(
            f"[{a.policy}] #{s.index} ({s.input_tokens} tok): {what}; {m.cause}\n"
            f"    sim:  {s.reason}\n    live: {lv.reason}"
        )
    return out
