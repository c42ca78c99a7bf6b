"""What a degradation does to each head (issue 20, Degradation explorer): the per-head difference maps (degraded
minus clean, in logit units) and the per-head score change, so a user sees which heads lose their query-key
alignment under blur or occlusion. Arithmetic on two :class:`attn_core.QualityResult` of the same backbone, block
and token mode (no forward pass), and one figure: every head's difference map in one symmetric colour range."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attn_core.scoring.quality import QualityResult
from attn_core.viz import figure_to_array


@dataclass(frozen=True)
class HeadChange:
    """Per-head change from a clean face to its degraded copy (degraded minus clean)."""

    difference_maps: np.ndarray  # (H, gh, gw): each head's received-attention map, degraded minus clean
    score_change: np.ndarray  # (H,): each head's own score, degraded minus clean
    clean_scores: np.ndarray  # (H,)
    degraded_scores: np.ndarray  # (H,)

    @property
    def limit(self) -> float:
        """The one symmetric colour range [-limit, limit] of every difference map: the largest |difference|."""
        return float(np.max(np.abs(self.difference_maps))) if self.difference_maps.size else 0.0

    @property
    def most_lost(self) -> int:
        """The head whose score fell most (the first on ties)."""
        return int(np.argmin(self.score_change))

    def record(self) -> dict:
        """JSON-ready numbers (the API endpoint's answer)."""
        return {"score_change": self.score_change.tolist(), "clean_head_scores": self.clean_scores.tolist(),
                "degraded_head_scores": self.degraded_scores.tolist(), "colour_range": [-self.limit, self.limit],
                "most_lost_head": self.most_lost,
                "difference_maps": np.round(self.difference_maps, 6).tolist()}


def head_changes(clean: QualityResult, degraded: QualityResult) -> HeadChange:
    """Degraded minus clean, head by head: maps and scores (float64). Both results must come from the same backbone
    and block, so their maps line up patch for patch."""
    if clean.head_maps.shape != degraded.head_maps.shape:
        raise ValueError(f"the clean and degraded results do not line up (head maps {clean.head_maps.shape} and "
                         f"{degraded.head_maps.shape}): score both with the same backbone and block")
    if clean.block != degraded.block:
        raise ValueError(f"the clean face was read at block {clean.block} and the degraded one at {degraded.block}: "
                         "use the same block for both")
    clean_maps, degraded_maps = (np.asarray(r.head_maps, dtype=np.float64) for r in (clean, degraded))
    clean_scores, degraded_scores = (np.asarray(r.head_scores, dtype=np.float64) for r in (clean, degraded))
    return HeadChange(degraded_maps - clean_maps, degraded_scores - clean_scores, clean_scores, degraded_scores)


def head_change_figure(change: HeadChange, title: str = "", columns: int = 6) -> np.ndarray:
    """Every head's difference map in one symmetric colour range (red: the head receives less attention there after
    the degradation, blue: more), each titled with its head score change, and one colour bar in logit units."""
    heads = change.difference_maps.shape[0]
    columns = max(1, min(columns, heads))
    rows = -(-heads // columns)
    # About 1.45 in a head: 6 columns make a 9.7-in (970 px) figure that the page shows at about 800 px.
    figure = Figure(figsize=(1.45 * columns + 1.3, 1.62 * rows + (0.45 + 0.2 * (columns < 6) if title else 0.1)), dpi=100,
                    layout="constrained")
    FigureCanvasAgg(figure)  # no pyplot: no global state, safe from the app's worker threads
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    limit = change.limit or 1e-12  # an unchanged face: an all-white picture, not a division by zero
    image = None
    for head, axis in enumerate(axes):
        axis.set_xticks([])
        axis.set_yticks([])
        if head >= heads:
            axis.set_visible(False)
            continue
        image = axis.imshow(change.difference_maps[head], cmap="RdBu", vmin=-limit, vmax=limit,
                            interpolation="nearest")
        marked = head == change.most_lost and change.score_change[head] < 0
        axis.set_title(f"head {head}: \u0394 {change.score_change[head]:+.4f}" + (" \u25bc" if marked else ""),
                       fontsize=10, color="#b91c1c" if marked else "black")
    bar = figure.colorbar(image, ax=axes.tolist(), shrink=0.9, pad=0.02)
    bar.set_label("degraded \u2212 clean\n(logit units)", fontsize=9)
    bar.ax.tick_params(labelsize=9)
    if title:  # wrapped to the figure's width: a wider title would be cut off at both sides
        width_in = figure.get_size_inches()[0]
        figure.suptitle("\n".join(textwrap.wrap(title, max(20, int(width_in * 10.5)))), fontsize=11)
    return figure_to_array(figure)
