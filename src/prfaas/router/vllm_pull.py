"""Execute a policy CachePull between vLLM prefill instances with the connector's own contract."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx

from prfaas.policy.placement import CachePull
from prfaas.router.vllm_nodes import VllmFleet, VllmNode

log = logging.getLogger(__name__)


def pull_source(fleet: VllmFleet, pull: CachePull, matches: dict[str, int],
                dst: VllmNode) -> tuple[VllmNode, int] | None:
    """The prefill node of the pull's source cluster holding the longest prefix (its blocks)."""
    held = [(blocks, name) for name, blocks in matches.items()
            if name in fleet.nodes and name != dst.name and fleet.nodes[name].role == "prefill"
            and fleet.nodes[name].cluster == pull.src_cluster]
    if not held:
        return None
    blocks, name = max(held)
    return fleet.nodes[name], blocks


async def pull_prefix(http: httpx.AsyncClient, model: str, src: VllmNode, dst: VllmNode,
                      prompt: list[int]) -> dict[str, Any]:
    """Bring `prompt[:-1]` (whole blocks, cached on `src`) into `dst`'s prefix cache.

    `src` prefills `prompt` for `dst` as for a decode instance (its connector drops the last
    token and pushes the KV blocks and GDN state of the rest); `dst` runs `prompt` as a
    remote-prefill request: it loads the prefix, computes the one extra token and keeps the
    prefix cached, where the real prefill finds it. The extra token matters for hybrids: vLLM
    caches a recurrent state only at a block boundary *before* a prompt's end. A failed push
    costs `dst` a recompute only."""
    tid = f"pull-{uuid.uuid4().hex}"
    body = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0}
    hops = [(src, {"do_remote_decode": True, "do_remote_prefill": False, "transfer_id": tid,
                   "remote_engine_id": dst.engine_id}),
            (dst, {"do_remote_decode": False, "do_remote_prefill": True, "transfer_id": tid,
                   "remote_engine_id": src.engine_id})]
    entry: dict[str, Any] = {"src": src.name, "dst": dst.name, "tokens": len(prompt) - 1,
                             "transfer_id": tid, "ok": True}
    for node, params in hops:
        try:
            r = await http.post(f"{node.url}/v1/completions",
                                json={**body, "kv_transfer_params": params},
                                headers={"X-Request-Id": tid})
            r.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("cache pull %s -> %s failed at %s: %s", src.name, dst.name, node.name, exc)
            entry.update(ok=False, error=f"{node.name}: {type(exc).__name__}: {exc}")
            break
    return entry
