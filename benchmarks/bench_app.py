"""End-to-end latency of one app request: decode, detect, align, score, render.

    python benchmarks/bench_app.py [--backbone cvlface-vit-s-adaface] [--requests 50] [--device cpu]

One request = load_image -> extract_faces -> FaceQualityModel.score_aligned -> crop_overlay + photo_overlay, on
the bundled example photos in turn (assets/examples), after two warm-up requests (detector and model loads are
cached, as in the app). Prints p50/p95 of the whole request and the median of each stage.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import ROOT, header, load_average, percentile, pick_device, table

from attn_core.faces import extract_faces, load_image
from attn_core.scoring.model import FaceQualityModel
from attn_core.viz import crop_overlay, photo_overlay

EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.*"))


def request(model: FaceQualityModel, path, device: torch.device) -> dict[str, float]:
    stages: dict[str, float] = {}
    start = time.perf_counter()
    photo = load_image(path)
    stages["decode"] = time.perf_counter() - start
    mark = time.perf_counter()
    faces = extract_faces(photo, on_no_face="center_crop")
    stages["detect+align"] = time.perf_counter() - mark
    mark = time.perf_counter()
    (result,) = model.score_aligned(faces[:1])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    stages["score"] = time.perf_counter() - mark
    mark = time.perf_counter()
    crop_overlay(result.face.aligned, result.patch_map, model.spec)
    photo_overlay(result.face, result.patch_map, model.spec)
    stages["render"] = time.perf_counter() - mark
    stages["total"] = time.perf_counter() - start
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["cvlface-vit-s-adaface", "attnfiqa-vit-distilled"])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="arithmetic of the blocks (the app's --precision; default fp32)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(header("App request latency (load_image -> extract_faces -> score -> crop_overlay + photo_overlay)", device))
    print(f"- photos: {', '.join(p.name for p in EXAMPLES)} (in turn); precision: {args.precision}\n")
    rows = []
    for name in args.backbones:
        model = FaceQualityModel(name, random_init=True, device=str(device), precision=args.precision)
        for path in EXAMPLES[:2]:
            request(model, path, device)
        samples = [request(model, EXAMPLES[i % len(EXAMPLES)], device) for i in range(args.requests)]
        totals = [s["total"] for s in samples]
        row = {"backbone": name, "requests": len(samples),
               "p50 ms": f"{percentile(totals, 0.5) * 1e3:.0f}", "p95 ms": f"{percentile(totals, 0.95) * 1e3:.0f}"}
        for stage in ("decode", "detect+align", "score", "render"):
            row[f"{stage} p50 ms"] = f"{statistics.median(s[stage] for s in samples) * 1e3:.1f}"
        rows.append(row)
        print(f"  done {name} (load {load_average()})", flush=True)
    print()
    print(table(rows))
    print(f"\n- load average at end: {load_average()}")


if __name__ == "__main__":
    main()
