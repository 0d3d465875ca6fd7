"""Time `prfaas plan` end to end (fresh interpreter) and the in-process grid search."""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cli_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "prfaas", *args]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from prfaas.planner import load_scenario, optimise
    from prfaas.planner.search import prfaas_grid

    scn = load_scenario("paper")
    optimise(scn)  # warm caches (preset registry, scipy)
    cases = {
        "prfaas plan --scenario paper (table + sweep)": ["plan", "--scenario", "paper"],
        "prfaas plan --scenario paper --json": ["plan", "--scenario", "paper", "--json"],
        "prfaas --help": ["--help"],
    }
    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}")
    for label, argv in cases.items():
        runs = [_cli_seconds(argv) for _ in range(args.repeat)]
        print(f"{label}: median {statistics.median(runs):.3f} s, max {max(runs):.3f} s")
    in_process = {
        "optimise(paper) in process": lambda: optimise(scn),
        "PrfaaS-PD grid (1,312 t x 8 splits)": lambda: prfaas_grid(scn),
    }
    for label, fn in in_process.items():
        runs = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        print(f"{label}: median {statistics.median(runs) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
