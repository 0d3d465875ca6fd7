"""`make vllm-demo`: three vLLM instances and the prfaas router, driven by the openai client."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI
from tokenizers import Tokenizer

from prfaas.deploy.vllm_nodes import VllmDeployment
from prfaas.router.vllm_pull import pull_prefix

_TEXT = ("the prefill cache block layer token bandwidth router river mountain city garden "
         "state memory queue link transfer model request cluster hybrid expert")
WORDS = _TEXT.split()


def prompt(seed: int, n_words: int) -> str:
    """Distinct prompts (the seed picks the opening words) of a trace-like length."""
    return " ".join(WORDS[(seed * 7 + i * (seed % 5 + 1)) % len(WORDS)] for i in range(n_words))


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pat = re.compile(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$", re.M)
    return sum(float(v) for v in pat.findall(text))


def stats(dep: VllmDeployment, name: str) -> list[dict[str, Any]]:
    path = dep.stats_path(name)
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def complete(client: OpenAI, text: str, n: int = 16, **extra: Any) -> str:
    r = client.completions.create(model=client.model_name, prompt=text,  # type: ignore[attr-defined]
                                  max_tokens=n, temperature=0, extra_body=extra or None)
    return r.choices[0].text


def run(dep: VllmDeployment, router: str) -> dict[str, Any]:
    dec = next(i for i in dep.fleet.nodes.values() if i.role == "decode")
    client = OpenAI(base_url=f"{router}/v1", api_key="unused")
    client.model_name = dep.fleet.model  # type: ignore[attr-defined]
    direct = OpenAI(base_url=f"{dec.url}/v1", api_key="unused")
    direct.model_name = dep.fleet.model  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    # 20 distinct prompts through the router: 8 short (local PD-P), 12 long (PrfaaS).
    local0 = metric(dec.url, "vllm:prompt_tokens_by_source_total", 'source="local_compute"')
    # Lengths 128k+1: the prefill stops at a multiple of 128 tokens (it computes N-1), where the
    # hybrid's bf16 GDN kernels round exactly as one whole prefill does (see token_level for
    # other lengths). 129 and 257 stay local under t = 300, longer ones go to PrfaaS.
    prompts = [prompt(s, 128 * (1 + s % 5) + 1) for s in range(20)]
    got = [complete(client, p) for p in prompts]
    local1 = metric(dec.url, "vllm:prompt_tokens_by_source_total", 'source="local_compute"')
    decisions = httpx.get(f"{router}/internal/vllm", timeout=10).json()["decisions"]
    # Reference: one instance, no disaggregation, its prefix cache bypassed by a fresh salt.
    ref = [complete(direct, p, cache_salt=uuid.uuid4().hex) for p in prompts]
    sends = [e for i in dep.fleet.nodes.values() if i.role == "prefill"
             for e in stats(dep, i.name)]
    out["outputs_equal"] = sum(a == b for a, b in zip(got, ref, strict=True))
    out["requests"] = len(prompts)
    out["offloaded"] = sum(1 for d in decisions if d.get("offloaded"))
    out["decode_prompt_tokens_computed"] = local1 - local0
    out["transfers"] = len(sends)
    out["bytes_match_layers_x_blocks"] = all(e.get("bytes") == e["expected_bytes"] for e in sends)
    out["kv_bytes"] = sum(e.get("bytes", 0) for e in sends)
    out["layerwise_pushes"] = sum(1 for e in sends if e.get("layerwise"))
    # The scheduler half warns when a request's blocks at finish differ from its last step's.
    out["layerwise_block_mismatches"] = sum(
        (dep.run_dir / f"{n}.log").read_text(errors="replace").count("its last step had")
        for n in dep.launch)
    out["prefix_reuse"] = prefix_reuse(dep, client, router)
    # Unaligned lengths (the split point is not a multiple of 128), measured at the token level.
    out["token_level"] = token_level(dep, [prompt(50 + s, 20 + 37 * s) for s in range(20)])
    out["cache_pull"] = pull_phase(dep)
    out["kill"] = kill_phase(dep, client)
    return out


def prefix_reuse(dep: VllmDeployment, client: OpenAI, router: str) -> list[dict[str, Any]]:
    """A long shared prefix, three suffixes in turn: did the index predict vLLM's cache hits?"""
    shared = prompt(101, 600)  # two full 256-token blocks the prefix cache can keep
    node_url = {i.name: i.url for i in dep.fleet.nodes.values()}
    reuse = []
    for k in range(3):
        before = {n: metric(u, "vllm:prefix_cache_hits_total") for n, u in node_url.items()}
        complete(client, shared + " " + prompt(200 + k, 6), n=4)
        d = httpx.get(f"{router}/internal/vllm", timeout=10).json()["decisions"][-1]
        where = d["prefill"]
        hits = metric(node_url[where], "vllm:prefix_cache_hits_total") - before[where]
        pred = d["attempts"][-1]["predicted_prefix_tokens"]
        reuse.append({"prefill": where, "predicted_prefix_tokens": pred, "vllm_hit_tokens": hits})
    return reuse


