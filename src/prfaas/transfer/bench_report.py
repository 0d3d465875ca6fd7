"""The transfer benchmark's specs, samples and report (medians, same-repetition ratios, TLS)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from prfaas.transfer import checksum


@dataclass(frozen=True, slots=True)
class LinkSpec:
    gbps: float
    rtt_ms: float
    loss_pct: float | None = None
    netns: bool = False


@dataclass(frozen=True, slots=True)
class BenchSpec:
    size_bytes: int
    connections: tuple[int, ...] = (1, 2, 4, 8)
    reps: int = 3
    chunk_bytes: int = 4 << 20
    layers: int = 16
    layer_interval_s: float = 0.0
    link: LinkSpec | None = None
    compare_iperf3: bool = False
    compare_mooncake: bool = False
    compare_raw: bool = False  # the bare Python socket loop on the same buffers (no protocol)
    mooncake_chunk_bytes: int = 16 << 20  # batch variant; 0 = only the single-write variant
    # iperf3-like: one chunk-sized source region is sent over and over and every layer lands on
    # the same receiver region (cache-resident), isolating protocol cost from memory traffic.
    reuse_buffers: bool = False
    compare_tls: bool = False  # also run ours over TLS ("prfaas-tls"), interleaved with plain


@dataclass(frozen=True, slots=True)
class Sample:
    peer: str  # "prfaas", "iperf3", "mooncake", "mooncake-batch"
    connections: int
    rep: int
    gbps: float
    seconds: float
    tail_s: float | None = None  # last layer produced -> transfer complete
    retransmits: int | None = None  # TCP segments (TCP_INFO / iperf3)
    chunk_retransmits: int | None = None
    verified: bool | None = None  # receiver's digest equals the sender's
    cpu_send_s: float | None = None
    cpu_recv_s: float | None = None


@dataclass(slots=True)
class BenchReport:
    spec: BenchSpec
    machine: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def medians(self) -> list[dict[str, Any]]:
        """One row per (peer, connections): medians over repetitions."""
        groups: dict[tuple[str, int], list[Sample]] = {}
        for s in self.samples:
            groups.setdefault((s.peer, s.connections), []).append(s)
        rows = []
        for (peer, conns), ss in groups.items():
            tails = [s.tail_s for s in ss if s.tail_s is not None]
            rows.append(
                {
                    "peer": peer,
                    "connections": conns,
                    "reps": len(ss),
                    "gbps": statistics.median(s.gbps for s in ss),
                    "gbps_all": [round(s.gbps, 3) for s in ss],
                    "tail_s": statistics.median(tails) if tails else None,
                    "retransmits": sum(s.retransmits or 0 for s in ss),
                    "verified": _all_verified(ss),
                }
            )
        return rows

    def ratios(self, peer: str, baseline: str) -> dict[int, list[float]]:
        """Per connection count of `peer`: its Gbit/s over `baseline`'s in the same repetition.

        `baseline` matches every peer whose name starts with it (e.g. both Mooncake variants);
        the faster one of each repetition is the reference.
        """
        base: dict[int, float] = {}
        for s in self.samples:
            if s.peer.startswith(baseline):
                base[s.rep] = max(base.get(s.rep, 0.0), s.gbps)
        out: dict[int, list[float]] = {}
        for s in self.samples:
            if s.peer == peer and base.get(s.rep):
                out.setdefault(s.connections, []).append(s.gbps / base[s.rep])
        return out

    def best_ratio(self, peer: str, baseline: str) -> dict[str, Any] | None:
        """The connection count with the highest median same-repetition ratio."""
        per = {c: statistics.median(v) for c, v in self.ratios(peer, baseline).items()}
        if not per:
            return None
        best = max(per, key=per.__getitem__)
        return {"connections": best, "median": per[best], "by_connections": per}

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": asdict(self.spec),
            "machine": self.machine,
            "samples": [asdict(s) for s in self.samples],
            "medians": self.medians(),
            "ratios": {
                "prfaas/iperf3": self.best_ratio("prfaas", "iperf3"),
                "prfaas/mooncake": self.best_ratio("prfaas", "mooncake"),
                "prfaas/python-raw": self.best_ratio("prfaas", "python-raw"),
            },
            "tls": self.tls_cost(),
            "notes": self.notes,
        }

    def tls_cost(self) -> dict[str, Any] | None:
        """Per connection count: TLS goodput over plain in the same repetition (median), and the
        CPU-seconds per GiB moved (sender + receiver) of each."""
        plain = {(s.rep, s.connections): s for s in self.samples if s.peer == "prfaas"}
        tls = [s for s in self.samples if s.peer == "prfaas-tls"]
        if not tls:
            return None
        gib = self.spec.size_bytes / 2**30
        out: dict[str, Any] = {}
        for n in sorted({s.connections for s in tls}):
            pairs = [(t, plain[(t.rep, n)]) for t in tls if t.connections == n
                     and (t.rep, n) in plain]
            out[str(n)] = {
                "goodput_ratio": statistics.median(t.gbps / p.gbps for t, p in pairs),
                "cpu_s_per_gib_tls": statistics.median(_cpu(t) / gib for t, _ in pairs),
                "cpu_s_per_gib_plain": statistics.median(_cpu(p) / gib for _, p in pairs),
            }
        return out


def _cpu(s: Sample) -> float:
    return (s.cpu_send_s or 0.0) + (s.cpu_recv_s or 0.0)


def _all_verified(samples: list[Sample]) -> bool | None:
    """False if any run failed verification, None if none was checked, else True."""
    checked = [s.verified for s in samples if s.verified is not None]
    return all(checked) if checked else None


def machine_info() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "loadavg_start": os.getloadavg(),
        "checksum": checksum.NAMES[checksum.best_common(checksum.supported())],
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

