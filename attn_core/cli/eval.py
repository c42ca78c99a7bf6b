"""``attn-fiqa eval`` and ``attn-fiqa sweep``: the command lines over :func:`attn_core.eval.run_eval` and
:func:`attn_core.eval.run_sweep`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from attn_core.eval.demo import DEMO_IMPOSTORS_PER_GENUINE, DEMO_NAME, demo_set_folder
from attn_core.eval.edc import ThresholdMode
from attn_core.eval.evaluate import DEFAULT_FMRS, THRESHOLD_MODES, run_eval
from attn_core.eval.measure import ProgressFn
from attn_core.eval.sweep import DEFAULT_STRENGTHS, run_sweep
from attn_core.scoring.model import ScoreOptions


def _tqdm_progress(quiet: bool, description: str) -> tuple[ProgressFn, Callable[[], None]]:
    """A progress callback drawing a tqdm bar, created on the first report (so early errors stay one line)."""
    from tqdm import tqdm

    bars: list = []

    def update(fraction: float, message: str) -> None:
        if not bars:
            bars.append(tqdm(total=1000, desc=description, disable=quiet, file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}"))
        bar = bars[0]
        bar.update(max(0, int(fraction * 1000) - bar.n))
        bar.set_postfix_str(message, refresh=True)

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def _score_options(args: argparse.Namespace) -> ScoreOptions:
    return ScoreOptions(args.block, args.heads, args.aggregation, args.tokens)


def _parse_strengths(text: str) -> list[float]:
    try:
        return [float(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--strengths takes numbers like '0,0.5,1', not {text!r}") from None


def _parse_modes(values: list[str]) -> list[ThresholdMode]:
    modes: list[ThresholdMode] = []
    for value in values:
        value = value.replace("-", "_")
        for mode in (THRESHOLD_MODES if value == "both" else (value,)):
            if mode not in modes:
                modes.append(mode)  # type: ignore[arg-type]
    return modes


def _print_failures(failed: Sequence[tuple[Path, str]]) -> None:
    for path, reason in failed:
        print(f"  skipped {path}: {reason}", file=sys.stderr)


def _apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _fraction(text: str) -> float:
    """0.02 or 2%: a fraction in [0, 1)."""
    value = text.strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a fraction like 0.02 or a percentage like 2%, not {text!r}") from None
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1) (0.02 or 2% for two percent)")
    return number


def _goal(args: argparse.Namespace, report) -> int:
    """--target-fnmr / --discard: the threshold read off the first quality model's curve, printed, written to
    threshold.json and, with --save-threshold-to NAME, saved into that reference."""
    from attn_core.eval.reports import write_threshold_report
    from attn_core.eval.threshold import goals_from_report, save_threshold

    pairs = report.pairs
    method = next(iter(pairs.settings))
    mode = _parse_modes(args.threshold_mode)[0]
    goals = goals_from_report(pairs, method, list(args.fmr), mode, target_fnmr=args.target_fnmr, discard=args.discard)
    for goal in goals:
        print(f"{method}: {goal.message}", file=sys.stderr)
        if goal.reached and goal.images_below:
            shown = goal.images_below[:20]
            print(f"  below it: {', '.join(shown)}" + (f" ... and {len(goal.images_below) - 20} more (threshold.json)"
                                                        if len(goal.images_below) > 20 else ""), file=sys.stderr)
    path = write_threshold_report(args.out, goals)
    print(f"Wrote {path}.", file=sys.stderr)
    if args.save_threshold_to:
        updated = save_threshold(args.save_threshold_to, goals[0], pairs.settings[method], data=pairs.data,
                                 matcher=pairs.matcher)
        print(f"Saved threshold {updated.threshold_value:+.6f} ({goals[0].goal}) into the reference "
              f"'{updated.name}' (sha256 {updated.sha256[:12]}); `attn-fiqa score --reference {updated.name}` now "
              f"adds a pass column.", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    _apply_threads(args)
    if sum((args.pairs is not None, args.data is not None, args.demo)) != 1:
        raise ValueError("give one of: an identity folder (DATA), --pairs CSV, or --demo (the bundled demo set)")
    if args.save_threshold_to and args.target_fnmr is None and args.discard is None:
        raise ValueError("--save-threshold-to needs a goal: --target-fnmr X or --discard Y")
    if (args.target_fnmr is not None or args.discard is not None) and len(args.backbone) > 1:
        raise ValueError("a threshold goal (--target-fnmr / --discard) is read off one quality model's curve: give "
                         "one --backbone")
    if args.save_threshold_to:
        from attn_core.scoring.reference import load_reference

        load_reference(args.save_threshold_to)  # a missing or broken reference: one line before any work
    impostors = args.impostors_per_genuine
    if impostors is None:
        impostors = DEMO_IMPOSTORS_PER_GENUINE if args.demo else 10.0
    with tempfile.TemporaryDirectory(prefix="attn_fiqa_demo_") as scratch:
        data = demo_set_folder(scratch) if args.demo else args.pairs or args.data
        report = _run_eval(args, data, impostors, DEMO_NAME if args.demo else None)
    print(f"Evaluated {report.n_pairs_used} of {report.n_pairs} pairs; {len(report.failed_files)} file(s) unusable, "
          f"{report.n_pairs - report.n_pairs_used} pair(s) dropped. "
          f"{report.embeddings_computed} embedding(s) and {report.scores_computed} score(s) computed "
          f"(the rest from the cache).", file=sys.stderr)
    _print_failures(report.failed_files)
    for line in report.warnings + report.verdicts[:10]:
        print(f"  {line}", file=sys.stderr)
    if len(report.verdicts) > 10:
        print(f"  ... {len(report.verdicts) - 10} more verdict(s) in {report.markdown_path.name}", file=sys.stderr)
    print(f"Wrote {report.markdown_path}, {report.json_path} and {len(report.plot_paths)} plot(s) to {Path(args.out)}.",
          file=sys.stderr)
    if args.target_fnmr is not None or args.discard is not None:
        return _goal(args, report)
    return 0


def _run_eval(args: argparse.Namespace, data, impostors: float, data_name: str | None):
    progress, close = _tqdm_progress(args.quiet, "eval")
    try:
        return run_eval(
            data, args.backbone or [""], args.matcher, args.out, weights=args.weights, device=args.device,
            random_init=args.random_init, num_heads=args.num_heads, options=_score_options(args),
            precision=args.precision, matcher_weights=args.matcher_weights, matcher_random_init=args.matcher_random_init,
            allow_same_matcher=args.allow_same_matcher, fmrs=args.fmr, threshold_modes=_parse_modes(args.threshold_mode),
            discard_step=args.discard_step, pauc_limit=args.pauc_limit, seed=args.seed,
            impostors_per_genuine=impostors, random_repeats=args.random_repeats, data_name=data_name,
            cache_dir=args.cache_dir, use_cache=not args.no_cache, batch_size=args.batch_size, progress=progress)
    finally:
        close()


def cmd_sweep(args: argparse.Namespace) -> int:
    _apply_threads(args)
    progress, close = _tqdm_progress(args.quiet, "sweep")
    try:
        report = run_sweep(
            args.faces, args.backbone or [""], args.out, matcher=args.matcher, strengths=args.strengths,
            degradations=args.degradations, seed=args.seed, failure_threshold=args.failure_threshold,
            weights=args.weights, device=args.device, random_init=args.random_init, num_heads=args.num_heads,
            options=_score_options(args), precision=args.precision, matcher_weights=args.matcher_weights,
            matcher_random_init=args.matcher_random_init, allow_same_matcher=args.allow_same_matcher,
            batch_size=args.batch_size, progress=progress)
    finally:
        close()
    print(f"Swept {report.summary['faces']} face(s) x {len(report.summary['degradations'])} degradations x "
          f"{len(report.summary['strengths'])} strengths; {len(report.failed_files)} file(s) skipped.", file=sys.stderr)
    _print_failures(report.failed_files)
    for line in report.summary["warnings"]:
        print(f"  {line}", file=sys.stderr)
    print(f"Wrote {report.markdown_path}, {report.json_path}, {report.csv_path} and {len(report.plot_paths)} plot(s).",
          file=sys.stderr)
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    from attn_core.cli.options import add_backbone_arguments, add_score_options

    add_backbone_arguments(parser, compile_option=False)
    add_score_options(parser)
    # Several quality models per run: --backbone and --weights repeat (same order); this replaces the shared
    # single-valued options (the parser is created with conflict_handler="resolve").
    parser.add_argument("--backbone", action="append", default=[],
                        help="quality backbone (registry or timm name); repeat for several curves (default: the default backbone)")
    parser.add_argument("--weights", action="append", default=[],
                        help="checkpoint for the --backbone in the same position; repeat once per --backbone")
    parser.add_argument("--matcher", default="sface",
                        help="independent recogniser: sface (default, OpenCV Zoo) or a backbone name (its embedding head)")
    parser.add_argument("--matcher-weights", help="checkpoint for a backbone --matcher")
    parser.add_argument("--matcher-random-init", action="store_true", help="random weights for a backbone --matcher (tests)")
    parser.add_argument("--allow-same-matcher", action="store_true",
                        help="run even when the matcher is a quality model itself (flagged loudly in the report)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_eval_parsers(subparsers) -> None:
    """Contribute ``eval`` and ``sweep`` to ``attn-fiqa`` (called by :func:`attn_core.cli.main.build_parser`)."""
    evaluate = subparsers.add_parser(
        "eval", conflict_handler="resolve",
        help="EDC of quality backbones vs baselines on verification pairs (plots, JSON, Markdown)",
        description="Error-versus-Discard evaluation (docs/DESIGN.md 4). DATA is a folder with one sub-folder per identity "
                    "(all genuine pairs + seeded impostors), or use --pairs CSV (path_a,path_b,same_identity).")
    evaluate.add_argument("data", nargs="?", help="folder with one sub-folder per identity")
    evaluate.add_argument("--pairs", help="pairs CSV instead of DATA (header path_a,path_b,same_identity)")
    evaluate.add_argument("--demo", action="store_true",
                          help="evaluate the bundled demo set instead of DATA: 102 people of the Face Research Lab London "
                               "Set (CC BY 4.0) x 2 photos, one of each pair degraded (real identities, synthetic "
                               "degradations); 100 impostors per genuine pair unless --impostors-per-genuine")
    _add_common(evaluate)
    evaluate.add_argument("--fmr", type=float, nargs="+", default=list(DEFAULT_FMRS), help="target FMRs (default 1e-3 1e-4)")
    evaluate.add_argument("--threshold-mode", nargs="+", default=["both"],
                          choices=["both", "per_fraction", "per-fraction", "fixed"],
                          help="per_fraction (re-set at every discard fraction, the papers), fixed (ISO style) or both")
    evaluate.add_argument("--discard-step", type=float, default=0.05, help="discard grid step (r = 0 .. 0.95)")
    evaluate.add_argument("--pauc-limit", type=float, default=0.3, help="pAUC up to this discard fraction")
    evaluate.add_argument("--impostors-per-genuine", type=float, default=None,
                          help="seeded impostor pairs per genuine pair, for identity folders (default 10; 100 with --demo)")
    evaluate.add_argument("--random-repeats", type=int, default=10, help="seeded repeats of the random-discard baseline")
    evaluate.add_argument("--cache-dir", help="embedding/score cache (default ~/.cache/attn_fiqa/eval)")
    evaluate.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    evaluate.add_argument("--batch-size", type=int, default=32)
    goal = evaluate.add_argument_group("a score threshold from this curve (what value is good?)")
    goals = goal.add_mutually_exclusive_group()
    goals.add_argument("--target-fnmr", type=_fraction, metavar="X",
                       help="the threshold that keeps FNMR at or below X (0.02 or 2%%) at each --fmr, discarding least")
    goals.add_argument("--discard", type=_fraction, metavar="Y",
                       help="the threshold that discards (at most) a fraction Y of the pairs (0.1 or 10%%)")
    goal.add_argument("--save-threshold-to", metavar="NAME",
                      help="save the threshold (at the first --fmr) into the reference NAME (same backbone and settings)")
    evaluate.set_defaults(func=cmd_eval)

    sweep = subparsers.add_parser(
        "sweep", conflict_handler="resolve",
        help="degrade faces at graded strengths; correlate scores with strength and recognition utility",
        description="Apply every degradation at graded strengths to each face, score the crops, and measure how the "
                    "score tracks strength and recognition utility (matcher cosine to the clean crop).")
    sweep.add_argument("faces", nargs="+", help="image files and/or folders (searched recursively)")
    _add_common(sweep)
    sweep.add_argument("--strengths", type=_parse_strengths, default=list(DEFAULT_STRENGTHS),
                       help="comma-separated strengths in [0, 1] (default 0,0.2,0.4,0.6,0.8,1)")
    sweep.add_argument("--degradations", nargs="+", help="subset of degradations (default: all)")
    sweep.add_argument("--failure-threshold", type=float,
                       help="utility (cosine) below which recognition fails (default: the matcher's threshold)")
    sweep.add_argument("--batch-size", type=int, default=64)
    sweep.set_defaults(func=cmd_sweep)
