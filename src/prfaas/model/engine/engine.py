"""The engine: layer-wise, chunked, prefix-resuming prefill and generation on transformers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

from prfaas.model.engine import cache_ops
from prfaas.model.engine.cache_ops import LINEAR, LayerState
from prfaas.model.engine.errors import EngineInputError, StateMismatchError
from prfaas.model.engine.layerwise import LayerCallback, abort_between_layers, layer_handoff
from prfaas.model.engine.loading import LoadedModel, decoder_layers, load_checkpoint, load_preset
from prfaas.model.engine.presets import DEFAULT_PRESET
from prfaas.model.engine.sampling import SamplingParams, sample
from prfaas.model.state_spec import StateSpec

# tests/test_engine_decode.py checks batched == single-request decode for these.
BATCH_VERIFIED_MODEL_TYPES = frozenset({"qwen3_5_text", "kimi_linear", "qwen3"})


@dataclass(frozen=True, slots=True)
class RequestCache:
    """A request's whole cache at `num_tokens`: what is shipped, cached, resumed and decoded."""

    layers: tuple[LayerState, ...]
    num_tokens: int
    token_ids: tuple[int, ...] | None = None  # when known, resumption checks them

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.layers)


@dataclass(frozen=True, slots=True)
class PrefillResult:
    first_token: int
    logits: torch.Tensor  # [vocab] for the last position, or [new_tokens, vocab] if asked
    cache: RequestCache
    reused_tokens: int
    # Linear-layer states at block-aligned positions, for the prefix-cache pool.
    checkpoints: dict[int, tuple[LayerState, ...]] = field(default_factory=dict)


