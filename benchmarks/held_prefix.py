"""Only the missing KV crosses, measured on a running `prfaas up` (transformers engine).

A shared-prefix workload, sent one request at a time: each of `--prefixes` system prompts once
(shorter than t: prefilled on the PD cluster, which then holds it), then `--turns` long
follow-ups per prefix (longer than t: offloaded). Prints and writes (JSON) the requests, where
they were prefilled, the held tokens the router counted, the KV bytes per link, the held-prefix
retries, and every completion, so two runs (feature on / code before it) compare with --compare:

    prfaas up --config held.toml &     # prints the URL
    python benchmarks/held_prefix.py --url URL --out on.json
    python benchmarks/held_prefix.py --compare off.json on.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

COUNTERS = {
    "held_tokens": "prfaas_kv_held_tokens_total",
    "kv_bytes": "prfaas_transfer_bytes_total",
    "routed": "prfaas_routed_requests_total",
    "retries": "prfaas_retries_total",
}


def counters(url: str) -> dict[str, float]:
    """Every sample of COUNTERS on the public /metrics, keyed `name{labels}`."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        key, _, value = line.rpartition(" ")
        if any(key.startswith(n + "{") for n in COUNTERS.values()):
            out[key] = float(value)
    return out


def workload(prefixes: int, turns: int, prefix_words: int, turn_words: int) -> list[str]:
    """The system prompts first, then their follow-ups (distinct user turns), round robin."""
    systems = [
        f"system {k}: " + " ".join(f"rule{k}-{w}" for w in range(prefix_words)) + ". "
        for k in range(prefixes)
    ]
    turns_ = [
        s + f"user turn {j}: " + " ".join(f"q{k}.{j}.{w}" for w in range(turn_words))
        for j in range(turns)
        for k, s in enumerate(systems)
    ]
    return systems + turns_


def run(url: str, model: str, prompts: list[str], max_tokens: int) -> dict[str, Any]:
    before = counters(url)
    outputs = []
    with httpx.Client(timeout=300) as client:
        for prompt in prompts:
            body = {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "return_token_ids": True,
            }
            resp = client.post(f"{url}/v1/completions", json=body)
            resp.raise_for_status()
            choice = resp.json()["choices"][0]
            outputs.append([choice["text"], choice["token_ids"]])  # text, output token ids
    after = counters(url)
    delta = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    return {
        "requests": len(prompts),
        "prompt_tokens": sum(len(p.encode()) for p in prompts),
        "counters": delta,
        "outputs": outputs,
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    wan = 'prfaas_transfer_bytes_total{link="prfaas->pd"}'
    same = a["outputs"] == b["outputs"]
    wa, wb = a["counters"].get(wan, 0.0), b["counters"].get(wan, 0.0)
    return (
        f"outputs identical: {same} ({len(a['outputs'])} requests); WAN KV bytes "
        f"{wa:,.0f} -> {wb:,.0f} ({wb / wa:.3f}x, {wa - wb:,.0f} fewer)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="the router's public URL (what `prfaas up` printed)")
    p.add_argument("--out", help="write the run here (JSON)")
    p.add_argument("--prefixes", type=int, default=4)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--prefix-words", type=int, default=45, help="~10 tokens (bytes) each")
    p.add_argument("--turn-words", type=int, default=90)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--model", default="qwen3.5-tiny", help="the deployment's model name")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"))
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads(Path(f).read_text()) for f in args.compare)
        print(compare(a, b))
        return 0
    if not args.url:
        p.error("--url or --compare is required")
    prompts = workload(args.prefixes, args.turns, args.prefix_words, args.turn_words)
    result = run(args.url.rstrip("/"), args.model, prompts, args.max_tokens)
    print(json.dumps({k: v for k, v in result.items() if k != "outputs"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
