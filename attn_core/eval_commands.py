"""``attn-fiqa eval`` and ``attn-fiqa sweep``: does the score predict recognition errors?

- :func:`run_eval`: Error-versus-Discard curves (docs/DESIGN.md 4) of one or more quality backbones on verification
  pairs judged by an independent matcher, next to baselines (random discard, sharpness, brightness, face size),
  with plots, a JSON and a Markdown report. Per-file embeddings, scores and measures are cached on disk
  (:mod:`attn_core.cache`), so a second run only redoes the curves.
- :func:`run_sweep`: every degradation at graded strengths on each face; rank correlations of the score with
  strength and with recognition utility (matcher cosine of degraded vs clean crop), and how well a low score
  flags recognition failures.

Both are pure functions used by the CLI and by the app's Evaluate tab; ``progress(fraction, message)`` reports.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from attn_core.api import FaceQualityModel, ScoreOptions, expand_paths
from attn_core.cache import EvalCache, file_digest, identity_key, matcher_key, score_key
from attn_core.evaluation import (
    EDCCurve,
    ThresholdMode,
    angular_distance,
    brightness,
    edc,
    edc_table_markdown,
    format_fmr,
    make_pairs_from_folders,
    pair_quality,
    plot_edc,
    random_baseline,
    read_pairs_csv,
    roc_auc,
    sharpness_laplacian,
    spearman,
)
from attn_core.faces import YUNET_FILENAME, extract_faces
from attn_core.matcher import Matcher, available_matchers, backbone_matcher, cosine, get_matcher

ProgressFn = Callable[[float, str], None]
Pair = tuple[Path, Path, bool]

THRESHOLD_MODES: tuple[ThresholdMode, ...] = ("per_fraction", "fixed")
DEFAULT_FMRS = (1e-3, 1e-4)
DEFAULT_STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
RANDOM = "random"
# Image-measure baselines: (method label, cached array name). Face size = detector box area in photo pixels; a
# pre-aligned crop has no box and counts as the whole crop, so on pre-aligned data that baseline is constant.
BASELINES = (("sharpness (Laplacian var.)", "sharpness"), ("brightness", "brightness"), ("face size (box area)", "face_area"))
_MEASURES_KEY = identity_key("measures", 1, YUNET_FILENAME)
_MODE_WORDS = {"per_fraction": "threshold re-set per fraction", "fixed": "threshold fixed at r=0"}
EXAMPLE_IDENTITIES = {
    "A": ("person_a_1.jpg", "person_a_2.jpg"),
    "B": ("person_b_1.jpg", "person_b_2.jpg"),
    "impostor_1": ("impostor_1.jpg",),
    "impostor_2": ("impostor_2.jpg",),
    "astronaut": ("astronaut.jpg",),
}


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined values (no genuine pair retained, etc.) become null."""
    return float(value) if value is not None and math.isfinite(value) else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def demo_identity_folder(tmp_dir: str | Path) -> Path:
    """Lay out the bundled example photos as ``<tmp_dir>/demo_identities/<identity>/<photo>`` and return it.

    A and B have two photos each (the genuine pairs); impostor_1, impostor_2 and astronaut are singletons. The
    photos are copied from assets/examples, so the demo needs no image files of its own.
    """
    from attn_core.specs import ASSETS_DIR

    root = Path(tmp_dir) / "demo_identities"
    for identity, names in EXAMPLE_IDENTITIES.items():
        folder = root / identity
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            target = folder / name
            if not target.is_file():
                shutil.copyfile(ASSETS_DIR / "examples" / name, target)
    return root


# ---------------------------------------------------------------------------------------------- models, matcher


@dataclass(frozen=True)
class QualityMethod:
    """A quality backbone taking part in an evaluation, with the label its curve and columns carry."""

    label: str
    model: FaceQualityModel
    options: ScoreOptions


def _options_suffix(options: ScoreOptions) -> str:
    parts = []
    if options.block != -1:
        parts.append(f"block {options.block}")
    if options.heads:
        parts.append("heads " + ",".join(map(str, options.heads)))
    if options.aggregation != "mean":
        parts.append(options.aggregation)
    if options.tokens != "all":
        parts.append(f"{options.tokens} tokens")
    return f" [{', '.join(parts)}]" if parts else ""


