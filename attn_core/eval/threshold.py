"""A score threshold chosen from the user's own Error-versus-Discard curve: a goal ("FNMR at FMR 1e-3 no higher than
2 %", or "discard 10 %") becomes the score below which a face is rejected.

A pair is discarded when its pair quality (the lower of its two faces' scores) is below the threshold t, i.e. when
either face scores below t, so an image threshold and a pair-quality threshold are the same number. The curve is
read at every threshold the data allow: each distinct pair quality t discards exactly the k pairs below it, which is
the EDC point at r = k / n (:func:`attn_core.eval.edc.edc`, same FMR and threshold mode; pairs that share a face's
score go together, so not every r is reachable). Every threshold between the highest discarded pair quality and t
gives that same point; the threshold reported is their midpoint (for r = 0: t minus half the gap to the next pair
quality), so a face whose score moves by float rounding (another batch, another machine) stays on its side. A face
passes when its score is >= the threshold.

- ``target_fnmr=X``: the lowest t (the least discarded) whose FNMR is <= X; if no point up to ``max_discard``
  reaches X, there is no threshold and the result says so.
- ``discard=Y``: the highest t that discards at most a fraction Y of the pairs.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from attn_core.eval.edc import THRESHOLD_MODE_WORDS, edc, format_fmr
from attn_core.scoring.reference import Reference, load_reference, save_reference

MAX_DISCARD = 0.95  # the EDC's own range (r = 0 .. 0.95)
_TOLERANCE = 1e-12


@dataclass
class EvalPairs:
    """The pairs behind an evaluation's curves, kept so a goal can be turned into a threshold afterwards."""

    genuine: np.ndarray  # (P,) bool
    distance: np.ndarray  # (P,) matcher distance
    pair_quality: dict[str, np.ndarray]  # per quality label: (P,) min of the two faces' values
    file_quality: dict[str, dict[str, float]]  # per quality label: image name -> its value
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per quality-model label: reference settings
    data: str = ""
    matcher: str = ""


