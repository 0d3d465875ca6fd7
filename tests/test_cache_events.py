"""vLLM/SGLang KV-event decoding (both wire forms) and the event-fed prefix index."""

from __future__ import annotations

import msgspec
import pytest

from prfaas.cache.events import (
    Cleared,
    EventDecodeError,
    EventFedIndex,
    Removed,
    Stored,
    decode_batch,
)
from prfaas.cache.hashing import token_block_hashes
from prfaas.cache.index import GlobalPrefixIndex

BS = 4


def _map_stored(hashes, parent, tokens, kind="full_attention", group=0):
    return {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": parent,
            "token_ids": tokens, "block_size": BS, "lora_id": None, "medium": "GPU",
            "lora_name": None, "group_idx": group, "kv_cache_spec_kind": kind}


def _batch(events):
    return msgspec.msgpack.encode([1.5, events, 0])


def test_map_and_array_forms_decode_the_same():
    as_map = _map_stored([b"h1", b"h2"], None, list(range(8)))
    as_array = ["BlockStored", [b"h1", b"h2"], None, list(range(8)), BS, None, "GPU", None,
                None, 0, "full_attention"]
    ts, a = decode_batch(_batch([as_map]))
    _, b = decode_batch(_batch([as_array]))
    assert ts == pytest.approx(1.5)
    assert a == b
    assert isinstance(a[0], Stored) and a[0].block_hashes == (b"h1", b"h2")
    _, rest = decode_batch(_batch([{"type": "BlockRemoved", "block_hashes": [7], "medium": None},
                                   ["AllBlocksCleared"], {"type": "SomethingNew"}]))
    assert rest == [Removed((7,), None, None), Cleared()]


def test_garbage_is_a_clear_error():
    with pytest.raises(EventDecodeError):
        decode_batch(b"\xc1not msgpack")
    with pytest.raises(EventDecodeError):
        decode_batch(msgspec.msgpack.encode({"ts": 1}))


def test_index_fed_by_events_predicts_the_router_side_hashes():
    index = GlobalPrefixIndex(needs_state=False)
    feed = EventFedIndex("node-a", index.apply)
    tokens = list(range(100, 112))  # three blocks of 4
    _, evs = decode_batch(_batch([_map_stored([b"e1", b"e2"], None, tokens[:8]),
                                  _map_stored([b"e3"], b"e2", tokens[8:12]),
                                  _map_stored([b"m1"], None, tokens[:4], kind="mamba", group=1)]))
    feed.apply(evs)
    ours = token_block_hashes([*tokens, 1, 2], BS)
    assert index.match(ours) == {"node-a": 3}
    assert index.match(token_block_hashes([9, *tokens[1:]], BS)) == {}
    feed.apply([Removed((b"e2",), 0, "GPU")])
    assert index.match(ours) == {"node-a": 1}
    feed.apply([Cleared()])
    assert index.match(ours) == {}


def test_unknown_parent_and_offloaded_tiers_are_ignored():
    index = GlobalPrefixIndex(needs_state=False)
    feed = EventFedIndex("n", index.apply)
    orphan = Stored((b"x",), b"never-seen", (1, 2, 3, 4), BS, 0, "full_attention", "GPU")
    cpu = Stored((b"y",), None, (1, 2, 3, 4), BS, 0, "full_attention", "CPU")
    feed.apply([orphan, cpu])
    assert index.blocks_held("n") == 0
