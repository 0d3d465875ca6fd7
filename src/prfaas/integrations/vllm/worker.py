"""Worker half of the connector: copy blocks out and push them; land pushed blocks, report loads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from prfaas.integrations.vllm import kvio
from prfaas.integrations.vllm.link import KvLink, LayerFeed
from prfaas.integrations.vllm.params import ConnectorConfig, layer_order, live_blocks
from prfaas.integrations.vllm.scheduler import PrfaasMeta, RecvSpec, SendSpec
from prfaas.transfer.payloads import LayerPayload, TransferResult

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    """A layer-wise push in progress: layers before `next` are copied and handed over."""

    spec: SendSpec
    ids: dict[str, list[int]]  # layer -> its blocks
    expect: int
    feed: LayerFeed | None = None
    next: int = 0
    forward_end: float = 0.0


class WorkerSide:
    def __init__(self, cfg: ConnectorConfig, kv_cache_config: Any, state_groups: set[int]) -> None:
        self.cfg = cfg
        self.num_blocks = int(kv_cache_config.num_blocks)
        self.group_of = {
            name: g for g, grp in enumerate(kv_cache_config.kv_cache_groups)
            for name in grp.layer_names
        }
        self.state_groups = state_groups
        self.layers: list[str] = []
        self.index: dict[str, int] = {}  # layer name -> its position in `layers` (the wire's)
        self._streams: dict[str, _Stream] = {}
        self._forward_end = 0.0  # perf_counter() when the last forward ended
        self.caches: dict[str, list[torch.Tensor]] = {}
        self.link = KvLink(cfg)
        self._pending: dict[str, RecvSpec] = {}
        self._copied: set[str] = set()
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self.totals = {"sent_bytes": 0, "sent_transfers": 0, "landed_bytes": 0, "landed": 0,
                       "failed_loads": 0}

    def register(self, kv_caches: dict[str, Any]) -> None:
        self.layers = layer_order([n for n in kv_caches if n in self.group_of])
        self.caches = {n: kvio.layer_tensors(kv_caches[n]) for n in self.layers}
        self.index = {n: i for i, n in enumerate(self.layers)}
        shapes = {n: [tuple(t.shape) for t in ts] for n, ts in self.caches.items()}
        log.info("prfaas connector: %d layers, %d blocks: %s", len(self.layers), self.num_blocks,
                 shapes)

    def _ids(self, name: str, block_ids: tuple[tuple[int, ...], ...]) -> list[int]:
        g = self.group_of[name]
        return live_blocks(block_ids[g], g in self.state_groups) if g < len(block_ids) else []

    # ---- per step --------------------------------------------------------------------------
    def step(self, meta: PrfaasMeta) -> None:
        for rid, send in meta.send.items():
            self._send(rid, send)
        for rid, early in meta.early.items():
            self._open(rid, early)
        for rid, recv in meta.recv.items():
            if recv.cancel:
                self._pending.pop(rid, None)  # its blocks were freed: never land into them
                self.link.drop(recv.transfer_id)
                self.link.record({"side": "recv", "transfer_id": recv.transfer_id,
                                  "ok": False, "error": "request ended before its KV landed"})
                continue
            if not any(recv.block_ids):
                self.link.drop(recv.transfer_id)  # nothing to land: report loaded right away
            self._pending[rid] = recv

    def _plan(self, spec: SendSpec) -> tuple[dict[str, list[int]], int]:
        ids = {name: self._ids(name, spec.block_ids) for name in self.layers}
        expect = sum(len(ids[n]) * kvio.block_bytes(self.caches[n], self.num_blocks)
                     for n in self.layers)
        return ids, expect

    def _send(self, rid: str, spec: SendSpec) -> None:
        """Push a finished prefill's layers, all at once (it was not pushed layer-wise)."""
        t0, forward_end = time.perf_counter(), self._forward_end  # its forward: the last one
        ids, expect = self._plan(spec)
        payloads = [LayerPayload(i, kvio.gather(self.caches[n], ids[n], self.num_blocks).numpy())
                    for i, n in enumerate(self.layers)]
        with self._lock:
            self._copied.add(rid)  # blocks may be freed now: the payloads are copies
        extra = {"layerwise": False, "copy_s": round(time.perf_counter() - t0, 6)}
        self.link.push(spec.engine, spec.transfer_id, payloads,
                       self._reporter(spec, ids, expect, lambda: forward_end, extra))

    def _reporter(self, spec: SendSpec, ids: dict[str, list[int]], expect: int,
                  forward_end: Callable[[], float], extra: dict[str, Any]) -> Any:
        """The push's done callback: one stats line. `exposed_s` is how long the KV was still
        on its way after the prefill's forward ended (what layer-wise overlap shortens)."""

        def done(res: TransferResult | None, exc: BaseException | None) -> None:
            entry = {"side": "send", "transfer_id": spec.transfer_id, "engine": spec.engine,
                     "layers": len(ids), "blocks": {n: len(b) for n, b in ids.items()},
                     "expected_bytes": expect, "tokens": spec.num_tokens, **extra}
            if res is not None:
                self.totals["sent_bytes"] += res.total_bytes
                self.totals["sent_transfers"] += 1
                entry.update(bytes=res.total_bytes, seconds=res.seconds, ok=True,
                             exposed_s=round(time.perf_counter() - forward_end(), 6))
            else:
                entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            self.link.record(entry)

        return done

    # ---- layer-wise: prefills that finish in this step -------------------------------------
    def _open(self, rid: str, spec: SendSpec) -> None:
        ids, expect = self._plan(spec)
        st = _Stream(spec, ids, expect)
        st.feed = self.link.open(spec.engine, spec.transfer_id, len(self.layers), expect,
                                 self._reporter(spec, ids, expect, lambda: st.forward_end,
                                                {"layerwise": True}))
        self._streams[rid] = st

    def _feed_upto(self, st: _Stream, last: int) -> None:
        assert st.feed is not None
        while st.next <= last:
            name = self.layers[st.next]
            buf = kvio.gather(self.caches[name], st.ids[name], self.num_blocks)
            st.feed.put(LayerPayload(st.next, buf.numpy()))
            st.next += 1

    def save_layer(self, layer_name: str) -> None:
        """After an attention layer: it and every layer before it (recurrent layers run in
        order, so their state is final) are done for this step's finishing prefills."""
        i = self.index.get(layer_name)
        if i is not None:
            for st in self._streams.values():
                self._feed_upto(st, i)

    def end_forward(self) -> None:
        self._forward_end = time.perf_counter()
        for st in self._streams.values():
            st.forward_end = self._forward_end
            self._feed_upto(st, len(self.layers) - 1)  # layers after the last attention layer
        self._streams.clear()

    def _land(self, rid: str, spec: RecvSpec) -> bool | None:
        """True once landed, False when it failed, None while still waiting."""
        got = self.link.take(spec.transfer_id) if any(spec.block_ids) else None
        if got is None:
            if not any(spec.block_ids):
                return True
            if time.time() < spec.deadline:
                return None
            self.link.drop(spec.transfer_id)
            self._note_recv(spec, 0, {}, ok=False, error="timed out waiting for the prefill KV")
            return False
        landed = {}
        try:
            for i, name in enumerate(self.layers):
                ids = self._ids(name, spec.block_ids)
                kvio.scatter(self.caches[name], ids, self.num_blocks, got.layers[i])
                landed[name] = len(ids)
        except (ValueError, IndexError) as exc:
            self._note_recv(spec, got.total_bytes, landed, ok=False, error=str(exc))
            return False
        self._note_recv(spec, got.total_bytes, landed, ok=True, seconds=got.seconds)
        return True

    def _note_recv(self, spec: RecvSpec, nbytes: int, landed: dict[str, int], **kw: Any) -> None:
        if kw.get("ok"):
            self.totals["landed_bytes"] += nbytes
            self.totals["landed"] += 1
        else:
            self.totals["failed_loads"] += 1
        self.link.record({"side": "recv", "transfer_id": spec.transfer_id, "bytes": nbytes,
                          "layers": len(landed), "blocks": landed, **kw})

    def results(self) -> tuple[set[str], set[str], set[str]]:
        """(finished sending, finished receiving, failed receiving) since the last call."""
        with self._lock:
            sending, self._copied = self._copied, set()
        recving, failed = set(), set()
        for rid, spec in list(self._pending.items()):
            state = self._land(rid, spec)
            if state is None:
                continue
            del self._pending[rid]
            recving.add(rid)  # vLLM wants failed loads reported as finished too
            if state is False:
                failed.add(rid)
        return sending, recving, failed

    def close(self) -> None:
        self.link.close()
