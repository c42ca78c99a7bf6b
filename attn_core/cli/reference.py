"""``attn-fiqa reference build | list | show | remove``, and what ``attn-fiqa score --reference NAME`` adds to rows."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from attn_core.cli.options import add_backbone_arguments, add_score_options
from attn_core.scoring.reference import (
    Reference,
    ReferenceError,
    build_reference,
    list_references,
    load_reference,
    model_settings,
    reference_path,
    remove_reference,
    save_reference,
)

REFERENCE_COLUMNS = ["percentile", "quality_0_100", "reference", "reference_sha256"]
THRESHOLD_COLUMNS = ["threshold", "pass"]


def score_fields(base: list[str], reference: Reference | None) -> list[str]:
    """The columns of ``score``: the usual ones, then the reference's (``pass`` only when it has a threshold)."""
    if reference is None:
        return base
    return base[:-1] + REFERENCE_COLUMNS + (THRESHOLD_COLUMNS if reference.threshold is not None else []) + base[-1:]


def reference_options(reference: Reference | None) -> dict[str, str]:
    """What every row records about the reference (and what ``--resume`` must find unchanged)."""
    return {"reference": reference.name if reference else "", "reference_sha256": reference.sha256 if reference else ""}


def standing_columns(reference: Reference | None, score: float) -> dict[str, Any]:
    if reference is None:
        return {}
    standing = reference.standing_of(score)
    return {"percentile": standing.percentile, "quality_0_100": standing.quality_0_100,
            "threshold": standing.threshold, "pass": standing.passed}


def check_reference(reference: Reference | None, model, options) -> None:
    """Before any file is scored: the reference must have been built with this model's weights and settings."""
    if reference is not None:
        reference.check(model_settings(model, options), "this run")


def cmd_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from attn_core.cli.main import _load_model
    from attn_core.scoring.model import ScoreOptions

    if reference_path(args.name).exists() and not args.overwrite:  # before any work (reference_path checks the name)
        raise ReferenceError(f"A reference named '{args.name}' exists already; remove it first (attn-fiqa reference "
                             f"remove {args.name}), build with --overwrite, or choose another name.")
    model = _load_model(args)
    options = ScoreOptions(args.block, args.heads, args.aggregation, args.tokens)
    bars: list = []  # created on the first scored file, so an empty folder is one line without a bar

    def progress(done: int) -> None:
        if not bars:
            bars.append(tqdm(unit="img", desc="reference", disable=args.quiet, file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        reference, skipped = build_reference(model, args.faces, args.name, options, batch_size=args.batch_size,
                                             all_faces=args.all_faces, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    path = save_reference(reference, overwrite=args.overwrite)
    quantiles = reference.summary()["score_quantiles"]
    print(f"Reference '{reference.name}': {reference.faces} face(s) from {reference.files} file(s), {len(skipped)} "
          f"skipped; {model.spec.name} ({model.backbone.weights_name}, {model.precision}), block "
          f"{reference.settings['block']}, heads {_heads(reference)}, {reference.settings['aggregation']}, tokens "
          f"{reference.settings['tokens']}. Scores {quantiles['p0']:+.4f} .. {quantiles['p50']:+.4f} (median) .. "
          f"{quantiles['p100']:+.4f}. Saved to {path}.", file=sys.stderr)
    if not model.spec.face_trained or not model.backbone.weights_sha256:
        print("Note: these weights are random or not trained for faces; the reference then ranks scores that mean "
              "nothing about face quality.", file=sys.stderr)
    return 0


def _heads(reference: Reference) -> str:
    heads = reference.settings["heads"]
    return heads if heads == "all" else ",".join(map(str, heads))


def cmd_list(args: argparse.Namespace) -> int:
    found = list_references()
    if not found:
        print("No references yet; build one with `attn-fiqa reference build FACES --name NAME`.", file=sys.stderr)
        return 0
    print(f"{'name':24} {'faces':>6}  {'threshold':>10}  {'backbone':28} {'block':>5} {'heads':8} {'agg':8} "
          f"{'tokens':6} {'precision':9} created")
    for name, reference, problem in found:
        if reference is None:
            print(f"{name:24} (unusable: {problem})")
            continue
        settings, threshold = reference.settings, reference.threshold_value
        print(f"{name:24} {reference.faces:>6}  {'-' if threshold is None else f'{threshold:+.4f}':>10}  "
              f"{settings['backbone']:28} {settings['block']:>5} {_heads(reference):8} {settings['aggregation']:8} "
              f"{settings['tokens']:6} {settings['precision']:9} {reference.created}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(load_reference(args.name).summary(), indent=1))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    path = remove_reference(args.name)
    print(f"Removed the reference '{args.name}' ({path}).", file=sys.stderr)
    return 0


def add_reference_parser(subparsers) -> None:
    """Contribute ``reference`` to ``attn-fiqa`` (called by :func:`attn_core.cli.main.build_parser`)."""
    reference = subparsers.add_parser(
        "reference", help="reference sets: what value is good? (percentiles and a 0-100 value against your faces)",
        description="A reference is the score distribution of faces you call typical (an enrolment set, say), with "
                    "the backbone, weights and settings that produced it. `attn-fiqa score --reference NAME` then "
                    "adds each face's percentile and 0-100 value (and pass/fail when a threshold was saved into it "
                    "by `attn-fiqa eval --save-threshold-to NAME`).")
    actions = reference.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="score a folder of typical faces and save their distribution")
    build.add_argument("faces", nargs="+", help="image files and/or folders (searched recursively)")
    build.add_argument("--name", required=True, help="the reference's name (letters, digits, . _ -)")
    add_backbone_arguments(build)
    add_score_options(build)
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--all-faces", action="store_true", help="every face of a photo, not only the largest")
    build.add_argument("--overwrite", action="store_true", help="replace a reference of the same name")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=cmd_build)
    listing = actions.add_parser("list", help="the saved references")
    listing.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="one reference's settings, size, threshold and score quantiles (JSON)")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)
    remove = actions.add_parser("remove", help="delete a saved reference")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_remove)
