"""``attn-fiqa explain``: the attention lab's figures (PNG) and numbers (explain.json) for one photo, as teaching
material. fp32 by default: teaching numbers are reference numbers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attn_core.cli.options import add_backbone_arguments


def _patch(text: str) -> tuple[int, int]:
    try:
        row, col = (int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a patch is ROW,COL of the patch grid (0-based), e.g. 5,6; not {text!r}") \
            from None
    return row, col


def cmd_explain(args: argparse.Namespace) -> int:
    from PIL import Image

    from attn_core import lab as attention_lab
    from attn_core.scoring.model import FaceQualityModel

    image = Path(args.image)
    if not image.is_file():
        raise FileNotFoundError(f"{image} is not an image file; give the path of a photo or an aligned 112x112 crop.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the figures and explain.json.")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = FaceQualityModel(args.backbone, weights=args.weights, device=args.device, random_init=args.random_init,
                             num_heads=args.num_heads, precision=args.precision)
    lab = attention_lab.capture_lab(model, image)
    query = args.query or (lab.grid[0] // 2, lab.grid[1] // 2)
    record = attention_lab.explain_record(lab, args.block, args.head, query, args.key)  # checks every index
    out.mkdir(parents=True, exist_ok=True)
    block, head = record["block"], args.head
    query_token = lab.token_of_patch(*query)
    key_token = None if args.key is None else lab.token_of_patch(*args.key)
    aligned = lab.face.aligned
    figures = {
        "face_grid.png": attention_lab.face_grid_image(lab, aligned, query_token, key_token),
        "row.png": attention_lab.row_figure(lab, aligned, block, head, query_token),
        "matrix.png": attention_lab.matrix_figure(lab, block, head, query_token, key_token),
        "offsets.png": attention_lab.offsets_figure(lab, aligned, block, head),
        "model_view.png": attention_lab.model_view_figure(lab, aligned, "received"),
        "block_scores.png": attention_lab.block_scores_figure(lab, block),
        "head_stats.png": attention_lab.head_stats_figure(lab, head),
    }
    if key_token is not None:
        figures["qk_terms.png"] = attention_lab.qk_terms_figure(lab, block, head, query_token, key_token)
    for name, picture in figures.items():
        Image.fromarray(picture).save(out / name)
    (out / "explain.json").write_text(json.dumps(record, indent=1))
    print(attention_lab.softmax_lesson(lab, block, head), file=sys.stderr)
    print(f"Explained {image} with {lab.backbone} ({lab.weights}, {lab.precision}), block {block}, "
          f"{'mean of heads' if head is None else f'head {head}'}, query patch {tuple(query)}: score {lab.score:+.6f}; "
          f"{len(figures)} figures and explain.json in {out}.", file=sys.stderr)
    return 0


def add_explain_parser(subparsers) -> None:
    explain = subparsers.add_parser("explain", help="the attention lab's figures and numbers for one photo "
                                    "(teaching material)")
    explain.add_argument("image", help="a photo (the largest face is aligned) or an aligned 112x112 crop")
    add_backbone_arguments(explain, compile_option=False, precision_default="fp32")
    explain.add_argument("--block", type=int, default=-1, help="block to show (0-based; default -1: the last)")
    explain.add_argument("--head", type=int, default=None, help="head to show (0-based; default: the mean of all)")
    explain.add_argument("--query", type=_patch, default=None, metavar="ROW,COL",
                         help="query patch, row then column of the patch grid (default: the centre patch)")
    explain.add_argument("--key", type=_patch, default=None, metavar="ROW,COL",
                         help="key patch for the q.k terms (needs --head)")
    explain.add_argument("--out", required=True, help="folder for the PNG figures and explain.json")
    explain.set_defaults(func=cmd_explain)
