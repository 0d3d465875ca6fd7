"""How long a killed router takes to serve again: a cold restart vs its warm spare.

    PYTHONPATH=src .venv/bin/python benchmarks/router_restart.py [--rounds 2]

Starts the small emulated deployment of the live tests, then per round kills the router
(SIGKILL) and restarts it once cold (a fresh process) and once from its warm spare, printing
spawn -> ready (the ready file) and ready -> a successful completion, with the load average.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from live_support import SHORT_PROMPT, complete, write_config  # noqa: E402
from prfaas.deploy.supervisor import Deployment  # noqa: E402


def _restart(dep: Deployment, url: str, warm: bool) -> tuple[float, float]:
    if warm:  # let the spare start and finish its imports
        dep.spare_due["router"] = 0.0
        t = time.monotonic()
        while time.monotonic() - t < 10:
            dep.maintain()
            time.sleep(0.1)
    else:
        dep.spare_due.pop("router", None)
    dep.kill("router", signal.SIGKILL)
    dep.procs["router"].wait()
    t0 = time.monotonic()
    dep.respawn("router")
    if not warm:
        spare = dep.standbys.pop("router", None)
        assert spare is None
    ready = dep.run_dir / "router.json"
    while not ready.exists():
        time.sleep(0.02)
    t1 = time.monotonic()
    while True:
        try:
            if complete(url, SHORT_PROMPT, timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return t1 - t0, time.monotonic() - t1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    dep = Deployment(write_config(Path(tempfile.mkdtemp())))
    url = dep.start(timeout_s=120)
    try:
        for _ in range(args.rounds):
            for warm in (False, True):
                ready_s, serve_s = _restart(dep, url, warm)
                print(f"{'warm spare' if warm else 'cold':<10} spawn->ready {ready_s:.2f} s, "
                      f"ready->serving {serve_s:.2f} s, load average {os.getloadavg()[0]:.1f}",
                      flush=True)
    finally:
        dep.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
