"""Run a sweep: one task per (grid point, seed), on a local process pool or a Ray cluster."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prfaas.errors import UsageError
from prfaas.sweep.grid import Value, apply, phi_kv_gbps

PHI_TOKENS = 32_768  # the paper's Table 3 / §2.3 reference length for Phi_kv


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """What to run at every grid point.

    A task is plain data and `run_task` a pure function of it (seeded), so the rows are the same
    whichever executor ran them; they come back in task order.
    """

    scenario: str = "paper"
    points: tuple[dict[str, Value], ...] = ({},)
    simulate: bool = False
    policies: tuple[str, ...] = ("homogeneous", "prfaas")
    seeds: tuple[int, ...] = (0,)
    load: float = 0.8  # simulate at this fraction of the planner's PrfaaS-PD Lambda_max
    requests: int = 2000
    sim_options: dict[str, Any] = field(default_factory=dict)

    def tasks(self) -> list[dict[str, Any]]:
        seeds = self.seeds if self.simulate else (self.seeds[0],)
        return [{"point": dict(p), "seed": s, "spec": self} for p in self.points for s in seeds]


def _plan_row(scn: Any, plan: Any) -> dict[str, Any]:
    d = plan.deployments
    return {
        "phi_kv_gbps": phi_kv_gbps(scn, PHI_TOKENS),
        "lambda_prfaas": d["prfaas"].lambda_max,
        "lambda_homogeneous": d["homogeneous"].lambda_max,
        "lambda_naive": d["naive"].lambda_max,
        "ratio_prfaas_vs_homogeneous": plan.ratios["prfaas_vs_homogeneous"],
        "threshold_tokens": d["prfaas"].threshold_tokens,
        "offload_fraction": d["prfaas"].offload_fraction,
        "egress_gbps": d["prfaas"].egress_gbps,
        "n_p": d["prfaas"].n_p,
        "n_d": d["prfaas"].n_d,
    }


def _sim_rows(scn: Any, plan: Any, spec: SweepSpec, seed: int) -> dict[str, Any]:
    import numpy as np

    from prfaas.sim.deployments import SimOptions, build_setup
    from prfaas.sim.engine import Simulation
    from prfaas.sim.workloads import ArrivalSpec, synthetic_requests

    rate = spec.load * plan.deployments["prfaas"].lambda_max
    reqs = synthetic_requests(
        scn.lengths,
        round(scn.output_tokens),
        rate,
        spec.requests,
        ArrivalSpec("poisson"),
        np.random.default_rng(seed),
        scn.kv_size,
    )
    out: dict[str, Any] = {"rate": rate}
    for policy in spec.policies:
        setup = build_setup(scn, plan, policy, SimOptions(**spec.sim_options))
        m = Simulation(setup, reqs).run().metrics()
        out[policy] = {
            "ttft_mean_s": m["ttft_s"]["mean"],  # type: ignore[index]
            "ttft_p99_s": m["ttft_s"]["p99"],  # type: ignore[index]
            "slo_attainment": m["slo"]["attainment"],  # type: ignore[index]
            "throughput_rps": m["throughput"]["requests_per_s"],  # type: ignore[index]
            "offload_fraction": m["offload_fraction"],
        }
    return out


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """One grid point and seed: the planner's answer, and the simulator's if asked."""
    from prfaas.planner import load_scenario, optimise

    spec: SweepSpec = task["spec"]
    scn = apply(load_scenario(spec.scenario), task["point"])
    plan = optimise(scn)
    row: dict[str, Any] = {**task["point"], "seed": task["seed"], **_plan_row(scn, plan)}
    if spec.simulate:
        row["sim"] = _sim_rows(scn, plan, spec, task["seed"])
    return row


Executor = Callable[[Callable[[dict[str, Any]], dict[str, Any]], list[dict[str, Any]]], list[Any]]


def local_executor(workers: int) -> Executor:
    """A process pool (workers > 1) or this process."""

    def run(
        fn: Callable[[dict[str, Any]], dict[str, Any]], tasks: list[dict[str, Any]]
    ) -> list[Any]:
        if workers <= 1 or len(tasks) <= 1:
            return [fn(t) for t in tasks]
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            return list(pool.map(fn, tasks, chunksize=max(1, len(tasks) // (4 * workers))))

    return run


def ray_executor(address: str) -> Executor:
    """Tasks on a Ray cluster: `auto` (RAY_ADDRESS or a running local cluster) or an address."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'prfaas[sweep]'") from None

    def run(
        fn: Callable[[dict[str, Any]], dict[str, Any]], tasks: list[dict[str, Any]]
    ) -> list[Any]:
        if not ray.is_initialized():
            _reachable(address)
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:
                raise UsageError(f"--ray {address}: no Ray cluster there ({exc})") from None
        remote = ray.remote(fn)
        return list(ray.get([remote.remote(t) for t in tasks]))

    return run


def _reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray: give auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(f"--ray {address}: cannot connect ({exc})") from None


def run_sweep(spec: SweepSpec, executor: Executor | None = None) -> list[dict[str, Any]]:
    """Every task's row, in task order."""
    tasks = spec.tasks()
    ex = executor or local_executor(os.cpu_count() or 1)
    return ex(run_task, tasks)


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))
