"""How a request's KV will move, set up by the router: WAN relays in front of a (re)registering
node, and the cache pull that brings a counted-on prefix to the prefill node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prfaas.policy.placement import Placement
from prfaas.security.tls import WAN
from prfaas.worker.messages import PullSpec
from prfaas.worker.wan import link_shape

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend


async def ensure_relays(backend: RouterBackend, node: str, meta: Any) -> None:
    """Ask the WAN emulator for a relay in front of a (re)registering node (its etcd record
    `meta`), per sending cluster whose link to it is shaped; the node becomes routable once
    they exist."""
    rec = backend.members.nodes[node]
    port = int(meta.kv_advertise.rsplit(":", 1)[1])
    if rec.transfer_port == port and rec.alive:
        return
    relays: dict[str, tuple[str, int]] = {}
    if backend.wan_url:
        for c in backend.cfg.clusters:
            if link_shape(backend.cfg, c.name, rec.cluster) is None:
                continue
            body = {"src": c.name, "node": rec.name, "port": port}
            resp = await backend.dispatch.http.post(
                f"{backend.wan_url}/relay", json=body, extensions={"sni_hostname": WAN}
            )
            resp.raise_for_status()
            got = resp.json()
            relays[c.name] = (str(got["host"]), int(got["port"]))
    rec.relays = relays


def pull_spec(backend: RouterBackend, p: Placement, per_node: dict[str, int]) -> PullSpec | None:
    """Where the prefix the policy counted on lives, if the prefill node lacks it."""
    block, nodes = backend.block_tokens, backend.members.nodes
    if p.cache_pull is not None:
        src_cluster, blocks = p.cache_pull.src_cluster, p.cache_pull.tokens // block
    else:
        src_cluster, blocks = p.prefill_cluster, p.prefix_tokens // block
    if blocks <= 0 or per_node.get(p.prefill_node, 0) >= blocks:
        return None
    holders = [
        n
        for n, b in per_node.items()
        if b >= blocks and n != p.prefill_node
        and nodes[n].cluster == src_cluster and nodes[n].alive
    ]
    if not holders:
        return None
    src = min(holders, key=lambda n: (nodes[n].prefill_inflight, n))
    return PullSpec(src, blocks, backend.dispatch.target(src_cluster, nodes[p.prefill_node]))
