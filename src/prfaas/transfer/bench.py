"""Transfer benchmark: our engine vs iperf3 and Mooncake, on loopback or an emulated WAN link.

Every peer runs in its own processes and repetitions are interleaved (ours at each connection
count, then iperf3, then Mooncake, then the next repetition), so ratios compare measurements
taken under the same machine load. Where processes run and how the sender reaches the receiver
is the job of `benchenv.BenchEnv` (loopback, shaping relay, or namespaces + tbf + relay).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from prfaas.transfer import checksum
from prfaas.transfer.benchenv import BenchEnv, Worker
from prfaas.transfer.peers import iperf3_missing, iperf3_run, mooncake_missing


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


Progress = Callable[[str], None]


def run_bench(spec: BenchSpec, progress: Progress | None = None) -> BenchReport:
    """Run every measurement of `spec`; always stops the processes and namespaces it started."""
    report = BenchReport(spec, machine_info())
    tick = progress or (lambda _msg: None)
    with BenchEnv(spec.link) as env:
        report.notes += env.notes
        if spec.reuse_buffers:
            report.notes.append(
                "iperf3-like buffers: each layer is one chunk-sized source region sent again and "
                "landing on one receiver region; verified per chunk by checksum only"
            )
        recv, send, addr = _start_ours(env, spec, env.pki_dir() if spec.compare_tls else None)
        want = send.ask({"op": "digest", "size": spec.size_bytes})["digest"]
        iperf = _start_iperf3(env, report) if spec.compare_iperf3 else None
        mooncake = _start_mooncake(env, spec, report) if spec.compare_mooncake else None
        raw = _start_raw(env, spec, report) if spec.compare_raw else None
        for rep in range(spec.reps):
            for n in spec.connections:
                tick(f"prfaas x{n} rep {rep + 1}")
                report.samples.append(_ours(spec, send, recv, addr, n, rep, want))
                if spec.compare_tls:
                    tick(f"prfaas-tls x{n} rep {rep + 1}")
                    report.samples.append(_ours(spec, send, recv, addr, n, rep, want, tls=True))
            if iperf is not None:
                tick(f"iperf3 rep {rep + 1}")
                report.samples.append(_iperf3(env, spec, iperf, rep))
            if mooncake is not None:
                tick(f"mooncake rep {rep + 1}")
                report.samples += _mooncake(spec, mooncake, rep)
            if raw is not None:
                tick(f"python-raw rep {rep + 1}")
                res = raw[0].ask({"port": raw[1]})
                report.samples.append(Sample("python-raw", 1, rep, res["gbps"], res["seconds"]))
    report.machine["loadavg_end"] = os.getloadavg()
    return report


def _start_ours(
    env: BenchEnv, spec: BenchSpec, pki: str | None = None
) -> tuple[Worker, Worker, tuple[str, int]]:
    secret = os.urandom(16).hex()
    size = str(spec.size_bytes)
    mod = "prfaas.transfer.benchproc"
    reuse = ["--reuse"] if spec.reuse_buffers else []
    tls = ["--pki", pki] if pki else []
    recv = env.python("b", mod, "recv", "--prealloc", size, *reuse, *tls)
    recv.send_line(secret)  # on stdin, not argv: `ps` would show it to every user
    port = int(recv.read()["port"])
    host, eport = env.expose(port)
    args = ["--host", host, "--port", str(eport), "--source", size, *tls]
    send = env.python("a", mod, "send", *args)
    send.send_line(secret)
    send.read()
    return recv, send, (host, eport)


def _ours(
    spec: BenchSpec,
    send: Worker,
    recv: Worker,
    addr: tuple[str, int],
    n: int,
    rep: int,
    want: str,
    tls: bool = False,
) -> Sample:
    cmd = {
        "tls": tls,
        "id": f"bench-r{rep}-c{n}",
        "size": spec.size_bytes,
        "connections": n,
        "chunk_bytes": spec.chunk_bytes,
        "layers": spec.layers,
        "interval_s": spec.layer_interval_s,
        "link_gbps": spec.link.gbps if spec.link else None,
        "reuse": spec.reuse_buffers,
    }
    res = send.ask(cmd)
    if res.get("event") != "result":
        raise RuntimeError(f"transfer failed: {res.get('error', res)}")
    done = recv.read()
    return Sample(
        peer="prfaas-tls" if tls else "prfaas",
        connections=n,
        rep=rep,
        gbps=res["gbps"],
        seconds=res["seconds"],
        tail_s=res["tail_seconds"],
        retransmits=res["tcp_retransmits"],
        chunk_retransmits=res["retransmitted_chunks"],
        # With reused buffers the landed bytes are overwritten: only per-chunk checksums apply.
        verified=None if spec.reuse_buffers else done["digest"] == want,
        cpu_send_s=res["cpu_s"],
        cpu_recv_s=done["cpu_s"],
    )


def _start_iperf3(env: BenchEnv, report: BenchReport) -> tuple[str, int] | None:
    missing = iperf3_missing()
    if missing:
        report.notes.append(f"iperf3 skipped: {missing}")
        return None
    port = env.free_port()
    env.spawn("b", ["iperf3", "-s", "-p", str(port)], ready=None)
    env.wait_listening("b", port)
    return env.expose(port)


def _iperf3(env: BenchEnv, spec: BenchSpec, addr: tuple[str, int], rep: int) -> Sample:
    res = iperf3_run(env.prefix("a"), addr[0], addr[1], spec.size_bytes)
    return Sample("iperf3", 1, rep, res["gbps"], res["seconds"], retransmits=res["retransmits"])


def _start_mooncake(
    env: BenchEnv, spec: BenchSpec, report: BenchReport
) -> tuple[Worker, Worker, dict[str, Any]] | None:
    missing = mooncake_missing()
    if missing or spec.link is not None:
        why = missing or "Mooncake is compared on loopback only"
        report.notes.append(f"mooncake skipped: {why}")
        return None
    size = str(spec.size_bytes)
    recv = env.python("b", "prfaas.transfer.peers", "mc-recv", "--size", size)
    target = recv.read()
    send = env.python("a", "prfaas.transfer.peers", "mc-send", "--size", size)
    ready = send.read()
    # Warm-up: the first write pays Mooncake's connection set-up.
    send.ask({"session": target["session"], "addr": target["addr"], "size": 1 << 20})
    recv.ask({"size": 1 << 20})
    return recv, send, {**target, "digest": ready["digest"]}


def _start_raw(env: BenchEnv, spec: BenchSpec, report: BenchReport) -> tuple[Worker, int] | None:
    if spec.link is not None:
        report.notes.append("python-raw skipped: it is a loopback anchor")
        return None
    size = str(spec.size_bytes)
    port = int(env.python("b", "prfaas.transfer.peers", "raw-recv", "--size", size).read()["port"])
    send = env.python("a", "prfaas.transfer.peers", "raw-send", "--size", size)
    send.read()
    return send, port


def _mooncake(spec: BenchSpec, mc: tuple[Worker, Worker, dict[str, Any]], rep: int) -> list[Sample]:
    recv, send, target = mc
    variants = [("mooncake", 0)]
    if spec.mooncake_chunk_bytes:
        variants.append(("mooncake-batch", spec.mooncake_chunk_bytes))
    out = []
    for peer, chunk in variants:
        cmd = {"session": target["session"], "addr": target["addr"], "size": spec.size_bytes}
        res = send.ask({**cmd, "chunk_bytes": chunk})
        got = recv.ask({"size": spec.size_bytes})["digest"]
        ok = res.get("rc") == 0 and got == target["digest"]
        out.append(Sample(peer, 1, rep, res["gbps"], res["seconds"], verified=ok))
    return out


def dumps(report: BenchReport) -> str:
    return json.dumps(report.to_json(), indent=2)
