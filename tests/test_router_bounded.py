"""Every router structure that grows with traffic has a bound or a window."""

from __future__ import annotations

import random
import tomllib

from live_support import EMULATED_TOML
from prfaas.cache.hashing import token_block_hashes
from prfaas.cache.pool import CacheEvent, HybridPrefixPool
from prfaas.deploy.config import parse_deployment
from prfaas.router.backend import RouterBackend
from prfaas.router.membership import Membership

CFG = parse_deployment(tomllib.loads(EMULATED_TOML))


def test_per_request_buffers_have_a_bound() -> None:
    backend = RouterBackend(CFG)
    assert backend.rebalancer is None  # the rebalancer is off: nothing drains the windows
    bounded = {
        "decisions": backend.decisions,
        "decision_log": backend.decision_log.entries,
        "recent_offload": backend.recent_offload,
        "route_s": backend.route_s,
        "route_cpu_s": backend.route_cpu_s,
        "observed.inc": backend.observed.inc,
        "observed.out": backend.observed.out,
        "observed.prefill": backend.observed.prefill,
        "observed.link": backend.observed.link,
    }
    for name, buf in bounded.items():
        assert buf.maxlen is not None and buf.maxlen <= 100_000, name
        for _ in range(buf.maxlen + 10):
            buf.append(0)  # type: ignore[arg-type]
        assert len(buf) == buf.maxlen, name


def _events(pool: HybridPrefixPool) -> list[CacheEvent | None]:
    events: list[CacheEvent | None] = []
    pool.subscribe(events.append)
    return events


def test_the_prefix_index_is_bounded_by_the_real_pool() -> None:
    """A node's pool evicts; the router's index follows its event stream, bounded by the pool."""
    members = Membership(CFG)
    pool = HybridPrefixPool(64 * 16 * 100, 16, 100, 0)  # room for 64 blocks of 16 tokens
    events = _events(pool)
    rng = random.Random(0)
    for _ in range(2000):  # ~16K blocks of unique prompts through a 64-block pool
        tokens = [rng.randrange(1 << 30) for _ in range(16 * 8)]
        pool.insert(token_block_hashes(tokens, 16), None, {})
        members.apply_pool_events("pd-p0", events)
        events.clear()
    assert members.index.blocks_held("pd-p0") == len(pool) <= 64
