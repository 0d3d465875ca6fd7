"""The reaper: a tiny process that cleans up after `prfaas up` even when it is `kill -9`ed.

The supervisor starts it with a pipe on its stdin and writes one line per thing to clean:
`pgid N` (a child's process group), `path P` (the run folder, with its secrets and keys),
`netns-owner PID` (network namespaces tagged with that owner, deploy/netlinks.py) and `netns NAME`.
A clean stop writes `done` first. When the pipe closes without `done` (the supervisor died: the
kernel closes its end whatever killed it), the reaper SIGTERMs every group, SIGKILLs what is left
after a grace period, deletes the namespaces and removes the folders. It runs in its own session,
so a Ctrl-C in the terminal does not reach it, and imports nothing heavy, so it starts at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO

GRACE_S = 2.0


@dataclass(slots=True)
class Orders:
    """What the supervisor asked the reaper to clean, as read from the pipe."""

    pgids: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    netns_owners: list[int] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    done: bool = False

    def read(self, line: str) -> None:
        verb, _, arg = line.strip().partition(" ")
        if verb == "done":
            self.done = True
        elif verb == "pgid" and arg.isdigit():
            self.pgids.append(int(arg))
        elif verb == "path" and arg:
            self.paths.append(arg)
        elif verb == "netns-owner" and arg.isdigit():
            self.netns_owners.append(int(arg))
        elif verb == "netns" and arg:
            self.netns.append(arg)


def _groups_alive(pgids: list[int]) -> list[int]:
    alive = []
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
            alive.append(pgid)
        except (ProcessLookupError, PermissionError):
            pass
    return alive


def _signal_all(pgids: list[int], sig: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def clean(orders: Orders, grace_s: float = GRACE_S) -> None:
    """Stop every group (TERM, then KILL after `grace_s`), delete namespaces, remove folders."""
    pgids = sorted(set(orders.pgids))
    _signal_all(pgids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _groups_alive(pgids) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_all(_groups_alive(pgids), signal.SIGKILL)
    if orders.netns_owners or orders.netns:
        _delete_namespaces(orders)
    for path in orders.paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _delete_namespaces(orders: Orders) -> None:
    from prfaas.deploy.netlinks import sweep

    for owner in orders.netns_owners:
        with contextlib.suppress(Exception):
            sweep(owner)
    for name in orders.netns:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def watch(pipe: IO[str]) -> Orders:
    """Read orders until the supervisor closes the pipe (or dies)."""
    orders = Orders()
    for line in pipe:
        orders.read(line)
    return orders


def main() -> int:
    # Ctrl-C and a SIGTERM to the supervisor's group are the supervisor's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    orders = watch(sys.stdin)
    if not orders.done:
        print("prfaas reaper: the supervisor died; stopping its processes and removing "
              f"{', '.join(orders.paths) or 'nothing'}", file=sys.stderr, flush=True)
        clean(orders)
    return 0


class Reaper:
    """The supervisor's side: start it, tell it what to clean, dismiss it on a clean stop."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prfaas.deploy.reaper"],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def order(self, verb: str, arg: object) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            stdin.write(f"{verb} {arg}\n")
            stdin.flush()

    def dismiss(self) -> None:
        """The supervisor cleaned up itself: the reaper leaves without touching anything."""
        self.order("done", "")
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)


if __name__ == "__main__":
    raise SystemExit(main())
