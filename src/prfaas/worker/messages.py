"""Control messages between the router and workers (msgspec JSON: cheap on the hot path)."""

from __future__ import annotations

import msgspec

# One cache event on the wire: (seq, kind "s"tored | "e"victed, block hash, has_state).
WireEvent = tuple[int, str, int, bool]


class Sampling(msgspec.Struct, frozen=True):
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


class Target(msgspec.Struct, frozen=True):
    """Where prefill ships the request's KV: the decode node's transfer endpoint."""

    node: str
    host: str
    port: int


class PullSpec(msgspec.Struct, frozen=True):
    """Fetch a cached prefix from another node (a cross-cluster cache pull) before prefilling."""

    src_node: str
    src_url: str
    blocks: int
    target: Target  # where the holder sends the blocks: this node, or the WAN relay before it


class PrefillJob(msgspec.Struct, frozen=True):
    request_id: str
    attempt: int
    token_ids: list[int]
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
    events: list[WireEvent] = []


class DecodeJob(msgspec.Struct, frozen=True):
    request_id: str
    prompt_tokens: int
    sampling: Sampling
    wait_s: float  # how long to wait for the KV before giving up


class TokenLine(msgspec.Struct, omit_defaults=True):
    """One line of a decode stream (NDJSON): the tokens produced since the last line (with their
    text deltas), or an error that ends the stream."""

    t: list[int] = []
    d: list[str] = []
    f: str | None = None  # finish reason: set on the last line
    err: str | None = None


class PushJob(msgspec.Struct, frozen=True):
    """Ask a cache holder to send `blocks` leading blocks of `hashes` to a peer's transfer port."""

    transfer_id: str
    hashes: list[int]
    blocks: int
    target: Target


class PushReply(msgspec.Struct):
    blocks: int
    bytes_sent: int


class LinkStats(msgspec.Struct):
    """Cumulative transfer counters of one sender toward one destination cluster."""

    bytes_sent: int = 0
    transfers: int = 0
    failures: int = 0
    in_flight_bytes: int = 0
    busy_s: float = 0.0  # time with at least one transfer in flight
    rtt_ms: float = 0.0
    retransmit_rate: float = 0.0


class Heartbeat(msgspec.Struct):
    node: str
    cluster: str
    url: str
    transfer_host: str
    transfer_port: int
    epoch: float  # process start: a restarted node announces a new epoch
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
    max_context_tokens: int = 0
    role_version: int = 0  # a heartbeat older than the router's last role change is stale
    needs_state: bool = True  # prefix reuse needs a linear-state checkpoint (hybrid models)
    events: list[WireEvent] = []
    links: dict[str, LinkStats] = {}


class RoleChange(msgspec.Struct, frozen=True):
    role: str


class FaultSpec(msgspec.Struct, frozen=True):
    """Test hooks: die (os._exit) or fail a transfer at a given point, a number of times."""

    kind: str  # die_in_prefill | die_mid_prefill | fail_transfer | die_in_decode
    count: int = 1
    after_tokens: int = 0  # die_in_decode: after emitting this many tokens
