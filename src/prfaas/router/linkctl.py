"""Live link-rate changes: `prfaas link set` and the deployment's bandwidth schedule.

The router is the one place that changes a link: it tells the WAN emulator (the in-process
shaper's token bucket, or `tc qdisc change` on a netns link) and records the new capacity in its
bandwidth monitor, which the policy's view and the control loop read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from prfaas.deploy.config import LinkConfig
from prfaas.security.tls import WAN

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend

log = logging.getLogger(__name__)


def matching_links(backend: RouterBackend, src: str | None, dst: str | None) -> list[LinkConfig]:
    links = [
        link
        for link in backend.cfg.links
        if (src is None or src in (link.src, link.dst))
        and (dst is None or dst in (link.src, link.dst))
    ]
    if not links:
        raise ValueError(f"no inter-cluster link matches src={src!r} dst={dst!r}")
    return links


async def set_link_rate(
    backend: RouterBackend, gbps: float, src: str | None = None, dst: str | None = None
) -> list[dict[str, Any]]:
    """Set the modelled rate of the matching links (both directions)."""
    if not (0 < gbps < float("inf")):
        raise ValueError(f"gbps must be a positive number, got {gbps!r}")
    out = []
    for link in matching_links(backend, src, dst):
        if backend.wan_url:
            body = {"src": link.src, "dst": link.dst, "gbps": gbps}
            resp = await backend.dispatch.http.post(
                f"{backend.wan_url}/link", json=body, extensions={"sni_hostname": WAN}
            )
            resp.raise_for_status()
        backend.bandwidth.set_capacity(link.src, link.dst, gbps)
        out.append({"src": link.src, "dst": link.dst, "gbps": gbps})
        log.warning("link %s<->%s set to %g Gbit/s (modelled)", link.src, link.dst, gbps)
    return out


async def schedule_loop(backend: RouterBackend) -> None:
    """Apply [control] bandwidth_schedule, timed from the router's first request."""
    windows = backend.cfg.control.bandwidth_schedule
    points = sorted([(s, f) for s, _, f in windows] + [(e, 1.0) for _, e, _ in windows])
    while backend.first_request_s is None:
        await asyncio.sleep(0.05)
    start = backend.first_request_s
    for at, factor in points:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        for link in backend.cfg.links:
            try:
                await set_link_rate(backend, link.gbps * factor, link.src, link.dst)
            except Exception:
                log.exception("bandwidth schedule: setting %s<->%s failed", link.src, link.dst)
