"""Degradation sweeps: every degradation at graded strengths on each face; rank correlations of the score with
strength and with recognition utility (matcher cosine of degraded vs clean crop), and how well a low score flags
recognition failures. :func:`sweep_face` is the one sweep step behind ``attn-fiqa sweep``, the app's Degradation
explorer and the trainer's validity log."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from attn_core.eval.edc import roc_auc, spearman
from attn_core.eval.matcher import Matcher, cosine
from attn_core.eval.measure import (
    ProgressFn,
    QualityMethod,
    finite,
    load_quality_methods,
    not_face_trained,
    random_weights_warnings,
    report_progress,
    resolve_matcher,
    same_model_warnings,
)
from attn_core.eval.reports import write_sweep_report
from attn_core.faces import extract_faces
from attn_core.scoring.model import FaceQualityModel, ScoreOptions, expand_paths

DEFAULT_STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


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
    from attn_core.faces.degradations import degrade

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
    from attn_core.faces.degradations import DEGRADATIONS

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
    # An invalid evaluation (the matcher judging itself) first, then random weights, as loudly as the app.
    warnings = (same_model_warnings(judge, methods, allow_same_matcher) + random_weights_warnings(methods)
                + not_face_trained(methods))
    threshold = failure_threshold if failure_threshold is not None else getattr(judge, "threshold", None)
    failed: list[tuple[Path, str]] = [(p, reason) for p, reason in missing]

    rows: list[dict[str, Any]] = []
    for index, path in enumerate(files):
        report_progress(progress, 0.9 * index / len(files), f"sweeping {path.name} ({index + 1}/{len(files)})")
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

    report_progress(progress, 0.92, "statistics and plots")
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
    summary["timings_s"] = {"total_s": round(time.perf_counter() - began, 3)}
    markdown, markdown_path, json_path, csv_path, plot_paths = write_sweep_report(
        out_dir, rows, summary, [m.label for m in methods], names, levels, threshold)
    report_progress(progress, 1.0, "done")
    return SweepReport(rows, summary, markdown, markdown_path, json_path, csv_path, plot_paths, failed)


def _safe(statistic: Callable[[], float]) -> float | None:
    try:
        return finite(statistic())
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
            "mean_score_by_strength": [finite(float(np.mean([r[column] for r in subset if r["strength"] == level])))
                                       for level in levels],
            "mean_utility_by_strength": [finite(float(np.mean([r["utility"] for r in subset if r["strength"] == level])))
                                         for level in levels],
            "failures": None, "failure_auc": None,
        }
        if subset[0]["failure"] is not None:
            flags = np.array([r["failure"] for r in subset], dtype=bool)
            entry["failures"] = int(flags.sum())
            entry["failure_auc"] = _safe(lambda: roc_auc(np.array([r[column] for r in subset]), flags))
        result["per_degradation"][name] = entry
    return result