def load_quality_methods(
    backbones: Sequence[str | FaceQualityModel],
    *,
    weights: Sequence[str | None] | None = None,
    device: str | None = None,
    random_init: bool = False,
    num_heads: int | None = None,
    options: ScoreOptions = ScoreOptions(),
    precision: str = "fp32",
) -> list[QualityMethod]:
    """Build every quality backbone first, so a missing checkpoint fails before any work (one clear error).

    ``weights`` is empty, or one entry per backbone in the same order (None = that backbone's default weights).
    """
    backbones = list(backbones) or [""]
    weights = list(weights or [])
    if weights and len(weights) != len(backbones):
        raise ValueError(f"give --weights once per --backbone, in the same order ({len(backbones)} backbone(s), "
                         f"{len(weights)} weights)")
    methods: list[QualityMethod] = []
    for index, backbone in enumerate(backbones):
        model = backbone if isinstance(backbone, FaceQualityModel) else FaceQualityModel(
            backbone, weights=weights[index] if weights else None, device=device, random_init=random_init,
            num_heads=num_heads, precision=precision)
        model.backbone.block_index(options.block)  # a bad --block fails here, not mid-run
        methods.append(QualityMethod(model.spec.name + _options_suffix(options), model, options))
    labels = [m.label for m in methods]
    for index, method in enumerate(methods):
        if labels.count(method.label) > 1:  # same architecture, other checkpoints: name them by file
            weights_name = Path(str(method.model.backbone.weights)).name or str(index)
            methods[index] = QualityMethod(f"{method.label} @ {weights_name}", method.model, method.options)
    if len({m.label for m in methods}) != len(methods):
        raise ValueError(f"the same backbone and weights were given twice: {', '.join(labels)}")
    return methods


def resolve_matcher(name: str = "sface", *, weights: str | None = None, device: str | None = None,
                    random_init: bool = False, num_heads: int | None = None) -> Matcher:
    """A registered matcher (``sface``) or, for a backbone name, that backbone's embedding head."""
    if name in available_matchers() and weights is None and not random_init:
        return get_matcher(name)
    from attn_core.registry import get_spec

    try:
        get_spec(name)
    except KeyError:
        raise ValueError(f"unknown matcher {name!r}: neither a registered matcher ({', '.join(available_matchers())}) "
                         f"nor a backbone name (see `attn-fiqa backbones`)") from None
    return backbone_matcher(name, weights=weights, device=device, random_init=random_init, num_heads=num_heads)


def _same_model_warnings(matcher: Matcher, methods: Sequence[QualityMethod], allow: bool) -> list[str]:
    """DESIGN 4: the matcher must not be the quality model. Refuse, or with ``allow`` warn loudly."""
    backbone = getattr(matcher, "backbone", None)
    if backbone is None:
        return []
    from attn_core.cache import backbone_identity

    same = [m.label for m in methods if backbone_identity(m.model.backbone) == backbone_identity(backbone)]
    if not same:
        return []
    message = (f"WARNING: the matcher ({matcher.name}) is the quality model itself ({', '.join(same)}): the "
               f"protocol needs an independent recogniser, and a model judging its own embeddings flatters itself")
    if not allow:
        raise ValueError(message.removeprefix("WARNING: ") + "; use another --matcher (default sface), or pass "
                         "--allow-same-matcher to run anyway with this warning in the report")
    return [message]


def _not_face_trained(methods: Sequence[QualityMethod]) -> list[str]:
    return [f"{m.label} is not trained for face recognition: its score is not a face-quality measure"
            for m in methods if not m.model.spec.face_trained]


# ---------------------------------------------------------------------------------------- per-file measurements


@dataclass
class FileMeasures:
    """What one image contributes: the matcher embedding and one quality value per method, or why it cannot."""

    path: Path
    digest: str = ""
    embedding: np.ndarray | None = None
    quality: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class _Counts:
    embedded: int = 0  # matcher embeddings computed (not from the cache)
    scored: int = 0  # quality-score computations (faces x backbones)
    aligned: int = 0  # images decoded and aligned


