"""The emulated engine (like Dynamo's mocker): no model math, real timing and real bytes.

Prefill sleeps the node's hardware-profile time for the *incremental* (uncached) length, divided by
`time_scale`, layer by layer; each layer's payload has its share of the modelled S_kv(l) bytes times
`payload_scale`. Decode steps every `t_decode_s / time_scale` seconds, one token for each request in
a batch of up to BS_max. Tokens are a deterministic function of the prompt (and seed), so the same
request gives the same completion wherever it is prefilled.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prfaas.cache.pool import CacheEvent, HybridPrefixPool
from prfaas.worker.bytetok import ByteTokenizer
from prfaas.worker.engines import Emit, PrefillStats, TokenOut, checkpoint_block, reusable_prefix

if TYPE_CHECKING:
    from prfaas.deploy.config import EngineConfig, NodeConfig
    from prfaas.worker.kvlink import Inbound, Layer
    from prfaas.worker.messages import PrefillJob, Sampling

_ZEROS = memoryview(bytearray(1 << 20))
_MASK64 = (1 << 64) - 1
_LETTERS = b"etaoinshrdlucmfwypvbgkqjxz"
DEFAULT_CONTEXT_TOKENS = 1 << 20


def zero_buffers(nbytes: int) -> list[memoryview]:
    """`nbytes` of payload as views of one shared zero buffer (no per-request allocation)."""
    global _ZEROS
    if nbytes > len(_ZEROS):
        _ZEROS = memoryview(bytearray(nbytes))
    return [_ZEROS[:nbytes]] if nbytes else []


async def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() reaches `deadline` (at once if it already has)."""
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


def prompt_seed(token_ids: Sequence[int], seed: int, temperature: float) -> int:
    """What every emulated token depends on: the prompt, plus the seed when sampling."""
    h = hashlib.blake2b(array("q", token_ids).tobytes(), digest_size=8)
    if temperature > 0:
        h.update(seed.to_bytes(8, "little", signed=False))
    return int.from_bytes(h.digest(), "little")


