"""Torch-free per-request cache accounting: KV per token, SWA capped at a window, fixed state.

Formulas follow docs/models.md (vLLM/SGLang cache layouts):
  GQA layer   num_kv_heads x (head_dim_k + head_dim_v) x kv_dtype bytes per token
  MLA layer   (kv_lora_rank + qk_rope_head_dim) x kv_dtype bytes per token
  SWA layer   GQA formula, only the last `window` tokens kept
  linear      recurrent state (state dtype, fp32 by default) + conv state (conv dtype, bf16)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum


class LayerKind(StrEnum):
    """Sequence mixer of one layer (the `layer_types` values of the preset JSON files)."""

    GQA = "full_gqa"
    MLA = "full_mla"
    SWA = "swa"
    LINEAR = "linear"
    NONE = "none"


class LinearKind(StrEnum):
    KDA = "kda"
    GDN = "gdn"
    LIGHTNING = "lightning"
    MAMBA1 = "mamba1"
    MAMBA2 = "mamba2"


@dataclass(frozen=True, slots=True)
class AttentionDims:
    """Heads and per-head dims of a GQA or SWA layer."""

    num_heads: int
    num_kv_heads: int
    head_dim_qk: int
    head_dim_v: int

    def kv_elements_per_token(self) -> int:
        return self.num_kv_heads * (self.head_dim_qk + self.head_dim_v)

    def score_dims(self) -> int:
        """num_heads x (d_qk + d_v): multiply-adds per attended (query, key) pair / 1."""
        return self.num_heads * (self.head_dim_qk + self.head_dim_v)


@dataclass(frozen=True, slots=True)
class MlaDims:
    """DeepSeek-style multi-head latent attention; the cache holds the latent plus the RoPE key."""

    num_heads: int
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int

    def kv_elements_per_token(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim

    def score_dims(self) -> int:
        return self.num_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)


@dataclass(frozen=True, slots=True)
class LinearStateDims:
    """Per-layer recurrent-state shape (heads, d_k, d_v) and conv-state element count."""

    kind: LinearKind
    heads: int
    d_k: int
    d_v: int
    conv_elements: int
    chunked: bool = True

    @property
    def recurrent_elements(self) -> int:
        return self.heads * self.d_k * self.d_v


@dataclass(frozen=True, slots=True)
class FlopTerms:
    """FLOPs(l) = quadratic * l^2 + linear * l + swa_per_pair * pairs(l, swa_window_tokens)."""

    quadratic: float
    linear: float
    swa_per_pair: float
    swa_window_tokens: float


@dataclass(frozen=True, slots=True)
class StateSpec:
    """What a request of l uncached tokens leaves behind after prefill, and what it costs.

    `state_dtype_bytes` is the recurrent/temporal state (fp32 = 4 by default, as SGLang and the
    Qwen3.5/Nemotron configs ask); `conv_dtype_bytes` the short-conv state (bf16).
    """

    name: str
    layer_kinds: tuple[LayerKind, ...]
    gqa: AttentionDims | None = None
    mla: MlaDims | None = None
    swa: AttentionDims | None = None
    swa_window: int = 0
    linear: LinearStateDims | None = None
    parallel_ssm: bool = False
    kv_dtype_bytes: int = 2
    state_dtype_bytes: int = 4
    conv_dtype_bytes: int = 2
    active_params: float = 0.0
    hidden_size: int = 0
    vocab_size: int = 0

    def __post_init__(self) -> None:
        counts = Counter(self.layer_kinds)
        needs = (
            (LayerKind.GQA, self.gqa, "gqa"),
            (LayerKind.MLA, self.mla, "mla"),
            (LayerKind.SWA, self.swa, "swa"),
            (LayerKind.LINEAR, self.linear, "linear"),
        )
        for kind, dims, label in needs:
            if counts[kind] and dims is None:
                raise ValueError(f"{self.name}: {counts[kind]} {kind} layers but no {label} dims")
        if self.parallel_ssm and self.linear is None:
            raise ValueError(f"{self.name}: parallel_ssm needs linear dims")
        if counts[LayerKind.SWA] and self.swa_window <= 0:
            raise ValueError(f"{self.name}: SWA layers need a sliding window > 0")

    def count(self, kind: LayerKind) -> int:
        return sum(1 for k in self.layer_kinds if k is kind)

    @property
    def num_full_layers(self) -> int:
        return self.count(LayerKind.GQA) + self.count(LayerKind.MLA)

    @property
    def num_state_layers(self) -> int:
        """Layers carrying recurrent state (every layer for Falcon-H1's parallel Mamba)."""
        extra = self.num_full_layers + self.count(LayerKind.SWA) if self.parallel_ssm else 0
        return self.count(LayerKind.LINEAR) + extra

    @property
    def bytes_per_token(self) -> int:
        """Bytes per token of the full-attention layers (the part that grows with l)."""
        gqa = self.gqa.kv_elements_per_token() * self.count(LayerKind.GQA) if self.gqa else 0
        mla = self.mla.kv_elements_per_token() * self.count(LayerKind.MLA) if self.mla else 0
        return (gqa + mla) * self.kv_dtype_bytes

    @property
    def swa_bytes_per_token(self) -> int:
        if self.swa is None:
            return 0
        return self.swa.kv_elements_per_token() * self.count(LayerKind.SWA) * self.kv_dtype_bytes

    @property
    def swa_window_tokens(self) -> int:
        return self.swa_window if self.swa is not None else 0

    @property
    def swa_max_bytes(self) -> int:
        """The SWA part once l >= window."""
        return self.swa_bytes_per_token * self.swa_window_tokens

    @property
    def state_bytes_per_layer(self) -> int:
        if self.linear is None:
            return 0
        return (
            self.linear.recurrent_elements * self.state_dtype_bytes
            + self.linear.conv_elements * self.conv_dtype_bytes
        )

    @property
    def fixed_bytes(self) -> int:
        """Per-request bytes independent of l: recurrent + conv state of every state layer."""
        return self.num_state_layers * self.state_bytes_per_layer

    def kv_bytes(self, l_tokens: int) -> int:
        """S_kv(l): full-attention KV + SWA window + fixed state, in bytes."""
        if l_tokens < 0:
            raise ValueError(f"length must be >= 0, got {l_tokens}")
        swa = self.swa_bytes_per_token * min(l_tokens, self.swa_window_tokens)
        return self.bytes_per_token * l_tokens + swa + self.fixed_bytes

    def with_dtypes(
        self, *, kv: int | None = None, state: int | None = None, conv: int | None = None
    ) -> StateSpec:
        """Same model with other cache dtypes (bytes per element), e.g. state=2 for all-bf16."""
        return replace(
            self,
            kv_dtype_bytes=self.kv_dtype_bytes if kv is None else kv,
            state_dtype_bytes=self.state_dtype_bytes if state is None else state,
            conv_dtype_bytes=self.conv_dtype_bytes if conv is None else conv,
        )

    def prefill_flop_terms(self, chunk_tokens: int = 64) -> FlopTerms:
        """Coefficients of the prefill FLOP count (README 'Prefill FLOPs inputs').

        Matmuls 2 x active non-embedding params per token; causal attention 2 x heads x (d_qk + d_v)
        per attended pair (l^2 / 2 pairs for full layers); linear layers 4 x heads x d_k x d_v per
        token plus an intra-chunk 2 x heads x (d_k + d_v) x chunk term for chunked kernels.
        """
        embed = float(self.hidden_size * self.vocab_size)
        dense = 2.0 * max(self.active_params - embed, 0.0)
        full = 0.0
        if self.gqa is not None:
            full += 2.0 * self.gqa.score_dims() * self.count(LayerKind.GQA)
        if self.mla is not None:
            full += 2.0 * self.mla.score_dims() * self.count(LayerKind.MLA)
        linear = 0.0
        if self.linear is not None:
            lin = self.linear
            per_token = 4.0 * lin.recurrent_elements
            if lin.chunked:
                per_token += 2.0 * lin.heads * (lin.d_k + lin.d_v) * chunk_tokens
            linear = per_token * self.num_state_layers
        swa = 2.0 * self.swa.score_dims() * self.count(LayerKind.SWA) if self.swa else 0.0
        return FlopTerms(
            quadratic=full / 2.0,
            linear=dense + linear,
            swa_per_pair=swa,
            swa_window_tokens=float(self.swa_window_tokens),
        )

    def prefill_flops(self, l_tokens: float) -> float:
        """Approximate FLOPs to prefill l uncached tokens (LM head excluded: last token only)."""
        t = self.prefill_flop_terms()
        near = min(float(l_tokens), t.swa_window_tokens)
        pairs = l_tokens * near - near * near / 2.0
        return t.quadratic * l_tokens**2 + t.linear * l_tokens + t.swa_per_pair * pairs

    def describe_layers(self) -> str:
        """'15 full_gqa / 45 linear(gdn)' style summary."""
        parts = []
        for kind in LayerKind:
            n = self.count(kind)
            if n:
                label = (
                    f"{kind.value}({self.linear.kind.value})"
                    if (kind is LayerKind.LINEAR and self.linear)
                    else kind.value
                )
                parts.append(f"{n} {label}")
        if self.parallel_ssm and self.linear is not None:
            parts.append(f"+{self.num_state_layers} parallel {self.linear.kind.value}")
        return " / ".join(parts)
