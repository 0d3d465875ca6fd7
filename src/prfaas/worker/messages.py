"""Control messages between the router and workers (msgspec JSON: cheap on the hot path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

# Bounds of what a control message may ask for (validated on decode: a 400, never a 500).
Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Name = Annotated[str, msgspec.Meta(max_length=256)]
# Decoded as a list; the router sends tuples (a tuple of ints leaves the GC's young generations
# at its first collection, a list of 100K ints is re-scanned by every one while it lives).
TokenIds = Annotated[Sequence[Annotated[int, msgspec.Meta(ge=0, lt=1 << 32)]],
                     msgspec.Meta(max_length=4 << 20)]


class Sampling(msgspec.Struct, frozen=True):
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)] = 0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    # Decode recovery: the last `resumed` prompt tokens are output a lost decode node already
    # streamed; the continuation is output token `resumed` on (vLLM's recompute recovery).
    resumed: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 0


class Target(msgspec.Struct, frozen=True):
    """Where prefill ships the request's KV: the decode node's transfer endpoint."""

    node: Name
    host: Name
    port: Port


class PullSpec(msgspec.Struct, frozen=True):
    """Fetch a cached prefix from another node (a cross-cluster cache pull) before prefilling;
    the puller finds `src_node` in its membership view (no address travels in the job)."""

    src_node: Name
    blocks: Count
    target: Target  # where the holder sends the blocks: this node, or the WAN relay before it


class PrefillJob(msgspec.Struct, frozen=True):
    request_id: Name
    attempt: Annotated[int, msgspec.Meta(ge=0, le=16)]
    token_ids: TokenIds
    sampling: Sampling
    target: Target
    pull: PullSpec | None = None
    held_tokens: int = 0  # prefix KV the decode node's cluster already holds: not sent (§3.3)


class PrefillReply(msgspec.Struct):
    first_token: int
    reused_tokens: int
    pulled_tokens: int
    queue_s: float
    compute_s: float
    transfer_s: float
    bytes_sent: int


class HeldSpec(msgspec.Struct, frozen=True):
    """The prompt's leading `blocks` blocks, which a node of the decode node's own cluster holds
    and an offloaded prefill leaves out (paper §3.3): the decode node fetches them from
    `src_node`, a name it resolves through membership (no address travels in the job)."""

    src_node: Name
    blocks: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)]
    hashes: Annotated[list[int], msgspec.Meta(min_length=1, max_length=1 << 20)]
    target: Target  # where the holder sends them: the decode node, or a relay in front of it

    def __post_init__(self) -> None:
        if len(self.hashes) != self.blocks:
            raise msgspec.ValidationError("held: one block hash per held block")


class DecodeJob(msgspec.Struct, frozen=True):
    request_id: Name
    prompt_tokens: Count
    sampling: Sampling
    wait_s: Annotated[float, msgspec.Meta(ge=0, le=3600)]  # wait this long for the KV
    held: HeldSpec | None = None  # the prefix to take from its holder instead of the prefill


class TokenLine(msgspec.Struct, omit_defaults=True):
    """One line of a decode stream (NDJSON): the tokens produced since the last line (with their
    text deltas), or an error that ends the stream."""

    t: list[int] = []
    d: list[str] = []
    f: str | None = None  # finish reason: set on the last line
    err: str | None = None
    held_missing: bool = False  # err: the held prefix could not be fetched (retry with full KV)


class PushJob(msgspec.Struct, frozen=True):
    """Ask a cache holder to send `blocks` leading blocks of `hashes` to a peer's transfer port."""

    transfer_id: Name
    hashes: Annotated[list[int], msgspec.Meta(max_length=1 << 20)]
    blocks: Count
    target: Target


class PushReply(msgspec.Struct):
    blocks: int
    bytes_sent: int


class LinkStats(msgspec.Struct):
    """Cumulative transfer counters of one sender toward one destination cluster."""

    bytes_sent: int = 0  # acknowledged by the receivers, as chunks arrive
    transfers: int = 0
    failures: int = 0
    in_flight_bytes: int = 0
    busy_s: float = 0.0  # time with at least one transfer in flight
    rtt_ms: float = 0.0
    retransmit_rate: float = 0.0


class Telemetry(msgspec.Struct):
    """A node's load, pool and link counters, published on its event stream (topic `load@NODE`)
    every heartbeat period; liveness, addresses and identity live in etcd (cluster/keys.py)."""

    node: str
    epoch: float  # process start: telemetry of an older process of the node is ignored
    role: str
    draining: bool
    queue_len: int
    queued_tokens: int
    running: int
    max_batch: int
    free_kv_bytes: int
    pool_used_bytes: int
    pool_hit_tokens: int
    pool_query_tokens: int
    role_version: int = 0  # telemetry older than the router's last role change is stale
    links: dict[str, LinkStats] = {}
    events_seq: int = 0  # the sequence number of the node's next KV event batch


class FaultSpec(msgspec.Struct, frozen=True):
    """Test hooks: die (os._exit) or fail a transfer at a given point, a number of times."""

    # die_in_prefill | die_mid_prefill | fail_transfer | die_in_decode | evict_before_push
    kind: Name
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    after_tokens: Count = 0  # die_in_decode: after emitting this many tokens
