"""The validity gate of our own face ViT, measured with the project's own commands on held-out data only.

    python scripts/gate.py --weights ours.safetensors --out gate/ [--data ../shared/data] [--cache faces.npz]

Runs ``attn-fiqa sweep`` (London set portraits, held out entirely, plus held-out LFW Q-R faces) and ``attn-fiqa eval``
(held-out LFW identities Q-R, SFace matcher, every genuine pair) for the trained weights and for the same
architecture with random weights, then prints and writes ``gate.json`` with every gate line and whether it passed:
- sweep: Spearman(score, SFace utility) >= +0.5 pooled, failure AUC >= 0.80, Spearman(score, strength) < 0 for every
  degradation that lowers utility;
- eval: discarding the lowest-scored 30 % cuts SFace's FNMR at FMR 1e-3 by >= 25 %, more than random discard, the
  image baselines and the random-weights ViT;
- recognition (reported): verification ROC AUC and TAR at FAR 1e-3 of the model's own embeddings on held-out LFW.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

HOLDOUT_LETTERS = "QR"


def _run(*args: str) -> None:
    print("$ attn-fiqa " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "attn_core", *args], check=True)


def _holdout_lfw(data: Path, out: Path, max_identities: int = 0) -> Path:
    """Identity folders of held-out LFW names, each image a symlink (folder scans do not follow folder links)."""
    folder = out / "lfw_holdout"
    identities = [p for p in sorted((data / "lfw-train").iterdir()) if p.name[:1].upper() in HOLDOUT_LETTERS]
    for identity in identities[: max_identities or None]:
        (folder / identity.name).mkdir(parents=True, exist_ok=True)
        for image in identity.iterdir():
            if not (folder / identity.name / image.name).exists():
                (folder / identity.name / image.name).symlink_to(image.resolve())
    return folder


def _reduction(summary: dict, method: str, fmr: float = 1e-3, at: float = 0.3) -> float | None:
    for curve in summary["curves"]:
        if curve["method"] == method and curve["fmr"] == fmr and curve["threshold_mode"] == "per_fraction":
            index = min(range(len(curve["discard"])), key=lambda i: abs(curve["discard"][i] - at))
            start, end = curve["fnmr"][0], curve["fnmr"][index]
            return None if not start else 1 - end / start
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--backbone", default="attnfiqa-vit-t")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--cache", help="prepared face cache (attn-fiqa train prepare) for the recognition numbers")
    parser.add_argument("--out", required=True)
    parser.add_argument("--sweep-lfw-faces", type=int, default=100, help="held-out LFW faces added to the sweep")
    parser.add_argument("--sweep-london-faces", type=int, default=204, help="London set portraits in the sweep (all: 204)")
    parser.add_argument("--eval-max-identities", type=int, default=0, help="0: every held-out LFW identity")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lfw = _holdout_lfw(data, out, args.eval_max_identities)
    faces = sorted(p for p in lfw.rglob("*.jpg"))
    random.Random(0).shuffle(faces)
    london = sorted(p for p in (data / "london-set").rglob("*.jpg"))[: args.sweep_london_faces]
    sweep_faces = [str(p) for p in london] + [str(p) for p in faces[: args.sweep_lfw_faces]]

    _run("sweep", *sweep_faces, "--backbone", args.backbone, "--weights", args.weights, "--out", str(out / "sweep"))
    _run("eval", str(lfw), "--backbone", args.backbone, "--weights", args.weights, "--out", str(out / "eval"),
         "--fmr", "1e-3", "1e-4")
    _run("eval", str(lfw), "--backbone", args.backbone, "--random-init", "--out", str(out / "eval_random"),
         "--fmr", "1e-3", "1e-4")

    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    (stats,) = sweep["results"].values()
    lowering = {name: entry for name, entry in stats["per_degradation"].items()
                if entry["mean_utility_by_strength"][-1] < entry["mean_utility_by_strength"][0] - 0.02}
    evaluation = json.loads((out / "eval" / "eval.json").read_text())
    random_eval = json.loads((out / "eval_random" / "eval.json").read_text())
    ours_label = evaluation["quality_models"][0]["label"]
    random_label = random_eval["quality_models"][0]["label"]
    methods = {c["method"] for c in evaluation["curves"] if c["kind"] == "baseline"}
    reductions = {"ours": _reduction(evaluation, ours_label), "random discard": _reduction(evaluation, "random"),
                  "random-weights ViT": _reduction(random_eval, random_label)}
    reductions.update({name: _reduction(evaluation, name) for name in sorted(methods)})
    random_name = next(c["method"] for c in evaluation["curves"] if c["kind"] == "random")
    reductions["random discard"] = _reduction(evaluation, random_name)

    ours = reductions["ours"] or 0.0
    others = [v for k, v in reductions.items() if k != "ours" and v is not None]
    gate = {
        "spearman_score_utility_pooled": {"value": stats["spearman_score_utility_pooled"], "need": ">= 0.5"},
        "failure_auc_pooled": {"value": stats["failure_auc_pooled"], "need": ">= 0.80"},
        "spearman_score_strength": {"value": {k: v["spearman_score_strength"] for k, v in lowering.items()},
                                    "need": "< 0 for every degradation that lowers utility"},
        "fnmr_reduction_at_30pct_fmr1e-3": {"value": reductions, "need": ">= 0.25 and more than every other"},
    }
    gate["spearman_score_utility_pooled"]["pass"] = (gate["spearman_score_utility_pooled"]["value"] or -1) >= 0.5
    gate["failure_auc_pooled"]["pass"] = (gate["failure_auc_pooled"]["value"] or 0) >= 0.80
    gate["spearman_score_strength"]["pass"] = all((v or 0) < 0 for v in gate["spearman_score_strength"]["value"].values())
    gate["fnmr_reduction_at_30pct_fmr1e-3"]["pass"] = ours >= 0.25 and all(ours > v for v in others)
    if args.cache:
        import numpy as np
        import torch

        from attn_core.train.data import load_cache
        from attn_core.train.trainer import verification
        from attn_core.zoo.backbone import load_backbone

        holdout = load_cache(args.cache, "holdout")
        lfw_only = np.array(["london-set/" not in name for name in holdout.identities])[holdout.labels]
        backbone = load_backbone(args.backbone, weights=args.weights, device="cpu")
        with torch.inference_mode():
            aligned = holdout.aligned[lfw_only]
            embeddings = np.concatenate([backbone.embedding(backbone.preprocess(np.ascontiguousarray(aligned[i:i + 256])))
                                         .numpy() for i in range(0, len(aligned), 256)])
        gate["recognition_holdout_lfw"] = {"value": verification(embeddings, holdout.labels[lfw_only]), "need": "reported"}
    gate["passed"] = all(entry.get("pass", True) for entry in gate.values() if isinstance(entry, dict))
    (out / "gate.json").write_text(json.dumps(gate, indent=1))
    print(json.dumps(gate, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main())
