"""Planner deployments -> simulator setups: each policy runs on the deployment planned for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from prfaas.control.params import derive_params
from prfaas.core.metrics import SloSpec
from prfaas.errors import UsageError
from prfaas.planner.result import PlanResult
from prfaas.planner.scenario import Scenario
from prfaas.policy.params import PolicyParams
from prfaas.policy.registry import DEPLOYMENT_OF, get_policy
from prfaas.sim.bandwidth import BandwidthSchedule
from prfaas.sim.setup import GIB, ClusterSpec, RebalanceSetup, SimSetup


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Simulator knobs the planner does not model (defaults documented in docs/results.md)."""

    rtt_ms: float = 10.0
    decode_kv_gib: float = 64.0
    cache_gib_per_node: float = 512.0
    chunk_tokens: int = 0
    num_layers: int = 60
    sample_s: float = 1.0
    ttft_slo_s: float = 30.0
    bandwidth: BandwidthSchedule = field(default_factory=BandwidthSchedule)
    rebalance_period_s: float | None = 300.0  # `prfaas` only; None disables
    threshold_tokens: int | None = None  # override the planner's t


def deployment_summary(plan: PlanResult, policy: str) -> dict[str, int | None]:
    d = plan.deployments[DEPLOYMENT_OF[policy]]
    return {
        "n_prfaas": d.n_prfaas,
        "n_p": d.n_p,
        "n_d": d.n_d,
        "threshold_tokens": d.threshold_tokens,
    }


def _clusters(
    scn: Scenario, plan: PlanResult, policy: str, cache_gib: float
) -> tuple[ClusterSpec, ...]:
    key = DEPLOYMENT_OF[policy]
    d = plan.deployments[key]
    n_p, n_d, n_remote = d.n_p or 0, d.n_d, d.n_prfaas or 0
    per_node = int(cache_gib * GIB)
    pd = ClusterSpec("pd", "pd", n_p, n_d, scn.pd_prefill, per_node * (n_p + n_d))
    if key == "homogeneous":
        return (pd,)
    remote = ClusterSpec("prfaas", "prfaas", n_remote, 0, scn.prfaas_prefill, per_node * n_remote)
    return (remote, pd)


def policy_params(
    scn: Scenario, plan: PlanResult, policy: str, threshold: int | None = None
) -> PolicyParams:
    d = plan.deployments[DEPLOYMENT_OF[policy]]
    t = threshold if threshold is not None else (d.threshold_tokens or 0)
    if policy != "prfaas":
        return PolicyParams(threshold_tokens=t)
    return derive_params(scn, d.n_p or 0, d.n_d, t)


def build_setup(scn: Scenario, plan: PlanResult, policy: str, opts: SimOptions) -> SimSetup:
    """The SimSetup for `policy` on the deployment the planner chose for it."""
    get_policy(policy)  # UsageError listing valid names
    if opts.num_layers < 1 or opts.sample_s <= 0 or opts.decode_kv_gib <= 0:
        raise UsageError("--num-layers, --sample-s and --decode-kv-gib must be positive")
    rebalance = None
    if policy == "prfaas" and opts.rebalance_period_s:
        rebalance = RebalanceSetup(period_s=opts.rebalance_period_s)
    return SimSetup(
        policy=policy,
        params=policy_params(scn, plan, policy, opts.threshold_tokens),
        clusters=_clusters(scn, plan, policy, opts.cache_gib_per_node),
        kv=scn.kv_size,
        decode=scn.decode,
        link_gbps=scn.link_gbps,
        rtt_ms=opts.rtt_ms,
        bandwidth=opts.bandwidth,
        decode_kv_bytes=int(opts.decode_kv_gib * GIB),
        num_layers=opts.num_layers,
        chunk_tokens=opts.chunk_tokens,
        sample_s=opts.sample_s,
        slo=SloSpec(ttft_s=opts.ttft_slo_s, tpot_s=scn.decode.t_decode_s),
        rebalance=rebalance,
        scenario=scn,
    )
