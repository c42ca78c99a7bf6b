"""Plot a training run's validity log: recognition (verification AUC) and the method's validity (Spearman of the
attention score with SFace utility, failure AUC) against steps, from ``OUT/log.jsonl`` of ``attn-fiqa train run``.

    python scripts/plot_training.py RUN_DIR [RUN_DIR ...] --out docs/training.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for run in args.runs:
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
        config = json.loads((run / "config.json").read_text())
        label = f"{run.name} ({config['loss']})"
        steps = [r["step"] for r in log]
        axes[0].plot(steps, [r.get("verification_auc") for r in log], marker="o", label=label)
        axes[1].plot(steps, [r.get("spearman_score_utility") for r in log], marker="o", label=label)
        axes[2].plot(steps, [r.get("failure_auc") for r in log], marker="o", label=label)
    for ax, title, target in zip(axes, ("verification ROC AUC (held-out LFW)", "Spearman(score, SFace utility)",
                                        "failure AUC of the score"), (None, 0.5, 0.8)):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step (128 faces)")
        ax.grid(alpha=0.3)
        if target is not None:
            ax.axhline(target, color="green", linestyle="--", linewidth=1, label="gate")
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