class Engine:
    """One fp32 model on CPU. Not thread-safe: one engine per worker process."""

    def __init__(self, loaded: LoadedModel, *, num_threads: int | None = 1) -> None:
        if num_threads is not None:
            # Two torch processes at 2 threads each slow each other badly on small boxes.
            torch.set_num_threads(num_threads)
        self.loaded = loaded
        self.model = loaded.model
        self.config = loaded.config
        self.tokenizer = loaded.tokenizer
        self.model_id = loaded.model_id
        self.config_hash = loaded.config_hash
        self.layer_kinds = tuple(cache_ops.layer_kinds(self.config))
        self.vocab_size = int(self.config.vocab_size)
        self.max_context_tokens = int(self.config.max_position_embeddings)
        eos = self.config.eos_token_id
        config_eos = {eos} if isinstance(eos, int) else set(eos or ())
        self.eos_token_ids = frozenset(config_eos | set(self.tokenizer.eos_token_ids))
        self._layers = decoder_layers(self.model)
        self._state_spec: StateSpec | None = None
        self._template: tuple[LayerState, ...] | None = None

    def warmup(self) -> None:
        """One tiny prefill and decode step, so a worker's first request pays no one-off cost."""
        result = self.prefill([0, 1, 2, 3])
        batch = self.decode_batch()
        batch.add("warmup", result.cache, result.first_token, SamplingParams(max_tokens=2))
        batch.step()
        self.layer_template()

    def layer_template(self) -> tuple[LayerState, ...]:
        """Each layer's cache after a 1-token prefill: the shapes a peer's cache must have."""
        if self._template is None:
            self._template = self.prefill([0]).cache.layers
        return self._template

    @classmethod
    def from_preset(cls, name: str = DEFAULT_PRESET, seed: int = 0, **kw: Any) -> Engine:
        return cls(load_preset(name, seed), **kw)

    @classmethod
    def from_path(cls, path: Path | str, **kw: Any) -> Engine:
        return cls(load_checkpoint(Path(path)), **kw)

    @property
    def state_spec(self) -> StateSpec:
        """The torch-free StateSpec of what this engine holds per request (fp32; see hf_spec)."""
        from prfaas.model.engine.hf_spec import count_params, state_spec_from_config

        if self._state_spec is None:
            _, active = count_params(self.model)
            self._state_spec = state_spec_from_config(
                self.config, name=self.model_id, active_params=active
            )
        return self._state_spec

    # -- validation ----------------------------------------------------------------------
    def check_prompt(self, token_ids: Sequence[int], max_tokens: int = 1) -> list[int]:
        ids = list(token_ids)
        if not ids:
            raise EngineInputError("empty prompt: give at least one token")
        self.check_context(len(ids), max_tokens)
        bad = next(
            (
                t
                for t in ids
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.vocab_size
            ),
            None,
        )
        if bad is not None:
            raise EngineInputError(
                f"token id {bad!r} is outside the vocabulary [0, {self.vocab_size})"
            )
        return ids

    def check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.max_context_tokens:
            raise EngineInputError(
                f"prompt of {prompt_tokens} tokens + {max_tokens} to generate exceeds the "
                f"context limit of {self.max_context_tokens} tokens of {self.model_id}"
            )

    # -- prefill -------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(
        self,
        token_ids: Sequence[int],
        *,
        cache_prefix: RequestCache | None = None,
        on_layer: LayerCallback | None = None,
        chunk_tokens: int | None = None,
        checkpoint_at: Iterable[int] = (),
        params: SamplingParams | None = None,
        all_logits: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> PrefillResult:
        """Run the prompt (after any cached prefix) through the model.

        `on_layer` gets each layer's final cache as soon as that layer finishes (on the last
        chunk); `checkpoint_at` lists token positions where linear states are snapshotted (chunks
        are split there); `chunk_tokens` bounds each forward's length; `should_stop` is asked
        before every layer (True: PrefillAborted, the request was cancelled).
        """
        ids = self.check_prompt(token_ids, params.max_tokens if params else 1)
        cache, start = self._start_cache(ids, cache_prefix)
        wanted = tuple(checkpoint_at)
        ends = _chunk_ends(start, len(ids), chunk_tokens, wanted)
        checkpoints: dict[int, tuple[LayerState, ...]] = {}
        pieces: list[torch.Tensor] = []
        for a, b in zip([start, *ends[:-1]], ends, strict=True):
            # Hand layers off only on the last chunk: only then is a layer's cache final.
            with (
                abort_between_layers(self._layers, should_stop),
                layer_handoff(self._layers, cache, len(ids), on_layer if b == len(ids) else None),
            ):
                logits = self._forward(ids[a:b], a, cache, all_logits)
            pieces.append(logits)
            if b in wanted:
                checkpoints[b] = self._linear_states(cache, b)
        last = pieces[-1][-1]
        first = sample(last, params or SamplingParams(max_tokens=1), step=0)
        layers = tuple(cache_ops.export_layers(cache, len(ids)))
        return PrefillResult(
            first_token=first,
            logits=torch.cat(pieces) if all_logits else last,
            cache=RequestCache(layers, len(ids), tuple(ids)),
            reused_tokens=start,
            checkpoints=checkpoints,
        )

    def _forward(
        self, chunk: list[int], start: int, cache: DynamicCache, all_logits: bool
    ) -> torch.Tensor:
        out = self.model(
            torch.tensor([chunk]),
            cache=cache,
            use_cache=True,
            position_ids=torch.arange(start, start + len(chunk)).unsqueeze(0),
            logits_to_keep=0 if all_logits else 1,
        )
        logits: torch.Tensor = out.logits[0]
        return logits

    def _start_cache(self, ids: list[int], prefix: RequestCache | None) -> tuple[DynamicCache, int]:
        if prefix is None:
            return DynamicCache(config=self.config), 0
        n = prefix.num_tokens
        if not 0 < n < len(ids):
            raise StateMismatchError(
                f"a cached prefix of {n} tokens cannot resume a {len(ids)}-token prompt: "
                "at least one prompt token must remain to compute"
            )
        if prefix.token_ids is not None and tuple(ids[:n]) != prefix.token_ids[:n]:
            raise StateMismatchError("the cached prefix holds other tokens than this prompt")
        return cache_ops.build_cache(self.config, prefix.layers, n), n

    def _linear_states(self, cache: DynamicCache, num_tokens: int) -> tuple[LayerState, ...]:
        return tuple(
            cache_ops.export_layer(cache, i, num_tokens)
            for i, kind in enumerate(self.layer_kinds)
            if kind == LINEAR
        )

    # -- decode --------------------------------------------------------------------------
    def decode_batch(self, *, batched: bool | None = None) -> Any:
        """A continuous batch of decoding requests (see decode.DecodeBatch).

        By default requests share one padded forward only for the architectures whose batched
        decode the tests prove equal to single-request decode; others are interleaved.
        """
        from prfaas.model.engine.decode import DecodeBatch

        if batched is None:
            batched = self.config.model_type in BATCH_VERIFIED_MODEL_TYPES
        return DecodeBatch(self, batched=batched)

    def generate(self, token_ids: Sequence[int], params: SamplingParams | None = None) -> Any:
        """Prefill then decode one request to completion; returns a decode.Generation."""
        params = params or SamplingParams()
        result = self.prefill(token_ids, params=params)
        batch = self.decode_batch(batched=False)
        seq = batch.add("generate", result.cache, result.first_token, params)
        while batch.active:
            batch.step()
        return seq.result()

    # -- wire ----------------------------------------------------------------------------
    def export_cache(self, cache: RequestCache, wire_dtype: torch.dtype | None = None) -> Any:
        """Serialise for a transfer engine (see wire.WireCache)."""
        from prfaas.model.engine.wire import encode_cache

        return encode_cache(self, cache, wire_dtype)

    def import_cache(self, data: Any, expect_tokens: Sequence[int] | None = None) -> RequestCache:
        """Rebuild a cache sent by a peer; validates everything before decoding any tensor."""
        from prfaas.model.engine.wire import decode_cache

        return decode_cache(self, data, expect_tokens)


def _chunk_ends(
    start: int, total: int, chunk_tokens: int | None, checkpoint_at: Iterable[int]
) -> list[int]:
    """Forward boundaries: chunk grid, checkpoint positions and the prompt end, ascending."""
    if chunk_tokens is not None and chunk_tokens < 1:
        raise EngineInputError(f"chunk_tokens must be positive, got {chunk_tokens}")
    ends = {total} | {p for p in checkpoint_at if start < p < total}
    if chunk_tokens:
        ends |= set(range(start + chunk_tokens, total, chunk_tokens))
    return sorted(ends)
