"""Chaos harness: start a deployment, drive streaming load, inject one fault, count what was lost.

    .venv/bin/python benchmarks/chaos.py                         # every scenario (~12 min)
    .venv/bin/python benchmarks/chaos.py --scenarios kill-decode,overload-3x --rate 3

Per scenario: a fresh `prfaas up` of --config (default examples/paper-emulated.toml), the paper's
workload open-loop at --rate req/s for --duration s (streaming, greedy, fixed output length; longer
when the scenario needs a tail after its fault), the fault at --fault-at s. Every reply is checked
token for token against the emulated engine's deterministic output. Probes (same 8K-token prompt
length, unique prompts): eight 1 s apart up to 1 s before the fault, six 0.4 s apart once it
settled (1-3 s after the storm's clients hung up, 8-10 s after the overload burst, 1-3 s after
SIGCONT, 5-7 s after a kill); their TTFTs are printed under the row.
Columns: sent, ok, shed (429 from admission control), failed (any other error the server
reported), leaky (a failure message carrying an internal address), lost (hung, cut without an
error, or wrong text), recovery (s from the fault until every later request succeeded; '-'
never), TTFT x (p50 TTFT 1-6 s after the fault ended over p50 before it), probe x (median probe
TTFT after / before), 429 ms (slowest 429), p99 TTFT of the requests accepted during the fault.
Scenarios that need a mechanism this build lacks (a link control) are listed as skipped, with the
reason. kill-router runs the file with `[router] replicas = 2` (HAProxy in front) and kills one
replica; the healer restarts it; its clients resume the streams the killed replica was serving
(`prfaas bench --resume-streams`: resent with the token ids they had, stitched, then checked
token for token like every other reply). Column `resumed`: requests resumed after a cut.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import httpx

from prfaas.bench.chaos import LoopLag, ScenarioRow, summarise, twin_lines
from prfaas.bench.chaos_faults import (
    SCENARIOS,
    STORM_CLIENTS,
    STORM_HANG_UP_S,
    Scenario,
    with_replicas,
)
from prfaas.bench.client import RequestResult, normalize_url, run_plan
from prfaas.bench.workload import PlannedRequest, Shaping, paper_plan
from prfaas.deploy.supervisor import Deployment
from prfaas.worker.bytetok import ByteTokenizer
from prfaas.worker.emulated import emulated_token, prompt_seed

ROOT = Path(__file__).resolve().parents[1]
TOK = ByteTokenizer()


def expected_text(req: PlannedRequest) -> str:
    """The emulated engine's greedy output: a pure function of the prompt's tokens."""
    seed = prompt_seed(TOK.encode(req.prompt()), 0, 0.0)
    return TOK.decode([emulated_token(seed, i) for i in range(req.max_tokens)])


PROBE_BLOCKS = 16  # 8K-token probes: prefilled on a local H20 node or an idle PrfaaS H200
PROBE_BASE = 3_000_000_000
# Where the policy puts an 8K probe depends on the moment's load (an idle PrfaaS node serves it in
# ~0.45 s, a local H20 node in ~0.85 s): the baseline samples that mix over 8 s, 1 s apart; the
# probes after the fault go 0.4 s apart (about a probe's TTFT: each finds the last one done or
# another node free) to read the deployment at one moment. Three probes per side read 0.7-1.4
# with no fault.
PROBES_BEFORE, BEFORE_GAP_S = 8, 1.0
PROBES_AFTER, AFTER_GAP_S = 6, 0.4


def probes(shaping: Shaping, args: argparse.Namespace, scn: Scenario) -> list[PlannedRequest]:
    """PROBES_BEFORE probes up to 1 s before the fault, PROBES_AFTER from `settle_s` after it
    (unique prompts, equal length)."""
    before = [max(0.2, args.fault_at - 1.0 - k * BEFORE_GAP_S) for k in range(PROBES_BEFORE)]
    after = [args.fault_at + scn.settle_s + k * AFTER_GAP_S for k in range(PROBES_AFTER)]
    block = shaping.tokens_per_block
    return [PlannedRequest(-1 - i, t, tuple(range(PROBE_BASE + i * PROBE_BLOCKS,
                                                  PROBE_BASE + (i + 1) * PROBE_BLOCKS)),
                           PROBE_BLOCKS * block, 16, block)
            for i, t in enumerate(sorted(before) + after)]


def build_plan(scn: Scenario, args: argparse.Namespace) -> list[PlannedRequest]:
    shaping = Shaping(output_tokens=args.output_tokens)
    duration = max(args.duration, args.fault_at + scn.settle_s + 4.0)
    plan = paper_plan(rate_rps=args.rate, duration_s=duration, length_scale=1.0,
                      arrival="poisson", seed=args.seed, shaping=shaping)
    if scn.rate_boost > 1 and not scn.twin:
        extra = paper_plan(rate_rps=args.rate * (scn.rate_boost - 1), duration_s=scn.boost_s,
                           length_scale=1.0, arrival="poisson", seed=args.seed + 7,
                           shaping=shaping)
        plan += [replace(r, send_at_s=r.send_at_s + args.fault_at) for r in extra]
    if scn.name == "million-token-prompts" and not scn.twin:
        blocks = -(-1_000_000 // shaping.tokens_per_block)
        plan += [PlannedRequest(0, args.fault_at, tuple(range(2_000_000_000 + i * blocks,
                                                              2_000_000_000 + (i + 1) * blocks)),
                                1_000_000, 16, shaping.tokens_per_block) for i in range(4)]
    plan += probes(shaping, args, scn)
    plan.sort(key=lambda r: r.send_at_s)
    return [replace(r, index=i) for i, r in enumerate(plan)]


def probe_sets(plan: list[PlannedRequest], fault_at: float) -> tuple[set[int], set[int]]:
    ids = [r for r in plan if r.hash_ids and r.hash_ids[0] >= PROBE_BASE]
    return ({r.index for r in ids if r.send_at_s < fault_at},
            {r.index for r in ids if r.send_at_s >= fault_at})


async def _storm(url: str, model: str, plan: list[PlannedRequest], at_s: float) -> None:
    """Streaming clients that all send at `at_s` and hang up STORM_HANG_UP_S later (most before
    their first token). The bodies and the client are made first: made at `at_s`, thirty
    clients' TLS contexts and prompts took ~1 s on the shared VM, so the storm came ~1 s late."""
    start = asyncio.get_running_loop().time()
    bodies = [{"model": model, "prompt": r.prompt(), "max_tokens": r.max_tokens, "stream": True,
               "ignore_eos": True} for r in plan]
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=5.0, limits=limits) as client:

        async def one(body: dict[str, object]) -> None:
            try:
                async with asyncio.timeout(STORM_HANG_UP_S):
                    async with client.stream("POST", "/v1/completions", json=body) as resp:
                        async for _ in resp.aiter_bytes():
                            pass
            except (TimeoutError, httpx.HTTPError):
                pass

        await asyncio.sleep(max(0.0, at_s - (asyncio.get_running_loop().time() - start)))
        await asyncio.gather(*(one(b) for b in bodies))


