"""One policy, two drivers: the simulator's adapter and the live router's adapter build identical
views from the same state, and the policy makes identical decisions on both."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from approx import assert_close
from prfaas.core.arrivals import ArrivalGaps
from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.router.adapter import MembershipRecord, RouterAdapter, TransferTelemetry
from prfaas.sim.deployments import build_setup
from prfaas.sim.engine import Simulation
from prfaas.sim.runner import make_requests, prepare

DATA = Path(__file__).parent / "data"
SRC = Path(__file__).resolve().parents[1] / "src" / "prfaas"


def _fixtures_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads((DATA / "golden_decisions.json").read_text())  # type: ignore[no-any-return]


def _params(d: dict[str, Any]) -> PolicyParams:
    table = tuple((float(g), int(t)) for g, t in d.pop("threshold_by_gbps"))
    return PolicyParams(threshold_by_gbps=table, **d)


def _live_route(
    adapter: RouterAdapter,
    policy: str,
    params: PolicyParams,
    req: RequestSpec,
    step: dict[str, Any],
    arrivals: ArrivalGaps,
) -> tuple[ClusterView, Placement]:
    """The router's decision on the step's inputs; it counts the request's arrival itself."""
    members = [MembershipRecord(*m) for m in step["members"]]
    telemetry = [TransferTelemetry(*t) for t in step["telemetry"]]
    arrivals.add(step["now_s"])
    index, cv = step["index"], arrivals.cv()
    return adapter.route(policy, params, req, step["now_s"], members, telemetry, index, cv)


def _requests(run: dict[str, Any]) -> tuple[Any, Any, dict[str, RequestSpec]]:
    cfg = _fixtures_module().run_config(run, DATA / "mini_trace.jsonl")
    prep = prepare(cfg)
    return cfg, prep, {r.request_id: r for r in make_requests(cfg, prep)}


def test_fixture_covers_the_interesting_decisions(golden: dict[str, Any]) -> None:
    steps = [s for r in golden["runs"] for s in r["steps"]]
    reasons = [s["placement"]["reason"] for s in steps]
    assert sum(1 for s in steps if s["placement"]["cache_pull"]) >= 3
    assert any("scarce" in r for r in reasons) and any("bw ok" in r for r in reasons)
    assert any("t x" in r for r in reasons)  # a congestion / queue trigger fired
    assert {s["placement"]["offloaded"] for s in steps} == {True, False}


def test_router_adapter_reproduces_recorded_decisions(golden: dict[str, Any]) -> None:
    adapter = RouterAdapter(golden["block_tokens"], golden["heartbeat_timeout_s"])
    for run in golden["runs"]:
        _, _, requests = _requests(run["run"])
        params: PolicyParams | None = None
        arrivals = ArrivalGaps()
        for step in run["steps"]:
            if "params" in step:
                params = _params(dict(step["params"]))
            assert params is not None
            view, placement = _live_route(
                adapter, run["run"]["policy"], params, requests[step["request_id"]], step, arrivals
            )
            assert all(n.node_id != "pd-99" for c in view.clusters for n in c.nodes)
            assert asdict(placement) == step["placement"], step["request_id"]


Seen = list[tuple[ClusterView, RequestSpec, Placement, PolicyParams]]


def _simulate(setup: Any, requests: list[RequestSpec]) -> Seen:
    """Run the simulator, recording each decision with the params it was made under."""
    seen: Seen = []
    holder: list[Simulation] = []

    def hook(view: ClusterView, spec: RequestSpec, placement: Placement) -> None:
        seen.append((view, spec, placement, holder[0].params))

    holder.append(Simulation(setup, requests, on_decision=hook))
    holder[0].run()
    return seen


def test_simulator_and_router_views_and_decisions_identical(golden: dict[str, Any]) -> None:
    adapter = RouterAdapter(golden["block_tokens"], golden["heartbeat_timeout_s"])
    for run in golden["runs"]:
        cfg, prep, requests = _requests(run["run"])
        policy = run["run"]["policy"]
        setup = build_setup(prep.scenario, prep.plan, policy, cfg.options)
        seen = _simulate(setup, list(requests.values()))
        assert len(seen) == len(run["steps"])
        arrivals = ArrivalGaps()
        for (view, spec, placement, params), step in zip(seen, run["steps"], strict=True):
            assert spec.request_id == step["request_id"]
            live_view, live_placement = _live_route(adapter, policy, params, spec, step, arrivals)
            # Telemetry floats were recorded on another machine: equal up to the last bits.
            assert_close(live_view, view)
            assert live_placement == placement
            assert asdict(placement) == step["placement"]


FORBIDDEN = (
    "prfaas.sim",
    "prfaas.router",
    "torch",
    "asyncio",
    "socket",
    "subprocess",
    "prfaas.server",
    "prfaas.worker",
    "prfaas.transfer",
)


def test_policy_imports_no_simulator_router_torch_or_io() -> None:
    for path in sorted((SRC / "policy").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("open", "print", "input"), f"{path.name} does I/O"
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (
                    f"{path.name} imports {name}"
                )
    code = (
        "import sys, prfaas.policy, prfaas.policy.rebalance, prfaas.policy.thresholds;"
        "bad = [m for m in ('torch', 'prfaas.sim', 'prfaas.router', 'asyncio', 'fastapi')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
