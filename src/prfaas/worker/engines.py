"""What a worker needs from an engine (transformers or emulated), and the factory that picks one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prfaas.cache.hashing import token_block_hashes
from prfaas.cache.pool import CacheEvent, HybridPrefixPool

if TYPE_CHECKING:
    from prfaas.deploy.config import DeploymentConfig, NodeConfig
    from prfaas.worker.kvlink import Inbound, Layer
    from prfaas.worker.messages import PrefillJob, Sampling

Emit = Callable[["Layer"], None]


@dataclass(frozen=True, slots=True)
class PrefillStats:
    first_token: int
    reused_tokens: int
    compute_s: float


@dataclass(frozen=True, slots=True)
class TokenOut:
    request_id: str
    token_id: int
    delta: str  # text to append (stable UTF-8 only)
    finish: str | None


class Decoder(Protocol):
    @property
    def active(self) -> int: ...

    async def add(
        self, request_id: str, inbound: Inbound, sampling: Sampling
    ) -> list[TokenOut]: ...

    async def step(self) -> list[TokenOut]: ...

    def abort(self, request_id: str) -> None: ...


class WorkerEngine(Protocol):
    kind: str
    block_tokens: int
    kv_bytes_per_token: int
    state_bytes: int
    max_context_tokens: int
    default_max_batch: int

    def encode(self, text: str) -> list[int]: ...

    async def prefill(
        self, job: PrefillJob, pool: HybridPrefixPool, emit: Emit, ready_s: float | None = None
    ) -> PrefillStats:
        """Compute the prompt (reusing the pool's prefix), emit each layer as it finishes and a
        final `{"end": ...}` layer, and insert the prompt's full blocks into the pool. `ready_s`
        (time.monotonic()): when the job reached this node, able to run (an emulated engine
        times the profile from then or from its previous job's end, like a FIFO server)."""
        ...

    def new_decoder(self, max_batch: int) -> Decoder: ...

    def make_pool(
        self, capacity_bytes: int, on_event: Callable[[CacheEvent], None]
    ) -> HybridPrefixPool: ...

    async def export_blocks(
        self, pool: HybridPrefixPool, hashes: Sequence[int], n: int
    ) -> list[Layer]: ...

    async def import_blocks(
        self, pool: HybridPrefixPool, hashes: Sequence[int], inbound: Inbound
    ) -> int: ...

    def modelled_bytes(self, nbytes: int) -> int:
        """Payload bytes as the modelled deployment would move them (undo the emulated scale)."""
        ...


def reusable_prefix(
    pool: HybridPrefixPool, token_ids: Sequence[int], block_tokens: int
) -> tuple[list[int], int]:
    """All full-block hashes of the prompt and how many leading blocks the pool can resume from.

    At least one token must be left to compute (it produces the first output token), so a prompt
    that is an exact multiple of the block size can reuse all but its last block.
    """
    hashes = token_block_hashes(token_ids, block_tokens)
    limit = (len(token_ids) - 1) // block_tokens
    usable = pool.match(hashes[:limit]).usable_blocks if limit > 0 else 0
    return hashes, usable


def checkpoint_block(num_tokens: int, block_tokens: int) -> int:
    """Index of the block whose end gets the linear-state checkpoint: the prompt's last full block.

    Checkpointing every block would cost a full state (for the paper's model, ~170 MiB) per block;
    the next turn of a conversation resumes at the end of this prompt, which is what pays.
    """
    return num_tokens // block_tokens - 1


def make_engine(cfg: DeploymentConfig, node: NodeConfig) -> WorkerEngine:
    if cfg.engine.kind == "emulated":
        from prfaas.worker.emulated import EmulatedEngine

        return EmulatedEngine(cfg.engine, node, cfg.block_tokens)
    from prfaas.worker.hf import HfEngine

    return HfEngine(cfg.engine, cfg.block_tokens)
