"""Where traces come from: named traces bundled with the package, $PRFAAS_TRACES_DIR, or a path."""

from __future__ import annotations

import os
from pathlib import Path

from prfaas.errors import UsageError

ENV_TRACES_DIR = "PRFAAS_TRACES_DIR"
# Found from this file, never from the current directory: works from any folder and when installed.
BUNDLED_TRACES_DIR = Path(__file__).resolve().parents[1] / "data" / "traces"

# Name -> file name; the older file names stay accepted so existing commands keep working.
NAMED_TRACES: dict[str, str] = {"kimi-conversation": "kimi-conversation.jsonl.gz"}
_ALIASES: dict[str, str] = {
    "conversation_trace": "kimi-conversation",
    "conversation_trace.jsonl": "kimi-conversation",
    "conversation_trace.jsonl.gz": "kimi-conversation",
}


def default_traces_dir() -> Path:
    """$PRFAAS_TRACES_DIR when set, else the traces bundled with the package."""
    env = os.environ.get(ENV_TRACES_DIR)
    return Path(env) if env else BUNDLED_TRACES_DIR


def _named_candidates(name: str, traces_dir: Path | None) -> list[Path]:
    canonical = _ALIASES.get(name, name)
    file = NAMED_TRACES.get(canonical)
    if file is None:
        return []
    plain = file.removesuffix(".gz")
    folders = [d for d in (traces_dir, BUNDLED_TRACES_DIR) if d is not None]
    # A traces folder may hold the uncompressed original (e.g. conversation_trace.jsonl).
    names = [file, plain, *(k for k, v in _ALIASES.items() if v == canonical and "." in k)]
    return [folder / n for folder in folders for n in names]


def resolve_trace(
    name_or_path: str | Path, *, traces_dir: Path | None = None, base_dir: Path | None = None
) -> Path:
    """The file for a trace name or path: an existing path, a named trace, or a file in a folder.

    Relative paths are tried against `base_dir` (e.g. a scenario's folder), then `traces_dir`, then
    the bundled traces. Raises UsageError listing the named traces when nothing matches.
    """
    raw = Path(name_or_path)
    if traces_dir is None:
        traces_dir = default_traces_dir()
    candidates: list[Path] = [raw]
    if not raw.is_absolute():
        candidates += [d / raw for d in (base_dir, traces_dir, BUNDLED_TRACES_DIR) if d is not None]
    candidates += _named_candidates(str(name_or_path), traces_dir)
    for path in candidates:
        if path.is_file():
            return path
    names = ", ".join(sorted(NAMED_TRACES))
    raise UsageError(
        f"trace file not found: {str(name_or_path)!r} (give a path or a named trace: {names})"
    )


def bundled_trace(name: str = "kimi-conversation") -> Path:
    """A bundled trace's path (for tests and benchmarks); raises UsageError if it is missing."""
    return resolve_trace(name, traces_dir=BUNDLED_TRACES_DIR)