def token_level(dep: VllmDeployment, prompts: list[str]) -> dict[str, Any]:
    """Token ids and first-token logprobs, disaggregated (pd-p0 -> pd-d0, no router) vs one
    instance: separates transport errors (any model) from bf16 rounding of a split prefill."""
    by = {i.name: i for i in dep.fleet.nodes.values()}
    p, d = by["pd-p0"], by["pd-d0"]
    c = httpx.Client(timeout=300)
    first = seq = 0
    worst = 0.0
    for text in prompts:
        body = {"model": dep.fleet.model, "prompt": text, "max_tokens": 16, "temperature": 0,
                "return_token_ids": True, "logprobs": 1}
        ref = c.post(f"{d.url}/v1/completions",
                     json={**body, "cache_salt": uuid.uuid4().hex}).json()["choices"][0]
        tid = f"xfer-{uuid.uuid4().hex}"
        c.post(f"{p.url}/v1/completions", json={**body, "max_tokens": 1, "kv_transfer_params": {
            "do_remote_decode": True, "transfer_id": tid, "remote_engine_id": d.name}})
        dis = c.post(f"{d.url}/v1/completions", json={**body, "kv_transfer_params": {
            "do_remote_prefill": True, "transfer_id": tid, "remote_engine_id": p.name}})
        got = dis.json()["choices"][0]
        first += ref["token_ids"][0] == got["token_ids"][0]
        seq += ref["token_ids"] == got["token_ids"]
        worst = max(worst, abs(ref["logprobs"]["token_logprobs"][0]
                               - got["logprobs"]["token_logprobs"][0]))
    return {"prompts": len(prompts), "first_token_equal": first, "sequence_equal": seq,
            "max_first_logprob_diff": worst, "vllm_own_split": own_split(c, d.url, dep)}


def own_split(c: httpx.Client, url: str, dep: VllmDeployment) -> dict[str, Any]:
    """The baseline for the above: one instance, no connector, a prompt computed whole vs the same
    prompt again after a 512-token prefix-cache hit (vLLM's own split of the same computation)."""
    first = seq = 0
    worst = 0.0
    texts = [prompt(500 + s, 600) for s in range(5)]
    for text in texts:
        body = {"model": dep.fleet.model, "prompt": text, "max_tokens": 16, "temperature": 0,
                "return_token_ids": True, "logprobs": 1, "cache_salt": uuid.uuid4().hex}
        whole = c.post(f"{url}/v1/completions", json=body).json()["choices"][0]
        split = c.post(f"{url}/v1/completions", json=body).json()["choices"][0]
        first += whole["token_ids"][0] == split["token_ids"][0]
        seq += whole["token_ids"] == split["token_ids"]
        worst = max(worst, abs(whole["logprobs"]["token_logprobs"][0]
                               - split["logprobs"]["token_logprobs"][0]))
    return {"prompts": len(texts), "first_token_equal": first, "sequence_equal": seq,
            "max_first_logprob_diff": worst}


