"""Benchmark peers beside ours: iperf3 (TCP anchor), Mooncake's TCP engine, a bare-socket loop.

Neither is a runtime dependency: `available()` says why a peer is missing, and the Mooncake
workers (`python -m prfaas.transfer.peers mc-recv|mc-send`) import it only when run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

from prfaas.transfer.benchproc import digest, emit, make_source


def iperf3_missing() -> str | None:
    if shutil.which("iperf3") is None:
        return "iperf3 is not installed (apt-get install -y iperf3)"
    return None


def mooncake_missing() -> str | None:
    if importlib.util.find_spec("mooncake") is None:
        return "mooncake is not installed (pip install mooncake-transfer-engine-non-cuda)"
    probe = subprocess.run(
        [sys.executable, "-c", "from mooncake.engine import TransferEngine"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"mooncake does not import: {last}"
    return None


def iperf3_run(
    prefix: list[str], host: str, port: int, nbytes: int, *, block_bytes: int = 1 << 20
) -> dict[str, Any]:
    """One `iperf3 -c` run; receiver-side goodput, sender retransmissions."""
    cmd = [*prefix, "iperf3", "-c", host, "-p", str(port), "-l", str(block_bytes)]
    cmd += ["-n", str(nbytes), "-J"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        end = json.loads(proc.stdout)["end"]
        received, sent = end["sum_received"], end["sum_sent"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise RuntimeError(f"iperf3 failed: {proc.stderr.strip() or proc.stdout[-300:]}") from exc
    return {
        "gbps": received["bits_per_second"] / 1e9,
        "seconds": received["seconds"],
        "retransmits": sent.get("retransmits", 0),
    }


def _engine() -> Any:
    from mooncake.engine import TransferEngine

    te = TransferEngine()
    rc = te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "")
    if rc != 0:
        raise RuntimeError(f"TransferEngine.initialize returned {rc}")
    return te


def _mc_recv(size: int) -> None:
    import numpy as np

    te = _engine()
    buf = np.zeros(size, dtype=np.uint8)
    buf[::4096] = 1  # fault pages in before timing
    if te.register_memory(buf.ctypes.data, size) != 0:
        raise RuntimeError("register_memory failed")
    emit({"event": "ready", "session": f"127.0.0.1:{te.get_rpc_port()}", "addr": buf.ctypes.data})
    for line in sys.stdin:
        cmd = json.loads(line)
        n = int(cmd["size"])
        dig = digest(buf[:n].data)
        buf[:n] = 0  # the next run must write every byte again; cleared before we answer
        emit({"event": "digest", "digest": dig})


def _mc_send(size: int) -> None:
    import numpy as np

    te = _engine()
    src = np.frombuffer(make_source(size), dtype=np.uint8)
    if te.register_memory(src.ctypes.data, size) != 0:
        raise RuntimeError("register_memory failed")
    emit({"event": "ready", "digest": digest(src.data)})
    for line in sys.stdin:
        cmd = json.loads(line)
        n, chunk = int(cmd["size"]), int(cmd.get("chunk_bytes", 0))
        base, dst = src.ctypes.data, int(cmd["addr"])
        t0 = time.perf_counter()
        if chunk:
            offs = list(range(0, n, chunk))
            lens = [min(chunk, n - o) for o in offs]
            rc = te.batch_transfer_sync_write(
                cmd["session"], [base + o for o in offs], [dst + o for o in offs], lens
            )
        else:
            rc = te.transfer_sync_write(cmd["session"], base, dst, n)
        dt = time.perf_counter() - t0
        emit({"event": "result", "rc": rc, "seconds": dt, "gbps": n * 8 / dt / 1e9})


def _raw_recv(size: int) -> None:
    """The bare-socket anchor: recv_into one preallocated buffer, 1-byte ack per transfer."""
    buf = bytearray(size)
    buf[::4096] = b"\x01" * len(range(0, size, 4096))
    view = memoryview(buf)
    with socket.create_server(("127.0.0.1", 0)) as ls:
        emit({"event": "ready", "port": ls.getsockname()[1]})
        while True:
            conn, _ = ls.accept()
            with conn:
                got = 0
                while got < size:
                    k = conn.recv_into(view[got:])
                    if not k:
                        break
                    got += k
                conn.sendall(b"k")


def _raw_send(size: int) -> None:
    """Plain blocking sendall of 4 MiB memoryview slices: no framing, no checksums."""
    src = memoryview(make_source(size))
    emit({"event": "ready"})
    for line in sys.stdin:
        cmd = json.loads(line)
        with socket.create_connection(("127.0.0.1", int(cmd["port"]))) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter()
            for off in range(0, size, 4 << 20):
                s.sendall(src[off : off + (4 << 20)])
            s.recv(1)
            dt = time.perf_counter() - t0
        emit({"event": "result", "seconds": dt, "gbps": size * 8 / dt / 1e9})


ROLES = {"mc-recv": _mc_recv, "mc-send": _mc_send, "raw-recv": _raw_recv, "raw-send": _raw_send}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prfaas.transfer.peers")
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--size", type=int, required=True)
    args = p.parse_args(argv)
    ROLES[args.role](args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
