"""Batch scoring of files (the CLI's path): FaceQualityModel.score_files with 0 vs N DataLoader workers.

    python benchmarks/bench_files.py [--backbone cvlface-vit-s-adaface] [--copies 4] [--workers 0 2]

The bundled example photos, listed ``--copies`` times, go through decode + detect + align (in the DataLoader,
in workers when N > 0) and batched scoring; images/s over the whole run, best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, header, load_average, pick_device, table

from attn_core.scoring.model import FaceQualityModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cvlface-vit-s-adaface")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(header("Batch scoring of files (score_files: DataLoader decode/detect/align + batched scoring)", device))
    paths = sorted((ROOT / "assets" / "examples").glob("*.*")) * args.copies
    model = FaceQualityModel(args.backbone, random_init=True, device=str(device))
    list(model.score_files(paths[:2], on_no_face="center_crop"))  # model and detector warm
    print(f"- {len(paths)} files, batch size {args.batch_size}, backbone {args.backbone}\n")
    best = {w: float("inf") for w in args.workers}
    scores = {}
    for _ in range(args.rounds):
        for workers in args.workers:
            start = time.perf_counter()
            items = list(model.score_files(paths, batch_size=args.batch_size, workers=workers, on_no_face="center_crop"))
            best[workers] = min(best[workers], time.perf_counter() - start)
            scores[workers] = [item.result.score for item in items]
    reference = scores[args.workers[0]]
    rows = [{"workers": w, "files": len(paths), "s (best)": f"{best[w]:.2f}", "files/s": f"{len(paths) / best[w]:.1f}",
             "max|dscore| vs first": f"{max(abs(a - b) for a, b in zip(scores[w], reference)):.1e}"}
            for w in args.workers]
    print(table(rows))
    print(f"\n- torch threads {torch.get_num_threads()}; load average at end: {load_average()}")


if __name__ == "__main__":
    main()
