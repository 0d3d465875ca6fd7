"""examples/two-dc-netns.toml: every process in its own network namespace, two datacenters joined
by a tbf-shaped veth. Served through the official `openai` client; no listener on 127.0.0.1 in
any namespace; the KV of offloaded requests crosses (and is counted on) the inter-DC veth; a
`kill -9` of `prfaas up` leaves no namespace, interface, process or run folder behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from prfaas.transfer.netns import netns_missing

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "two-dc-netns.toml"
LONG = "the quick brown fox jumps over the lazy dog " * 12  # 528 tokens > t = 256 (pinned)


def _why_not() -> str | None:
    reason = netns_missing()
    if reason is None and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode:
        reason = "`ip netns` does not work here"
    if reason is None and shutil.which("etcd") is None:
        reason = "etcd not installed (apt-get install etcd-server)"
    return reason


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(_why_not() is not None, reason=f"namespaces: {_why_not()}")]


def _config(tmp: Path) -> tuple[Path, str]:
    """The example on a subnet of its own (parallel runs must not share addresses), port 0."""
    second = 100 + os.getpid() % 100
    text = EXAMPLE.read_text().replace("10.78.", f"10.{second}.").replace("port = 8000", "port = 0")
    # t pinned (the example's is planned from the warm-up pass): LONG must cross, "hi" must not.
    text = text.replace("[policy.params]\n", "[policy.params]\nthreshold_tokens = 256\n", 1)
    path = tmp / "two-dc.toml"
    path.write_text(text)
    return path, f"10.{second}."


def _ours(tag: str) -> tuple[list[str], list[str]]:
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return ([s.split()[0] for s in spaces.splitlines() if s.startswith(tag)],
            [ln.split(":")[1].strip() for ln in links.splitlines() if f" {tag}" in ln])


def _listeners(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-ltnH"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def _kv_bytes(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    key = 'prfaas_transfer_bytes_total{link="prfaas->pd"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))


def _veth_tx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/tx_bytes").read_text())


def test_two_datacenters_in_namespaces(tmp_path: Path) -> None:
    import openai

    config, prefix = _config(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    up = subprocess.Popen([sys.executable, "-m", "prfaas", "up", "--config", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tag, url, run_dir, out = "", "", None, []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            out.append(line)
            if m := re.search(r"bridges (pfd\d+)b0", line):
                tag = m.group(1)
            if m := re.search(r"prfaas is up: (\S+)", line):
                url = m.group(1)
            if m := re.search(r"certificates in (\S+)/pki", line):
                run_dir = Path(m.group(1))
            if "Ctrl-C stops" in line:
                break
        assert tag and url.startswith(f"http://{prefix}") and run_dir, "".join(out)
        spaces, links = _ours(tag)
        assert len(spaces) == 5 and len(links) >= 3, (spaces, links)  # etcd, router+wan, 3 nodes
        for ns in spaces:  # nothing on loopback anywhere (etcd included)
            addrs = _listeners(ns)
            print(f"{ns}: listening on {' '.join(sorted(addrs))}")
            assert addrs and all(a.startswith(prefix) for a in addrs), (ns, addrs)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
        short = client.completions.create(model="qwen3.5-tiny", prompt="hi", max_tokens=4)
        assert short.usage is not None and short.usage.completion_tokens == 4
        before_veth, before_kv = _veth_tx(f"{tag}x1"), _kv_bytes(url)
        for k in range(3):  # long prompts prefill in the other datacenter: KV crosses the veth
            reply = client.completions.create(model="qwen3.5-tiny", prompt=f"{k} {LONG}",
                                              max_tokens=4)
            assert reply.choices[0].text
        veth = _veth_tx(f"{tag}x1") - before_veth
        kv = _kv_bytes(url) - before_kv
        print(f"3 offloaded requests: router-accounted KV {kv:,.0f} B; inter-DC veth "
              f"(PrfaaS -> PD) carried {veth:,} B ({veth / kv:.3f}x)")
        assert kv > 0 and veth >= kv
    finally:
        up.kill()  # kill -9: the reaper must clean up the namespaces, processes and folder
        up.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(_ours(tag)) or (run_dir and run_dir.exists())):
        time.sleep(0.2)
    assert _ours(tag) == ([], []), "namespaces or interfaces left after kill -9 of prfaas up"
    assert run_dir is not None and not run_dir.exists()
