"""[datacenters] and [router] replicas in the deployment file, the namespace plan and HAProxy's
configuration (pure: nothing is built)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from prfaas.deploy.config import load_deployment
from prfaas.deploy.datacenters import plan_topology, router_names
from prfaas.deploy.haproxy import render_config
from prfaas.errors import ConfigError

EXAMPLE = Path(__file__).parents[1] / "examples" / "two-dc-netns.toml"


def _variant(tmp: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp / "dc.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_example_plans_one_namespace_per_process_and_the_wan_shares_the_routers() -> None:
    cfg = load_deployment(EXAMPLE)
    top = plan_topology(cfg, 4194304)  # the largest Linux pid still fits interface names
    assert set(top.namespaces) == {"etcd", "router", "wan", "prfaas-0", "pd-p0", "pd-d0"}
    assert top.namespaces["wan"] == top.namespaces["router"]
    assert len(top.unique()) == 5
    assert top.namespaces["prfaas-0"][2] == 1 and top.namespaces["pd-d0"][2] == 0
    assert {addr for _ns, addr, _dc in top.unique()} >= {"10.78.1.2", "10.78.2.10"}
    assert top.rate_gbps == pytest.approx(10.0)
    names = [*(ns for ns, _a, _d in top.unique()), *top.devices()]
    assert all(len(n) + 1 <= 15 for n in names)  # + the "h"/"c" veth suffix
    assert router_names(3) == ["router", "router-1", "router-2"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ('host = "10.78.2.10"', 'host = "10.78.1.10"', "both have address"),
    ('host = "10.78.2.10"', 'host = "127.0.0.1"', "outside"),
    ('host = "10.78.2.10"', 'host = "192.168.0.9"', "outside"),
    ('etcd = "10.78.1.3"', 'etcd = "0.0.0.0"', "real address"),
    ('routers = ["10.78.1.2"]', 'routers = ["10.78.1.2", "10.78.1.5"]', "replicas = 1"),
    ('host = "10.78.1.2"           # = datacenters', 'host = "10.78.1.9"  #', r"routers\[0\]"),
    ('emulation = "veth"', 'emulation = "shaper"', 'emulation = "veth"'),
    ("prefix_len = 16", "prefix_len = 31", "at most 30"),
])
def test_bad_datacenters_are_one_line_config_errors(tmp_path: Path, old: str, new: str,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_deployment(_variant(tmp_path, old, new))


def test_a_veth_link_needs_datacenters_and_replicas_are_bounded(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    start, end = text.index("\n[datacenters]\n"), text.index("\n[router]\n")
    path = tmp_path / "x.toml"
    path.write_text(text[:start] + text[end:])
    with pytest.raises(ConfigError, match="needs \\[datacenters\\]"):
        load_deployment(path)
    with pytest.raises(ConfigError, match="at most 16"):
        load_deployment(_variant(tmp_path, "[router]\n", "[router]\nreplicas = 17\n"))
    local = Path(__file__).parents[1] / "examples" / "local.toml"
    path.write_text(local.read_text().replace("[router]\n", "[router]\nreplicas = 2\n", 1))
    assert load_deployment(path).router.replicas == 2


def test_haproxy_config_retries_elsewhere_and_buffers_whole_prompts(tmp_path: Path) -> None:
    text = render_config(("10.0.0.1", 8000), [("10.0.0.2", 9001), ("10.0.0.3", 9002)], 120.0,
                         4 << 20)
    for line in ("retries 3", "option redispatch 1", "retry-on conn-failure empty-response",
                 "option httpchk GET /health", "bind 10.0.0.1:8000",
                 "server r0 10.0.0.2:9001 check", "server r1 10.0.0.3:9002 check",
                 f"tune.bufsize {(4 << 20) + (64 << 10)}", "timeout server 150s"):
        assert line in text, line
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy not installed: the syntax check needs it")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
