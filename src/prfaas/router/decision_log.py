"""Every routing decision the router made, in routing order, for `GET /internal/decisions`.

The dashboard keeps the last 50 decisions; this log keeps up to `capacity` so a benchmark can join
a whole run to its workload (sim-vs-live agreement). An entry is written when the policy decides
(with what the view showed: prefill queues, decode loads, prefix matches) and completed when the
prefill returns (the node that really ran it, the tokens it reused).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from prfaas.core.view import ClusterView
from prfaas.policy.placement import Placement
from prfaas.worker.messages import PrefillReply

DEFAULT_CAPACITY = 2048  # ~2-4 KB each with a 12-node view: under 8 MB when full


SUMMARY_NODES = 64  # larger views log only the chosen nodes: O(1) per decision, bounded memory


def view_summary(view: ClusterView, chosen: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the decision saw, compactly: queued prefill tokens and decode [running, waiting] per
    node, the prefix each cluster holds for this request, and link utilisation and drain time
    (in-flight bytes at the capacity, seconds). Past
    SUMMARY_NODES nodes only the `chosen` ones are listed, and `nodes` gives the count."""
    prefill: dict[str, int] = {}
    decode: dict[str, list[int]] = {}
    size = sum(c.size() for c in view.clusters)
    for c in view.clusters:
        if size > SUMMARY_NODES:
            nodes = tuple(n for n in (c.node(i) for i in chosen) if n is not None)
        else:
            nodes = c.nodes
        for n in nodes:
            if n.role == "prefill":
                prefill[n.node_id] = n.queued_tokens
            else:
                decode[n.node_id] = [n.running, n.queue_len]  # queue: KV not arrived, or no slot
    prefix: dict[str, int] = {}
    for m in view.matches:
        prefix[m.cluster] = max(prefix.get(m.cluster, 0), m.tokens)
    links = {f"{lk.src}->{lk.dst}": round(lk.utilisation, 4) for lk in view.links}
    drain = {f"{lk.src}->{lk.dst}": round(lk.drain_s, 4) for lk in view.links}
    out = {
        "prefill_queued": prefill,
        "decode_load": decode,
        "prefix": prefix,
        "util": links,
        "drain_s": drain,
    }
    if size > SUMMARY_NODES:
        out["nodes"] = size
    return out


class DecisionLog:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.count = 0  # decisions ever made; an entry's `seq` is its 1-based rank

    def add(
        self,
        request_id: str,
        tag: int | None,
        arrival_s: float,
        routed_s: float,
        input_tokens: int,
        placement: Placement,
        view: ClusterView,
    ) -> dict[str, Any]:
        """`tag`: the client's `seed` (`prfaas bench` sends its plan index there when tagging)."""
        self.count += 1
        pull = placement.cache_pull
        entry: dict[str, Any] = {
            "seq": self.count,
            "request_id": request_id,
            "tag": tag,
            "arrival_s": arrival_s,
            "routed_s": routed_s,
            "input_tokens": input_tokens,
            "prefill_node": placement.prefill_node,
            "prefill_cluster": placement.prefill_cluster,
            "decode_node": placement.decode_node,
            "offloaded": placement.offloaded,
            "prefix_tokens": placement.prefix_tokens,
            "threshold_tokens": placement.threshold_tokens,
            "planned_threshold_tokens": placement.planned_threshold_tokens,
            "cache_pull": None if pull is None else [pull.src_cluster, pull.tokens],
            "reason": placement.reason,
            "view": view_summary(view, (placement.prefill_node, placement.decode_node)),
            # Set when the prefill returns (worker-measured seconds, wall clock):
            "ran_on": None,
            "reused_tokens": None,
            "queue_s": None,
            "compute_s": None,
            "transfer_s": None,
            "replied_s": None,
            "first_token_s": None,  # when the router saw the first token (its clock)
        }
        self.entries.append(entry)
        return entry

    @staticmethod
    def complete(entry: dict[str, Any], ran_on: str, reply: PrefillReply) -> None:
        """The prefill returned (its KV reached the decode node): where it ran, what it reused."""
        entry.update(
            ran_on=ran_on,
            reused_tokens=reply.reused_tokens,
            queue_s=reply.queue_s,
            compute_s=reply.compute_s,
            transfer_s=reply.transfer_s,
            replied_s=time.monotonic(),
        )

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        """Entries with seq > `seq`, oldest first."""
        return [e for e in self.entries if e["seq"] > seq]