async def _drive(dep: Deployment, scn: Scenario, plan: list[PlannedRequest],
                 args: argparse.Namespace, lag: LoopLag) -> list[RequestResult]:
    url = normalize_url(dep.url)
    model = dep.cfg.engine.model

    async def inject() -> None:
        await asyncio.sleep(args.fault_at)
        if scn.fault is not None:
            await asyncio.to_thread(scn.fault, dep)
        if scn.undo is not None:
            await asyncio.sleep(scn.hold_s)
            await asyncio.to_thread(scn.undo, dep)

    side = [asyncio.create_task(inject())]
    watch = asyncio.create_task(lag.run())
    if scn.name == "disconnect-storm" and not scn.twin:
        storm = paper_plan(rate_rps=STORM_CLIENTS, duration_s=1.0, length_scale=1.0,
                           arrival="uniform", seed=args.seed + 13,
                           shaping=Shaping(output_tokens=args.output_tokens))  # prompts only
        side.append(asyncio.create_task(_storm(url, model, storm[:STORM_CLIENTS],
                                               args.fault_at)))
    results, _ = await run_plan(url, plan, model=model, endpoint="completions",
                                timeout_s=args.timeout,
                                resume_streams=scn.resume and not args.no_resume)
    watch.cancel()
    await asyncio.gather(*side)
    return results


