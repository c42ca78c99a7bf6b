"""fp32 vs bf16 (and fp16 on GPUs) scoring throughput, interleaved in one run, next to the matmul rate of each dtype.

    python benchmarks/bench_precision.py [--models ...] [--batches 1 8 64] [--device cpu|cuda] [--rounds N]

Per model (seeded random weights) and batch size, ``score_faces(backbone, faces, precision=P)`` (the path
``attn-fiqa score`` runs: preprocessing, CPU micro-batches, capture, score) for each precision P in rotating order;
img/s from the median round, the speed-up as the median of per-round ratios. "roofline" is the achieved GFLOP/s of
the score's work (benchmarks/bench_scoring.py's count) over the best large torch.matmul rate in the same dtype.
Rank agreement is tested in tests/test_precision.py (Spearman >= 0.999 over 408 degraded faces); here max |d score|
against fp32 on the batch is printed as a sanity check.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bench_options import example_crops
from bench_scoring import needed_flops
from common import (
    header,
    interleaved,
    load_average,
    matmul_rate,
    pick_device,
    ratio,
    table,
)

from attn_core.scoring.quality import (
    LOW_PRECISION_DTYPES,
    cpu_has_fast_bf16,
    micro_batch_size,
    score_faces,
)
from attn_core.zoo.backbone import load_backbone

# The ViT-S shape of the method's release, the insightface ViT-T shape, and our default backbone's shape.
SHAPES = ("cvlface-vit-s-adaface", "insightface-vit-t", "attnfiqa-vit-t")
DEFAULT_ROUNDS = {1: 20, 8: 7, 64: 5, 256: 3}


def crops(batch: int) -> np.ndarray:
    faces = example_crops()  # the bundled example photos, detected and aligned
    return faces[np.arange(batch) % len(faces)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, help="rounds per cell (default: 20 at batch 1, 7 at 8, 5 at 64)")
    parser.add_argument("--device")
    args = parser.parse_args()
    device = pick_device(args.device)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    print(header("Precision: fp32 vs bf16" + (" vs fp16" if device.type == "cuda" else ""), device))
    if device.type == "cpu":
        print(f"- bf16 matrix units (AMX or AVX512-BF16, torch's probe): {cpu_has_fast_bf16()}")
    rates = {p: matmul_rate(device, dtype=torch.float32 if p == "fp32" else LOW_PRECISION_DTYPES[p]) for p in precisions}
    print("- torch.matmul, best of 1024/2048 x 10: " + ", ".join(f"{p} {r:.0f} GFLOP/s" for p, r in rates.items())
          + "\n")
    rows = []
    for name in args.models:
        backbone = load_backbone(name, random_init=True, seed=0, device=device)
        flops = needed_flops(backbone.spec, backbone.block_index(-1))
        for batch in args.batches:
            faces = crops(batch)
            reference = np.array([r.score for r in score_faces(backbone, faces)])
            diffs = {p: float(np.abs(np.array([r.score for r in score_faces(backbone, faces, precision=p)])
                                      - reference).max()) for p in precisions[1:]}
            times = interleaved({p: (lambda p=p: score_faces(backbone, faces, precision=p)) for p in precisions},
                                rounds=args.rounds or DEFAULT_ROUNDS.get(batch, 3), device=device)
            for p in precisions:
                seconds = times[p].wall_median
                rows.append({
                    "model": name, "batch": batch, "micro": micro_batch_size(backbone, batch), "precision": p,
                    "ms/img": f"{1000 * seconds / batch:.1f}", "img/s": f"{batch / seconds:.1f}",
                    "speed-up vs fp32": "1.00x" if p == "fp32" else f"{1 / ratio(times[p], times['fp32']):.2f}x",
                    "GFLOP/img": f"{flops / 1e9:.2f}", "GFLOP/s": f"{flops * batch / seconds / 1e9:.0f}",
                    "roofline": f"{flops * batch / seconds / 1e9 / rates[p]:.0%}",
                    "max|d score|": "0" if p == "fp32" else f"{diffs[p]:.1e}",
                })
            print(f"  done {name} batch {batch} (load {load_average()})", flush=True)
    print()
    print(table(rows))
    print(f"\n- load average at end: {load_average()}")


if __name__ == "__main__":
    main()
