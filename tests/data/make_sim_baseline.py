"""Record the simulator's metrics on fixed runs into sim_baseline.json (run from the repo root):

    PYTHONPATH=src .venv/bin/python tests/data/make_sim_baseline.py

Recorded before the issue-15 speed work; regenerate only for an intended change of results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))
sys.path.insert(0, str(HERE.parent))

from sim_baseline_cases import BASELINE, cases  # noqa: E402

if __name__ == "__main__":
    BASELINE.write_text(json.dumps(cases(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {BASELINE}")
