"""A live deployment file (`prfaas up`'s TOML) -> the SimSetup that simulates the same deployment.

Same node names, counts and roles, hardware profiles, KV-size profile, link rate and RTT, layer
count, block size, prefix-cache capacity and policy parameters. The simulator runs in *modelled*
time: an emulated deployment runs `time_scale` times faster, so send times are multiplied by it
going in (`modelled_s`) and simulated times divided by it coming out (`emulated_s`).

With `mirror_live` (the default) the setup also copies behaviours of the live emulated engine
that differ from the simulator's own model (see SimSetup): decode batches advance in chunks of
`decode_chunk_tokens` steps, decode nodes report no KV reservations (the live decode nodes do
not model KV memory, so it never blocks admission), prefill queues keep the routing-time
estimate of each job's work (the router's accounting), and a prefill reuses only its node's own
pool (sim/node_pools.py). As in the simulator, only the KV the
decode cluster lacks crosses the link; the router's control loop is mirrored when rebalance_s > 0.
"""

from __future__ import annotations

from dataclasses import replace

from prfaas.core.view import UNBOUNDED_KV_BYTES
from prfaas.deploy.config import ClusterConfig, DeploymentConfig, NodeConfig
from prfaas.deploy.hardware import (
    decode_profile_name,
    node_decode_profile,
    node_prefill_profile,
    prefill_profile_name,
)
from prfaas.deploy.planning import scenario_from_deployment, startup_plan
from prfaas.errors import ConfigError
from prfaas.profiles import DecodeProfile, get_kv_profile
from prfaas.sim.bandwidth import BandwidthSchedule
from prfaas.sim.setup import ClusterSpec, RebalanceSetup, SimSetup

UNSHAPED_GBPS = 1e6  # an intra-cluster path the live deployment leaves unshaped (loopback)


def time_scale(cfg: DeploymentConfig) -> float:
    """Modelled seconds per emulated (wall-clock) second."""
    return cfg.engine.time_scale if cfg.engine.kind == "emulated" else 1.0


def modelled_s(cfg: DeploymentConfig, emulated: float) -> float:
    return emulated * time_scale(cfg)


def emulated_s(cfg: DeploymentConfig, modelled: float) -> float:
    return modelled / time_scale(cfg)


def _one(values: set[str], what: str, where: str) -> str:
    if len(values) != 1:
        raise ConfigError(f"{where}: the simulator needs one {what}, the file has {sorted(values)}")
    return values.pop()


def _cluster(c: ClusterConfig, source: str) -> ClusterSpec:
    pre = [n for n in c.nodes if n.role == "prefill"]
    dec = [n for n in c.nodes if n.role == "decode"]
    # A PD node may turn into a prefill node at run time: every node needs the same profile.
    names = {prefill_profile_name(n) or "" for n in (c.nodes if c.role == "pd" else pre)}
    name = _one(names, "prefill profile per cluster", f"{source} cluster {c.name}")
    if not name:
        raise ConfigError(f"{source} cluster {c.name}: nodes have no prefill profile")
    profile = node_prefill_profile(c.nodes[0] if c.role == "pd" else pre[0])
    assert profile is not None
    # Live pools are per node; the router's global index makes a cluster one pool (it pulls a
    # prefix from a sibling node), so the simulated cluster pool is their sum. Decode nodes'
    # pools hold nothing (decode inserts no prefixes), so they do not count.
    cache = sum(n.pool_bytes for n in pre)
    ids = tuple(n.name for n in pre) + tuple(n.name for n in dec)
    return ClusterSpec(c.name, c.role, len(pre), len(dec), profile, cache, ids)  # type: ignore[arg-type]


def _decode(cfg: DeploymentConfig) -> DecodeProfile:
    nodes: list[NodeConfig] = [n for c in cfg.clusters if c.role == "pd" for n in c.nodes]
    key = {f"{decode_profile_name(n)}:{n.max_batch}" for n in nodes}
    _one(key, "decode profile and max_batch", cfg.source)
    profile = node_decode_profile(nodes[0])
    if profile is None:
        raise ConfigError(f"{cfg.source}: PD nodes have no decode profile")
    return replace(profile, bs_max=nodes[0].max_batch) if nodes[0].max_batch else profile


def _link(cfg: DeploymentConfig) -> tuple[float, float]:
    if not cfg.links:
        return 1.0, 0.0  # one cluster: no inter-cluster link is built
    shapes = {f"{link.gbps}:{link.rtt_ms}" for link in cfg.links}
    _one(shapes, "inter-cluster link rate and RTT", cfg.source)
    return cfg.links[0].gbps, cfg.links[0].rtt_ms


def _rdma_gbps(cfg: DeploymentConfig) -> float:
    rates = {c.intra_gbps for c in cfg.clusters}
    if len(rates) != 1:
        raise ConfigError(f"{cfg.source}: the simulator needs one intra_gbps, got {sorted(rates)}")
    rate = rates.pop()
    return rate if rate > 0 else UNSHAPED_GBPS


def setup_from_deployment(
    cfg: DeploymentConfig, policy: str | None = None, *, mirror_live: bool = True
) -> SimSetup:
    """The SimSetup of `cfg` run under `policy` (its [variant.POLICY] hardware if it has one)."""
    if policy is not None:
        cfg = cfg.with_policy(policy)
    if cfg.engine.kind != "emulated":
        raise ConfigError(f"{cfg.source}: only emulated-engine deployments can be simulated")
    gbps, rtt_ms = _link(cfg)
    scale = time_scale(cfg)
    return SimSetup(
        policy=cfg.policy.name,
        params=startup_plan(cfg).params,
        clusters=tuple(_cluster(c, cfg.source) for c in cfg.clusters),
        kv=get_kv_profile(cfg.engine.kv_profile or cfg.engine.model),
        decode=_decode(cfg),
        link_gbps=gbps,
        rtt_ms=rtt_ms,
        decode_kv_bytes=UNBOUNDED_KV_BYTES if mirror_live else 64 * 2**30,
        num_layers=cfg.engine.num_layers,
        rdma_gbps=_rdma_gbps(cfg),
        block_tokens=cfg.block_tokens,
        # The router's egress EWMA (tau 2 s) is updated per heartbeat, in emulated seconds.
        sample_s=cfg.router.heartbeat_s * scale,
        ewma_tau_s=2.0 * scale,
        decode_chunk_steps=cfg.engine.decode_chunk_tokens if mirror_live else 1,
        full_kv_transfer=False,  # live too, only the KV the decode cluster lacks crosses
        decode_free_in_view=not mirror_live,
        routed_queue_tokens=mirror_live,
        node_pools=mirror_live,
        admission=cfg.limits.admission_limits(scale) if mirror_live else None,
        bandwidth=BandwidthSchedule(
            tuple((a * scale, b * scale, f) for a, b, f in cfg.control.bandwidth_schedule)
        ),
        rebalance=_rebalance(cfg),
        scenario=scenario_from_deployment(cfg),
    )


def _rebalance(cfg: DeploymentConfig) -> RebalanceSetup | None:
    """The router's control loop, in modelled seconds (off when rebalance_s = 0)."""
    if cfg.router.rebalance_s <= 0 or cfg.policy.name != "prfaas":
        return None
    c = cfg.control
    return RebalanceSetup(
        period_s=modelled_s(cfg, cfg.router.rebalance_s),
        hysteresis=c.hysteresis,
        max_moves=c.max_moves,
        min_samples=cfg.router.rebalance_min_samples,
        window_periods=c.window_periods,
        min_profile_samples=c.min_profile_samples,
    )