def emulated_token(seed: int, step: int) -> int:
    """A byte token (letter or space) from splitmix64(seed + step)."""
    z = (seed + (step + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return 32 if z % 6 == 0 else _LETTERS[(z >> 8) % len(_LETTERS)]


class EmulatedEngine:
    kind = "emulated"

    def __init__(self, cfg: EngineConfig, node: NodeConfig, block_tokens: int) -> None:
        from prfaas.deploy.hardware import node_decode_profile, node_prefill_profile
        from prfaas.profiles import get_kv_profile

        self.cfg = cfg
        self.block_tokens = block_tokens
        self.kv = get_kv_profile(cfg.kv_profile or cfg.model)
        per_token = self.kv.bytes(1.0) - self.kv.bytes(0.0)
        self.kv_bytes_per_token = round(per_token)
        self.state_bytes = round(self.kv.bytes(0.0))
        self.prefill_profile = node_prefill_profile(node)
        self.decode_profile = node_decode_profile(node)
        bs = self.decode_profile.bs_max if self.decode_profile else 1
        self.default_max_batch = node.max_batch or bs
        self.max_context_tokens = cfg.max_context_tokens or DEFAULT_CONTEXT_TOKENS
        self.tokenizer = ByteTokenizer()
        self._free_at = 0.0  # when the last prefill's modelled compute ended (monotonic)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def payload_bytes(self, num_tokens: int) -> int:
        return round(float(self.kv.bytes(float(num_tokens))) * self.cfg.payload_scale)

    def modelled_bytes(self, nbytes: int) -> int:
        return round(nbytes / self.cfg.payload_scale)

    def shipped_bytes(self, num_tokens: int, held_tokens: int) -> int:
        """S_kv(l) less the KV of the prefix the receiving cluster holds (the state still ships)."""
        held = min(max(held_tokens, 0), num_tokens)
        full = float(self.kv.bytes(float(num_tokens)))
        saved = float(self.kv.bytes(float(held))) - float(self.kv.bytes(0.0))
        return round((full - saved) * self.cfg.payload_scale)

    def prefill_time_s(self, incremental_tokens: int) -> float:
        if self.prefill_profile is None:
            raise RuntimeError("this node has no prefill profile: it cannot prefill")
        return float(self.prefill_profile.time_s(float(incremental_tokens))) / self.cfg.time_scale

    async def prefill(
        self, job: PrefillJob, pool: HybridPrefixPool, emit: Emit, ready_s: float | None = None
    ) -> PrefillStats:
        # The modelled start: when the job was ready, or when the previous job's compute ended
        # (its last deadline) if that was later. So this process's lag between two jobs (a late
        # wake-up, the previous job's bookkeeping) is absorbed, never accumulated in the queue.
        now = time.monotonic()
        t0 = now if ready_s is None else min(now, max(ready_s, self._free_at))
        tokens = job.token_ids
        hashes, usable = reusable_prefix(pool, tokens, self.block_tokens)
        reused = usable * self.block_tokens
        per_layer_s = self.prefill_time_s(len(tokens) - reused) / self.cfg.num_layers
        total = self.shipped_bytes(len(tokens), job.held_tokens)
        # A resumed request's tokens depend on its original prompt, as a real model's greedy
        # output continues the same way once the generated tokens are recomputed.
        step = job.sampling.resumed
        prompt = tokens[: len(tokens) - step] if step else tokens
        seed = prompt_seed(prompt, job.sampling.seed, job.sampling.temperature)
        first = emulated_token(seed, step)
        layers = self.cfg.num_layers
        self._free_at = t0 + layers * per_layer_s
        for i in range(layers):
            # Layer i ends at t0 + (i+1) x T/L, whatever this process spent on hashing, emitting
            # and wake-up lag: the profile's time counts from the job's start, as in the simulator.
            await sleep_until(t0 + (i + 1) * per_layer_s)
            size = total // layers + (total % layers if i == layers - 1 else 0)
            emit(({}, zero_buffers(size)))
        end = {"first": first, "seed": seed, "step": step, "tokens": len(tokens), "bytes": total}
        emit(({"end": end}, []))
        last = checkpoint_block(len(tokens), self.block_tokens)
        if last >= 0:
            pool.insert(hashes[: last + 1], None, {last: None})
        return PrefillStats(first, reused, time.monotonic() - t0)

    def new_decoder(self, max_batch: int) -> EmulatedDecoder:
        if self.decode_profile is None:
            raise RuntimeError("this node has no decode profile: it cannot decode")
        step_s = self.decode_profile.t_decode_s / self.cfg.time_scale
        return EmulatedDecoder(step_s, self.tokenizer, self.cfg.decode_chunk_tokens)

    def make_pool(
        self, capacity_bytes: int, on_event: Callable[[CacheEvent], None]
    ) -> HybridPrefixPool:
        return HybridPrefixPool(
            capacity_bytes, self.block_tokens, self.kv_bytes_per_token, self.state_bytes, on_event
        )

    async def export_blocks(
        self, pool: HybridPrefixPool, hashes: Sequence[int], n: int
    ) -> list[Layer]:
        pool.lookup(hashes, n)  # raises KeyError if the blocks left meanwhile
        size = self.payload_bytes(n * self.block_tokens)
        return [({}, zero_buffers(size)), ({"blocks": n}, [])]

    async def import_blocks(
        self, pool: HybridPrefixPool, hashes: Sequence[int], inbound: Inbound
    ) -> int:
        n = int(inbound.meta["blocks"])
        expected = self.payload_bytes(n * self.block_tokens)
        if inbound.nbytes != expected:
            raise ValueError(f"cache pull carried {inbound.nbytes} bytes, expected {expected}")
        return pool.insert(hashes[:n], None, {n - 1: None})


@dataclass(slots=True)
class _Seq:
    seed: int
    sampling: Sampling
    generated: int
    text: str
    step: int = 0  # output tokens produced before this sequence (a resumed request)


class EmulatedDecoder:
    """Iterations of `chunk` steps on a fixed grid from the start of each busy period (as the
    simulator's decode node): a late wake-up shortens the next sleep, it shifts nothing after it."""

    def __init__(self, step_s: float, tokenizer: ByteTokenizer, chunk: int = 1) -> None:
        self.step_s = step_s
        self.chunk = chunk
        self.tokenizer = tokenizer
        self._seqs: dict[str, _Seq] = {}
        self._deadline: float | None = None  # end of the current iteration; None while idle

    @property
    def active(self) -> int:
        return len(self._seqs)

    async def add(self, request_id: str, inbound: Inbound, sampling: Sampling) -> list[TokenOut]:
        end: dict[str, Any] = inbound.meta["end"]
        if inbound.nbytes != int(end["bytes"]):
            raise ValueError(f"KV of {request_id} has {inbound.nbytes} bytes, sent {end['bytes']}")
        seq = _Seq(int(end["seed"]), sampling, 0, "", int(end.get("step", 0)))
        if not self._seqs:
            self._deadline = None  # a new busy period: its grid starts at the next step
        self._seqs[request_id] = seq
        return [self._emit(request_id, seq, int(end["first"]))]

    async def step(self) -> list[TokenOut]:
        """`chunk` decode steps at once: the same timing, fewer wake-ups and stream lines."""
        period = self.step_s * self.chunk
        start = time.monotonic() if self._deadline is None else self._deadline
        self._deadline = start + period
        await sleep_until(self._deadline)
        outs = []
        for rid, s in list(self._seqs.items()):
            for _ in range(self.chunk):
                outs.append(self._emit(rid, s, emulated_token(s.seed, s.step + s.generated)))
                if rid not in self._seqs:
                    break
        return outs

    def abort(self, request_id: str) -> None:
        self._seqs.pop(request_id, None)

    def _emit(self, request_id: str, seq: _Seq, token: int) -> TokenOut:
        seq.generated += 1
        piece = self.tokenizer.decode([token])
        text = seq.text + piece
        finish = None
        hits = [i for i in (text.find(s) for s in seq.sampling.stop) if i >= 0]
        if hits:
            cut = min(hits)
            piece = text[len(seq.text) : cut] if cut > len(seq.text) else ""
            finish = "stop"
        elif seq.generated >= seq.sampling.max_tokens:
            finish = "length"
        seq.text = text
        if finish is not None:
            del self._seqs[request_id]
        return TokenOut(request_id, token, piece, finish)
