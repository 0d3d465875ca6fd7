"""KV events over real ZMQ: vLLM-style publishers connect to the router's bound SUB socket."""

from __future__ import annotations

import asyncio
import socket

import msgspec
import zmq

from prfaas.cache.hashing import token_block_hashes
from prfaas.cache.index import GlobalPrefixIndex
from prfaas.router.vllm_events import EventSubscriber, node_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_topic_names_the_node():
    assert node_of(b"kv@pd-p0") == "pd-p0" and node_of(b"kv@pd-p0@qwen") == "pd-p0"


def test_published_batches_reach_the_index_per_node():
    tokens = list(range(8))
    stored = {"type": "BlockStored", "block_hashes": [b"a", b"b"], "parent_block_hash": None,
              "token_ids": tokens, "block_size": 4, "lora_id": None, "medium": "GPU",
              "lora_name": None, "group_idx": 0, "kv_cache_spec_kind": "full_attention"}
    partial = {**stored, "block_hashes": [b"c"], "parent_block_hash": b"b", "token_ids": [9],
               "block_size": 1}
    payload = msgspec.msgpack.encode([0.0, [stored, partial], 0])

    async def run() -> GlobalPrefixIndex:
        index = GlobalPrefixIndex(needs_state=False)
        sub = EventSubscriber(index)
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        sub.start(endpoint, {"p0": 4})
        pub = zmq.Context.instance().socket(zmq.PUB)
        pub.connect(endpoint)  # what vLLM does for a non-wildcard endpoint
        try:
            for _ in range(100):  # ZMQ drops messages sent before the subscription is up
                pub.send_multipart([b"kv@p0", (1).to_bytes(8, "big"), payload])
                pub.send_multipart([b"kv@d0", (1).to_bytes(8, "big"), payload])  # not a feed
                await asyncio.sleep(0.05)
                if sub.batches:
                    break
        finally:
            pub.close(linger=0)
            await sub.close()
        return index

    index = asyncio.run(run())
    assert index.match(token_block_hashes(tokens, 4)) == {"p0": 2}
    assert index.blocks_held("d0") == 0 and index.blocks_held("p0") == 2  # partial block skipped
