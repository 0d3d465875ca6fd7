"""Long-timescale driver: feed observed statistics to policy.rebalance and apply role changes.

A node changing role first drains (takes no new work, finishes what it holds), then switches.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from prfaas.planner.scenario import Scenario
from prfaas.policy.rebalance import DeploymentState, ObservedStats, RebalanceParams, rebalance
from prfaas.policy.thresholds import threshold_table
from prfaas.sim.nodes import DecodeNode, PrefillNode
from prfaas.workload.lengths import EmpiricalLengths

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation
    from prfaas.sim.state import Node, SimCluster


def _pd(sim: Simulation) -> SimCluster | None:
    return next((c for c in sim.clusters if c.role == "pd"), None)


def _counts(sim: Simulation, pd: SimCluster) -> tuple[int, int, int]:
    n_remote = sum(len(c.nodes) for c in sim.clusters if c.role == "prfaas")
    n_p = sum(1 for n in pd.nodes if isinstance(n, PrefillNode))
    return n_remote, n_p, len(pd.nodes) - n_p


def _window_capacity(sim: Simulation, seconds: float) -> float:
    """Mean PrfaaS egress capacity over the last `seconds` (the long timescale ignores blips)."""
    s = sim.series
    names = s.egress_links
    n = max(1, int(seconds / s.interval_s))
    caps = [
        sum(col) for col in zip(*(s.link_capacity_gbps.get(k, [])[-n:] for k in names), strict=True)
    ]
    return sum(caps) / len(caps) if caps else 0.0


def rebalance_step(sim: Simulation) -> None:
    """One period: re-plan on the recent window's observations; start draining nodes that move."""
    pd, rb, scn = _pd(sim), sim.setup.rebalance, sim.setup.scenario
    if pd is None or rb is None or not isinstance(scn, Scenario):
        return
    sim.window.append((tuple(sim.window_inc), tuple(sim.window_out)))
    sim.window_inc.clear()
    sim.window_out.clear()
    del sim.window[: max(0, len(sim.window) - rb.window_periods)]
    incs = tuple(x for period, _ in sim.window for x in period)
    outs = [x for _, period in sim.window for x in period]
    if any(n.draining for n in pd.nodes) or not outs:
        return  # one conversion at a time
    gbps = _window_capacity(sim, rb.period_s * len(sim.window)) or scn.link_gbps
    n_remote, n_p, n_d = _counts(sim, pd)
    stats = ObservedStats(rb.period_s * len(sim.window), incs, sum(outs) / len(outs), gbps)
    state = DeploymentState(n_remote, n_p, n_d, sim.params.threshold_tokens)
    params = RebalanceParams(scn, rb.hysteresis, rb.max_moves, rb.min_samples)
    decision = rebalance(stats, state, params)
    if not decision.changed and decision.threshold_tokens == state.threshold_tokens:
        return
    observed = replace(
        scn.with_lengths(EmpiricalLengths(incs)), output_tokens=stats.mean_output_tokens
    )
    table = threshold_table(observed, decision.n_p, decision.n_d)
    sim.params = replace(
        sim.params, threshold_tokens=decision.threshold_tokens, threshold_by_gbps=table
    )
    sim.rebalances.append(
        {
            "t_s": sim.kernel.now,
            "reason": decision.reason,
            "n_p": decision.n_p,
            "n_d": decision.n_d,
            "threshold_tokens": decision.threshold_tokens,
        }
    )
    sim.window.clear()  # the new configuration changes what is observed
    for _ in range(decision.changes.prefill_to_decode):
        _drain(sim, pd, PrefillNode)
    for _ in range(decision.changes.decode_to_prefill):
        _drain(sim, pd, DecodeNode)


def _drain(sim: Simulation, pd: SimCluster, kind: type) -> None:
    node: Node | None = None
    if kind is PrefillNode:
        pre = [n for n in pd.nodes if isinstance(n, PrefillNode) and not n.draining]
        if len(pre) > 1:  # never convert the last node of a role
            node = min(pre, key=lambda n: (n.queued_tokens, n.node_id))
    else:
        dec = [n for n in pd.nodes if isinstance(n, DecodeNode) and not n.draining]
        if len(dec) > 1:
            node = min(dec, key=lambda n: (n.running + len(n.waiting) + n.pending, n.node_id))
    if node is None:
        return
    node.draining = True
    node.touch()
    if node.idle():
        convert_drained(sim, node)


def convert_drained(sim: Simulation, node: Node) -> None:
    """Replace a drained node by a fresh one of the other role with the same id."""
    cluster = sim.by_name[node.cluster]
    fresh: Node
    if isinstance(node, PrefillNode):
        fresh = sim.make_decode_node(node.node_id, cluster.name)
    else:
        fresh = PrefillNode(
            sim, node.node_id, cluster.name, cluster.time_fn, sim.setup.chunk_tokens
        )
    cluster.add(fresh, cluster.nodes.index(node))
    sim.nodes[node.node_id] = fresh
