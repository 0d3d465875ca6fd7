"""What to simulate: clusters and their node counts, profiles, link, policy and knobs (frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prfaas.core.metrics import SloSpec
from prfaas.core.view import ClusterRole
from prfaas.policy.admission import AdmissionLimits
from prfaas.policy.params import PolicyParams
from prfaas.profiles import DecodeProfile, KvSizeProfile, PrefillProfile
from prfaas.sim.bandwidth import BandwidthSchedule

GIB = 2**30
DEFAULT_SLO = SloSpec(ttft_s=30.0, tpot_s=0.025)


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """One cluster: role, prefill / decode instance counts, prefill profile, cache pool size."""

    name: str
    role: ClusterRole
    prefill_nodes: int
    decode_nodes: int
    prefill: PrefillProfile
    cache_bytes: int  # hybrid prefix-cache pool for the whole cluster (0 disables caching)
    node_ids: tuple[str, ...] = ()  # prefill nodes first, then decode; default CLUSTER-00, ...


@dataclass(frozen=True, slots=True)
class RebalanceSetup:
    """Long-timescale rebalancing: period and the planner model it re-optimises with."""

    period_s: float
    hysteresis: float = 0.10
    max_moves: int = 1
    min_samples: int = 1000
    window_periods: int = 4  # statistics cover the last this many periods
    min_profile_samples: int = 30  # prefills per cluster role before the fitted T(l) is used


@dataclass(frozen=True, slots=True)
class SimSetup:
    """Everything one run needs besides the request list.

    Defaults that the paper does not give are assumptions, documented in docs/results.md:
    rtt_ms 10 (same-region VPC), 60 layers for layer-wise pipelining granularity, 800 Gbps
    intra-cluster RDMA (paper §4.1), 64 GiB decode KV memory per instance, 512-token blocks
    (Mooncake's trace block size).
    """

    policy: str
    params: PolicyParams
    clusters: tuple[ClusterSpec, ...]
    kv: KvSizeProfile
    decode: DecodeProfile
    link_gbps: float
    rtt_ms: float = 10.0
    bandwidth: BandwidthSchedule = field(default_factory=BandwidthSchedule)
    decode_kv_bytes: int = 64 * GIB
    num_layers: int = 60
    rdma_gbps: float = 800.0
    chunk_tokens: int = 0
    block_tokens: int = 512
    sample_s: float = 1.0
    ewma_tau_s: float = 2.0
    slo: SloSpec = DEFAULT_SLO
    rebalance: RebalanceSetup | None = None
    scenario: object = None  # the planner Scenario, for rebalancing and threshold tables
    # Mirrors of the live deployment's emulated engine (prfaas.sim.from_deployment sets them):
    # decode_chunk_steps: decode steps per batch iteration (engine.decode_chunk_tokens): requests
    #   join a running batch and leave it only at iteration boundaries.
    # full_kv_transfer: ship the request's whole KV, even the part the decode cluster holds.
    # decode_free_in_view: report unreserved decode KV memory in the view (False: the capacity,
    #   as the live router does, which learns no per-request KV reservations).
    # routed_queue_tokens: a prefill queue counts each job at the incremental length estimated
    #   when it was routed until its KV reached the decode node (all the live router knows: it
    #   learns both from the prefill reply), instead of correcting it to the real one when the
    #   prefill starts and dropping it when the compute ends.
    # node_pools: a prefill reuses only its node's own pool (what it prefilled, what was pulled to
    #   it when routed), as a live worker does, not the cluster pool (sim/node_pools.py).
    decode_chunk_steps: int = 1
    full_kv_transfer: bool = False
    decode_free_in_view: bool = True
    routed_queue_tokens: bool = False
    node_pools: bool = False
    # admission: shed placed requests as the live router's admission control does (its [limits]
    #   in modelled seconds); None admits everything (the simulator's own runs).
    admission: AdmissionLimits | None = None
    # pipeline_s: the live pipeline's latency outside the modelled stages (dispatch, the KV's
    #   hand-over to the decode, the stream back to the router), applied when a request's KV
    #   reaches its decode node; measured from a live run (bench.simlive.pipeline_latency_s).
    pipeline_s: float = 0.0
