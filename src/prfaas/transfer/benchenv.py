"""Where benchmark processes run: loopback, loopback behind a shaping relay, or two namespaces.

Side "a" is the sender, side "b" the receiver. `expose(port)` returns the address at which side a
reaches a port listening on side b's loopback: directly, through a rate + delay relay, or
through the veth pair (tbf) and a delay relay inside namespace b. Every process started here is
stopped, and the namespaces deleted, when the `with` block ends, also on errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from prfaas.transfer.netns import NetnsLink

if TYPE_CHECKING:
    from prfaas.transfer.bench_report import LinkSpec

_SRC_DIR = str(Path(__file__).resolve().parents[2])


class Worker:
    """A child process speaking JSON lines on stdin/stdout."""

    def __init__(self, proc: subprocess.Popen[str], name: str, log: IO[str]) -> None:
        self.proc, self.name, self._log = proc, name, log

    def read(self, timeout_s: float = 900.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self._log.flush()
            self._log.seek(0)
            tail = self._log.read()[-800:].strip()
            raise RuntimeError(f"{self.name} stopped answering: {tail or 'no output'}")
        result: dict[str, Any] = json.loads(line)
        return result

    def send_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def ask(self, cmd: dict[str, Any], timeout_s: float = 900.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read(timeout_s)


class BenchEnv:
    def __init__(self, link: LinkSpec | None) -> None:
        self.link = link
        self.netns: NetnsLink | None = None
        self.notes: list[str] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._logs: list[IO[str]] = []
        self._old_sigterm: Any = None
        self._pki: tempfile.TemporaryDirectory[str] | None = None

    def pki_dir(self) -> str:
        """A throwaway CA with `sender` and `receiver` certificates (removed on exit)."""
        if self._pki is None:
            from prfaas.security.certs import issue_all

            self._pki = tempfile.TemporaryDirectory(prefix="prfaas-bench-pki-")
            issue_all(Path(self._pki.name) / "pki", ["sender", "receiver"])
        return str(Path(self._pki.name) / "pki")

    def __enter__(self) -> BenchEnv:
        # SIGTERM becomes KeyboardInterrupt so the cleanup below runs.
        self._old_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._setup()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _setup(self) -> None:
        link = self.link
        if link is None:
            return
        if link.netns:
            self.netns = NetnsLink(link.gbps, loss_pct=link.loss_pct).__enter__()
            if link.loss_pct and self.netns.netem_error:
                self.notes.append(
                    f"--loss {link.loss_pct}% not applied: this kernel has no netem "
                    f"(`tc qdisc add ... netem` said: {self.netns.netem_error})"
                )
            self.notes.append(
                f"netns link: tbf {link.gbps} Gbit/s on veth {self.netns.dev_a}<->"
                f"{self.netns.dev_b}, {link.rtt_ms} ms RTT from a delay relay in {self.netns.ns_b}"
            )
        else:
            self.notes.append(
                f"in-process link: shaping relay on loopback, {link.gbps} Gbit/s token bucket, "
                f"{link.rtt_ms / 2} ms each way"
            )
            if link.loss_pct:
                self.notes.append(
                    f"--loss {link.loss_pct}% not applied: loss needs netem (--netns on a kernel "
                    "with sch_netem); the shaping relay splits TCP and cannot drop packets"
                )

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for proc in reversed(self._procs):
                _stop(proc)
            for log in self._logs:
                log.close()
        finally:
            if self._pki is not None:
                self._pki.cleanup()
            if self.netns is not None:
                self.netns.teardown()
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)

    def prefix(self, side: str) -> list[str]:
        return self.netns.exec_prefix(side) if self.netns is not None else []

    def spawn(self, side: str, argv: list[str], ready: str | None = "json") -> Worker:
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in __exit__
        self._logs.append(log)
        env = {**os.environ, "PYTHONPATH": _SRC_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen(
            [*self.prefix(side), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        self._procs.append(proc)
        return Worker(proc, " ".join(argv[:4]), log)

    def python(self, side: str, module: str, *args: str) -> Worker:
        return self.spawn(side, [sys.executable, "-m", module, *args])

    def free_port(self) -> int:
        if self.netns is not None:
            return random.randint(20000, 60000)  # a fresh namespace has every port free
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port

    def wait_listening(self, side: str, port: int, timeout_s: float = 10.0) -> None:
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).close()"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            cmd = [*self.prefix(side), sys.executable, "-c", probe]
            if subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")

    def expose(self, port: int) -> tuple[str, int]:
        link = self.link
        if link is None:
            return "127.0.0.1", port
        delay = str(link.rtt_ms / 2)
        if self.netns is not None:
            listen = f"{self.netns.addr_b}:0"
            extra: list[str] = []  # tbf on the veth does the rate
        else:
            listen = "127.0.0.1:0"
            extra = ["--rate-gbps", str(link.gbps)]
        args = ["--listen", listen, "--target", f"127.0.0.1:{port}", "--delay-ms", delay, *extra]
        relay = self.python("b", "prfaas.transfer.shaping", *args)
        rport = int(relay.read()["port"])
        return listen.rsplit(":", 1)[0], rport


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(timeout=5)
