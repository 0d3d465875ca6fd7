"""Copy a request's blocks out of vLLM's paged KV tensors into one buffer per layer, and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from prfaas.integrations.vllm.params import tail_align


def layer_tensors(cache: Any) -> list[torch.Tensor]:
    """Attention layers hold one tensor; recurrent (GDN/Mamba) layers a list (conv, ssm state)."""
    if isinstance(cache, torch.Tensor):
        return [cache]
    if isinstance(cache, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in cache):
        return list(cache)
    raise TypeError(f"unsupported KV cache entry of type {type(cache).__name__}")


def block_dim(t: torch.Tensor, num_blocks: int) -> int:
    """The dimension that indexes blocks: the first whose size is the pool's block count (K/V
    pairs sometimes lead, so it is not always 0)."""
    for d in range(min(t.dim(), 2)):
        if t.shape[d] == num_blocks:
            return d
    raise ValueError(f"no dimension of size {num_blocks} (blocks) in shape {tuple(t.shape)}")


def block_bytes(tensors: Sequence[torch.Tensor], num_blocks: int) -> int:
    """Bytes one block occupies across all of a layer's tensors."""
    total = 0
    for t in tensors:
        one = t.movedim(block_dim(t, num_blocks), 0)[0]
        total += one.numel() * one.element_size()
    return total


def gather(tensors: Sequence[torch.Tensor], ids: Sequence[int], num_blocks: int) -> torch.Tensor:
    """One uint8 tensor: each of the layer's tensors' blocks `ids`, tensor after tensor."""
    if not ids:
        return torch.empty(0, dtype=torch.uint8)
    parts = []
    for t in tensors:
        idx = torch.tensor(list(ids), dtype=torch.long, device=t.device)
        sel = t.movedim(block_dim(t, num_blocks), 0).index_select(0, idx).contiguous()
        parts.append(sel.view(-1).view(torch.uint8))
    return torch.cat(parts).cpu()  # the wire sends host memory (a no-op on CPU)


def scatter(
    tensors: Sequence[torch.Tensor], ids: Sequence[int], num_blocks: int, data: memoryview
) -> int:
    """Land the last len(ids) blocks of a `gather` payload in blocks `ids`; returns blocks sent."""
    per_block = block_bytes(tensors, num_blocks)
    if per_block == 0 or data.nbytes % per_block:
        raise ValueError(f"payload of {data.nbytes} bytes is not whole {per_block}-byte blocks")
    sent = data.nbytes // per_block
    if not ids:
        return sent
    start = tail_align(sent, len(ids))
    raw = torch.frombuffer(data, dtype=torch.uint8) if data.nbytes else None
    off = 0
    for t in tensors:
        view = t.movedim(block_dim(t, num_blocks), 0)
        one = view[0]
        pb = one.numel() * one.element_size()
        assert raw is not None
        part = raw[off + start * pb : off + sent * pb]
        idx = torch.tensor(list(ids), dtype=torch.long, device=t.device)
        view[idx] = part.view(t.dtype).reshape(len(ids), *one.shape).to(t.device)
        off += sent * pb
    return sent
