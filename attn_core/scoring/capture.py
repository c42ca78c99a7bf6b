"""Capture q and k of a block from a forward hook on its qkv projection.

Hooking the qkv Linear works whether timm uses fused scaled-dot-product attention or not (docs/DESIGN.md 2.2), and leaves
the model untouched once the context exits: hooks are removed in ``__exit__``, exceptions included. A capture records
only the forward passes of the thread that opened it, so scoring in other threads (``run_to_qkv``, which needs no hook)
can run beside it without writing into it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QueryKey:
    """Queries and keys of one block after q/k normalisation, fp32, shape (B, H, N, head_dim)."""

    q: torch.Tensor
    k: torch.Tensor
    scale: float

    def pre_softmax_logits(self) -> torch.Tensor:
        """A[h] = Q_h K_h^T * scale, shape (B, H, N, N): the full matrix, for teaching and inspection."""
        return (self.q @ self.k.transpose(-2, -1)) * self.scale


def query_key(attn: nn.Module, qkv: torch.Tensor) -> QueryKey:
    """q and k of an attention module from its fused qkv projection's output (B, N, 3 * dim), as its forward splits
    them: (B, N, 3, H, head_dim) -> q, k of shape (B, H, N, head_dim); q/k norms (Identity for most ViTs) applied."""
    batch, num_tokens, _ = qkv.shape
    heads = attn.num_heads
    head_dim = qkv.shape[-1] // (3 * heads)
    q, k, _v = qkv.reshape(batch, num_tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return QueryKey(q.float(), k.float(), float(attn.scale))


class AttentionCapture:
    """``with AttentionCapture(model.blocks, [11]) as capture: model(x)`` then ``capture.query_key[11]``."""

    def __init__(self, blocks: nn.ModuleList, block_indices: Iterable[int]) -> None:
        self.blocks = blocks
        self.block_indices = sorted(set(block_indices))
        self.query_key: dict[int, QueryKey] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._thread: int | None = None

    def __enter__(self) -> AttentionCapture:
        self._thread = threading.get_ident()
        for index in self.block_indices:
            attn = self.blocks[index].attn
            self._handles.append(attn.qkv.register_forward_hook(self._make_hook(index, attn)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _make_hook(self, index: int, attn: nn.Module):
        def hook(_module: nn.Module, _inputs: tuple, qkv: torch.Tensor) -> None:
            if threading.get_ident() == self._thread:  # another thread's forward through the same modules is not ours
                self.query_key[index] = query_key(attn, qkv)

        return hook


def run_to_qkv(backbone, images: torch.Tensor, block: int, *, compile: bool = False) -> QueryKey:
    """Forward only as far as ``block``'s qkv projection (earlier blocks in full, then norm1 and qkv of ``block``) and
    return that block's q and k. No hook is needed for them, so calls in several threads share no state; an open
    :class:`AttentionCapture` of this thread still sees every block the pass went through.

    The qkv projection runs eagerly even with ``compile``, so capture never depends on how a compiler treats hooks.
    """
    tokens = backbone.tokens_before(images, block, compile=compile)
    target = backbone.blocks[block]
    return query_key(target.attn, target.attn.qkv(target.norm1(tokens)))
