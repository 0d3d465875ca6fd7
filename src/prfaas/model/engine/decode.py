"""Continuous-batch decode: many requests stepped in one padded forward, or interleaved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from prfaas.model.engine import cache_ops
from prfaas.model.engine.cache_ops import LayerState
from prfaas.model.engine.errors import EngineInputError
from prfaas.model.engine.sampling import SamplingParams, sample

if TYPE_CHECKING:
    from prfaas.model.engine.engine import Engine, RequestCache


@dataclass(frozen=True, slots=True)
class Generation:
    request_id: str
    token_ids: tuple[int, ...]
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) | "length" | "abort"
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class TokenEvent:
    request_id: str
    token_id: int
    finish_reason: str | None


@dataclass(slots=True)
class DecodeSequence:
    """A request being decoded; the last generated token is not yet in its cache."""

    request_id: str
    params: SamplingParams
    prompt_tokens: int
    num_tokens: int  # tokens the cache holds
    layers: list[LayerState] | None
    generated: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    hf_cache: Any = None  # interleaved mode keeps its own DynamicCache

    def result(self) -> Generation:
        if self.finish_reason is None:
            raise EngineInputError(f"request {self.request_id!r} is still decoding")
        return Generation(
            self.request_id,
            tuple(self.generated),
            self.text,
            self.finish_reason,
            self.prompt_tokens,
        )


class DecodeBatch:
    """`add` requests (cache + first token from prefill), then `step` until `active` is empty.

    batched=True runs all active requests in one forward (KV left-padded, padding masked,
    per-row positions); tests show it gives the same tokens as decoding each request alone.
    """

    def __init__(self, engine: Engine, *, batched: bool = True) -> None:
        self.engine = engine
        self.batched = batched
        self.active: list[DecodeSequence] = []
        self._merged: Any = None  # batched DynamicCache of self.active, in order
        self._mask: torch.Tensor | None = None

    def add(
        self, request_id: str, cache: RequestCache, first_token: int, params: SamplingParams
    ) -> DecodeSequence:
        if any(s.request_id == request_id for s in self.active):
            raise EngineInputError(f"request {request_id!r} is already decoding")
        self.engine.check_context(cache.num_tokens, params.max_tokens)
        seq = DecodeSequence(
            request_id, params, cache.num_tokens, cache.num_tokens, list(cache.layers)
        )
        if not self.batched:
            assert seq.layers is not None
            seq.hf_cache = cache_ops.build_cache(self.engine.config, seq.layers, seq.num_tokens)
        self._append(seq, first_token)
        if seq.finish_reason is None:
            self._unmerge()
            self.active.append(seq)
        return seq

    @torch.inference_mode()
    def step(self) -> list[TokenEvent]:
        """One token for every active request; finished requests leave the batch."""
        if not self.active:
            return []
        if self.batched:
            logits = self._batched_forward()
        else:
            logits = [self._single_forward(s) for s in self.active]
        events = []
        for seq, row in zip(self.active, logits, strict=True):
            seq.num_tokens += 1
            self._append(seq, sample(row, seq.params, step=len(seq.generated)))
            events.append(TokenEvent(seq.request_id, seq.generated[-1], seq.finish_reason))
        if any(s.finish_reason for s in self.active):
            self._unmerge()
            self.active = [s for s in self.active if s.finish_reason is None]
        return events

    def abort(self, request_id: str) -> DecodeSequence | None:
        """Drop a request (e.g. its client went away); returns it, finish_reason "abort"."""
        seq = next((s for s in self.active if s.request_id == request_id), None)
        if seq is not None:
            self._unmerge()
            self.active.remove(seq)
            seq.finish_reason = "abort"
        return seq

    def _single_forward(self, seq: DecodeSequence) -> torch.Tensor:
        out = self.engine.model(
            torch.tensor([[seq.generated[-1]]]),
            cache=seq.hf_cache,
            use_cache=True,
            position_ids=torch.tensor([[seq.num_tokens]]),
        )
        logits: torch.Tensor = out.logits[0, -1]
        return logits

    def _batched_forward(self) -> list[torch.Tensor]:
        if self._merged is None:
            lengths = [s.num_tokens for s in self.active]
            per_seq = [s.layers for s in self.active if s.layers is not None]
            self._merged, self._mask = cache_ops.merge_for_batch(
                self.engine.config, per_seq, lengths
            )
            for s in self.active:
                s.layers = None  # the merged cache is now the only copy
        assert self._mask is not None
        ones = torch.ones(len(self.active), 1, dtype=self._mask.dtype)
        self._mask = torch.cat([self._mask, ones], dim=1)
        # Without padding (one request, or equal lengths) the mask is all ones: skip building it.
        padded = len({s.num_tokens for s in self.active}) > 1
        out = self.engine.model(
            torch.tensor([[s.generated[-1]] for s in self.active]),
            cache=self._merged,
            use_cache=True,
            attention_mask=self._mask if padded else None,
            position_ids=torch.tensor([[s.num_tokens] for s in self.active]),
        )
        return list(out.logits[:, -1])

    def _unmerge(self) -> None:
        """Give each active request its own layer states back (membership is changing)."""
        if self._merged is None:
            return
        lengths = [s.num_tokens for s in self.active]
        for seq, layers in zip(
            self.active, cache_ops.split_batch(self._merged, lengths), strict=True
        ):
            seq.layers = layers
        self._merged = self._mask = None

    def _append(self, seq: DecodeSequence, token: int) -> None:
        seq.generated.append(token)
        p = seq.params
        text = self.engine.tokenizer.decode(seq.generated)
        hit = min((i for i in (text.find(s) for s in p.stop) if i >= 0), default=-1)
        if hit >= 0:
            seq.text, seq.finish_reason = text[:hit], "stop"
        elif token in self.engine.eos_token_ids and not p.ignore_eos:
            seq.text, seq.finish_reason = text, "stop"
        else:
            seq.text = text
            if (
                len(seq.generated) >= p.max_tokens
                or seq.num_tokens + 1 >= self.engine.max_context_tokens
            ):
                seq.finish_reason = "length"
