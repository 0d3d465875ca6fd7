"""Make a virtualenv equal a lock file: `--sync` drops what the lock lacks; fail on any difference.

`make install` runs it after `pip install -r LOCK`, so `pip freeze` equals the lock (what CI tested)
even in a virtualenv that held other packages before.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "==" in line:
            name, version = line.split("==", 1)
            pins[name.lower().replace("_", "-")] = version
    return pins


def _installed() -> dict[str, str]:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude", "prfaas"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return _pins(frozen)


def main() -> int:
    lock = Path(sys.argv[1])
    want = _pins(lock.read_text().splitlines())
    have = _installed()
    if "--sync" in sys.argv[2:]:
        extra = sorted(set(have) - set(want))
        if extra:
            print(f"check_lock: removing packages the lock does not list: {', '.join(extra)}")
            uninstall = [sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra]
            subprocess.run(uninstall, check=True)
            have = _installed()
    extra = sorted(set(have) - set(want))
    missing = sorted(set(want) - set(have))
    changed = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if not (extra or missing or changed):
        print(f"check_lock: the environment equals {lock} ({len(want)} packages)")
        return 0
    for label, names in (("not in the lock", extra), ("missing", missing)):
        if names:
            print(f"check_lock: {label}: {', '.join(names)}", file=sys.stderr)
    for k in changed:
        print(f"check_lock: {k} {have[k]} != locked {want[k]}", file=sys.stderr)
    print("check_lock: run `make lock` after changing pyproject.toml, or rm -rf .venv",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