def pull_phase(dep: VllmDeployment) -> dict[str, Any]:
    """A cache pull between real instances, with the router's own code (router/vllm_pull.py):
    prfaas-p0 caches a long prefix, the pull brings it to pd-p0, whose prefill of a longer prompt
    then hits it. Counted by vLLM on pd-p0: tokens loaded by the connector, prefix-cache hits."""
    src, dst, ref = (dep.fleet.nodes[n] for n in ("prfaas-p0", "pd-p0", "pd-d0"))
    tok = Tokenizer.from_file(dep.fleet.tokenizer)
    ids = tok.encode(prompt(700, 700)).ids
    n = (len(ids) - 1) // dep.fleet.block_tokens * dep.fleet.block_tokens
    full = ids[:n] + tok.encode(" " + prompt(701, 40)).ids
    c = httpx.Client(timeout=300)
    body = {"model": dep.fleet.model, "max_tokens": 8, "temperature": 0, "return_token_ids": True}
    c.post(f"{src.url}/v1/completions", json={**body, "prompt": ids}).raise_for_status()
    ext = 'source="external_kv_transfer"'
    ext0 = metric(dst.url, "vllm:prompt_tokens_by_source_total", ext)

    async def pull() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=300) as h:
            return await pull_prefix(h, dep.fleet.model, src, dst, ids[: n + 1])

    entry = asyncio.run(pull())
    loaded = metric(dst.url, "vllm:prompt_tokens_by_source_total", ext) - ext0
    hits0 = metric(dst.url, "vllm:prefix_cache_hits_total")
    got = c.post(f"{dst.url}/v1/completions", json={**body, "prompt": full}).json()
    hits = metric(dst.url, "vllm:prefix_cache_hits_total") - hits0
    want = c.post(f"{ref.url}/v1/completions", json={**body, "prompt": full,
                                                      "cache_salt": uuid.uuid4().hex}).json()
    return {"ok": entry["ok"], "prefix_tokens": n, "loaded_tokens": loaded,
            "dst_hit_tokens": hits, "prompt_tokens": len(full),
            "tokens_equal_one_instance": got["choices"][0]["token_ids"]
            == want["choices"][0]["token_ids"]}


def kill_phase(dep: VllmDeployment, client: OpenAI) -> dict[str, Any]:
    """Long requests in flight, then the PrfaaS instance dies: all must still be answered."""
    texts = [prompt(300 + s, 500) for s in range(8)]
    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(complete, client, t, 8) for t in texts]
        time.sleep(1.0)
        dep.kill("prfaas-p0")
        ok = lost = 0
        for f in futs:
            try:
                f.result(timeout=300)
                ok += 1
            except Exception:
                lost += 1
    return {"requests": len(texts), "served": ok, "lost": lost}


DEMO_NODES = (("prfaas-p0", "prfaas", "prefill"), ("pd-p0", "pd", "prefill"),
              ("pd-d0", "pd", "decode"))


def deployment_file(model: Path, vllm_python: str, router_port: int) -> str:
    """The demo's `engine = "vllm"` file: `prfaas up --config` starts the same fleet."""
    info = json.loads((model / "prfaas_tiny.json").read_text())
    lines = ['engine = "vllm"', f'model = "{model}"', 'policy = "prfaas-static"',
             "policy_params = { threshold_tokens = 300 }", "block_tokens = 256",
             "link_gbps = 10.0", "load_timeout_s = 20", f'vllm_python = "{vllm_python}"',
             f"router_port = {router_port}",
             f'vllm_args = ["--dtype", "{info["dtype"]}", "--enforce-eager", '
             '"--max-model-len", "4096"]',
             'vllm_env = { VLLM_CPU_KVCACHE_SPACE = "1", VLLM_CPU_OMP_THREADS_BIND = "nobind" }',
             '\n[[cluster]]\nname = "prfaas"\nrole = "prfaas"',
             '\n[[cluster]]\nname = "pd"\nrole = "pd"']
    for k, (name, cluster, role) in enumerate(DEMO_NODES):
        port = f"\nport = {router_port + 1 + k}" + (
            f"\nkv_port = {router_port + 31 + k}" if role == "decode" else "")
        lines.append(f'\n[[node]]\nname = "{name}"\ncluster = "{cluster}"\nrole = "{role}"{port}')
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vllm-python", required=True)
    ap.add_argument("--out", type=Path, default=Path("out/vllm-demo"))
    ap.add_argument("--router-port", type=int, default=18200)
    args = ap.parse_args(argv)
    # SIGTERM unwinds like an exception, so the finally below stops every vLLM process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    subprocess.run([args.vllm_python, "-m", "prfaas.integrations.vllm.tiny_model", str(model)],
                   check=True)
    path = out / "deployment.toml"
    path.write_text(deployment_file(model, args.vllm_python, args.router_port))
    dep = VllmDeployment(path, run_dir=out)  # what `prfaas up --config` runs
    try:
        result = run(dep, dep.start())
    finally:
        dep.stop()
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
