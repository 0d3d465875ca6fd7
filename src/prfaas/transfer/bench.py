"""Transfer benchmark: our engine vs iperf3 and Mooncake, on loopback or an emulated WAN link.

Every peer runs in its own processes and repetitions are interleaved (ours at each connection
count, then iperf3, then Mooncake, then the next repetition), so ratios compare measurements
taken under the same machine load. Where processes run and how the sender reaches the receiver
is the job of `benchenv.BenchEnv` (loopback, shaping relay, or namespaces + tbf + relay).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prfaas.transfer.bench_report import BenchReport, BenchSpec, Sample, machine_info
from prfaas.transfer.benchenv import BenchEnv, Worker
from prfaas.transfer.peers import iperf3_missing, iperf3_run, mooncake_missing

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

