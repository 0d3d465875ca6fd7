"""Planner scenarios: the frozen Scenario and its strict TOML loader (built-ins: paper, ...)."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from prfaas.errors import ConfigError, InfeasibleError, UsageError
from prfaas.planner.fields import Table
from prfaas.planner.sections import (
    DEFAULT_BANDWIDTH_SWEEP_GBPS,
    parse_cluster,
    parse_decode,
    parse_kv,
    parse_workload,
    req,
)
from prfaas.profiles import DecodeProfile, HardwareSpec, KvSizeProfile, PrefillProfile
from prfaas.workload.lengths import LengthDistribution, TruncatedLogNormal

BUILTIN_DIR = Path(__file__).with_name("scenarios")
# The exhaustive search holds ~15 float64 arrays of (PD splits x thresholds) cells at once: 2M cells
# is ~250 MB and well under a second; the paper scenario has 10^4. Larger grids are almost always a
# typo (max_tokens = 1e11), so they are refused before numpy tries to allocate them.
MAX_THRESHOLDS = 250_000
MAX_GRID_CELLS = 2_000_000


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything the throughput model needs: cluster sizes, profiles, link, workload, prices."""

    name: str
    prfaas_instances: int
    pd_instances: int
    homogeneous_instances: int
    prfaas_prefill: PrefillProfile
    pd_prefill: PrefillProfile
    decode: DecodeProfile
    kv_size: KvSizeProfile
    link_gbps: float
    lengths: LengthDistribution
    output_tokens: float
    prfaas_hardware: HardwareSpec
    pd_hardware: HardwareSpec
    prfaas_gpus_per_instance: int = 8
    pd_gpus_per_instance: int = 8
    prfaas_price_per_gpu_hour: float = 0.0
    pd_price_per_gpu_hour: float = 0.0
    threshold_step_tokens: int = 100
    bandwidth_sweep_gbps: tuple[float, ...] = DEFAULT_BANDWIDTH_SWEEP_GBPS
    description: str = ""

    @property
    def link_bytes_per_s(self) -> float:
        return self.link_gbps * 1e9 / 8.0

    def with_link(self, link_gbps: float) -> Scenario:
        return replace(self, link_gbps=float(link_gbps))

    def with_lengths(self, lengths: LengthDistribution) -> Scenario:
        return replace(self, lengths=lengths)


def list_builtin_scenarios() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path, *, traces_dir: Path | None = None) -> Scenario:
    """A built-in scenario by name ('paper', ...) or a TOML file; ConfigError/InfeasibleError."""
    text = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text}.toml"
    path = builtin if "/" not in text and builtin.exists() else Path(text)
    if not path.exists():
        names = ", ".join(list_builtin_scenarios())
        raise UsageError(f"scenario {text!r} is neither a built-in ({names}) nor an existing file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read scenario: {exc}") from None
    return parse_scenario(doc, source=str(path), base_dir=path.parent, traces_dir=traces_dir)


def parse_scenario(
    doc: dict[str, object], *, source: str, base_dir: Path, traces_dir: Path | None = None
) -> Scenario:
    """Validate a scenario document; every problem is one ConfigError naming the field."""
    root = Table(doc, "", source)
    name = root.string("name")
    description = root.string("description", default=" ").strip()
    lengths, output_tokens = parse_workload(req(root, "workload"), base_dir, traces_dir)
    prfaas, pd = parse_cluster(req(root, "prfaas")), parse_cluster(req(root, "pd"))
    decode_profile = parse_decode(req(root, "decode"))
    link = req(root, "link")
    link_gbps = link.number("gbps", strict_min=True)
    link.finish()
    kv_size = parse_kv(req(root, "kv"))
    gpus = prfaas.instances * prfaas.gpus + pd.instances * pd.gpus
    n_homog = _homogeneous(root, gpus // pd.gpus)
    step, sweep = _search(root)
    root.finish()
    _check_feasible(source, prfaas.instances, pd.instances, n_homog)
    _check_grid_size(root, lengths, step, pd.instances, n_homog)
    return Scenario(
        name=name,
        prfaas_instances=prfaas.instances,
        pd_instances=pd.instances,
        homogeneous_instances=n_homog,
        prfaas_prefill=prfaas.prefill,
        pd_prefill=pd.prefill,
        decode=decode_profile,
        kv_size=kv_size,
        link_gbps=link_gbps,
        lengths=lengths,
        output_tokens=output_tokens,
        prfaas_hardware=prfaas.hardware,
        pd_hardware=pd.hardware,
        prfaas_gpus_per_instance=prfaas.gpus,
        pd_gpus_per_instance=pd.gpus,
        prfaas_price_per_gpu_hour=prfaas.price,
        pd_price_per_gpu_hour=pd.price,
        threshold_step_tokens=step,
        bandwidth_sweep_gbps=sweep,
        description=description,
    )


def _homogeneous(root: Table, default: int) -> int:
    table = root.table("homogeneous", optional=True)
    if table is None:
        return default
    n = table.integer("instances", default=default)
    table.finish()
    return n


def _search(root: Table) -> tuple[int, tuple[float, ...]]:
    table = root.table("search", optional=True)
    step = 100
    sweep: tuple[float, ...] = DEFAULT_BANDWIDTH_SWEEP_GBPS
    if table is not None:
        step = table.integer("threshold_step_tokens", default=100, minimum=1)
        if table.has("bandwidth_sweep_gbps"):
            sweep = tuple(table.numbers("bandwidth_sweep_gbps", strict_min=True))
        table.finish()
    return step, sweep


def threshold_count(max_tokens: float, step: int) -> float:
    """How many thresholds t = 0, step, ... up to the first multiple of step >= max_tokens."""
    return math.ceil(max_tokens / step) + 1.0


def _check_grid_size(
    root: Table, lengths: LengthDistribution, step: int, n_pd: int, n_homog: int
) -> None:
    """Refuse a search grid too large to hold in memory, naming the field that makes it so."""
    n_t = threshold_count(lengths.max_tokens, step)
    if n_t > MAX_THRESHOLDS:
        is_lognormal = isinstance(lengths, TruncatedLogNormal)
        field = "workload.max_tokens" if is_lognormal else "search.threshold_step_tokens"
        raise ConfigError(
            f"{root.source}: field '{field}' gives {n_t:.4g} thresholds (longest input "
            f"{lengths.max_tokens:.4g} tokens / step {step}), more than the planner's "
            f"{MAX_THRESHOLDS:,}; lower workload.max_tokens or raise search.threshold_step_tokens"
        )
    if n_t * n_pd > MAX_GRID_CELLS:
        raise ConfigError(
            f"{root.source}: field 'pd.instances' = {n_pd} x {n_t:.0f} thresholds is more than "
            f"the planner's {MAX_GRID_CELLS:,} grid cells; raise search.threshold_step_tokens"
        )
    if n_homog > MAX_GRID_CELLS:
        raise ConfigError(
            f"{root.source}: field 'homogeneous.instances' = {n_homog} is more than "
            f"{MAX_GRID_CELLS:,}"
        )


def _check_feasible(source: str, n_prfaas: int, n_pd: int, n_homog: int) -> None:
    if n_pd < 1:
        raise InfeasibleError(f"{source}: pd.instances = 0 leaves no decode instance")
    if n_prfaas < 1:
        raise InfeasibleError(f"{source}: prfaas.instances = 0 leaves no PrfaaS prefill instance")
    if n_homog < 2:
        raise InfeasibleError(
            f"{source}: homogeneous.instances = {n_homog}; a PD baseline needs >= 2 (1 P + 1 D)"
        )
