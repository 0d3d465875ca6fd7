"""Long-timescale driver: feed each period's observations to the control core, apply its moves.

A node changing role first drains (takes no new work, finishes what it holds), then switches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prfaas.control import (
    ControlConfig,
    ControlState,
    LinkSample,
    NodeLoad,
    PeriodObservation,
    control_step,
)
from prfaas.planner.scenario import Scenario
from prfaas.sim.decode_node import DecodeNode
from prfaas.sim.nodes import PrefillNode

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation
    from prfaas.sim.state import Node, SimCluster


def _pd(sim: Simulation) -> SimCluster | None:
    return next((c for c in sim.clusters if c.role == "pd"), None)


def node_loads(pd: SimCluster) -> tuple[NodeLoad, ...]:
    """Queued prefill tokens of a prefill node; running + waiting + pending of a decode node."""
    out = []
    for n in pd.nodes:
        if isinstance(n, PrefillNode):
            out.append(NodeLoad(n.node_id, "prefill", float(n.queued_tokens), n.draining))
        else:
            assert isinstance(n, DecodeNode)
            load = n.running + len(n.waiting) + n.pending
            out.append(NodeLoad(n.node_id, "decode", float(load), n.draining))
    return tuple(sorted(out, key=lambda x: x.name))


def control_state(sim: Simulation, pd: SimCluster) -> ControlState:
    n_remote = sum(len(c.nodes) for c in sim.clusters if c.role == "prfaas")
    return ControlState(n_remote, node_loads(pd), sim.params.threshold_tokens)


def _link_samples(sim: Simulation, period_s: float) -> tuple[LinkSample, ...]:
    """The period's samples of total PrfaaS egress capacity and rate."""
    s = sim.series
    n = max(1, int(period_s / s.interval_s))
    caps = [s.link_capacity_gbps.get(k, [])[-n:] for k in s.egress_links]
    rates = [s.link_gbps(k)[-n:] for k in s.egress_links]
    return tuple(
        LinkSample(sum(c), sum(r))
        for c, r in zip(zip(*caps, strict=True), zip(*rates, strict=True), strict=False)
    )


def period_observation(sim: Simulation, period_s: float) -> PeriodObservation:
    """What the simulation saw since the last step; resets the per-period buffers."""
    obs = PeriodObservation(
        period_s,
        tuple(sim.window_inc),
        tuple(sim.window_out),
        tuple(sim.window_prefill),
        (),
        _link_samples(sim, period_s),
    )
    sim.window_inc.clear()
    sim.window_out.clear()
    sim.window_prefill.clear()
    return obs


def rebalance_step(sim: Simulation, obs: PeriodObservation | None = None) -> None:
    """One period: the control core re-plans on the window; nodes that move start draining."""
    pd, rb, scn = _pd(sim), sim.setup.rebalance, sim.setup.scenario
    if pd is None or rb is None or not isinstance(scn, Scenario):
        return
    obs = obs if obs is not None else period_observation(sim, rb.period_s)
    cfg = ControlConfig(
        scn, rb.hysteresis, rb.max_moves, rb.min_samples, rb.window_periods, rb.min_profile_samples
    )
    sim.window, decision = control_step(sim.window, obs, control_state(sim, pd), cfg, sim.params)
    if decision is None:
        return
    sim.params = decision.params
    sim.rebalances.append(decision.record(sim.kernel.now))
    for name, _role in decision.conversions:
        _drain(sim, sim.nodes[name])


def _drain(sim: Simulation, node: Node) -> None:
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
        fresh = sim.make_prefill_node(node.node_id, cluster)
    cluster.add(fresh, cluster.nodes.index(node))
    sim.nodes[node.node_id] = fresh
