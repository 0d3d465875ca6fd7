"""What a request is, independent of where it runs: id, arrival, lengths, chained block hashes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """An inference request as the router sees it on arrival.

    `block_hashes` are chained prefix hashes (prfaas.cache.hashing) of the prompt's full blocks;
    empty when the workload carries no prefix information.
    """

    request_id: str
    arrival_s: float
    input_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    kv_bytes: int = 0  # KV + state bytes the decode node must reserve (0 = unknown)

    def __post_init__(self) -> None:
        if self.input_tokens < 1:
            raise ValueError(f"request {self.request_id}: input_tokens must be >= 1")
        if self.output_tokens < 1:
            raise ValueError(f"request {self.request_id}: output_tokens must be >= 1")