def _measure_files(files: Sequence[Path], matcher: Matcher, methods: Sequence[QualityMethod], cache: EvalCache,
                   batch_size: int, counts: _Counts, progress: ProgressFn | None, span: tuple[float, float]
                   ) -> dict[Path, FileMeasures]:
    """Embedding, quality scores and image measures of each file, from the cache where present."""
    embed_key = matcher_key(matcher)
    method_keys = {m.label: score_key(m.model.backbone, m.options, m.model.precision) for m in methods}
    records: dict[Path, FileMeasures] = {}
    start, stop = span
    for chunk_start in range(0, len(files), batch_size):
        chunk = files[chunk_start : chunk_start + batch_size]
        pending: list[FileMeasures] = []
        for path in chunk:
            record = records.setdefault(path, FileMeasures(path))
            try:
                record.digest = file_digest(path)
            except OSError as error:
                record.error = f"cannot read the file: {error.strerror or error}"
                continue
            stored = cache.get("embedding", embed_key, record.digest, ("embedding",))
            if stored is not None and stored["embedding"].ndim == 1:
                record.embedding = stored["embedding"].astype(np.float32)
            for label, key in method_keys.items():
                stored = cache.get("score", key, record.digest, ("score",))
                if stored is not None and stored["score"].shape == ():
                    record.quality[label] = float(stored["score"])
            stored = cache.get("measures", _MEASURES_KEY, record.digest, tuple(name for _, name in BASELINES))
            if stored is not None:
                record.quality.update({label: float(stored[name]) for label, name in BASELINES})
            if record.embedding is None or len(record.quality) < len(method_keys) + len(BASELINES):
                pending.append(record)
        faces = {}
        for record in pending:
            try:
                faces[record.path] = extract_faces(record.path)[0]  # the largest face, as `attn-fiqa score`
                counts.aligned += 1
            except ValueError as error:  # unreadable image, no face: reported, the file's pairs are dropped
                record.error = str(error)
            except Exception as error:  # never let one file stop the run
                record.error = f"{type(error).__name__}: {error}"
        ready = [r for r in pending if r.error is None]
        need_embedding = [r for r in ready if r.embedding is None]
        if need_embedding:
            embeddings = matcher.embed([faces[r.path].aligned for r in need_embedding])
            counts.embedded += len(need_embedding)
            for record, embedding in zip(need_embedding, embeddings):
                record.embedding = np.asarray(embedding, dtype=np.float32)
                cache.put("embedding", embed_key, record.digest, embedding=record.embedding)
        for method in methods:
            need_score = [r for r in ready if method.label not in r.quality]
            if not need_score:
                continue
            results = method.model.score_faces(np.stack([faces[r.path].aligned for r in need_score]), method.options)
            counts.scored += len(need_score)
            for record, result in zip(need_score, results):
                record.quality[method.label] = result.score
                cache.put("score", method_keys[method.label], record.digest, score=np.float64(result.score))
        for record in ready:
            if BASELINES[0][0] in record.quality:
                continue
            face = faces[record.path]
            box_area = face.box[2] * face.box[3] if face.box is not None else float(face.aligned.shape[0] * face.aligned.shape[1])
            values = {"sharpness": sharpness_laplacian(face.aligned), "brightness": brightness(face.aligned),
                      "face_area": float(box_area)}
            record.quality.update({label: values[name] for label, name in BASELINES})
            cache.put("measures", _MEASURES_KEY, record.digest, **{k: np.float64(v) for k, v in values.items()})
        done = min(chunk_start + batch_size, len(files))
        _report(progress, start + (stop - start) * done / max(len(files), 1), f"measured {done}/{len(files)} images")
    return records


# ------------------------------------------------------------------------------------------------------ eval


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