@dataclass(frozen=True)
class GoalThreshold:
    """A goal read off one EDC: the threshold, what it reaches, and which images fall below it."""

    method: str
    goal: str
    fmr: float
    threshold_mode: str
    reached: bool
    threshold: float | None
    fnmr: float | None  # FNMR of the retained genuine pairs at the threshold
    fraction_discarded: float | None  # of the pairs
    pairs: int
    images: int
    images_below: list[str]  # lowest score first
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def edc_points(genuine: np.ndarray, distance: np.ndarray, pair_q: np.ndarray, *, fmr: float, threshold_mode: str,
               max_discard: float = MAX_DISCARD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, fractions discarded, FNMR) at every distinct pair quality that discards at most ``max_discard``."""
    pair_q = np.asarray(pair_q, dtype=np.float64)
    thresholds = np.unique(pair_q)
    fractions = np.searchsorted(np.sort(pair_q), thresholds, side="left") / pair_q.size
    keep = fractions <= max_discard + _TOLERANCE
    thresholds, fractions = thresholds[keep], fractions[keep]
    grid = fractions if fractions.size >= 2 else np.array([0.0, 0.5])  # edc needs two fractions; the first is r=0
    curve = edc(np.asarray(genuine, dtype=bool), distance, pair_q, fmr=fmr, threshold_mode=threshold_mode,
                discard=grid, pauc_limit=float(grid[-1]))
    return thresholds, fractions, curve.fnmr[: thresholds.size]


def threshold_for_goal(genuine: np.ndarray, distance: np.ndarray, pair_q: np.ndarray,
                       file_quality: dict[str, float], *, fmr: float = 1e-3, threshold_mode: str = "per_fraction",
                       target_fnmr: float | None = None, discard: float | None = None,
                       max_discard: float = MAX_DISCARD, method: str = "") -> GoalThreshold:
    """Turn ``target_fnmr`` or ``discard`` (exactly one) into a score threshold (conventions in the module docstring)."""
    if (target_fnmr is None) == (discard is None):
        raise ValueError("give exactly one goal: a target FNMR or a fraction to discard")
    if target_fnmr is not None and not 0 <= target_fnmr < 1:
        raise ValueError(f"the target FNMR must be a fraction in [0, 1) (e.g. 0.02 for 2 %), not {target_fnmr}")
    if discard is not None and not 0 <= discard <= max_discard:
        raise ValueError(f"the fraction to discard must be in [0, {max_discard:g}] (e.g. 0.1 for 10 %), not {discard}")
    thresholds, fractions, fnmr = edc_points(genuine, distance, pair_q, fmr=fmr, threshold_mode=threshold_mode,
                                             max_discard=max_discard)
    where = f"at FMR {format_fmr(fmr)} (threshold {THRESHOLD_MODE_WORDS[threshold_mode]})"
    n_pairs = int(np.asarray(pair_q).size)
    if target_fnmr is not None:
        goal = f"FNMR <= {target_fnmr:.2%} {where}"
        meets = np.flatnonzero(~np.isnan(fnmr) & (fnmr <= target_fnmr + _TOLERANCE))
        if meets.size == 0:
            defined = np.flatnonzero(~np.isnan(fnmr))
            if defined.size == 0:
                best = "no point of it has a genuine pair left"
            else:
                low = defined[np.argmin(fnmr[defined])]
                best = f"its lowest FNMR is {fnmr[low]:.2%}, reached with {fractions[low]:.1%} of the pairs discarded"
            message = (f"The curve cannot reach {goal}: {best} (discarding up to {max_discard:.0%}). No threshold was "
                       f"set; a goal this curve reaches, more data, or a better quality model is needed.")
            return GoalThreshold(method, goal, fmr, threshold_mode, False, None, None, None, n_pairs,
                                 len(file_quality), [], message)
        index = int(meets[0])
    else:
        goal = f"discard {discard:.1%} of the pairs, FNMR {where}"
        index = int(np.flatnonzero(fractions <= discard + _TOLERANCE)[-1])
    threshold = _midpoint(thresholds, index)
    below = sorted((value, name) for name, value in file_quality.items() if value < threshold)
    images_below = [name for _, name in below]
    reached_fnmr = None if math.isnan(fnmr[index]) else float(fnmr[index])
    fnmr_text = "undefined (no genuine pair left)" if reached_fnmr is None else f"{reached_fnmr:.2%}"
    message = (f"Threshold {threshold:+.6f} for {goal}: a face passes when its score is >= it. It discards "
               f"{fractions[index]:.1%} of the {n_pairs} pairs and reaches FNMR {fnmr_text} (without discarding: "
               f"{fnmr[0]:.2%}); {len(images_below)} of {len(file_quality)} images score below it.")
    if index == 0:
        message += " The goal is met without discarding anything: every face passes."
    if discard is not None and abs(fractions[index] - discard) > 1e-9:
        message += (f" Pairs that share a face's score are discarded together, so {fractions[index]:.1%} is the "
                    f"closest fraction not above {discard:.1%}.")
    return GoalThreshold(method, goal, fmr, threshold_mode, True, threshold, reached_fnmr, float(fractions[index]),
                         n_pairs, len(file_quality), images_below, message)


def _midpoint(thresholds: np.ndarray, index: int) -> float:
    """Midway between the kept pair quality ``thresholds[index]`` and the one below it (see the module docstring)."""
    if index > 0:
        return float((thresholds[index - 1] + thresholds[index]) / 2)
    gap = thresholds[1] - thresholds[0] if thresholds.size > 1 else max(abs(thresholds[0]), 1.0) * 1e-6
    return float(thresholds[0] - gap / 2)


def save_threshold(name: str, result: GoalThreshold, settings: dict[str, Any], *, data: str = "",
                   matcher: str = "") -> Reference:
    """Store a reached goal's threshold in the saved reference ``name`` (whose settings must be ``settings``)."""
    if not result.reached or result.threshold is None:
        raise ValueError(f"Nothing was saved into the reference '{name}': {result.message}")
    reference = load_reference(name)
    reference.check(settings, f"the quality model {result.method!r} of this evaluation")
    updated = reference.with_threshold({
        "value": result.threshold, "goal": result.goal, "fmr": result.fmr, "threshold_mode": result.threshold_mode,
        "fnmr_reached": result.fnmr, "fraction_discarded": result.fraction_discarded, "pairs": result.pairs,
        "data": data, "matcher": matcher,
        "chosen": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    save_reference(updated)
    return updated


def goals_from_report(pairs: EvalPairs, method: str, fmrs: list[float], threshold_mode: str, *,
                      target_fnmr: float | None = None, discard: float | None = None) -> list[GoalThreshold]:
    """The goal read off the curve of ``method`` at every FMR of the evaluation (the first FMR's is the one saved)."""
    if method not in pairs.pair_quality:
        raise ValueError(f"no quality values for {method!r} in this evaluation")
    return [threshold_for_goal(pairs.genuine, pairs.distance, pairs.pair_quality[method], pairs.file_quality[method],
                               fmr=fmr, threshold_mode=threshold_mode, target_fnmr=target_fnmr, discard=discard,
                               method=method) for fmr in fmrs]
