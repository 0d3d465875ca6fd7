"""Golden test: the simulator's and the router's control drivers, fed the same recorded periods,
take identical decisions (same t, bandwidth table, service times, split and converted nodes)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from prfaas.control import LinkSample, PeriodObservation, PrefillSample
from prfaas.deploy.config import parse_deployment
from prfaas.deploy.planning import startup_plan
from prfaas.planner import load_scenario
from prfaas.router.backend import RouterBackend
from prfaas.router.rebalancer import make_rebalancer
from prfaas.sim.decode_node import DecodeNode
from prfaas.sim.engine import Simulation
from prfaas.sim.from_deployment import setup_from_deployment
from prfaas.sim.nodes import PrefillNode
from prfaas.sim.rebalancing import rebalance_step

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "paper-emulated.toml"
PERIOD_S = 60.0


def _cfg() -> Any:
    doc = tomllib.loads(EXAMPLE.read_text())
    doc.setdefault("router", {}).update(rebalance_s=PERIOD_S / 2, rebalance_min_samples=200)
    doc["policy"].pop("params", None)
    return parse_deployment(doc, source=str(EXAMPLE))


def _periods() -> list[tuple[PeriodObservation, dict[str, float]]]:
    """Recorded periods: the paper workload; short then long outputs; a link drop; slower nodes.
    Each comes with the PD nodes' loads at the step (which decides the node that converts)."""
    paper = load_scenario("paper")
    rng = np.random.default_rng(7)
    out: list[tuple[PeriodObservation, dict[str, float]]] = []
    plan = [
        (1024, 100.0, 1.0),
        (1024, 100.0, 1.0),
        (250, 100.0, 1.0),
        (250, 100.0, 1.0),
        (1024, 10.0, 1.1),
        (1024, 10.0, 1.1),
        (3000, 100.0, 1.0),
        (3000, 100.0, 1.0),
    ]
    for i, (output, gbps, slow) in enumerate(plan):
        inc = tuple(int(x) for x in paper.lengths.sample(rng, 150))
        pre = tuple(
            PrefillSample(
                "prfaas" if x > 19_400 else "pd",
                x,
                slow * float(paper.pd_prefill.time_s(x)) + 0.006,
            )
            for x in inc
        )
        link = tuple(LinkSample(gbps, 0.5 * gbps) for _ in range(30))
        loads = {f"pd-p{j}": float((i + j) % 3) for j in range(4)}
        loads.update({f"pd-d{j}": float((i * 2 + j) % 4) for j in range(8)})
        out.append((PeriodObservation(PERIOD_S, inc, (output,) * 150, pre, (), link), loads))
    return out


def _sim_decisions(cfg: Any) -> list[tuple[dict[str, Any], Any]]:
    sim = Simulation(setup_from_deployment(cfg), [])
    out = []
    for obs, loads in _periods():
        for node in sim.by_name["pd"].nodes:
            if isinstance(node, PrefillNode):
                node.queued_tokens = int(loads[node.node_id])
            else:
                assert isinstance(node, DecodeNode)
                node.running = int(loads[node.node_id])
        n = len(sim.rebalances)
        rebalance_step(sim, obs)
        for node in sim.by_name["pd"].nodes:  # drain finishes before the next period
            node.running = 0 if isinstance(node, DecodeNode) else node.running
            if isinstance(node, PrefillNode):
                node.queued_tokens = 0
            if node.draining:
                sim.node_drained(node)
        out.append((sim.rebalances[n] if len(sim.rebalances) > n else {}, sim.params))
    return out


def _live_decisions(cfg: Any) -> list[tuple[dict[str, Any], Any]]:
    async def run() -> list[tuple[dict[str, Any], Any]]:
        backend = RouterBackend(cfg)
        for rec in backend.members.nodes.values():
            rec.alive, rec.url = True, "http://unused"

        async def change_role(node: str, role: str) -> None:
            backend.members.nodes[node].role = role

        backend.change_role = change_role  # type: ignore[method-assign]
        rb = make_rebalancer(backend)
        out = []
        for obs, loads in _periods():
            for rec in backend.members.nodes.values():
                if rec.cluster == "pd":
                    rec.prefill_tokens = int(loads[rec.name]) if rec.role == "prefill" else 0
                    rec.decode_active = int(loads[rec.name]) if rec.role == "decode" else 0
            record = await rb.step(PERIOD_S, obs)
            await asyncio.sleep(0)
            out.append((record or {}, backend.params))
        return out

    return asyncio.run(run())


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "t_s"}


def test_sim_and_router_drivers_decide_identically() -> None:
    cfg = _cfg()
    sim, live = _sim_decisions(cfg), _live_decisions(cfg)
    assert len(sim) == len(live) == 8
    for (s_rec, s_params), (l_rec, l_params) in zip(sim, live, strict=True):
        assert _strip(s_rec) == _strip(l_rec)
        assert s_params == l_params
    changed = [r for r, _ in sim if r]
    # The recording exercises conversions both ways and a bandwidth-driven t change.
    moves = [tuple(c) for r in changed for c in r["conversions"]]
    assert any(role == "prefill" for _, role in moves), changed
    assert any(role == "decode" for _, role in moves), changed
    assert any(r["link_gbps"] < 100.0 for r in changed), changed  # the drop is in the window


def test_both_drivers_start_from_the_same_plan() -> None:
    cfg = _cfg()
    sim = Simulation(setup_from_deployment(cfg), [])
    backend = RouterBackend(cfg)
    assert sim.params == backend.params == startup_plan(cfg).params
    assert backend.params.threshold_by_gbps and backend.params.threshold_tokens == 19_400
