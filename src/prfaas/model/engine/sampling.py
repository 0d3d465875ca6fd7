"""Sampling parameters (validated) and seeded greedy / temperature / top-p token choice."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from prfaas.model.engine.errors import SamplingError

MAX_TEMPERATURE = 100.0  # beyond this the distribution is uniform noise: refuse, don't pretend
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
_SEED_LIMIT = 2**63


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """temperature 0 means greedy; a seed makes sampling reproducible wherever each step runs."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: Sequence[str] = field(default_factory=tuple)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        validate(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def validate(p: SamplingParams) -> None:
    """Reject negative, non-finite or absurd values with a message naming the field."""
    if isinstance(p.max_tokens, bool) or not isinstance(p.max_tokens, int) or p.max_tokens < 1:
        raise SamplingError(f"max_tokens must be a positive integer, got {p.max_tokens!r}")
    if not _finite(p.temperature) or not 0.0 <= p.temperature <= MAX_TEMPERATURE:
        raise SamplingError(
            f"temperature must be in [0, {MAX_TEMPERATURE:g}], got {p.temperature!r}"
        )
    if not _finite(p.top_p) or not 0.0 < p.top_p <= 1.0:
        raise SamplingError(f"top_p must be in (0, 1], got {p.top_p!r}")
    if isinstance(p.seed, bool) or not isinstance(p.seed, int) or not 0 <= p.seed < _SEED_LIMIT:
        raise SamplingError(f"seed must be an integer in [0, 2^63), got {p.seed!r}")
    if isinstance(p.stop, str) or len(p.stop) > MAX_STOP_STRINGS:
        raise SamplingError(f"stop must be a list of at most {MAX_STOP_STRINGS} strings")
    for s in p.stop:
        if not isinstance(s, str) or not 0 < len(s) <= MAX_STOP_CHARS:
            raise SamplingError(
                f"each stop string must have 1-{MAX_STOP_CHARS} characters, got {s!r}"
            )


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator per (request seed, step): the same token whether prefill, a decode worker or
    a batch of any size draws it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % _SEED_LIMIT)


def sample(logits: torch.Tensor, params: SamplingParams, step: int) -> int:
    """Choose one token from a `[vocab]` logits row."""
    if params.greedy:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.double() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # Keep the smallest head whose mass reaches top_p; the top token always survives.
        keep = (torch.cumsum(sorted_p, 0) - sorted_p) < params.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    choice = torch.multinomial(probs, 1, generator=step_generator(params.seed, step))
    return int(choice.item())
