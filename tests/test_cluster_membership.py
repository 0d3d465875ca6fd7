"""Pool events as vLLM KV events and back, and the router's membership fed by etcd records and
telemetry (no etcd needed: the records are built here)."""

from __future__ import annotations

import msgspec
import pytest

from prfaas.cache.events import EventDecodeError
from prfaas.cache.index import GlobalPrefixIndex
from prfaas.cache.pool import CacheEvent, HybridPrefixPool
from prfaas.cluster.keys import NodeMeta
from prfaas.cluster.kv_events import BlockStored, encode_batch
from prfaas.cluster.pool_events import CLEARED, from_vllm, to_vllm
from prfaas.deploy.config import parse_deployment
from prfaas.router.membership import Membership
from prfaas.worker.messages import Telemetry


def test_a_pool_rebuilt_from_its_vllm_events_equals_the_pool() -> None:
    events: list[CacheEvent] = []
    pool = HybridPrefixPool(40 * 1024, 16, 64, 512, events.append)  # room for a few blocks
    for start in range(0, 400, 7):
        hashes = list(range(start, start + 5))
        pool.insert(hashes, None, {len(hashes) - 1: None})  # a state checkpoint at the end
    index = GlobalPrefixIndex()
    batches = [encode_batch(CLEARED)] + [encode_batch(to_vllm(events[i:i + 9], 16))
                                         for i in range(0, len(events), 9)]
    for payload in batches:
        for ev in from_vllm(payload):
            if ev is None:
                index.drop_location("n")
            else:
                index.apply("n", ev)
    assert index.held("n") == pool.contents() and any(pool.contents().values())


def test_state_blocks_travel_as_a_second_kv_cache_group() -> None:
    out = to_vllm([CacheEvent("stored", 1, False), CacheEvent("stored", 2, False),
                   CacheEvent("stored", 3, True), CacheEvent("evicted", 1, False)], 16)
    kinds = [(type(e).__name__, e.block_hashes, getattr(e, "kv_cache_spec_kind", None))
             for e in out]  # type: ignore[union-attr]
    assert kinds == [("BlockStored", [1, 2], None), ("BlockStored", [3], None),
                     ("BlockStored", [3], "mamba"), ("BlockRemoved", [1], None)]
    assert isinstance(out[0], BlockStored) and out[0].block_size == 16


def test_a_malformed_batch_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError):
        from_vllm(b"\xc1not msgpack")
    with pytest.raises(EventDecodeError):
        from_vllm(msgspec.msgpack.encode({"a": 1}))


def _members() -> Membership:
    return Membership(parse_deployment({
        "deployment": {"name": "t", "block_tokens": 16},
        "engine": {"kind": "emulated", "kv_profile": "paper-table5"},
        "router": {"dead_after_s": 1.0},
        "clusters": [{"name": "pd", "role": "pd", "nodes": [
            {"name": "p0", "role": "prefill", "host": "10.0.0.5"},
            {"name": "d0", "role": "decode", "host": "10.0.0.6"}]}],
    }))


def _meta(name: str = "p0", epoch: float = 1.0, **kw: object) -> NodeMeta:
    return NodeMeta(name, "pd", "prefill", "203.0.113.9:7001", "203.0.113.9:7002",  # type: ignore[arg-type]
                    epoch=epoch, **kw)  # type: ignore[arg-type]


def _load(epoch: float = 1.0) -> Telemetry:
    return Telemetry("p0", epoch, "prefill", False, 0, 0, 0, 1, 1 << 30, 0, 0, 0)


def test_a_record_names_ports_never_hosts() -> None:
    members = _members()
    rec = members.register(_meta(max_context_tokens=4096))
    assert rec.url == "https://10.0.0.5:7001"  # the deployment file's host, the record's port
    assert (rec.transfer_host, rec.transfer_port) == ("10.0.0.5", 7002)
    assert rec.alive and rec.registered and members.context_limit(1 << 20) == 4096


def test_telemetry_of_another_process_is_ignored_and_revives_a_registered_node() -> None:
    members = _members()
    assert not members.telemetry(_load())  # not registered: nothing to update
    members.register(_meta())
    members.index.apply("p0", CacheEvent("stored", 7, True))
    assert not members.telemetry(_load(epoch=2.0))  # an older or newer process's report
    assert members.telemetry(_load())
    members.mark_dead("p0")  # e.g. a refused connection
    assert not members.nodes["p0"].alive and members.index.blocks_held("p0") == 0
    assert members.telemetry(_load()) and members.nodes["p0"].alive  # its lease still lives
    members.nodes["p0"].registered = False  # the lease went (router/cluster_members.py)
    members.mark_dead("p0")
    assert not members.telemetry(_load()) and not members.nodes["p0"].alive


def test_a_new_epoch_drops_the_old_pool_and_all_blocks_cleared_too() -> None:
    members = _members()
    members.register(_meta())
    members.apply_pool_events("p0", [CacheEvent("stored", 1, True), CacheEvent("stored", 2, True)])
    assert members.index.blocks_held("p0") == 2
    members.register(_meta(epoch=2.0))  # a restarted worker
    assert members.index.blocks_held("p0") == 0
    members.apply_pool_events("p0", [CacheEvent("stored", 3, True), None])
    assert members.index.blocks_held("p0") == 0


def test_a_record_rewritten_after_a_switch_ends_the_drain() -> None:
    """The last telemetry before a role switch said `draining`; the record the node rewrites once
    it switched makes it routable at once, not a telemetry period later; stale telemetry of the
    drain cannot bring the flag back."""
    members = _members()
    members.register(_meta())
    draining = Telemetry("p0", 1.0, "prefill", True, 0, 0, 0, 1, 1 << 30, 0, 0, 0)
    assert members.telemetry(draining) and not members.nodes["p0"].usable
    switched = msgspec.structs.replace(_meta(), role="decode", role_version=1)
    rec = members.register(switched)
    assert rec.role == "decode" and not rec.draining and rec.usable
    assert members.telemetry(draining) and not members.nodes["p0"].draining  # older version
