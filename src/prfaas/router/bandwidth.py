"""The bandwidth monitor: per inter-cluster link egress (EWMA), in-flight bytes, RTT, retransmits.

Fed by the transfer counters every sender reports in its heartbeats. Everything is converted back
to the modelled deployment's units, so the policy compares it with the link capacity written in
the deployment file: the emulated engine moves payload_scale x the bytes (bytes are divided by
it) and runs time_scale x faster (a wall second is time_scale modelled seconds; rates are divided
by both, quantities of bytes, such as those in flight, by payload_scale only).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from prfaas.deploy.config import DeploymentConfig
from prfaas.worker.messages import LinkStats

EWMA_TAU_S = 2.0


@dataclass(slots=True)
class LinkState:
    src: str
    dst: str
    capacity_gbps: float
    rtt_ms: float
    egress_gbps: float = 0.0  # modelled Gbit/s, EWMA
    in_flight_bytes: int = 0  # modelled bytes
    retransmit_rate: float = 0.0
    bytes_total: int = 0  # modelled bytes since start
    last_update: float = 0.0
    _per_sender: dict[str, LinkStats] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"


class BandwidthMonitor:
    def __init__(self, cfg: DeploymentConfig) -> None:
        emulated = cfg.engine.kind == "emulated"
        self.payload_scale = cfg.engine.payload_scale if emulated else 1.0
        self.time_scale = cfg.engine.time_scale if emulated else 1.0
        self.links: dict[tuple[str, str], LinkState] = {}
        for link in cfg.links:
            for a, b in ((link.src, link.dst), (link.dst, link.src)):
                self.links[(a, b)] = LinkState(a, b, link.gbps, link.rtt_ms)

    def set_capacity(self, a: str, b: str, gbps: float) -> None:
        """A new modelled capacity for the link between clusters a and b (both directions)."""
        for key in ((a, b), (b, a)):
            if key in self.links:
                self.links[key].capacity_gbps = gbps

    def report(
        self, node: str, src_cluster: str, stats: dict[str, LinkStats], now: float | None = None
    ) -> None:
        """Cumulative counters of one sender; the byte delta since its last report is new egress."""
        now = time.monotonic() if now is None else now
        for dst, s in stats.items():
            link = self.links.get((src_cluster, dst))
            if link is None:
                continue  # intra-cluster traffic: not a WAN link
            prev = link._per_sender.get(node)
            delta = s.bytes_sent - prev.bytes_sent if prev is not None else s.bytes_sent
            link._per_sender[node] = s
            self._add(link, max(delta, 0), now)
            link.in_flight_bytes = round(
                sum(p.in_flight_bytes for p in link._per_sender.values()) / self.payload_scale
            )
            link.retransmit_rate = max(p.retransmit_rate for p in link._per_sender.values())
            if s.rtt_ms > 0:
                link.rtt_ms = s.rtt_ms

    def _add(self, link: LinkState, delta_bytes: int, now: float) -> None:
        modelled = delta_bytes / self.payload_scale
        link.bytes_total += round(modelled)
        if link.last_update == 0.0:
            link.last_update = now
            return
        dt = now - link.last_update
        if dt <= 0:
            # Several senders report at once: fold their bytes into the current estimate.
            link.egress_gbps += modelled * 8 / 1e9 / (EWMA_TAU_S * self.time_scale)
            return
        alpha = 1.0 - math.exp(-dt / EWMA_TAU_S)
        rate = modelled * 8 / 1e9 / (dt * self.time_scale)
        link.egress_gbps += alpha * (rate - link.egress_gbps)
        link.last_update = now

    def decay(self, now: float | None = None) -> None:
        """Idle links decay toward zero even when no sender reports bytes."""
        now = time.monotonic() if now is None else now
        for link in self.links.values():
            if link.last_update and now - link.last_update > 0.5:
                self._add(link, 0, now)
