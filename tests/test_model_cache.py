"""The model cache (attn_core.zoo.backbone.cached_backbone): bounded by count and by weight bytes, least recently
used first out, and an evicted model is freed at once (not left for some later garbage collection)."""

from __future__ import annotations

import weakref

import torch

from attn_core.zoo import backbone as zoo_backbone
from attn_core.zoo.backbone import (
    MODEL_CACHE_COUNT,
    MODEL_CACHE_MB,
    cached_backbone,
    load_backbone,
)


def test_cost_is_the_weight_bytes_but_at_least_a_share_of_the_budget():
    tiny = load_backbone("test-face-vit-p8", random_init=True, device="cpu")
    share = MODEL_CACHE_MB * 2**20 // MODEL_CACHE_COUNT
    assert zoo_backbone._cache_cost(tiny) == share  # a tiny model counts as one of MODEL_CACHE_COUNT
    big = load_backbone("cvlface-vit-s-adaface", random_init=True, device="cpu")
    weight_bytes = sum(t.numel() * t.element_size() for t in [*big.model.parameters(), *big.model.buffers()])
    assert zoo_backbone._cache_cost(big) == min(max(weight_bytes, share), MODEL_CACHE_MB * 2**20)
    assert weight_bytes == 4 * sum(p.numel() for p in big.model.parameters()) + sum(
        b.numel() * b.element_size() for b in big.model.buffers())


def test_at_most_the_count_is_kept_and_evicted_models_are_freed():
    zoo_backbone._backbones.clear()
    keys = [(name, heads) for name in ("test-face-vit-p8", "test-face-vit-p9") for heads in (1, 2, 4, 8, 16)]
    assert len(keys) > MODEL_CACHE_COUNT
    first = weakref.ref(cached_backbone(*keys[0][:1], device="cpu", random_init=True, num_heads=keys[0][1]))
    assert cached_backbone(keys[0][0], device="cpu", random_init=True, num_heads=keys[0][1]) is first()  # a hit
    for name, heads in keys[1:]:
        cached_backbone(name, device="cpu", random_init=True, num_heads=heads)
        assert len(zoo_backbone._backbones) <= MODEL_CACHE_COUNT
        assert zoo_backbone._backbones.currsize <= MODEL_CACHE_MB * 2**20
    assert len(zoo_backbone._backbones) == MODEL_CACHE_COUNT
    # The least recently used (the first) went out, and its tensors with it: nothing else held it.
    assert first() is None
    newest = cached_backbone(keys[-1][0], device="cpu", random_init=True, num_heads=keys[-1][1])
    assert newest.spec.num_heads == keys[-1][1] and isinstance(newest.model, torch.nn.Module)
    zoo_backbone._backbones.clear()
