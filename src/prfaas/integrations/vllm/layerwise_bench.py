"""Layer-wise vs end-of-prefill KV push, same instances and prompts, alternating per request."""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from prfaas.deploy.vllm_nodes import VllmDeployment
from prfaas.integrations.vllm.demo import prompt


def deployment_file(model: Path, vllm_python: str, base_port: int) -> str:
    """One PD prefill and one PD decode instance (no router decisions are measured)."""
    info = json.loads((model / "prfaas_tiny.json").read_text())
    return "\n".join([
        'engine = "vllm"', f'model = "{model}"', 'policy = "homogeneous"', "block_tokens = 256",
        f'vllm_python = "{vllm_python}"', f"router_port = {base_port}",
        f'vllm_args = ["--dtype", "{info["dtype"]}", "--enforce-eager", '
        '"--max-model-len", "4096"]',
        'vllm_env = { VLLM_CPU_KVCACHE_SPACE = "1", VLLM_CPU_OMP_THREADS_BIND = "nobind" }',
        '[[cluster]]\nname = "pd"\nrole = "pd"',
        f'[[node]]\nname = "pd-p0"\ncluster = "pd"\nrole = "prefill"\nport = {base_port + 1}',
        f'[[node]]\nname = "pd-d0"\ncluster = "pd"\nrole = "decode"\nport = {base_port + 2}\n'
        f"kv_port = {base_port + 32}", ""])


def one(c: httpx.Client, dep: VllmDeployment, text: str, layerwise: bool) -> dict[str, Any]:
    """Prefill on pd-p0, then decode on pd-d0; the salt keeps the prefix cache out of it."""
    p, d = dep.fleet.nodes["pd-p0"], dep.fleet.nodes["pd-d0"]
    tid = f"xfer-{uuid.uuid4().hex}"
    body = {"model": dep.fleet.model, "prompt": text, "max_tokens": 4, "temperature": 0,
            "return_token_ids": True, "cache_salt": uuid.uuid4().hex}
    t0 = time.perf_counter()
    c.post(f"{p.url}/v1/completions", json={**body, "max_tokens": 1, "kv_transfer_params": {
        "do_remote_decode": True, "transfer_id": tid, "remote_engine_id": "pd-d0",
        "prfaas_layerwise": layerwise}}).raise_for_status()
    r = c.post(f"{d.url}/v1/completions", json={**body, "kv_transfer_params": {
        "do_remote_prefill": True, "transfer_id": tid, "remote_engine_id": "pd-p0"}})
    r.raise_for_status()
    return {"transfer_id": tid, "layerwise": layerwise, "e2e_s": time.perf_counter() - t0,
            "token_ids": r.json()["choices"][0]["token_ids"]}


def summary(rows: list[dict[str, Any]], sends: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in (True, False):
        got = [sends[r["transfer_id"]] for r in rows if r["layerwise"] is mode]
        ok = [s for s in got if s.get("ok")]
        med = statistics.median
        out["layerwise" if mode else "end_of_prefill"] = {
            "transfers": len(got), "ok": len(ok),
            "pushed_layerwise": sum(1 for s in ok if s.get("layerwise")),
            "bytes_median": med(s["bytes"] for s in ok),
            "exposed_s_median": med(s["exposed_s"] for s in ok),
            "exposed_s_mean": statistics.fmean(s["exposed_s"] for s in ok),
            "e2e_s_median": med(r["e2e_s"] for r in rows if r["layerwise"] is mode)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vllm-python", required=True)
    ap.add_argument("--out", type=Path, default=Path("out/vllm-layerwise"))
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--words", type=int, default=1800)  # ~1,900 tokens: one prefill step
    ap.add_argument("--base-port", type=int, default=18600)
    args = ap.parse_args(argv)
    # SIGTERM unwinds like an exception, so the finally below stops every vLLM process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.out.resolve()
    model = out / "model"
    subprocess.run([args.vllm_python, "-m", "prfaas.integrations.vllm.tiny_model", str(model),
                    "--size", "deep"], check=True)
    path = out / "deployment.toml"
    path.write_text(deployment_file(model, args.vllm_python, args.base_port))
    dep = VllmDeployment(path, run_dir=out)
    rows = []
    try:
        dep.start()
        with httpx.Client(timeout=300) as c:
            one(c, dep, prompt(999, 50), True)  # warm-up (connections, first forward)
            for i in range(args.prompts):
                text = prompt(400 + i, args.words)
                pair = [one(c, dep, text, mode) for mode in ((True, False) if i % 2 else
                                                              (False, True))]
                pair[0]["same_tokens"] = pair[1]["same_tokens"] = (
                    pair[0]["token_ids"] == pair[1]["token_ids"])
                rows += pair
        time.sleep(1.0)  # the last stats lines
    finally:
        dep.stop()
    sends = {e["transfer_id"]: e for e in map(json.loads, dep.stats_path("pd-p0").read_text()
                                                        .splitlines()) if e["side"] == "send"}
    result = {"prompts": args.prompts, "words": args.words,
              "same_tokens": sum(r["same_tokens"] for r in rows) // 2, **summary(rows, sends)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
