"""Engine benchmark: prefix reuse, prefill and decode tokens/s, wire size and time, per preset.

Run: .venv/bin/python benchmarks/bench_engine.py [--repeat 7] [--presets qwen3.5-tiny,...]
Every engine runs with torch.set_num_threads(1), as the workers do. Each measurement records
wall time and this process's CPU time: with one torch thread they agree on an idle machine, and
on a shared one the CPU time is the steadier measure of the engine's own work.
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch

from prfaas.model.engine import PRESETS, Engine, SamplingParams
from prfaas.model.engine.prefix_cache import EnginePrefixCache

PROMPT_TOKENS, PREFIX_TOKENS, BLOCK_TOKENS = 2048, 1536, 64


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _median(
    fn: Callable[[], object], repeat: int, setup: Callable[[], None] | None = None
) -> tuple[float, float]:
    """Median (wall, CPU) seconds over `repeat` calls; `setup` runs untimed before each."""
    walls, cpus = [], []
    for _ in range(repeat):
        if setup:
            setup()
        wall, cpu = _timed(fn)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def prefix_reuse(eng: Engine, repeat: int) -> dict[str, tuple[float, float]]:
    """Uncached 2,048-token prefill vs the same prompt with a 1,536-token cached prefix."""
    rng = random.Random(0)
    prompt = [rng.randrange(256) for _ in range(PROMPT_TOKENS)]
    prefix = eng.prefill(prompt[:PREFIX_TOKENS]).cache
    pool: list[EnginePrefixCache] = []

    def fresh_pool() -> None:  # a pool holding exactly the 1,536-token prefix (not timed)
        cache = EnginePrefixCache(eng, 1 << 30, block_tokens=BLOCK_TOKENS)
        cache.prefill(prompt[:PREFIX_TOKENS])
        pool[:] = [cache]

    def via_pool() -> None:
        assert pool[0].prefill(prompt).reused_tokens == PREFIX_TOKENS

    cases: dict[str, tuple[Callable[[], object], Callable[[], None] | None]] = {
        "uncached": (lambda: eng.prefill(prompt), None),
        "direct": (lambda: eng.prefill(prompt, cache_prefix=prefix), None),
        "pool": (via_pool, fresh_pool),
    }
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in cases}
    # Interleave the cases so a burst of load on a shared machine hits them alike.
    for _ in range(repeat):
        for key, (fn, setup) in cases.items():
            runs[key].append(_median(fn, 1, setup))
    return {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in runs.items()
    }


def prefill_rate(eng: Engine, tokens: int, repeat: int) -> tuple[float, float]:
    ids = [i % 256 for i in range(tokens)]
    wall, cpu = _median(lambda: eng.prefill(ids), repeat)
    return tokens / wall, tokens / cpu


def decode_rate(eng: Engine, requests: int, batched: bool, steps: int = 32) -> tuple[float, float]:
    """Tokens/s (wall, CPU) of `requests` concurrent decodes with ~512-token contexts."""
    params = SamplingParams(max_tokens=steps + 1, ignore_eos=True)
    batch = eng.decode_batch(batched=batched)
    for r in range(requests):
        result = eng.prefill([(r * 31 + i) % 256 for i in range(512 + 16 * r)])
        batch.add(str(r), result.cache, result.first_token, params)
    batch.step()  # merge / warm-up step, not timed
    produced: list[list[object]] = []
    wall, cpu = _timed(lambda: produced.extend(batch.step() for _ in range(steps - 1)))
    tokens = sum(len(events) for events in produced)
    return tokens / wall, tokens / cpu


def wire(eng: Engine, repeat: int) -> dict[str, float]:
    result = eng.prefill([i % 256 for i in range(PROMPT_TOKENS)])
    out: dict[str, float] = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        data = eng.export_cache(result.cache, dtype).tobytes()
        out[f"{label}_bytes"] = len(data)
        export = functools.partial(eng.export_cache, result.cache, dtype)
        out[f"{label}_export_ms"] = 1e3 * _median(export, repeat)[1]
        out[f"{label}_import_ms"] = (
            1e3 * _median(functools.partial(eng.import_cache, data), repeat)[1]
        )
    return out


def _print_reuse(engines: dict[str, Engine], repeat: int) -> None:
    print("\n## Prefix reuse: 2,048-token prompt, 1,536-token cached prefix (median s)\n")
    print(
        "| preset | uncached wall / CPU | resumed wall / CPU | ratio wall / CPU "
        "| resumed via pool wall / CPU | ratio wall / CPU |"
    )
    print("|---|---|---|---|---|---|")
    for name, eng in engines.items():
        r = prefix_reuse(eng, repeat)
        (uw, uc), (dw, dc), (pw, pc) = r["uncached"], r["direct"], r["pool"]
        print(
            f"| {name} | {uw:.3f} / {uc:.3f} | {dw:.3f} / {dc:.3f} | {dw / uw:.1%} / "
            f"{dc / uc:.1%} | {pw:.3f} / {pc:.3f} | {pw / uw:.1%} / {pc / uc:.1%} |"
        )


def _print_rates(engines: dict[str, Engine], repeat: int) -> None:
    print("\n## Prefill and decode (tokens/s, median; wall / per CPU-second)\n")
    print(
        "| preset | prefill 512 | prefill 2,048 | decode 1 req | decode 8 req batched "
        "| decode 8 req interleaved |"
    )
    print("|---|---|---|---|---|---|")
    for name, eng in engines.items():
        cells = [prefill_rate(eng, n, repeat) for n in (512, 2048)]
        cells += [decode_rate(eng, 1, True), decode_rate(eng, 8, True), decode_rate(eng, 8, False)]
        print(f"| {name} | " + " | ".join(f"{w:,.0f} / {c:,.0f}" for w, c in cells) + " |")


def _print_wire(engines: dict[str, Engine], repeat: int) -> None:
    print("\n## Wire: one 2,048-token cache (message bytes; median CPU ms)\n")
    print("| preset | fp32 bytes | export / import ms | bf16 bytes | export / import ms |")
    print("|---|---|---|---|---|")
    for name, eng in engines.items():
        w = wire(eng, repeat)
        print(
            f"| {name} | {w['fp32_bytes']:,.0f} | {w['fp32_export_ms']:.1f} / "
            f"{w['fp32_import_ms']:.1f} | {w['bf16_bytes']:,.0f} | "
            f"{w['bf16_export_ms']:.1f} / {w['bf16_import_ms']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--presets", default=",".join(PRESETS))
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, 1 torch thread"
    )
    engines = {name: Engine.from_preset(name) for name in args.presets.split(",")}
    for eng in engines.values():
        eng.warmup()
    _print_reuse(engines, args.repeat)
    _print_rates(engines, args.repeat)
    _print_wire(engines, args.repeat)


if __name__ == "__main__":
    main()