class _Healing:
    """The supervisor's healing loop in a thread (`prfaas up` runs it in its main loop)."""

    def __init__(self, dep: Deployment) -> None:
        from prfaas.deploy.healer import Healer

        self.healer, self.stop = Healer(dep), threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            for line in self.healer.tick():
                print(f"  healer: {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def run_scenario(scn: Scenario, args: argparse.Namespace,
                 lag: LoopLag | None = None) -> ScenarioRow:
    scn = scn.scaled(args)
    if getattr(args, "no_fault", False):
        scn = replace(scn, fault=None, undo=None, twin=True)
    plan = build_plan(scn, args)
    by_index = {r.index: r for r in plan}
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config if scn.replicas == 1 else with_replicas(args.config, scn.replicas,
                                                                      Path(tmp))
        dep = Deployment(config)
        healer = None
        lag = lag or LoopLag()
        try:
            dep.start()
            healer = _Healing(dep) if scn.replicas > 1 else None  # as `prfaas up` would
            results = asyncio.run(_drive(dep, scn, plan, args, lag))
        finally:
            if healer is not None:
                healer.close()
            dep.stop()
    # TTFT is compared 1-6 s after the fault ends (after SIGCONT, after the storm, ...).
    window = (scn.fault_s + 1.0, scn.fault_s + 6.0)
    return summarise(scn.name, results, args.fault_at,
                     lambda r: expected_text(by_index[r.index]), window,
                     (args.fault_at, args.fault_at + max(scn.fault_s, 0.001)),
                     probe_sets(plan, args.fault_at))


HEADER = (f"{'scenario':<24} {'sent':>5} {'ok':>5} {'shed':>5} {'failed':>6} {'leaky':>5} "
          f"{'lost':>5} {'recovery':>9} {'TTFT x':>7} {'probe x':>7} {'429 ms':>7} "
          f"{'p99 TTFT':>8} {'resumed':>7}")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _fmt(row: ScenarioRow) -> str:
    return (f"{row.scenario:<24} {row.sent:>5} {row.ok:>5} {row.shed:>5} {row.failed:>6} "
            f"{row.leaky:>5} {row.lost:>5} {_num(row.recovery_s, '.1f'):>9} "
            f"{_num(row.ttft_ratio, '.2f'):>7} {_num(row.probe_ratio, '.2f'):>7} "
            f"{_num(row.shed_ms_max, '.0f'):>7} {_num(row.fault_p99_ttft_s, '.2f'):>8} "
            f"{row.resumed:>7}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "paper-emulated.toml")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated names")
    ap.add_argument("--rate", type=float, default=3.0, help="req/s (default 3: ~50-60%% load)")
    ap.add_argument("--duration", type=float, default=40.0, help="s of load per scenario")
    ap.add_argument("--fault-at", type=float, default=10.0, help="s into the load")
    ap.add_argument("--output-tokens", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--burst-s", type=float, default=30.0, help="overload-3x: burst length, s")
    ap.add_argument("--hold-s", type=float, default=20.0, help="sigstop: how long it stops, s")
    ap.add_argument("--no-resume", action="store_true",
                    help="kill-router: clients do not resume cut streams (the cut ones are lost)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("FAULT_JSON", "TWIN_JSON"),
                    help="print paired probe ratios of two --json files (a run and its "
                         "--no-fault twin) and exit")
    ap.add_argument("--no-fault", action="store_true",
                    help="run each scenario's plan and probes without its fault: started beside "
                         "a run with it, its probes are the control for the same moments")
    args = ap.parse_args()
    if args.compare:
        run, twin = (json.loads(p.read_text()) for p in args.compare)
        print("\n".join(twin_lines(run, twin)))
        return 0
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    print(HEADER, flush=True)
    rows = []
    for name in names:
        scn = SCENARIOS[name]
        if scn.skip:
            print(f"{name:<24} skipped: {scn.skip}", flush=True)
            continue
        t0 = time.monotonic()
        lag = LoopLag()
        row = run_scenario(scn, args, lag)
        rows.append(row)
        print(_fmt(row) + f"   ({time.monotonic() - t0:.0f} s)", flush=True)
        if row.shed:
            print(f"{'':<26}429 ms p50 {_num(row.shed_ms_p50, '.0f')} p99 "
                  f"{_num(row.shed_ms_p99, '.0f')} max {_num(row.shed_ms_max, '.0f')}; "
                  f"{lag.line()}; load average {os.getloadavg()[0]:.1f}", flush=True)
        before, after = row.probe_ttfts_s
        print(f"{'':<26}probe TTFT ms before {' '.join(f'{x * 1000:.0f}' for x in before)}; "
              f"after {' '.join(f'{x * 1000:.0f}' for x in after)}", flush=True)
        for example in row.examples:
            print(f"{'':<26}{example}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
