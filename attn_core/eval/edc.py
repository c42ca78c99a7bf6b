"""Quality-assessment evaluation maths: Error-versus-Discard Characteristic (EDC), rank correlations, ROC AUC.

The protocol follows docs/DESIGN.md section 4. Verification pairs are compared by a matcher that is not the quality
model; distance = arccos(cosine) / pi, a pair is accepted when distance <= threshold. Pair quality is the minimum
of the two image qualities. Pairs are sorted by pair quality and the lowest fraction r is discarded; the FNMR of
the retained genuine pairs is plotted against r.

Two threshold modes, always named in :attr:`EDCCurve.label`:

- ``"per_fraction"`` (the method's papers): at every r the threshold is re-set on the RETAINED impostor pairs to the
  FMR closest to the target. AUC and pAUC are trapezoids over r.
- ``"fixed"`` (standards style, ISO/IEC 29794-1 EDC): the threshold is set once at r = 0 on all impostors and
  kept; AUC and pAUC integrate the curve as a step function (FNMR at r_i holds until r_{i+1}, "post" steps).

Counting conventions (fixed here so results are reproducible):

- The number of pairs discarded at fraction r is ``floor(r * n_pairs)`` (computed with a 1e-9 tolerance so
  float grid values such as 0.15000000000000002 * 20 count as 3): at most a fraction r is discarded.
- Pairs with equal pair quality are discarded in input order (stable sort): the earlier pair goes first.
- If no genuine (or, in ``per_fraction`` mode, no impostor) pair is retained at some r, FNMR there is NaN and so
  are the AUCs that include it.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from scipy import stats

ThresholdMode = Literal["per_fraction", "fixed"]
# The one wording of the threshold modes (curve labels, plots, tables, reports, the app) and where each comes from.
THRESHOLD_MODE_WORDS: dict[str, str] = {"per_fraction": "re-set per fraction", "fixed": "fixed at r=0"}
THRESHOLD_MODE_SOURCES: dict[str, str] = {"per_fraction": "the method's papers", "fixed": "ISO/IEC 29794-1 style"}

DEFAULT_DISCARD = np.round(np.arange(0.0, 0.951, 0.05), 10)  # r = 0, 0.05, ..., 0.95
DEFAULT_DISCARD.setflags(write=False)
_COUNT_TOLERANCE = 1e-9


def format_fmr(fmr: float) -> str:
    """``1e-3`` for powers of ten from 1e-2 down, otherwise the shortest plain form (``0.1``, ``0.002``)."""
    exponent = math.log10(fmr) if fmr > 0 else 0.0
    if fmr > 0 and exponent <= -2 + 1e-9 and abs(exponent - round(exponent)) < 1e-9:
        return f"1e{int(round(exponent))}"
    return f"{fmr:g}"


@dataclass(frozen=True)
class EDCCurve:
    """One Error-versus-Discard curve: FNMR of retained genuine pairs against the discarded fraction."""

    method: str
    fmr: float
    threshold_mode: ThresholdMode
    discard: np.ndarray
    fnmr: np.ndarray
    auc: float
    pauc: float
    pauc_limit: float
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # distance threshold used at each r
    achieved_fmr: np.ndarray = field(default_factory=lambda: np.zeros(0))  # FMR on retained impostors at each r

    @property
    def label(self) -> str:
        """E.g. ``attn-fiqa (FMR=1e-3, threshold re-set per fraction)``."""
        return f"{self.method or 'quality'} (FMR={format_fmr(self.fmr)}, threshold {THRESHOLD_MODE_WORDS[self.threshold_mode]})"


def angular_distance(cosine_similarity: np.ndarray) -> np.ndarray:
    """Distance in [0, 1] used by the protocol: arccos(cosine) / pi."""
    return np.arccos(np.clip(np.asarray(cosine_similarity, dtype=np.float64), -1.0, 1.0)) / np.pi


def pair_quality(q_a: np.ndarray, q_b: np.ndarray) -> np.ndarray:
    """Quality of a pair: the worse (minimum) of its two image qualities."""
    q_a = np.asarray(q_a, dtype=np.float64)
    q_b = np.asarray(q_b, dtype=np.float64)
    if q_a.shape != q_b.shape:
        raise ValueError(f"pair_quality needs equal shapes, got {q_a.shape} and {q_b.shape}")
    return np.minimum(q_a, q_b)


def _threshold_and_fmr(impostor_dist: np.ndarray, fmr: float) -> tuple[float, float]:
    """The FMR-closest threshold and the FMR it achieves (see :func:`threshold_at_fmr`)."""
    distances = np.asarray(impostor_dist, dtype=np.float64).ravel()
    if distances.size == 0:
        raise ValueError("threshold_at_fmr needs at least one impostor distance")
    if not np.all(np.isfinite(distances)):
        raise ValueError("impostor distances must be finite")
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    values, counts = np.unique(distances, return_counts=True)
    accepted = np.concatenate([[0], np.cumsum(counts)])  # impostors accepted at each candidate threshold
    thresholds = np.concatenate([[np.nextafter(values[0], -np.inf)], values])
    gap = np.abs(accepted - fmr * distances.size)
    best = int(np.flatnonzero(gap <= gap.min() + _COUNT_TOLERANCE)[0])  # ties: the stricter (lower-FMR) one
    return float(thresholds[best]), float(accepted[best] / distances.size)


def threshold_at_fmr(impostor_dist: np.ndarray, fmr: float) -> float:
    """Distance threshold (accept when distance <= t) whose achieved FMR on these impostors is closest to ``fmr``.

    Achievable FMRs are k / n_impostors. For k >= 1 the threshold is the impostor distance at which k impostors
    are accepted; for k = 0 it is the largest float below the smallest impostor distance (accept every pair closer
    than all impostors). When two achievable FMRs are equally close, the lower one (stricter threshold) wins.
    """
    return _threshold_and_fmr(impostor_dist, fmr)[0]


def _check_discard(discard: np.ndarray | Sequence[float] | None) -> np.ndarray:
    grid = DEFAULT_DISCARD if discard is None else np.asarray(discard, dtype=np.float64).ravel()
    if grid.size < 2 or np.any(np.diff(grid) <= 0) or grid[0] < 0 or grid[-1] >= 1:
        raise ValueError("discard must be at least two strictly increasing fractions in [0, 1)")
    return grid


def _integrate(discard: np.ndarray, fnmr: np.ndarray, limit: float, mode: ThresholdMode) -> float:
    """Area under FNMR(r) from discard[0] to ``limit``: trapezoids (per_fraction) or post steps (fixed)."""
    if mode == "fixed":
        right_edges = np.minimum(discard[1:], limit)
        widths = np.clip(right_edges - discard[:-1], 0.0, None)
        inside = widths > 0  # an undefined (NaN) FNMR beyond the limit must not poison the area up to it
        return float(np.sum(fnmr[:-1][inside] * widths[inside]))
    inside = discard < limit - _COUNT_TOLERANCE
    x = np.append(discard[inside], limit)
    y = np.append(fnmr[inside], np.interp(limit, discard, fnmr))  # linear FNMR at a limit between grid points
    return float(np.trapezoid(y, x))


def edc(
    genuine: np.ndarray,
    distance: np.ndarray,
    pair_q: np.ndarray,
    *,
    fmr: float = 1e-3,
    threshold_mode: ThresholdMode = "per_fraction",
    discard: np.ndarray | Sequence[float] | None = None,
    pauc_limit: float = 0.3,
    method: str = "",
) -> EDCCurve:
    """Error-versus-Discard Characteristic of one quality measure (conventions in the module docstring).

    Args:
        genuine: (P,) bool, True for same-identity pairs.
        distance: (P,) matcher distance, arccos(cosine)/pi (see :func:`angular_distance`).
        pair_q: (P,) pair quality, higher = better (see :func:`pair_quality`).
        threshold_mode: ``"per_fraction"`` re-sets the threshold on the retained impostors at every r and
            integrates with trapezoids; ``"fixed"`` sets it once at r = 0 and integrates stepwise.
        discard: fractions r to evaluate, strictly increasing in [0, 1); default 0, 0.05, ..., 0.95.
            AUC covers [discard[0], discard[-1]]; pAUC covers [discard[0], pauc_limit].
    """
    genuine = np.asarray(genuine)
    distance = np.asarray(distance, dtype=np.float64)
    pair_q = np.asarray(pair_q, dtype=np.float64)
    if genuine.dtype != np.bool_:
        raise ValueError(f"genuine must be a boolean array, got {genuine.dtype}")
    if not (genuine.ndim == distance.ndim == pair_q.ndim == 1) or not (
        genuine.size == distance.size == pair_q.size
    ):
        raise ValueError(
            f"genuine, distance and pair_q must be 1-D of equal length, got {genuine.shape}, {distance.shape}, "
            f"{pair_q.shape}"
        )
    if not (np.all(np.isfinite(distance)) and np.all(np.isfinite(pair_q))):
        raise ValueError("distance and pair_q must be finite (drop pairs that could not be scored first)")
    if not genuine.any() or genuine.all():
        raise ValueError("edc needs at least one genuine and one impostor pair")
    if threshold_mode not in ("per_fraction", "fixed"):
        raise ValueError(f"threshold_mode must be 'per_fraction' or 'fixed', got {threshold_mode!r}")
    grid = _check_discard(discard)
    if not grid[0] <= pauc_limit <= grid[-1]:
        raise ValueError(f"pauc_limit must lie within the discard grid [{grid[0]}, {grid[-1]}], got {pauc_limit}")

    n_pairs = genuine.size
    order = np.argsort(pair_q, kind="stable")  # lowest quality first; ties keep input order
    fixed_threshold, _ = _threshold_and_fmr(distance[~genuine], fmr)

    fnmr = np.full(grid.size, np.nan)
    thresholds = np.full(grid.size, np.nan)
    achieved = np.full(grid.size, np.nan)
    for index, fraction in enumerate(grid):
        retained = order[int(math.floor(fraction * n_pairs + _COUNT_TOLERANCE)):]
        retained_genuine = distance[retained][genuine[retained]]
        retained_impostor = distance[retained][~genuine[retained]]
        if threshold_mode == "fixed":
            thresholds[index] = fixed_threshold
            if retained_impostor.size:
                achieved[index] = np.mean(retained_impostor <= fixed_threshold)
        elif retained_impostor.size:
            thresholds[index], achieved[index] = _threshold_and_fmr(retained_impostor, fmr)
        if retained_genuine.size and not np.isnan(thresholds[index]):
            fnmr[index] = np.mean(retained_genuine > thresholds[index])

    return EDCCurve(
        method=method,
        fmr=fmr,
        threshold_mode=threshold_mode,
        discard=grid.copy(),
        fnmr=fnmr,
        auc=_integrate(grid, fnmr, grid[-1], threshold_mode),
        pauc=_integrate(grid, fnmr, pauc_limit, threshold_mode),
        pauc_limit=pauc_limit,
        thresholds=thresholds,
        achieved_fmr=achieved,
    )


def random_baseline(
    genuine: np.ndarray,
    distance: np.ndarray,
    *,
    fmr: float = 1e-3,
    threshold_mode: ThresholdMode = "per_fraction",
    discard: np.ndarray | Sequence[float] | None = None,
    pauc_limit: float = 0.3,
    n_repeats: int = 10,
    seed: int = 0,
) -> EDCCurve:
    """EDC of a quality that knows nothing: uniform random pair quality, FNMR averaged over ``n_repeats`` seeds.

    ``thresholds`` and ``achieved_fmr`` are averages too; AUC and pAUC are integrated from the mean FNMR
    (equal to the mean of the per-repeat areas, since integration is linear).
    """
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    rng = np.random.default_rng(seed)
    genuine = np.asarray(genuine)
    curves = [
        edc(genuine, distance, rng.random(genuine.size), fmr=fmr, threshold_mode=threshold_mode,
            discard=discard, pauc_limit=pauc_limit, method="random")
        for _ in range(n_repeats)
    ]
    grid = curves[0].discard
    mean_fnmr = np.mean([c.fnmr for c in curves], axis=0)
    return EDCCurve(
        method="random",
        fmr=fmr,
        threshold_mode=threshold_mode,
        discard=grid,
        fnmr=mean_fnmr,
        auc=_integrate(grid, mean_fnmr, grid[-1], threshold_mode),
        pauc=_integrate(grid, mean_fnmr, pauc_limit, threshold_mode),
        pauc_limit=pauc_limit,
        thresholds=np.mean([c.thresholds for c in curves], axis=0),
        achieved_fmr=np.mean([c.achieved_fmr for c in curves], axis=0),
    )


def _paired_1d(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size != y.size or x.size < 2:
        raise ValueError(f"need two equally long sequences of at least 2 values, got {x.size} and {y.size}")
    return x, y


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (NaN when either input is constant)."""
    x, y = _paired_1d(x, y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall rank correlation, tau-b (handles ties; NaN when either input is constant)."""
    x, y = _paired_1d(x, y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def roc_auc(scores: np.ndarray, positives: np.ndarray, *, low_score_flags: bool = True) -> float:
    """Area under the ROC curve of ``scores`` used to flag ``positives`` (e.g. recognition failures).

    With ``low_score_flags=True`` (quality flagging failures: low quality should mean failure) this is
    P(score of a positive < score of a negative) + 0.5 * P(equal); with False, the usual "high score flags".
    0.5 is chance, 1 a perfect flag.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives).ravel()
    if positives.dtype != np.bool_ or positives.size != scores.size:
        raise ValueError("positives must be a boolean array as long as scores")
    n_positive = int(positives.sum())
    n_negative = positives.size - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError("roc_auc needs at least one positive and one negative")
    ranks = stats.rankdata(-scores if low_score_flags else scores)  # average ranks: ties count one half
    mann_whitney_u = ranks[positives].sum() - n_positive * (n_positive + 1) / 2.0
    return float(mann_whitney_u / (n_positive * n_negative))


