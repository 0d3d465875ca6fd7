"""Accelerator presets: public spec-sheet numbers and an indicative, overridable GPU-hour price."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from prfaas.errors import UsageError


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """Per-GPU numbers. Dense (no-sparsity) tensor TFLOPS; prices are assumptions, not quotes."""

    name: str
    bf16_tflops: float
    fp8_tflops: float
    hbm_gb: float
    hbm_tb_per_s: float
    price_per_gpu_hour: float
    sources: tuple[str, ...] = ()
    price_note: str = ""

    def with_price(self, price_per_gpu_hour: float) -> HardwareSpec:
        if not (math.isfinite(price_per_gpu_hour) and price_per_gpu_hour >= 0):
            raise UsageError(f"price_per_gpu_hour must be >= 0, got {price_per_gpu_hour!r}")
        return replace(self, price_per_gpu_hour=float(price_per_gpu_hour))

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Peak dense FLOP/s of one GPU for 'bf16' or 'fp8'."""
        if dtype == "bf16":
            return self.bf16_tflops * 1e12
        if dtype == "fp8":
            return self.fp8_tflops * 1e12
        raise UsageError(f"unknown compute dtype {dtype!r} (choose bf16 or fp8)")


_PRICE_NOTE = (
    "indicative on-demand price, an assumption for equal-cost comparisons; override it per "
    "scenario (price_per_gpu_hour)"
)

# Spec values: public data sheets (docs/paper-notes.md#hardware); the paper gives none. H20 is
# priced at half an H200: the ~2.0 cost ratio that the paper's "about 15% at equal cost" implies
# (docs/paper-notes.md#prices).
HARDWARE: dict[str, HardwareSpec] = {
    "H200": HardwareSpec(
        name="H200",
        bf16_tflops=989.0,
        fp8_tflops=1979.0,
        hbm_gb=141.0,
        hbm_tb_per_s=4.8,
        price_per_gpu_hour=3.50,
        sources=("NVIDIA H200 SXM data sheet (3,958 TFLOPS FP8 with sparsity = 1,979 dense)",),
        price_note=_PRICE_NOTE,
    ),
    "H20": HardwareSpec(
        name="H20",
        bf16_tflops=148.0,
        fp8_tflops=296.0,
        hbm_gb=96.0,
        hbm_tb_per_s=4.0,
        price_per_gpu_hour=1.75,
        sources=("https://willitrunai.com/es/gpus/h20-96gb", "docs/paper-notes.md#hardware"),
        price_note=_PRICE_NOTE + "; H200:H20 = 2.0 as inferred in docs/paper-notes.md#prices",
    ),
    "H100": HardwareSpec(
        name="H100",
        bf16_tflops=989.0,
        fp8_tflops=1979.0,
        hbm_gb=80.0,
        hbm_tb_per_s=3.35,
        price_per_gpu_hour=2.50,
        sources=("NVIDIA H100 SXM5 data sheet",),
        price_note=_PRICE_NOTE,
    ),
    "B200": HardwareSpec(
        name="B200",
        bf16_tflops=2250.0,
        fp8_tflops=4500.0,
        hbm_gb=180.0,
        hbm_tb_per_s=8.0,
        price_per_gpu_hour=5.00,
        sources=("NVIDIA HGX/DGX B200 data sheet (8-GPU totals divided by 8, dense)",),
        price_note=_PRICE_NOTE,
    ),
}


def list_hardware() -> list[str]:
    return sorted(HARDWARE)


def get_hardware(name: str) -> HardwareSpec:
    """Hardware preset by name (case-insensitive)."""
    for key, spec in HARDWARE.items():
        if key.lower() == str(name).strip().lower():
            return spec
    raise UsageError(f"unknown hardware {name!r}; choose one of: {', '.join(list_hardware())}")
