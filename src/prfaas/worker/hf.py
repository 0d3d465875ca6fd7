"""The transformers engine behind a worker: real prefill/decode, layer-wise wire messages, pool.

The engine is not thread-safe, so every torch call runs on one executor thread (the event loop
keeps serving HTTP and moving bytes meanwhile); pool events hop back to the loop in order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prfaas.cache.pool import CacheEvent, HybridPrefixPool
from prfaas.worker.engines import PrefillStats, TokenOut
from prfaas.worker.held import left_out, tail_layer

if TYPE_CHECKING:
    from prfaas.deploy.config import EngineConfig
    from prfaas.worker.engines import Emit
    from prfaas.worker.kvlink import Inbound, Layer
    from prfaas.worker.messages import PrefillJob, Sampling

DEFAULT_MAX_BATCH = 8


def sampling_params(s: Sampling) -> Any:
    from prfaas.model.engine.sampling import SamplingParams

    return SamplingParams(
        max_tokens=s.max_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        seed=s.seed,
        stop=tuple(s.stop),
        ignore_eos=s.ignore_eos,
    )


class HfEngine:
    kind = "transformers"

    def __init__(self, cfg: EngineConfig, block_tokens: int) -> None:
        from prfaas.model.engine.engine import Engine
        from prfaas.model.engine.wire import WIRE_DTYPES

        kw: dict[str, Any] = {"num_threads": cfg.threads}
        self.engine = (
            Engine.from_path(cfg.model_path, **kw)
            if cfg.model_path
            else Engine.from_preset(cfg.model, seed=cfg.seed, **kw)
        )
        self.wire_dtype = WIRE_DTYPES[cfg.wire_dtype]
        self.block_tokens = block_tokens
        spec = self.engine.state_spec
        self.kv_bytes_per_token = int(spec.bytes_per_token)
        self.state_bytes = int(spec.fixed_bytes)
        limit = self.engine.max_context_tokens
        self.max_context_tokens = min(cfg.max_context_tokens or limit, limit)
        self.default_max_batch = DEFAULT_MAX_BATCH
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="engine")
        self.prefix_cache: Any = None
        self.engine.generate(list(b"warm up"), sampling_params_greedy(2))  # first calls are slow

    def encode(self, text: str) -> list[int]:
        return list(self.engine.tokenizer.encode(text))

    def modelled_bytes(self, nbytes: int) -> int:
        return nbytes

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def make_pool(
        self, capacity_bytes: int, on_event: Callable[[CacheEvent], None]
    ) -> HybridPrefixPool:
        from prfaas.model.engine.prefix_cache import EnginePrefixCache

        loop = asyncio.get_running_loop()

        def hop(event: CacheEvent) -> None:  # emitted on the engine thread, applied on the loop
            loop.call_soon_threadsafe(on_event, event)

        self.prefix_cache = EnginePrefixCache(
            self.engine, capacity_bytes, block_tokens=self.block_tokens, on_event=hop
        )
        pool: HybridPrefixPool = self.prefix_cache.pool
        return pool

    async def prefill(
        self, job: PrefillJob, pool: HybridPrefixPool, emit: Emit, ready_s: float | None = None
    ) -> PrefillStats:
        from prfaas.model.engine.wire import encode_layers

        ids = job.token_ids
        params = sampling_params(job.sampling)
        cancelled = threading.Event()  # set when the request is cancelled: stop at the next layer
        held = left_out(job.held_tokens, len(ids))  # KV the decode node takes from its cluster

        def on_layer(state: Any) -> None:
            part, n = tail_layer(state, held)
            wire = encode_layers(self.engine, [part], n, self.wire_dtype, ids)
            emit(({}, wire.buffers))

        def run() -> tuple[Any, float]:
            t0 = time.perf_counter()
            result = self.prefix_cache.prefill(
                ids, on_layer=on_layer, params=params, should_stop=cancelled.is_set
            )
            return result, time.perf_counter() - t0

        try:
            result, compute_s = await self._run(run)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        emit(({"end": {"first": int(result.first_token), "tokens": len(ids), "held": held}}, []))
        return PrefillStats(int(result.first_token), int(result.reused_tokens), compute_s)

    def new_decoder(self, max_batch: int) -> HfDecoder:
        return HfDecoder(self)

    async def export_blocks(
        self, pool: HybridPrefixPool, hashes: Sequence[int], n: int
    ) -> list[Layer]:
        from prfaas.model.engine.cache_ops import ATTENTION, LayerState

        def run() -> list[Layer]:
            kv_payloads, state = pool.lookup(hashes, n)
            linear = {s.index: s for s in state or ()}  # type: ignore[attr-defined]
            attn = [i for i, k in enumerate(self.engine.layer_kinds) if k == ATTENTION]
            layers = []
            for i in range(len(self.engine.layer_kinds)):
                if i not in attn:
                    layers.append(linear[i])
                    continue
                parts = [blk[attn.index(i)] for blk in kv_payloads]  # type: ignore[index]
                kv = {
                    "keys": torch_cat([p[0] for p in parts]),
                    "values": torch_cat([p[1] for p in parts]),
                }
                layers.append(LayerState(i, ATTENTION, n * self.block_tokens, kv))
            wire = self._encode(layers, n * self.block_tokens)
            return [({}, wire.buffers), ({"blocks": n}, [])]

        result: list[Layer] = await self._run(run)
        return result

    def _encode(self, layers: Sequence[Any], num_tokens: int) -> Any:
        from prfaas.model.engine.wire import encode_layers

        return encode_layers(self.engine, layers, num_tokens, self.wire_dtype)

    async def import_blocks(
        self, pool: HybridPrefixPool, hashes: Sequence[int], inbound: Inbound
    ) -> int:
        from prfaas.model.engine.cache_ops import ATTENTION, LINEAR
        from prfaas.model.engine.wire import decode_layers

        def run() -> int:
            payload = inbound.layers[0]
            n, b = int(inbound.meta["blocks"]), self.block_tokens
            _, layers = decode_layers(self.engine, payload)
            attn = [s for s in layers if s.kind == ATTENTION]
            kv = [
                tuple(
                    (
                        s.tensors["keys"][:, :, i * b : (i + 1) * b].clone(),
                        s.tensors["values"][:, :, i * b : (i + 1) * b].clone(),
                    )
                    for s in attn
                )
                for i in range(n)
            ]
            state = tuple(s for s in layers if s.kind == LINEAR)
            return pool.insert(list(hashes[:n]), kv, {n - 1: state})

        kept: int = await self._run(run)
        return kept


def torch_cat(parts: list[Any]) -> Any:
    import torch

    return torch.cat(parts, dim=2)


def sampling_params_greedy(max_tokens: int) -> Any:
    from prfaas.model.engine.sampling import SamplingParams

    return SamplingParams(max_tokens=max_tokens)


class HfDecoder:
    """Continuous batching on the engine's DecodeBatch; streams only stable UTF-8 text."""

    def __init__(self, hf: HfEngine) -> None:
        self.hf = hf
        self.batch = hf.engine.decode_batch(batched=True)
        self._seqs: dict[str, Any] = {}
        self._sent: dict[str, int] = {}
        self._aborted: set[str] = set()

    @property
    def active(self) -> int:
        return len(self._seqs)

    async def add(self, request_id: str, inbound: Inbound, sampling: Sampling) -> list[TokenOut]:
        from prfaas.model.engine.splice import splice
        from prfaas.model.engine.wire import assemble

        end = inbound.meta["end"]
        messages, prefix = inbound.layers, inbound.prefix

        def run() -> Any:
            if prefix is None:
                cache = assemble(self.hf.engine, messages)
            else:  # the prefill left out the prefix this cluster held (worker/held.py)
                held, n = int(end["held"]), int(end["tokens"])
                cache = splice(self.hf.engine, prefix, messages, held, n)
            return self.batch.add(request_id, cache, int(end["first"]), sampling_params(sampling))

        seq = await self.hf._run(run)
        self._seqs[request_id] = seq
        return [self._out(request_id, seq)]

    async def step(self) -> list[TokenOut]:
        aborted, self._aborted = self._aborted, set()

        def run() -> list[Any]:
            if aborted:
                self._drop(aborted)
            return list(self.batch.step())

        events = await self.hf._run(run)
        return [
            self._out(ev.request_id, self._seqs[ev.request_id])
            for ev in events
            if ev.request_id in self._seqs
        ]

    def _drop(self, ids: set[str]) -> None:
        # Leaving the batch between steps; the engine re-merges the remaining requests.
        for request_id in ids:
            self.batch.abort(request_id)

    def abort(self, request_id: str) -> None:
        if self._seqs.pop(request_id, None) is not None:
            self._aborted.add(request_id)
        self._sent.pop(request_id, None)

    def _out(self, request_id: str, seq: Any) -> TokenOut:
        text: str = seq.text
        done = seq.finish_reason is not None
        stable = text if done else text.rstrip("\ufffd")  # an incomplete UTF-8 sequence waits
        sent = self._sent.get(request_id, 0)
        delta = stable[sent:] if len(stable) > sent else ""
        self._sent[request_id] = max(sent, len(stable))
        if done:
            self._seqs.pop(request_id, None)
            self._sent.pop(request_id, None)
        return TokenOut(request_id, int(seq.generated[-1]), delta, seq.finish_reason)
