"""Error-versus-Discard evaluation (docs/DESIGN.md 4): one or more quality backbones on verification pairs judged
by an independent matcher, next to baselines (random discard, sharpness, brightness, face size).

:func:`run_eval` measures and computes; :func:`attn_core.eval.reports.write_eval_report` writes the plots, JSON,
Markdown and per-file CSV that the CLI prints and the app renders. ``progress(fraction, message)`` reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from attn_core.eval.cache import EvalCache
from attn_core.eval.edc import (
    EDCCurve,
    ThresholdMode,
    angular_distance,
    edc,
    fmr_resolution_note,
    format_fmr,
    pair_quality,
    random_baseline,
    undefined_reason,
)
from attn_core.eval.matcher import cosine
from attn_core.eval.measure import (
    BASELINES,
    RANDOM,
    MeasureCounts,
    ProgressFn,
    finite,
    load_quality_methods,
    measure_files,
    RANDOM_WEIGHTS_NOTE,
    is_random,
    not_face_trained,
    random_weights_warnings,
    report_progress,
    resolve_matcher,
    same_model_warnings,
)
from attn_core.eval.pairs import Pair, load_pairs
from attn_core.eval.reports import MODE_WORDS, path_namer, write_eval_report
from attn_core.eval.threshold import EvalPairs
from attn_core.scoring.model import FaceQualityModel, ScoreOptions
from attn_core.scoring.reference import model_settings

THRESHOLD_MODES: tuple[ThresholdMode, ...] = ("per_fraction", "fixed")
DEFAULT_FMRS = (1e-3, 1e-4)
DEFAULT_STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class EvalReport:
    """Everything ``attn-fiqa eval`` wrote and computed; ``summary`` is the JSON written to ``json_path``."""

    curves: list[EDCCurve]
    markdown: str
    markdown_path: Path
    json_path: Path
    plot_paths: list[Path]
    failed_files: list[tuple[Path, str]]
    n_pairs: int
    n_pairs_used: int
    verdicts: list[str]
    warnings: list[str]
    summary: dict[str, Any]
    embeddings_computed: int = 0
    scores_computed: int = 0
    pairs: EvalPairs | None = None  # the pairs behind the curves: a goal becomes a threshold (eval.threshold)



def discard_grid(step: float = 0.05, max_discard: float = 0.95) -> np.ndarray:
    """r = 0, step, 2 step, ... up to ``max_discard``."""
    if not 0 < step < 1:
        raise ValueError(f"--discard-step must be in (0, 1), got {step}")
    return np.round(np.arange(0.0, max_discard + 1e-9, step), 10)


def run_eval(
    data: str | Path | Sequence[Pair],
    backbones: Sequence[str | FaceQualityModel],
    matcher: str = "sface",
    out_dir: str | Path = "eval_out",
    *,
    weights: Sequence[str | None] | None = None,
    device: str | None = None,
    random_init: bool = False,
    num_heads: int | None = None,
    options: ScoreOptions = ScoreOptions(),
    precision: str = "fp32",
    matcher_weights: str | None = None,
    matcher_random_init: bool = False,
    allow_same_matcher: bool = False,
    fmrs: Sequence[float] = DEFAULT_FMRS,
    threshold_modes: Sequence[ThresholdMode] = THRESHOLD_MODES,
    discard_step: float = 0.05,
    pauc_limit: float = 0.3,
    seed: int = 0,
    impostors_per_genuine: float = 10.0,
    random_repeats: int = 10,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
    data_name: str | None = None,
    file_names: dict[Path, str] | None = None,
) -> EvalReport:
    """EDC evaluation of quality backbones against baselines; writes PNGs, ``eval.json`` and ``eval.md`` to ``out_dir``.

    Args:
        data: identity folder (``root/<identity>/<image>``), pairs CSV, or a list of (path_a, path_b, genuine).
        backbones: quality models (names or built models); each is one curve.
        matcher: the independent recogniser: ``sface`` (default) or a backbone name (its embedding head).
        data_name: how the reports name the data (e.g. the name of an uploaded archive); files are then named by
            ``file_names[path]`` (the names the user knows), else by their path inside the data folder, never by
            where they lie on this machine; nor do the reports name the cache folder or a checkpoint's folder.
    """
    timings: dict[str, float] = {}
    began = time.perf_counter()
    for mode in threshold_modes:
        if mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold mode must be one of {', '.join(THRESHOLD_MODES)}, got {mode!r}")
    if not fmrs:
        raise ValueError("give at least one FMR")
    grid = discard_grid(discard_step)
    pairs, source = load_pairs(data, seed=seed, impostors_per_genuine=impostors_per_genuine)
    name = path_namer(data, data_name, file_names or {})
    if data_name is not None:
        source = data_name

    methods = load_quality_methods(backbones, weights=weights, device=device, random_init=random_init,
                                   num_heads=num_heads, options=options, precision=precision)
    judge = resolve_matcher(matcher, weights=matcher_weights, device=device, random_init=matcher_random_init)
    # An invalid evaluation (the matcher judging itself) first, then random weights, as loudly as the app.
    warnings = (same_model_warnings(judge, methods, allow_same_matcher) + random_weights_warnings(methods)
                + not_face_trained(methods))
    cache = EvalCache(cache_dir, enabled=use_cache)
    timings["load_s"] = time.perf_counter() - began
    report_progress(progress, 0.0, f"{len(pairs)} pairs")

    stage = time.perf_counter()
    files = sorted({p for a, b, _ in pairs for p in (a, b)})
    counts = MeasureCounts()
    records = measure_files(files, judge, methods, cache, batch_size, counts, progress, (0.02, 0.9))
    timings["measure_s"] = time.perf_counter() - stage

    failed = [(path, records[path].error or "") for path in files if records[path].error is not None]
    bad = {path for path, _ in failed}
    used = [(a, b, g) for a, b, g in pairs if a not in bad and b not in bad]
    genuine = np.array([g for _, _, g in used], dtype=bool)
    n_dropped = len(pairs) - len(used)
    if not genuine.any() or genuine.all():
        raise ValueError(
            f"after dropping {len(failed)} unusable file(s) and their {n_dropped} pair(s), {len(used)} pair(s) remain "
            f"with {int(genuine.sum())} genuine and {int((~genuine).sum())} impostor: EDC needs both"
            + (f" (first problem: {failed[0][0]}: {failed[0][1]})" if failed else ""))

    stage = time.perf_counter()
    report_progress(progress, 0.9, "computing curves")
    emb_a = np.stack([records[a].embedding for a, _, _ in used])
    emb_b = np.stack([records[b].embedding for _, b, _ in used])
    distance = angular_distance(cosine(emb_a, emb_b))
    labels = [m.label for m in methods] + [label for label, _ in BASELINES]
    pair_q = {label: pair_quality(np.array([records[a].quality[label] for a, _, _ in used]),
                                  np.array([records[b].quality[label] for _, b, _ in used])) for label in labels}
    # A measure that gives every pair the same quality cannot order them (discarding would follow the pair list's
    # order, genuine pairs first): it gets no curve, and the report says why.
    curve_labels = [label for label in labels if np.ptp(pair_q[label]) > 0]
    for label in [label for label in labels if label not in curve_labels]:
        why = (" (pre-aligned crops have no detector box: each counts as the whole crop)"
               if label == {name: text for text, name in BASELINES}["face_area"] else "")
        warnings.append(f"{label} gives every pair the same quality on this data{why}, so it cannot order pairs: no curve")
    n_impostor = int((~genuine).sum())
    fmr_notes = {fmr: fmr_resolution_note(n_impostor, fmr) for fmr in fmrs}
    warnings.extend(note for note in fmr_notes.values() if note)

    curves: list[EDCCurve] = []
    verdicts: list[str] = []
    beats: dict[tuple[str, float, str], bool | None] = {}
    plot_groups: list[tuple[str, list[EDCCurve]]] = []  # (file name, curves of one plot)
    plot_notes: dict[str, list[str]] = {}  # file name -> why its FMR is not resolved
    for fmr in fmrs:
        for mode in threshold_modes:
            group = [edc(genuine, distance, pair_q[label], fmr=fmr, threshold_mode=mode, discard=grid,
                         pauc_limit=pauc_limit, method=label) for label in curve_labels]
            chance = random_baseline(genuine, distance, fmr=fmr, threshold_mode=mode, discard=grid,
                                     pauc_limit=pauc_limit, n_repeats=random_repeats, seed=seed)
            for curve in group:
                if math.isnan(curve.pauc) or math.isnan(chance.pauc):
                    beats[(curve.method, fmr, mode)] = None
                    reason = undefined_reason(curve) or undefined_reason(chance) or "too few pairs retained"
                    verdicts.append(f"{curve.method}: undetermined against random discard at FMR {format_fmr(fmr)} "
                                    f"({MODE_WORDS[mode]}): pAUC is undefined ({reason})")
                else:
                    beats[(curve.method, fmr, mode)] = bool(curve.pauc < chance.pauc)
                    if curve.pauc >= chance.pauc:
                        verdicts.append(
                            f"{curve.method} does not beat random discard at FMR {format_fmr(fmr)} ({MODE_WORDS[mode]}): "
                            f"pAUC\u00d710\u00b3 {1000 * curve.pauc:.2f} vs random {1000 * chance.pauc:.2f}"
                            + (" (equal)" if curve.pauc == chance.pauc else ""))
            group.append(chance)
            curves.extend(group)
            plot_groups.append((f"edc_fmr{format_fmr(fmr)}_{mode}.png", group))
            if fmr_notes[fmr]:
                plot_notes[plot_groups[-1][0]] = [fmr_notes[fmr]]
    timings["curves_s"] = time.perf_counter() - stage
    timings["total_s"] = time.perf_counter() - began

    summary: dict[str, Any] = {
        "data": source,
        "matcher": {"name": judge.name, "independent": not any("WARNING" in w for w in warnings),
                    "distance": "arccos(cosine)/pi"},
        "quality_models": [{
            "label": m.label, "backbone": m.model.spec.name,
            "weights": str(m.model.backbone.weights) if data_name is None else m.model.backbone.weights_name,
            "weights_sha256": m.model.backbone.weights_sha256, "precision": m.model.precision,
            "face_trained": m.model.spec.face_trained, "block": m.model.backbone.block_index(m.options.block),
            "heads": list(m.options.heads) if m.options.heads else "all", "aggregation": m.options.aggregation,
            "tokens": m.options.tokens} for m in methods],
        "baselines": [label for label, _ in BASELINES] + [f"{RANDOM} (uniform pair quality, mean of {random_repeats} seeded repeats)"],
        "protocol": {"pair_quality": "min of the two image qualities", "discard": grid.tolist(),
                     "pauc_limit": pauc_limit, "fmrs": list(fmrs), "threshold_modes": list(threshold_modes),
                     "per_fraction": "threshold re-set on retained impostors at every r; trapezoid AUC (the method's papers)",
                     "fixed": "threshold set once at r=0; stepwise AUC (ISO/IEC 29794-1 style)", "seed": seed},
        "pairs": {"total": len(pairs), "used": len(used), "dropped": n_dropped, "genuine": int(genuine.sum()),
                  "impostor": n_impostor},
        "failed_files": [{"path": name(path),
                          "reason": reason if data_name is None else reason.replace(str(path), name(path))}
                         for path, reason in failed],
        "curves": [{
            "method": c.method, "kind": "random" if c.method == RANDOM else
            ("baseline" if c.method in dict(BASELINES) else "quality model"),
            "fmr": c.fmr, "threshold_mode": c.threshold_mode, "auc": finite(c.auc), "pauc": finite(c.pauc),
            "pauc_x1000": finite(1000 * c.pauc), "pauc_limit": c.pauc_limit,
            "beats_random": None if c.method == RANDOM else beats[(c.method, c.fmr, c.threshold_mode)],
            "discard": c.discard.tolist(), "fnmr": [finite(v) for v in c.fnmr],
            "achieved_fmr": [finite(v) for v in c.achieved_fmr], "thresholds": [finite(v) for v in c.thresholds],
        } for c in curves],
        "verdicts": verdicts,
        "warnings": warnings,
        "plots": [file_name for file_name, _ in plot_groups],
        "cache": {"dir": str(cache.root) if data_name is None else "(the evaluation cache)", "enabled": cache.enabled,
                  "hits": cache.stats.hits,
                  "misses": cache.stats.misses, "corrupt_recomputed": cache.stats.corrupt,
                  "write_errors": cache.stats.write_errors, "embeddings_computed": counts.embedded,
                  "scores_computed": counts.scored, "images_aligned": counts.aligned},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    random_note = f"{RANDOM_WEIGHTS_NOTE}\n" if any(map(is_random, methods)) else ""
    written = write_eval_report(out_dir, summary, curves, plot_groups, f"{random_note}EDC, matcher {judge.name}, {len(used)} pairs",
                                fmrs, threshold_modes, files, records, labels, name, plot_notes)
    report_progress(progress, 1.0, "done")
    usable = [path for path in files if path not in bad]
    kept = EvalPairs(genuine, distance, pair_q,
                     {label: {name(path): records[path].quality[label] for path in usable} for label in labels},
                     {m.label: model_settings(m.model, m.options) for m in methods}, source, judge.name)
    return EvalReport(curves, *written, failed, len(pairs), len(used),
                      verdicts, warnings, summary, counts.embedded, counts.scored, kept)


