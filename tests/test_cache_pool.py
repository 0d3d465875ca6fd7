"""Hybrid prefix-cache pool, chained hashing and the global index: table tests + properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.cache.hashing import chain_hashes, token_block_hashes
from prfaas.cache.index import GlobalPrefixIndex, best_per_cluster
from prfaas.cache.pool import CacheEvent, HybridPrefixPool

BT = 4  # tokens per block in these tests


def pool(capacity: int = 10_000, state_bytes: int = 0, events: list[CacheEvent] | None = None):
    return HybridPrefixPool(capacity, BT, kv_bytes_per_token=10, state_bytes=state_bytes,
                            on_event=events.append if events is not None else None)


def test_chained_hashes_identify_prefixes_not_blocks():
    a = chain_hashes([1, 2, 3])
    b = chain_hashes([9, 2, 3])
    assert len(a) == 3 and len(set(a)) == 3
    assert a[1] != b[1] and a[2] != b[2]  # same block id after a different root differs
    assert chain_hashes([1, 2]) == a[:2]


def test_token_block_hashes_skip_partial_tail_and_are_deterministic():
    tokens = list(range(10))
    hashes = token_block_hashes(tokens, BT)
    assert len(hashes) == 2
    assert hashes == token_block_hashes(tokens[:8], BT)
    assert token_block_hashes([0, 1, 2, 4], BT) != token_block_hashes([0, 1, 2, 3], BT)
    with pytest.raises(ValueError):
        token_block_hashes(tokens, 0)


@pytest.mark.parametrize(
    ("stored", "state_at", "query", "kv_blocks", "usable"),
    [
        ([1, 2, 3], {}, [1, 2, 3, 4], 3, 3),  # pure attention: any KV prefix is usable
        ([1, 2, 3], {}, [9, 2, 3], 0, 0),  # chain broken at the root
        ([1, 2], {}, [1, 2, 3], 2, 2),
    ],
)
def test_attention_only_prefix_match(stored, state_at, query, kv_blocks, usable):
    p = pool()
    p.insert(chain_hashes(stored), state_payloads=state_at)
    m = p.match(chain_hashes(query))
    assert (m.kv_blocks, m.usable_blocks, m.usable_tokens) == (kv_blocks, usable, usable * BT)


@pytest.mark.parametrize(
    ("state_at", "query_len", "usable"),
    [
        ({2: "s3"}, 4, 3),  # checkpoint at the end of block 3 -> reuse 3 blocks
        ({2: "s3"}, 3, 3),
        ({2: "s3"}, 2, 0),  # KV for 2 blocks exists, but no state at length 2: not reusable
        ({0: "s1", 2: "s3"}, 2, 1),  # falls back to the last boundary that has a state
        ({}, 3, 0),
    ],
)
def test_linear_state_reused_only_at_exact_checkpoint(state_at, query_len, usable):
    p = pool(state_bytes=7)
    hashes = chain_hashes([1, 2, 3])
    p.insert(hashes, kv_payloads=["k1", "k2", "k3"], state_payloads=state_at)
    query = chain_hashes([1, 2, 3, 4][:query_len])
    m = p.match(query)
    assert m.usable_blocks == usable
    if usable:
        kv, state = p.lookup(query, usable)
        assert kv == ["k1", "k2", "k3"][:usable]
        assert state == state_at[usable - 1]
    else:
        with pytest.raises(KeyError):
            p.lookup(query, max(1, min(query_len, 3)))


def test_lru_eviction_trims_chain_tails_and_emits_events():
    events: list[CacheEvent] = []
    p = pool(capacity=3 * BT * 10, events=events)  # room for exactly 3 blocks
    a = chain_hashes([1, 2])
    b = chain_hashes([7, 8])
    p.insert(a)
    p.insert(b[:1])
    assert p.used_bytes == 3 * BT * 10
    p.insert(b)  # needs one more block: evicts the tail of a first
    assert a[0] in p and a[1] not in p
    assert [e.kind for e in events].count("evicted") == 1
    assert events[-1].kind == "stored" and events[-1].block_hash == b[1]


def test_transfer_reservations_pin_bytes_and_release():
    p = pool(capacity=100)
    p.insert(chain_hashes([1]))  # 40 bytes of prefix cache
    assert p.reserve_transfer("r1", 80)  # evicts the prefix block
    assert len(p) == 0 and p.used_bytes == 80
    assert not p.reserve_transfer("r2", 30)  # reservations are never evicted
    with pytest.raises(ValueError):
        p.reserve_transfer("r1", 1)
    p.release_transfer("r1")
    assert p.used_bytes == 0 and p.reserve_transfer("r2", 30)


def test_counters_track_token_hit_rate():
    p = pool()
    p.insert(chain_hashes([1, 2]))
    p.match(chain_hashes([1, 2, 3, 4]))
    p.match(chain_hashes([5]))
    s = p.stats()
    assert (s.queries, s.hits, s.misses) == (2, 1, 1)
    assert s.query_tokens == 5 * BT and s.hit_tokens == 2 * BT
    assert s.token_hit_rate == pytest.approx(0.4)


def test_global_index_follows_pool_events():
    index = GlobalPrefixIndex(needs_state=True)
    p1 = HybridPrefixPool(10_000, BT, 10, 5, on_event=index.listener("pd/p0"))
    p2 = HybridPrefixPool(10_000, BT, 10, 5, on_event=index.listener("prfaas/n0"))
    h = chain_hashes([1, 2, 3])
    p1.insert(h[:2], state_payloads={1: None})
    p2.insert(h, state_payloads={0: None, 2: None})
    assert index.match(h) == {"pd/p0": 2, "prfaas/n0": 3}
    assert best_per_cluster(index.match(h), lambda loc: loc.split("/")[0]) == {"pd": 2, "prfaas": 3}
    index.drop_location("prfaas/n0")
    assert index.match(h) == {"pd/p0": 2}


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.lists(st.integers(0, 5), min_size=1, max_size=6), st.booleans()),
        min_size=1, max_size=25,
    ),
    capacity_blocks=st.integers(1, 12),
)
def test_pool_invariants_under_random_inserts(ops, capacity_blocks):
    """Bytes never exceed capacity; usable matches always have a state; index mirrors the pool."""
    index = GlobalPrefixIndex(needs_state=True)
    block_bytes = BT * 10
    p = HybridPrefixPool(capacity_blocks * block_bytes + 3, BT, 10, 3, on_event=index.listener("x"))
    for ids, with_state in ops:
        hashes = chain_hashes(ids)
        states = {len(hashes) - 1: "s"} if with_state else {}
        p.insert(hashes, state_payloads=states)
        assert p.used_bytes <= p.capacity_bytes
        m = p.peek(hashes)
        assert m.usable_blocks <= m.kv_blocks <= len(hashes)
        if m.usable_blocks:
            _, state = p.lookup(hashes, m.usable_blocks)
            assert state == "s"
        assert index.match(hashes).get("x", 0) == m.usable_blocks