def undefined_reason(curve: EDCCurve) -> str | None:
    """Why a curve is undefined somewhere (and so is its AUC): the first discard fraction at which no genuine pair
    (or, with the threshold re-set per fraction, no impostor pair) is retained. None when defined everywhere."""
    missing = np.flatnonzero(np.isnan(curve.fnmr))
    if not missing.size:
        return None
    index = int(missing[0])
    no_threshold = curve.thresholds.size == curve.fnmr.size and np.isnan(curve.thresholds[index])
    return f"no {'impostor' if no_threshold else 'genuine'} pair left from r = {curve.discard[index]:g}"


def fmr_resolution_note(n_impostor: int, fmr: float) -> str | None:
    """Why an FMR cannot be resolved with ``n_impostor`` impostor pairs (fewer than 1 / FMR), or None."""
    if n_impostor * fmr >= 1:
        return None
    return (f"FMR {format_fmr(fmr)} is not resolved: only {n_impostor} impostor pairs (needs at least "
            f"{math.ceil(1 / fmr)}); the threshold there accepts no impostor")


def plot_edc(curves: Sequence[EDCCurve], path: str | Path, title: str, notes: Sequence[str] = ()) -> None:
    """Save an EDC plot (one curve per method; the pAUC region shaded; FMR and threshold mode in the title).

    Text is sized to stay readable when the plot is shown about 700 px wide; the legend sits below the axes, and a
    curve that is undefined somewhere says why in its legend entry. ``notes`` (e.g. an unresolved FMR) head the legend,
    in red.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_edc needs at least one curve")
    figure = Figure(figsize=(7.2, 6.4 + 0.3 * len(notes)), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # no pyplot: no global state, safe from worker threads
    axes = figure.add_subplot(1, 1, 1)
    limits = sorted({c.pauc_limit for c in curves})
    axes.axvspan(curves[0].discard[0], max(limits), color="0.9", zorder=0,
                 label=f"pAUC region (r \u2264 {max(limits):g})")
    colours = colormaps["tab10"].colors
    for index, curve in enumerate(curves):
        reason = undefined_reason(curve)
        pauc = "undefined" if math.isnan(curve.pauc) else f"{1000 * curve.pauc:.2f}"
        legend = f"{curve.method or 'quality'}: pAUC\u00d710\u00b3 = {pauc}" + (f" ({reason})" if reason else "")
        style = {"color": "0.35", "linestyle": "--"} if curve.method == "random" else {"color": colours[index % 10]}
        if curve.threshold_mode == "fixed":
            axes.step(curve.discard, curve.fnmr, where="post", linewidth=2, label=legend, **style)
        else:
            axes.plot(curve.discard, curve.fnmr, marker="o", markersize=4, linewidth=2, label=legend, **style)
    fmrs = ", ".join(sorted({format_fmr(c.fmr) for c in curves}))
    modes = ", ".join(sorted({f"threshold {THRESHOLD_MODE_WORDS[c.threshold_mode]}" for c in curves}))
    axes.set_title(f"{title}\nFMR={fmrs} ({modes})", fontsize=13)
    axes.set_xlabel("Fraction of pairs discarded (lowest pair quality first)", fontsize=12)
    axes.set_ylabel("FNMR (retained genuine pairs)", fontsize=12)
    axes.tick_params(labelsize=11)
    axes.set_xlim(curves[0].discard[0], max(c.discard[-1] for c in curves))
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    note = "\n".join(line for text in notes for line in textwrap.wrap(text, 78))
    legend = axes.legend(fontsize=10.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False,
                         title=note or None, title_fontsize=10.5)
    legend.get_title().set_color("#b91c1c")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def _cell(value: float, text: str, reason: str | None) -> str:
    return text if math.isfinite(value) else f"undefined ({reason or 'no pair retained'})"


def edc_table_markdown(curves: Sequence[EDCCurve]) -> str:
    """A Markdown table of the curves (pAUC x 1000, as the method reports it). An undefined value says why."""
    lines = [
        "| Method | FMR | Threshold | FNMR at r=0 | AUC | pAUC \u00d710\u00b3 | pAUC up to r |",
        "|---|---|---|---|---|---|---|",
    ]
    for curve in curves:
        mode = THRESHOLD_MODE_WORDS[curve.threshold_mode] + (" (stepwise)" if curve.threshold_mode == "fixed" else "")
        reason = undefined_reason(curve)
        lines.append(
            f"| {curve.method or 'quality'} | {format_fmr(curve.fmr)} | {mode} "
            f"| {_cell(curve.fnmr[0], f'{curve.fnmr[0]:.4f}', reason)} | {_cell(curve.auc, f'{curve.auc:.4f}', reason)} "
            f"| {_cell(curve.pauc, f'{1000 * curve.pauc:.2f}', reason)} | {curve.pauc_limit:g} |"
        )
    return "\n".join(lines) + "\n"
