"""What a routing decision says: prefill node, decode node, an optional cache pull, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachePull:
    """Copy a cached prefix (KV blocks + the linear state at its end) between clusters first."""

    src_cluster: str
    dst_cluster: str
    tokens: int  # prefix length the destination will hold after the pull
    from_tokens: int = 0  # prefix the destination already held (only the rest crosses the link)


@dataclass(frozen=True, slots=True)
class Placement:
    """One routing decision. `prefill_node == ""` means the request is rejected (see reason)."""

    prefill_node: str
    decode_node: str
    cache_pull: CachePull | None
    reason: str
    prefill_cluster: str = ""
    prefix_tokens: int = 0  # prefix the prefill node is expected to reuse
    threshold_tokens: int = 0  # the effective threshold t the decision used (0 if none)
    offloaded: bool = False  # prefill runs in a PrfaaS cluster
    # The threshold search's t for the link as the view shows it, before the per-request
    # egress / queue triggers scale it (what the control loop sets; 0 if none).
    planned_threshold_tokens: int = 0

    @classmethod
    def reject(cls, reason: str) -> Placement:
        return cls(prefill_node="", decode_node="", cache_pull=None, reason=reason)

    @property
    def rejected(self) -> bool:
        return not self.prefill_node
