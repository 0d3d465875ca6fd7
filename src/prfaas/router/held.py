"""Only the missing KV crosses (paper §3.3): which prefix the decode node's cluster holds, and
which of its nodes the decode node takes it from (the transformers engine), per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prfaas.policy.placement import Placement
from prfaas.router.live_view import held_tokens
from prfaas.worker.messages import HeldSpec

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend


class HeldMissing(Exception):
    """The decode node could not get the held prefix (evicted, holder gone): nothing was decoded,
    and the request runs again with the whole KV shipped."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node


@dataclass(frozen=True, slots=True)
class Held:
    tokens: int = 0  # prompt tokens whose KV the prefill leaves out
    spec: HeldSpec | None = None  # where the decode node gets them (None: the emulated engine)


def held_prefix(
    b: RouterBackend,
    p: Placement,
    per_node: dict[str, int],
    hashes: tuple[int, ...],
    n_tokens: int,
    full_kv: bool = False,
) -> Held:
    """The prefix the decode node's cluster holds; `full_kv`: none (a retry after a held prefix
    went missing). The emulated engine only leaves the bytes out; a real one needs a holder."""
    if b.cfg.engine.kind == "emulated":
        return Held(held_tokens(b.members, p, per_node, n_tokens, b.block_tokens))
    if full_kv or not p.offloaded:
        return Held()
    nodes = b.members.nodes
    decode = nodes[p.decode_node]
    limit = (n_tokens - 1) // b.block_tokens  # the prefill sends the last token's KV at least
    holders = [
        (min(blocks, limit), name == decode.name, -nodes[name].prefill_inflight, name)
        for name, blocks in per_node.items()
        if name in nodes
        and nodes[name].cluster == decode.cluster
        and nodes[name].alive
        and nodes[name].url
    ]
    if not holders:
        return Held()
    blocks, _, _, src = max(holders)  # the longest; then this node itself, then the least busy
    if blocks <= 0:
        return Held()
    target = b.dispatch.target(decode.cluster, decode)
    spec = HeldSpec(src, blocks, list(hashes[:blocks]), target)
    return Held(blocks * b.block_tokens, spec)