def load_pairs(data: str | Path | Sequence[Pair], *, seed: int = 0, impostors_per_genuine: float = 10.0
               ) -> tuple[list[Pair], str]:
    """Pairs from an identity folder, a pairs CSV (any file) or a list; plus a description of the source."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_file():  # not a folder: a pairs CSV
            # Missing files are not fatal here: they are reported with the unreadable ones and their pairs dropped.
            return read_pairs_csv(path, check_exists=False), f"pairs CSV {path}"
        pairs = make_pairs_from_folders(path, seed=seed, impostors_per_genuine=impostors_per_genuine)
        return pairs, f"identity folders under {path} (all genuine pairs, {impostors_per_genuine:g} seeded impostors per genuine, seed {seed})"
    pairs = [(Path(a), Path(b), bool(g)) for a, b, g in data]
    if not pairs:
        raise ValueError("no pairs given")
    return pairs, f"{len(pairs)} pairs given by the caller"


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
            where they lie on this machine.
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
    name = _path_namer(data, data_name, file_names or {})
    if data_name is not None:
        source = data_name

    methods = load_quality_methods(backbones, weights=weights, device=device, random_init=random_init,
                                   num_heads=num_heads, options=options, precision=precision)
    judge = resolve_matcher(matcher, weights=matcher_weights, device=device, random_init=matcher_random_init)
    warnings = _same_model_warnings(judge, methods, allow_same_matcher) + _not_face_trained(methods)
    cache = EvalCache(cache_dir, enabled=use_cache)
    timings["load_s"] = time.perf_counter() - began
    _report(progress, 0.0, f"{len(pairs)} pairs")

    stage = time.perf_counter()
    files = sorted({p for a, b, _ in pairs for p in (a, b)})
    counts = _Counts()
    records = _measure_files(files, judge, methods, cache, batch_size, counts, progress, (0.02, 0.9))
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
    _report(progress, 0.9, "computing curves")
    emb_a = np.stack([records[a].embedding for a, _, _ in used])
    emb_b = np.stack([records[b].embedding for _, b, _ in used])
    distance = angular_distance(cosine(emb_a, emb_b))
    labels = [m.label for m in methods] + [label for label, _ in BASELINES]
    pair_q = {label: pair_quality(np.array([records[a].quality[label] for a, _, _ in used]),
                                  np.array([records[b].quality[label] for _, b, _ in used])) for label in labels}
    n_impostor = int((~genuine).sum())
    for fmr in fmrs:
        if n_impostor * fmr < 1:
            warnings.append(f"only {n_impostor} impostor pairs: FMR {format_fmr(fmr)} is not resolved (needs at least "
                            f"{math.ceil(1 / fmr)}); the threshold there accepts no impostor")

    curves: list[EDCCurve] = []
    verdicts: list[str] = []
    beats: dict[tuple[str, float, str], bool | None] = {}
    plot_paths: list[Path] = []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmr in fmrs:
        for mode in threshold_modes:
            group = [edc(genuine, distance, pair_q[label], fmr=fmr, threshold_mode=mode, discard=grid,
                         pauc_limit=pauc_limit, method=label) for label in labels]
            chance = random_baseline(genuine, distance, fmr=fmr, threshold_mode=mode, discard=grid,
                                     pauc_limit=pauc_limit, n_repeats=random_repeats, seed=seed)
            for curve in group:
                if math.isnan(curve.pauc) or math.isnan(chance.pauc):
                    beats[(curve.method, fmr, mode)] = None
                    verdicts.append(f"{curve.method}: undetermined against random discard at FMR {format_fmr(fmr)} "
                                    f"({_MODE_WORDS[mode]}): pAUC is undefined (too few genuine or impostor pairs retained)")
                else:
                    beats[(curve.method, fmr, mode)] = bool(curve.pauc < chance.pauc)
                    if curve.pauc >= chance.pauc:
                        verdicts.append(
                            f"{curve.method} does not beat random discard at FMR {format_fmr(fmr)} ({_MODE_WORDS[mode]}): "
                            f"pAUC\u00d710\u00b3 {1000 * curve.pauc:.2f} vs random {1000 * chance.pauc:.2f}"
                            + (" (equal)" if curve.pauc == chance.pauc else ""))
            group.append(chance)
            curves.extend(group)
            path = out_dir / f"edc_fmr{format_fmr(fmr)}_{mode}.png"
            plot_edc(group, path, f"EDC, matcher {judge.name}, {len(used)} pairs")
            plot_paths.append(path)
    timings["curves_s"] = time.perf_counter() - stage
    timings["total_s"] = time.perf_counter() - began

    summary: dict[str, Any] = {
        "data": source,
        "matcher": {"name": judge.name, "independent": not any("WARNING" in w for w in warnings),
                    "distance": "arccos(cosine)/pi"},
        "quality_models": [{
            "label": m.label, "backbone": m.model.spec.name, "weights": str(m.model.backbone.weights),
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
        "failed_files": [{"path": name(path), "reason": reason} for path, reason in failed],
        "curves": [{
            "method": c.method, "kind": "random" if c.method == RANDOM else
            ("baseline" if c.method in dict(BASELINES) else "quality model"),
            "fmr": c.fmr, "threshold_mode": c.threshold_mode, "auc": _finite(c.auc), "pauc": _finite(c.pauc),
            "pauc_x1000": _finite(1000 * c.pauc), "pauc_limit": c.pauc_limit,
            "beats_random": None if c.method == RANDOM else beats[(c.method, c.fmr, c.threshold_mode)],
            "discard": c.discard.tolist(), "fnmr": [_finite(v) for v in c.fnmr],
            "achieved_fmr": [_finite(v) for v in c.achieved_fmr], "thresholds": [_finite(v) for v in c.thresholds],
        } for c in curves],
        "verdicts": verdicts,
        "warnings": warnings,
        "plots": [p.name for p in plot_paths],
        "cache": {"dir": str(cache.root), "enabled": cache.enabled, "hits": cache.stats.hits,
                  "misses": cache.stats.misses, "corrupt_recomputed": cache.stats.corrupt,
                  "write_errors": cache.stats.write_errors, "embeddings_computed": counts.embedded,
                  "scores_computed": counts.scored, "images_aligned": counts.aligned},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    markdown = _eval_markdown(summary, curves, plot_paths, fmrs, threshold_modes)
    json_path, markdown_path = out_dir / "eval.json", out_dir / "eval.md"
    json_path.write_text(json.dumps(summary, indent=1))
    markdown_path.write_text(markdown)
    _write_file_scores(out_dir / "eval_files.csv", files, records, labels, name)
    _report(progress, 1.0, "done")
    return EvalReport(curves, markdown, markdown_path, json_path, plot_paths, failed, len(pairs), len(used),
                      verdicts, warnings, summary, counts.embedded, counts.scored)


def _eval_markdown(summary: dict, curves: list[EDCCurve], plots: list[Path], fmrs: Sequence[float],
                   modes: Sequence[str]) -> str:
    pairs = summary["pairs"]
    lines = ["# ATTN-FIQA evaluation: Error-versus-Discard Characteristic", ""]
    lines += [f"- Data: {summary['data']}",
              f"- Pairs: {pairs['used']} used ({pairs['genuine']} genuine, {pairs['impostor']} impostor) of "
              f"{pairs['total']}; {pairs['dropped']} dropped because {len(summary['failed_files'])} file(s) could "
              f"not be used",
              f"- Matcher: {summary['matcher']['name']} (distance arccos(cosine)/\u03c0)",
              "- Quality models: " + "; ".join(f"{m['label']} (weights {m['weights']}, block {m['block']}, heads "
                                               f"{m['heads']}, {m['aggregation']}, {m['tokens']} tokens)"
                                               for m in summary["quality_models"]),
              "- Baselines: " + ", ".join(summary["baselines"]),
              f"- Pair quality = min of the two; discard r = 0 \u2026 {summary['protocol']['discard'][-1]:g}; "
              f"pAUC up to r = {summary['protocol']['pauc_limit']:g} (\u00d710\u00b3 in the tables); lower is better",
              "- Threshold modes: *re-set per fraction* (the method's papers, trapezoid areas) and *fixed at r=0* "
              "(ISO/IEC 29794-1 style, stepwise areas)", ""]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in summary["warnings"]] + [""]
    plot_by_name = {p.name: p for p in plots}
    for fmr in fmrs:
        for mode in modes:
            group = [c for c in curves if c.fmr == fmr and c.threshold_mode == mode]
            lines += [f"## FMR {format_fmr(fmr)}, {_MODE_WORDS[mode]}", "", edc_table_markdown(group).rstrip(), ""]
            name = f"edc_fmr{format_fmr(fmr)}_{mode}.png"
            if name in plot_by_name:
                lines += [f"![EDC at FMR {format_fmr(fmr)}, {_MODE_WORDS[mode]}]({name})", ""]
    lines += ["## Against random discard", ""]
    lines += [f"- {v}" for v in summary["verdicts"]] or ["- Every method beats random discard at every FMR and threshold mode."]
    lines.append("")
    if summary["failed_files"]:
        lines += ["## Files not used", ""] + [f"- `{f['path']}`: {f['reason']}" for f in summary["failed_files"]] + [""]
    cache = summary["cache"]
    lines += [f"Cache {cache['dir']}: {cache['hits']} hits, {cache['embeddings_computed']} embeddings and "
              f"{cache['scores_computed']} scores computed; total {summary['timings_s']['total_s']:.1f} s.", ""]
    return "\n".join(lines)


def _path_namer(data: Any, data_name: str | None, file_names: dict[Path, str]) -> Callable[[Any], str]:
    """How reports write a file's path: as given, or (with ``data_name``) by the user's name for it or relative to
    the data folder."""
    if data_name is None or not isinstance(data, (str, os.PathLike)):
        return str
    root = Path(data) if Path(data).is_dir() else Path(data).parent

    def name(path: Any) -> str:
        if Path(path) in file_names:
            return file_names[Path(path)]
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            return str(path)

    return name


def _write_file_scores(path: Path, files: Sequence[Path], records: dict[Path, FileMeasures], labels: list[str],
                       name: Callable[[Any], str] = str) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "sha256", *labels, "error"])
        for file in files:
            record = records[file]
            writer.writerow([name(file), record.digest, *(f"{record.quality[l]:.6g}" if l in record.quality else ""
                                                          for l in labels), record.error or ""])


# ------------------------------------------------------------------------------------------------------ sweep


@dataclass
class SweepReport:
    """Everything ``attn-fiqa sweep`` wrote and computed; ``summary`` is the JSON written to ``json_path``."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    markdown: str
    markdown_path: Path
    json_path: Path
    csv_path: Path
    plot_paths: list[Path]
    failed_files: list[tuple[Path, str]]


