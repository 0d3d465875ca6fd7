"""Ties between equally ranked nodes, broken by the request: the same choice in every driver.

Decode ranks are small integers (requests per slot), so equal ranks are the rule, not the
exception. Broken by node id, equal loads fill in id order: one request placed differently (a
finish a millisecond later in one driver) shifts every later choice of that round by one node,
and the two drivers disagree for a whole decode lifetime. Broken by a hash of the request and
the node, a different tie set changes a choice only when the request prefers the node that
differs. The request's seed is its content (prompt block hashes, lengths), which the simulator
and the router see alike; never its id or arrival time.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prfaas.core.request import RequestSpec
    from prfaas.core.view import NodeView

# A tie is broken among at most this many of the tied nodes (the lowest ids), so a decision
# over an index stays O(log n) in a large idle fleet, where every node ties.
TIE_GROUP = 8
_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a fixed, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def tie_seed(request: RequestSpec) -> int:
    """The request's tie-break seed, from what every driver sees of it alike."""
    last = request.block_hashes[-1] if request.block_hashes else 0
    return mix64((last & _MASK) ^ mix64(request.input_tokens * 1_000_003 + request.output_tokens))


def tie_rank(node_id: str, seed: int) -> tuple[int, str]:
    """How much the request with `seed` prefers `node_id` among tied nodes (lowest first)."""
    return mix64(zlib.crc32(node_id.encode()) ^ seed), node_id


def pick(tied: Iterable[NodeView], seed: int) -> NodeView:
    """The preferred one of the tied nodes (non-empty, at most TIE_GROUP of them)."""
    return min(tied, key=lambda n: tie_rank(n.node_id, seed))
