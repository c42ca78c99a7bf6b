"""End-to-end latency of one app request: decode, detect, align, score, render.

    python benchmarks/bench_app.py [--backbone cvlface-vit-s-adaface] [--requests 50] [--device cpu]

One request = load_image -> extract_faces -> FaceQualityModel.score_aligned -> crop_overlay + photo_overlay, on
the bundled example photos in turn (assets/examples), after two warm-up requests (detector and model loads are
cached, as in the app). Prints p50/p95 of the whole request and the median of each stage.

    python benchmarks/bench_app.py --lab [--backbones cvlface-vit-s-adaface] [--requests 50]

The Attention lab tab's handlers (app/tabs/lab.py), called as the app calls them, PNG encoding included: "first
render" = a photo not in the lab cache (decode, detect, align, one forward pass capturing q/k of every block) plus
every view; "click" = the four views a click refreshes (row/softmax/column, matrix + decomposition, q.k terms, model
view), summed as if they ran one after another, for a new query patch each time (q/k from the cache).
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


def lab_timings(name: str, precision: str, requests: int) -> dict[str, str]:
    from app import models
    from app.tabs import lab

    models.set_precision(precision)
    lab.lab_of(EXAMPLES[0], name, True)  # warm-up: model and detector loads, as in a running app
    first, inspect = [], []
    for path in EXAMPLES[1:]:
        lab._lab_cache.clear()
        start = time.perf_counter()
        lab.lab_row(str(path), name, True, -1, -1, "", "")
        lab.lab_matrix(str(path), name, True, -1, -1, "", "")
        lab.lab_qk(str(path), name, True, -1, -1, "", "")
        lab.lab_model_view(str(path), name, True, -1, -1, "", "received")
        lab.lab_lesson(str(path), name, True, -1, -1)
        lab.lab_curves(str(path), name, True, -1, -1)
        first.append(time.perf_counter() - start)
        start = time.perf_counter()  # the Inspect scoring path on the same photo: the machine's pace right now
        models.load_model(name, True).score_image(str(path))
        inspect.append(time.perf_counter() - start)
    photo = str(EXAMPLES[1])
    grid = models.spec_of(name).grid
    clicks, parts = [], {"row": [], "matrix": [], "qk": [], "model view": []}
    for i in range(requests):
        query, key = f"{i % grid[0]},{(3 * i) % grid[1]}", f"{(i + 5) % grid[0]},{i % grid[1]}"
        start = time.perf_counter()
        for part, call in (("row", lambda: lab.lab_row(photo, name, True, -1, 0, query, key)),
                           ("matrix", lambda: lab.lab_matrix(photo, name, True, -1, 0, query, key)),
                           ("qk", lambda: lab.lab_qk(photo, name, True, -1, 0, query, key)),
                           ("model view", lambda: lab.lab_model_view(photo, name, True, -1, 0, query, "row"))):
            mark = time.perf_counter()
            call()
            parts[part].append(time.perf_counter() - mark)
        clicks.append(time.perf_counter() - start)
    row = {"backbone": name, "precision": precision, "first render p50 ms": f"{percentile(first, 0.5) * 1e3:.0f}",
           "first render max ms": f"{max(first) * 1e3:.0f}",
           "score_image p50 ms (same photos)": f"{percentile(inspect, 0.5) * 1e3:.0f}", "click p50 ms": f"{percentile(clicks, 0.5) * 1e3:.0f}",
           "click p95 ms": f"{percentile(clicks, 0.95) * 1e3:.0f}"}
    row.update({f"{part} p50 ms": f"{statistics.median(v) * 1e3:.1f}" for part, v in parts.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["cvlface-vit-s-adaface", "attnfiqa-vit-distilled"])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="arithmetic of the blocks (the app's --precision; default fp32)")
    parser.add_argument("--lab", action="store_true", help="time the Attention lab tab: first render and clicks")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.lab:
        print(header("Attention lab (first render of a new photo; a click = the four views it refreshes)", device))
        print(f"- photos: {', '.join(p.name for p in EXAMPLES[1:])} (first render); precision: {args.precision}\n")
        print(table([lab_timings(name, args.precision, args.requests) for name in args.backbones]))
        print(f"\n- load average at end: {load_average()}")
        return
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
