"""Seeded random weights are the same whatever else runs: two threads building at once (as the app's handlers do)
get the weights a lone build gets. Module initialisation draws from torch's one global generator, so builds that
overlap without taking turns interleave their draws (seen as the app's demo score changing from run to run)."""

from __future__ import annotations

import threading

from attn_core.zoo import load_backbone


def _checksum(backbone) -> list[float]:
    return [float(p.double().sum()) for p in backbone.model.parameters()]


def test_concurrent_seeded_builds_give_the_lone_builds_weights():
    lone = _checksum(load_backbone("test-face-vit-p8", random_init=True, seed=0, device="cpu"))
    results: list[list[float]] = []

    def build() -> None:
        for _ in range(5):
            results.append(_checksum(load_backbone("test-face-vit-p8", random_init=True, seed=0, device="cpu")))

    builders = [threading.Thread(target=build) for _ in range(3)]
    for thread in builders:
        thread.start()
    for thread in builders:
        thread.join()
    assert len(results) == 15 and all(r == lone for r in results)
