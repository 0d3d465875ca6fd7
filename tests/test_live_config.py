"""Deployment files: the examples load, the embedded copies match, bad fields are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prfaas.deploy.config import load_deployment, parse_deployment
from prfaas.errors import ConfigError, InfeasibleError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EMBEDDED = ROOT / "src" / "prfaas" / "deploy" / "examples"


def minimal(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "deployment": {"name": "t", "block_tokens": 16},
        "engine": {"kind": "emulated", "kv_profile": "paper-table5", "time_scale": 10.0},
        "policy": {"name": "prfaas", "params": {"threshold_tokens": 64}},
        "clusters": [
            {
                "name": "prfaas",
                "role": "prfaas",
                "nodes": [{"name": "p0", "role": "prefill", "hardware": "H200"}],
            },
            {
                "name": "pd",
                "role": "pd",
                "nodes": [{"name": "pp0", "role": "prefill"}, {"name": "pd0", "role": "decode"}],
            },
        ],
        "links": [{"src": "prfaas", "dst": "pd", "gbps": 100.0, "rtt_ms": 20.0}],
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize("name", ["local.toml", "paper-emulated.toml"])
def test_examples_load_and_embedded_copies_match(name: str) -> None:
    cfg = load_deployment(EXAMPLES / name)
    assert cfg.nodes and any(n.role == "decode" for n in cfg.nodes)
    assert (EMBEDDED / name).read_text() == (EXAMPLES / name).read_text()


def test_local_example_is_the_documented_topology() -> None:
    cfg = load_deployment(EXAMPLES / "local.toml")
    roles = sorted((n.cluster, n.role) for n in cfg.nodes)
    assert roles == [("pd", "decode"), ("pd", "prefill"), ("prfaas", "prefill")]
    link = cfg.link("prfaas", "pd")
    assert link is not None and (link.gbps, link.rtt_ms) == (1.0, 20.0)
    assert cfg.engine.kind == "transformers" and cfg.engine.model == "qwen3.5-tiny"


def test_paper_emulated_has_the_papers_instances() -> None:
    cfg = load_deployment(EXAMPLES / "paper-emulated.toml")
    prfaas = [n for n in cfg.nodes if n.cluster == cfg.clusters[0].name]
    assert len(prfaas) == 4 and {n.hardware for n in prfaas} == {"H200"}
    pd = [n for n in cfg.nodes if n not in prfaas]
    assert len(pd) == 8 and {n.hardware for n in pd} == {"H20"}
    assert cfg.engine.kind == "emulated" and cfg.engine.time_scale > 1


def test_minimal_parses_and_link_scale() -> None:
    cfg = parse_deployment(minimal())
    assert cfg.engine.link_scale == pytest.approx(10.0)
    assert cfg.cluster_of("pd0").role == "pd"
    assert cfg.with_policy("homogeneous").policy.params == {"threshold_tokens": 64}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["engine"].update(kind="gpu"), "engine.kind"),
        (lambda d: d["engine"].update(time_scale=-1), "engine.time_scale"),
        (lambda d: d["engine"].update(bogus=1), "engine.bogus"),
        (lambda d: d["deployment"].update(block_tokens=0), "deployment.block_tokens"),
        (lambda d: d["clusters"][0].update(role="edge"), "clusters[0].role"),
        (lambda d: d["clusters"][0]["nodes"][0].update(role="decode"), "clusters[0].nodes[0].role"),
        (
            lambda d: d["clusters"][1]["nodes"][0].update(hardware="TPU"),
            "clusters[1].nodes[0].hardware",
        ),
        (lambda d: d["clusters"][1]["nodes"][0].update(port=70000), "clusters[1].nodes[0].port"),
        (lambda d: d["links"][0].update(dst="mars"), "links[0].dst"),
        (lambda d: d["links"][0].update(gbps=0), "links[0].gbps"),
        (lambda d: d["links"][0].update(emulation="wire"), "links[0].emulation"),
        (lambda d: d["policy"].update(name="fastest"), "policy.name"),
        (lambda d: d["policy"]["params"].update(thresh=3), "policy.params.thresh"),
        (lambda d: d.update(extra={}), "extra"),
    ],
)
def test_bad_fields_are_named(mutate: Any, field: str) -> None:
    doc = minimal()
    mutate(doc)
    with pytest.raises(ConfigError) as err:
        parse_deployment(doc, source="dep.toml")
    assert f"'{field}'" in str(err.value) and "dep.toml" in str(err.value)


def _rename(table: dict[str, Any], old: str, new: str) -> None:
    table[new] = table.pop(old)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda d: _rename(d["clusters"][1]["nodes"][1], "role", "rol"),
            "clusters[1].nodes[1].rol",
        ),
        (lambda d: _rename(d["links"][0], "gbps", "gpbs"), "links[0].gpbs"),
        (lambda d: _rename(d["links"][0], "dst", "dsts"), "links[0].dsts"),
        (lambda d: _rename(d["engine"], "kind", "kinds"), "engine.kinds"),
    ],
)
def test_misspelt_required_field_is_reported_as_unknown(mutate: Any, field: str) -> None:
    doc = minimal()
    mutate(doc)
    with pytest.raises(ConfigError, match="is not a known field") as err:
        parse_deployment(doc, source="dep.toml")
    assert f"'{field}'" in str(err.value)


def test_transformers_engine_refuses_emulation_scales() -> None:
    doc = minimal(engine={"kind": "transformers", "time_scale": 5.0})
    with pytest.raises(ConfigError, match=r"engine\.time_scale"):
        parse_deployment(doc)


def test_no_decode_node_is_infeasible() -> None:
    doc = minimal()
    doc["clusters"][1]["nodes"] = [{"name": "pp0", "role": "prefill"}]
    with pytest.raises(InfeasibleError, match="no decode node"):
        parse_deployment(doc)


def test_duplicate_names_and_missing_link() -> None:
    doc = minimal()
    doc["clusters"][1]["nodes"][1]["name"] = "p0"
    with pytest.raises(ConfigError, match="used twice"):
        parse_deployment(doc)
    doc = minimal()
    del doc["links"]
    with pytest.raises(ConfigError, match="no link from PrfaaS cluster"):
        parse_deployment(doc)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_deployment(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine\nkind=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_deployment(bad)


def test_cli_reports_config_error_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prfaas.cli import main

    bad = tmp_path / "dep.toml"
    bad.write_text('[deployment]\nname = "x"\n[engine]\nkind = "quantum"\n')
    assert main(["up", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "engine.kind" in err and "Traceback" not in err