def crop_landmarks(face) -> np.ndarray | None:
    """Detected landmarks mapped into the aligned crop (for the eye / mouth occlusions); None for pre-aligned."""
    if face.landmarks is None:
        return None
    points = np.asarray(face.landmarks, dtype=np.float64)
    return points @ face.transform[:, :2].T + face.transform[:, 2]


@dataclass
class FaceSweep:
    """One face under every degradation at every strength: what ``sweep_face`` measured.

    ``variants[i]`` is (degradation, strength) of row i; row 0 is the clean crop, ("clean", 0.0)."""

    variants: list[tuple[str, float]]
    utility: np.ndarray  # (n,) matcher cosine of each crop to the clean crop (1 for row 0)
    scores: dict[str, np.ndarray]  # quality label -> (n,) scores
    crops: np.ndarray  # (n, 112, 112, 3) the crops themselves


def sweep_face(face, methods: Sequence[QualityMethod], judge: Matcher, names: Sequence[str], levels: Sequence[float],
               seed: int, batch_size: int = 64) -> FaceSweep:
    """The one sweep step behind ``attn-fiqa sweep``, the app's Degradation explorer and the training validity log:
    degrade one aligned face (one noise field / direction / occluder position per ``seed``, shared by every strength;
    eye and mouth occlusions at the detected landmarks), score every crop with each method, and measure utility as
    the matcher's cosine to the clean crop."""
    from attn_core.degrade import degrade

    landmarks = crop_landmarks(face)
    variants = [(name, float(level)) for name in names for level in levels if level > 0]
    stack = np.stack([face.aligned] + [degrade(face.aligned, name, level, seed=seed, landmarks=landmarks)
                                       for name, level in variants])
    embeddings = np.concatenate([judge.embed(stack[i : i + batch_size]) for i in range(0, len(stack), batch_size)])
    utility = cosine(np.broadcast_to(embeddings[0], embeddings.shape), embeddings)
    scores = {m.label: np.array([r.score for r in m.model.score_faces(stack, m.options, batch_size=batch_size)])
              for m in methods}
    return FaceSweep([("clean", 0.0)] + variants, utility, scores, stack)


