"""The chaos harness's scenarios: one fault each, injected into a running deployment (kill,
SIGSTOP, a router replica killed, the inter-DC link cut or slowed), or load shaped around it."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from prfaas.deploy.supervisor import Deployment

STORM_CLIENTS = 30  # they send together at the fault ...
STORM_HANG_UP_S = 1.0  # ... and hang up this long after: the storm ends then


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Deployment], None] | None = None
    hold_s: float = 0.0  # faults with a duration are undone after hold_s (SIGSTOP -> SIGCONT)
    undo: Callable[[Deployment], None] | None = None
    rate_boost: float = 1.0  # load multiplier for `boost_s` seconds from the fault
    boost_s: float = 0.0
    skip: str = ""  # why it cannot run in this build
    replicas: int = 1  # router replicas (HAProxy in front when > 1)
    settle_s: float = 5.0  # the "after" probes go out this long after the fault started
    fixed_hold: bool = False  # --hold-s does not shorten it (the issue fixes the link faults)
    resume: bool = False  # clients resume cut streams from their token ids (--resume-streams)
    twin: bool = False  # --no-fault: the same plan and probes, no fault (no burst, no storm)

    def scaled(self, args: argparse.Namespace) -> Scenario:
        """--burst-s / --hold-s shorten the overload and the SIGSTOP (CI runs)."""
        if self.boost_s:
            burst = args.burst_s
            return replace(self, boost_s=burst, settle_s=burst + min(8.0, burst / 3))
        if self.hold_s and not self.fixed_hold:
            return replace(self, hold_s=args.hold_s, settle_s=args.hold_s + 1.0)
        return self

    @property
    def fault_s(self) -> float:
        """How long the fault lasts."""
        storm = STORM_HANG_UP_S if self.name == "disconnect-storm" else 0.0
        return self.hold_s + self.boost_s + storm


def _nodes(dep: Deployment, prefix: str) -> list[str]:
    return [n.name for n in dep.cfg.nodes if n.name.startswith(prefix)]


def _kill(prefix: str, count: int | None = None) -> Callable[[Deployment], None]:
    def fault(dep: Deployment) -> None:
        for name in _nodes(dep, prefix)[:count]:
            dep.kill(name, signal.SIGKILL)
    return fault


def _signal(prefix: str, sig: int) -> Callable[[Deployment], None]:
    def fault(dep: Deployment) -> None:
        for name in _nodes(dep, prefix)[:1]:
            dep.kill(name, sig)
    return fault


def _kill_router(dep: Deployment) -> None:
    dep.kill(dep.router_names[-1], signal.SIGKILL)  # one of the replicas behind HAProxy


def _link_rate(fraction: float) -> Callable[[Deployment], None]:
    """Set every inter-cluster link to `fraction` of its configured rate, live, as the operator
    does (`prfaas link set`: the WAN emulator's shaper and the router's capacity)."""
    def fault(dep: Deployment) -> None:
        for link in dep.cfg.links:
            body = {"gbps": link.gbps * fraction, "src": link.src, "dst": link.dst}
            dep.control("POST", "/internal/link", json=body).raise_for_status()
    return fault


LINK_CUT = 1e-6  # the shaper takes no zero rate: 100 Gbit/s -> 100 kbit/s carries no KV in 10 s


def with_replicas(config: Path, n: int, folder: Path) -> Path:
    """A copy of the deployment file with `[router] replicas = n`."""
    text = config.read_text()
    text = (text.replace("[router]\n", f"[router]\nreplicas = {n}\n", 1) if "[router]\n" in text
            else text + f"\n[router]\nreplicas = {n}\n")
    path = folder / f"{config.stem}-{n}-routers.toml"
    path.write_text(text)
    return path


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("baseline"),
        Scenario("kill-prfaas-node", _kill("prfaas", 1)),
        Scenario("kill-all-prfaas", _kill("prfaas")),
        Scenario("kill-decode", _kill("pd-d", 1)),
        Scenario("sigstop-prefill-20s", _signal("pd-p", signal.SIGSTOP), 20.0,
                 _signal("pd-p", signal.SIGCONT), settle_s=21.0),
        Scenario("overload-3x", rate_boost=3.0, boost_s=30.0, settle_s=38.0),
        # the storm ends with its clients' hang-up; the probes go from 1 s after that
        Scenario("disconnect-storm", settle_s=STORM_HANG_UP_S + 1.0),
        Scenario("million-token-prompts"),
        Scenario("kill-router", _kill_router, replicas=2, resume=True),
        Scenario("link-cut-10s", _link_rate(LINK_CUT), 10.0, _link_rate(1.0), settle_s=11.0,
                 fixed_hold=True),
        Scenario("bandwidth-5pct-60s", _link_rate(0.05), 60.0, _link_rate(1.0), settle_s=61.0,
                 fixed_hold=True),
    )
}
