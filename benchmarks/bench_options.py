"""Optional speed paths of the scorer: torch.compile and bf16/fp16 precision, against the fp32 default
(the precision comparison at several batch sizes is benchmarks/bench_precision.py).

    python benchmarks/bench_options.py [--models cvlface-vit-s-adaface] [--batch 8] [--device cpu|cuda]

Faces are the bundled example photos, detected and aligned, repeated to the batch size; weights are seeded random.
Score differences are against the fp32 default path on the same faces: max |d|, and max |d| relative to the
spread (std) of the fp32 scores over the distinct faces, which is what decides whether a ranking can change.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import (
    MODELS,
    ROOT,
    header,
    interleaved,
    load_average,
    pick_device,
    ratio,
    table,
)

from attn_core.faces import extract_faces
from attn_core.scoring.quality import score_faces
from attn_core.zoo.backbone import load_backbone


def example_crops() -> np.ndarray:
    paths = sorted((ROOT / "assets" / "examples").glob("*.*"))
    return np.stack([extract_faces(p, on_no_face="center_crop")[0].aligned for p in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (its first call takes minutes)")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(header(f"Optional paths at batch {args.batch}: torch.compile and bf16 vs the fp32 default", device))
    crops = example_crops()
    faces = crops[np.arange(args.batch) % len(crops)]
    distinct = min(len(crops), args.batch)
    variants: dict[str, dict] = {"fp32 (default)": {}}
    if not args.no_compile:
        variants["compile"] = {"compile": True}
    variants["bf16"] = {"precision": "bf16"}
    if device.type == "cuda":
        variants["fp16"] = {"precision": "fp16"}
    print(f"- faces: {len(crops)} example crops repeated to {args.batch}\n")
    rows = []
    for name in args.models:
        backbone = load_backbone(name, random_init=True, seed=0, device=device)
        reference = np.array([r.score for r in score_faces(backbone, faces)])
        spread = reference[:distinct].std()
        first_call = {}
        for label, options in variants.items():
            start = time.perf_counter()
            scores = np.array([r.score for r in score_faces(backbone, faces, **options)])
            first_call[label] = (time.perf_counter() - start, np.abs(scores - reference).max())
        times = interleaved({label: (lambda o=options: score_faces(backbone, faces, **o)) for label, options in
                             variants.items()}, rounds=args.rounds, device=device, warmup=0)
        for label in variants:
            seconds, difference = first_call[label]
            rows.append({
                "model": name, "path": label,
                "ms/img": f"{times[label].wall_median / args.batch * 1e3:.1f}",
                "speedup wall": f"{ratio(times['fp32 (default)'], times[label]):.2f}x",
                "speedup cpu": f"{ratio(times['fp32 (default)'], times[label], 'cpu'):.2f}x",
                "first call s": f"{seconds:.1f}",
                "max|dscore|": f"{difference:.1e}", "max|d|/spread": f"{difference / spread:.1e}",
                "score range": f"{reference.min():.4f}..{reference.max():.4f}",
            })
        print(f"  done {name} (load {load_average()})", flush=True)
    print()
    print(table(rows))
    print(f"\n- load average at end: {load_average()}")


if __name__ == "__main__":
    main()