def run_sweep(
    faces: Sequence[str | Path],
    backbones: Sequence[str | FaceQualityModel],
    out_dir: str | Path = "sweep_out",
    *,
    matcher: str = "sface",
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    degradations: Sequence[str] | None = None,
    seed: int = 0,
    failure_threshold: float | None = None,
    weights: Sequence[str | None] | None = None,
    device: str | None = None,
    random_init: bool = False,
    num_heads: int | None = None,
    options: ScoreOptions = ScoreOptions(),
    precision: str = "fp32",
    matcher_weights: str | None = None,
    matcher_random_init: bool = False,
    allow_same_matcher: bool = False,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> SweepReport:
    """Degrade each face at graded strengths, score, and relate scores to strength and recognition utility.

    Utility of a degraded crop = matcher cosine to its clean crop. A recognition failure is utility below the
    matcher's verification threshold (``failure_threshold`` overrides; a backbone matcher has none of its own).
    Pooled statistics count each face's clean crop once; per-degradation ones include it as strength 0.
    """
    from attn_core.degrade import DEGRADATIONS

    began = time.perf_counter()
    names = list(degradations) if degradations else list(DEGRADATIONS)
    unknown = [n for n in names if n not in DEGRADATIONS]
    if unknown:
        raise ValueError(f"unknown degradation(s) {', '.join(unknown)}; valid: {', '.join(DEGRADATIONS)}")
    levels = sorted({float(s) for s in strengths})
    if not levels or levels[0] < 0 or levels[-1] > 1:
        raise ValueError(f"strengths must lie in [0, 1], got {list(strengths)}")
    files, missing = expand_paths(faces)
    if not files:
        raise ValueError("no image files found in " + ", ".join(map(str, faces)))
    methods = load_quality_methods(backbones, weights=weights, device=device, random_init=random_init,
                                   num_heads=num_heads, options=options, precision=precision)
    judge = resolve_matcher(matcher, weights=matcher_weights, device=device, random_init=matcher_random_init)
    warnings = _same_model_warnings(judge, methods, allow_same_matcher) + _not_face_trained(methods)
    threshold = failure_threshold if failure_threshold is not None else getattr(judge, "threshold", None)
    failed: list[tuple[Path, str]] = [(p, reason) for p, reason in missing]

    rows: list[dict[str, Any]] = []
    for index, path in enumerate(files):
        _report(progress, 0.9 * index / len(files), f"sweeping {path.name} ({index + 1}/{len(files)})")
        try:
            face = extract_faces(path)[0]
        except ValueError as error:
            failed.append((path, str(error)))
            continue
        except Exception as error:
            failed.append((path, f"{type(error).__name__}: {error}"))
            continue
        measured = sweep_face(face, methods, judge, names, levels, seed + index, batch_size)  # a field per face
        utility, scores = measured.utility, measured.scores
        position = {variant: i for i, variant in enumerate(measured.variants) if i > 0}
        for name in names:
            for level in levels:
                i = position.get((name, level), 0)  # strength 0 is the clean crop itself
                row = {"path": str(path), "file_index": index, "degradation": name, "strength": level,
                       "utility": float(utility[i]), "clean": i == 0,
                       "failure": None if threshold is None else bool(utility[i] < threshold)}
                row.update({f"score:{label}": float(values[i]) for label, values in scores.items()})
                rows.append(row)
    if not rows:
        raise ValueError(f"none of the {len(files)} file(s) gave a face: " + "; ".join(f"{p}: {r}" for p, r in failed[:3]))

    _report(progress, 0.92, "statistics and plots")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {m.label: _sweep_statistics(rows, m.label, names, levels) for m in methods}
    summary: dict[str, Any] = {
        "faces": len({r["file_index"] for r in rows}),
        "failed_files": [{"path": str(p), "reason": r} for p, r in failed],
        "degradations": names, "strengths": levels, "seed": seed,
        "matcher": {"name": judge.name, "failure_threshold": threshold,
                    "independent": not any("WARNING" in w for w in warnings)},
        "utility": "matcher cosine of the degraded crop to the clean crop",
        "failure": "utility below the matcher's verification threshold" if threshold is not None else
        "undefined: the matcher has no verification threshold (pass --failure-threshold)",
        "quality_models": [{"label": m.label, "backbone": m.model.spec.name, "weights": str(m.model.backbone.weights),
                            "weights_sha256": m.model.backbone.weights_sha256, "precision": m.model.precision,
                            "face_trained": m.model.spec.face_trained} for m in methods],
        "results": stats,
        "warnings": warnings,
    }
    plot_paths: list[Path] = []
    for method in methods:
        plot_paths.append(_plot_score_vs_strength(rows, method.label, names, levels,
                                                  out_dir / f"sweep_strength_{_slug(method.label)}.png"))
        plot_paths.append(_plot_score_vs_utility(rows, method.label, names, threshold,
                                                 out_dir / f"sweep_utility_{_slug(method.label)}.png"))
    summary["plots"] = [p.name for p in plot_paths]
    summary["timings_s"] = {"total_s": round(time.perf_counter() - began, 3)}
    csv_path, json_path, markdown_path = out_dir / "sweep.csv", out_dir / "sweep.json", out_dir / "sweep.md"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(summary, indent=1))
    markdown = _sweep_markdown(summary, plot_paths)
    markdown_path.write_text(markdown)
    _report(progress, 1.0, "done")
    return SweepReport(rows, summary, markdown, markdown_path, json_path, csv_path, plot_paths, failed)


