"""The supervisor's healing loop: any crashed process is started again, with backoff and a budget.

Workers are restarted (same node name, certificate and arguments): a restarted worker heartbeats
with a new epoch, so the router drops its old pool from the global index and routes to it again
once it is registered. Routers, the WAN emulator and HAProxy come back on the ports they had (the
supervisor pinned them), so clients and workers find them where they were; the WAN emulator
reopens its relays on their old ports from its state file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prfaas.deploy.healing import RestartPolicy, RestartState, on_exit, on_started


class Healer:
    """Call `tick()` periodically; it returns what it did, one line per event."""

    def __init__(self, dep: Any, policy: RestartPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dep = dep
        self.policy = policy or RestartPolicy()
        self.clock = clock
        now = clock()
        self.states = {name: RestartState(now) for name in dep.procs}
        self.pending: dict[str, float] = {}  # name -> when to restart
        self.given_up: set[str] = set()
        self.restarts = 0

    def tick(self) -> list[str]:
        now, lines = self.clock(), []
        maintain = getattr(self.dep, "maintain", None)
        if maintain is not None:
            maintain()  # warm spares (deploy/supervisor.py)
        for name, state in self.states.items():
            if name in self.pending or name in self.given_up:
                continue
            code = self.dep.procs[name].poll()
            if code is None:
                continue
            decision = on_exit(self.policy, state, now)
            if decision.restart:
                self.pending[name] = decision.at_s
                lines.append(f"{name} exited with status {code}: {decision.reason}")
            else:
                self.given_up.add(name)
                lines.append(f"{name} exited with status {code}: {decision.reason}")
        for name, at in list(self.pending.items()):
            if now >= at:
                del self.pending[name]
                self.dep.respawn(name)
                on_started(self.states[name], now)
                self.restarts += 1
                lines.append(f"{name} restarted")
        return lines