def _safe(statistic: Callable[[], float]) -> float | None:
    try:
        return _finite(statistic())
    except ValueError:  # fewer than two values, or no failure / no success to separate
        return None


def _sweep_statistics(rows: list[dict], label: str, names: Sequence[str], levels: Sequence[float]) -> dict[str, Any]:
    column = f"score:{label}"
    pooled = [r for r in rows if not r["clean"] or r["degradation"] == names[0]]  # each clean crop once
    result: dict[str, Any] = {
        "spearman_score_utility_pooled": _safe(lambda: spearman([r[column] for r in pooled], [r["utility"] for r in pooled])),
        "failure_auc_pooled": None, "failures_pooled": None, "per_degradation": {},
    }
    if pooled[0]["failure"] is not None:
        flags = np.array([r["failure"] for r in pooled], dtype=bool)
        result["failures_pooled"] = int(flags.sum())
        result["failure_auc_pooled"] = _safe(lambda: roc_auc(np.array([r[column] for r in pooled]), flags))
    for name in names:
        subset = [r for r in rows if r["degradation"] == name]
        entry = {
            "spearman_score_strength": _safe(lambda: spearman([r[column] for r in subset], [r["strength"] for r in subset])),
            "spearman_score_utility": _safe(lambda: spearman([r[column] for r in subset], [r["utility"] for r in subset])),
            "mean_score_by_strength": [_finite(float(np.mean([r[column] for r in subset if r["strength"] == level])))
                                       for level in levels],
            "mean_utility_by_strength": [_finite(float(np.mean([r["utility"] for r in subset if r["strength"] == level])))
                                         for level in levels],
            "failures": None, "failure_auc": None,
        }
        if subset[0]["failure"] is not None:
            flags = np.array([r["failure"] for r in subset], dtype=bool)
            entry["failures"] = int(flags.sum())
            entry["failure_auc"] = _safe(lambda: roc_auc(np.array([r[column] for r in subset]), flags))
        result["per_degradation"][name] = entry
    return result


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)  # no pyplot: no global state, safe from the app's worker threads
    return figure


def _plot_score_vs_strength(rows: list[dict], label: str, names: Sequence[str], levels: Sequence[float], path: Path) -> Path:
    column = f"score:{label}"
    cols = min(5, len(names))
    grid_rows = math.ceil(len(names) / cols)
    figure = _figure(3.0 * cols, 2.6 * grid_rows + 0.6)
    for index, name in enumerate(names):
        axes = figure.add_subplot(grid_rows, cols, index + 1)
        per_face: dict[int, list[float]] = {}
        for row in rows:
            if row["degradation"] == name:
                per_face.setdefault(row["file_index"], []).append(row[column])
        for values in per_face.values():
            axes.plot(levels, values, color="0.75", linewidth=0.8)
        means = np.mean(np.array(list(per_face.values())), axis=0)
        axes.plot(levels, means, color="C0", marker="o", markersize=3, linewidth=2, label="mean over faces")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("strength", fontsize=8)
        axes.tick_params(labelsize=7)
        if index % cols == 0:
            axes.set_ylabel("quality score", fontsize=8)
    figure.suptitle(f"{label}: score vs degradation strength (grey: each face)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _plot_score_vs_utility(rows: list[dict], label: str, names: Sequence[str], threshold: float | None, path: Path) -> Path:
    column = f"score:{label}"
    figure = _figure(6.4, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    for index, name in enumerate(names):
        subset = [r for r in rows if r["degradation"] == name and not r["clean"]]
        axes.scatter([r["utility"] for r in subset], [r[column] for r in subset], s=10, alpha=0.7,
                     color=f"C{index % 10}", label=name)
    clean = [r for r in rows if r["clean"] and r["degradation"] == names[0]]
    axes.scatter([r["utility"] for r in clean], [r[column] for r in clean], s=30, marker="*", color="k", label="clean")
    if threshold is not None:
        axes.axvline(threshold, color="r", linestyle="--", linewidth=1, label=f"matcher threshold {threshold:g}")
    axes.set_xlabel("recognition utility (matcher cosine to the clean crop)")
    axes.set_ylabel("quality score")
    axes.set_title(f"{label}: score vs recognition utility", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _sweep_markdown(summary: dict, plots: list[Path]) -> str:
    lines = ["# ATTN-FIQA degradation sweep", "",
             f"- Faces: {summary['faces']}; failed files: {len(summary['failed_files'])}",
             f"- Degradations: {', '.join(summary['degradations'])}; strengths: "
             f"{', '.join(f'{s:g}' for s in summary['strengths'])}; seed {summary['seed']}",
             f"- Matcher: {summary['matcher']['name']}; utility = {summary['utility']}; failure = {summary['failure']}",
             ""]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in summary["warnings"]] + [""]
    for label, result in summary["results"].items():
        lines += [f"## {label}", "",
                  f"Pooled: Spearman(score, utility) = {_fmt(result['spearman_score_utility_pooled'])}; "
                  f"failure-flagging ROC AUC (low score flags) = {_fmt(result['failure_auc_pooled'])} "
                  f"({result['failures_pooled'] if result['failures_pooled'] is not None else 'n/a'} failures). "
                  "Expected signs: Spearman with strength negative, with utility positive; AUC above 0.5.", "",
                  "| Degradation | Spearman(score, strength) | Spearman(score, utility) | Failures | Failure AUC |",
                  "|---|---|---|---|---|"]
        for name, entry in result["per_degradation"].items():
            lines.append(f"| {name} | {_fmt(entry['spearman_score_strength'])} | {_fmt(entry['spearman_score_utility'])} "
                         f"| {entry['failures'] if entry['failures'] is not None else 'n/a'} | {_fmt(entry['failure_auc'])} |")
        lines.append("")
        for plot in plots:
            if plot.stem.endswith(_slug(label)):
                lines += [f"![{plot.stem}]({plot.name})", ""]
    if summary["failed_files"]:
        lines += ["## Files not used", ""] + [f"- `{f['path']}`: {f['reason']}" for f in summary["failed_files"]] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- CLI


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


def cmd_eval(args: argparse.Namespace) -> int:
    _apply_threads(args)
    if (args.pairs is None) == (args.data is None):
        raise ValueError("give either an identity folder (DATA) or --pairs CSV, not both or neither")
    data = args.pairs or args.data
    progress, close = _tqdm_progress(args.quiet, "eval")
    try:
        report = run_eval(
            data, args.backbone or [""], args.matcher, args.out, weights=args.weights, device=args.device,
            random_init=args.random_init, num_heads=args.num_heads, options=_score_options(args),
            precision=args.precision, matcher_weights=args.matcher_weights, matcher_random_init=args.matcher_random_init,
            allow_same_matcher=args.allow_same_matcher, fmrs=args.fmr, threshold_modes=_parse_modes(args.threshold_mode),
            discard_step=args.discard_step, pauc_limit=args.pauc_limit, seed=args.seed,
            impostors_per_genuine=args.impostors_per_genuine, random_repeats=args.random_repeats,
            cache_dir=args.cache_dir, use_cache=not args.no_cache, batch_size=args.batch_size, progress=progress)
    finally:
        close()
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
    return 0


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
    from attn_core.cli_options import add_backbone_arguments, add_score_options

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
    """Contribute ``eval`` and ``sweep`` to ``attn-fiqa`` (called by :func:`attn_core.cli.build_parser`)."""
    evaluate = subparsers.add_parser(
        "eval", conflict_handler="resolve",
        help="EDC of quality backbones vs baselines on verification pairs (plots, JSON, Markdown)",
        description="Error-versus-Discard evaluation (docs/DESIGN.md 4). DATA is a folder with one sub-folder per identity "
                    "(all genuine pairs + seeded impostors), or use --pairs CSV (path_a,path_b,same_identity).")
    evaluate.add_argument("data", nargs="?", help="folder with one sub-folder per identity")
    evaluate.add_argument("--pairs", help="pairs CSV instead of DATA (header path_a,path_b,same_identity)")
    _add_common(evaluate)
    evaluate.add_argument("--fmr", type=float, nargs="+", default=list(DEFAULT_FMRS), help="target FMRs (default 1e-3 1e-4)")
    evaluate.add_argument("--threshold-mode", nargs="+", default=["both"],
                          choices=["both", "per_fraction", "per-fraction", "fixed"],
                          help="per_fraction (re-set at every discard fraction, the papers), fixed (ISO style) or both")
    evaluate.add_argument("--discard-step", type=float, default=0.05, help="discard grid step (r = 0 .. 0.95)")
    evaluate.add_argument("--pauc-limit", type=float, default=0.3, help="pAUC up to this discard fraction")
    evaluate.add_argument("--impostors-per-genuine", type=float, default=10.0,
                          help="seeded impostor pairs per genuine pair, for identity folders")
    evaluate.add_argument("--random-repeats", type=int, default=10, help="seeded repeats of the random-discard baseline")
    evaluate.add_argument("--cache-dir", help="embedding/score cache (default ~/.cache/attn_fiqa/eval)")
    evaluate.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    evaluate.add_argument("--batch-size", type=int, default=32)
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
