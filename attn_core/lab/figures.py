"""Pictures of the attention lab: maps on the face with colour bars in their own units, the N x N matrix, the
model view (blocks x heads), the block score curve, per-head statistics and the q.k terms. RGB arrays throughout,
drawn with matplotlib's object API on an Agg canvas (no pyplot state)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from attn_core.lab.attention import AttentionLab, HeadChoice
from attn_core.viz import figure_to_array


def _figure(width: float, height: float, **subplots):
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(**subplots)


def _covered_extent(lab: AttentionLab, crop_size: int) -> tuple[float, float, float, float]:
    """imshow extent of the patch grid on the crop: a 9-px 12x12 grid covers 108 of 112 pixels."""
    factor = crop_size / lab.input_size
    return (0.0, lab.grid[1] * lab.patch_size * factor, lab.grid[0] * lab.patch_size * factor, 0.0)


def _mark_patch(axis, lab: AttentionLab, token: int | None, crop_size: int, colour: str) -> None:
    where = None if token is None else lab.patch_of_token(token)
    if where is None:
        return
    side = lab.patch_size * crop_size / lab.input_size
    axis.add_patch(Rectangle((where[1] * side, where[0] * side), side, side, fill=False, edgecolor=colour, lw=2))


def _token_name(lab: AttentionLab, token: int) -> str:
    where = lab.patch_of_token(token)
    return f"prefix token {token}" if where is None else f"patch ({where[0]}, {where[1]})"


def _map_on_face(axis, figure, lab: AttentionLab, aligned: np.ndarray, values: np.ndarray, title: str,
                 label: str, marks: dict[str, int | None], cmap: str = "jet") -> None:
    size = aligned.shape[0]
    axis.imshow(aligned)
    image = axis.imshow(lab.to_grid(values), cmap=cmap, alpha=0.55, extent=_covered_extent(lab, size),
                        interpolation="nearest")
    for colour, token in marks.items():
        _mark_patch(axis, lab, token, size, colour)
    axis.set_xlim(0, size)
    axis.set_ylim(size, 0)
    axis.set_title(title, fontsize=8)
    axis.axis("off")
    bar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    if lab.num_prefix_tokens:
        prefix = ", ".join(f"{v:+.3g}" for v in np.asarray(values)[:lab.num_prefix_tokens])
        axis.text(0, size + 2, f"prefix tokens: {prefix}", fontsize=6, va="top")


def face_grid_image(lab: AttentionLab, aligned: np.ndarray, query: int | None = None, key: int | None = None) -> np.ndarray:
    """The aligned face with its patch grid, the query patch in red and the key patch in cyan (OpenCV-free)."""
    picture = aligned.copy()
    size = aligned.shape[0]
    side = lab.patch_size * size / lab.input_size
    for line in range(lab.grid[0] + 1):
        picture[min(int(round(line * side)), size - 1), : int(round(lab.grid[1] * side))] = (255, 255, 255)
    for line in range(lab.grid[1] + 1):
        picture[: int(round(lab.grid[0] * side)), min(int(round(line * side)), size - 1)] = (255, 255, 255)
    for token, colour in ((query, (255, 0, 0)), (key, (0, 255, 255))):
        where = None if token is None else lab.patch_of_token(token)
        if where is not None:
            top, left = int(round(where[0] * side)), int(round(where[1] * side))
            bottom, right = min(int(round(top + side)), size - 1), min(int(round(left + side)), size - 1)
            for y in (top, bottom):
                picture[y, left:right + 1] = colour
            for x in (left, right):
                picture[top:bottom + 1, x] = colour
    return picture


def row_figure(lab: AttentionLab, aligned: np.ndarray, block: int, head: HeadChoice, query: int) -> np.ndarray:
    """Query ``query``'s logits over the keys beside its softmax, and the column that patch receives."""
    figure, axes = _figure(10.5, 3.4, ncols=3)
    who = _token_name(lab, query)
    heads = "mean of heads" if head is None else f"head {head}"
    marks = {"white": query}
    _map_on_face(axes[0], figure, lab, aligned, lab.row(block, head, query),
                 f"row of {who}: logits ({heads}, block {lab.block_index(block)})", "logit", marks)
    _map_on_face(axes[1], figure, lab, aligned, lab.row_softmax(block, head, query),
                 f"row of {who}: softmax (sums to 1)", "probability", marks, cmap="viridis")
    _map_on_face(axes[2], figure, lab, aligned, lab.column(block, head, query),
                 f"column: logits {who} receives", "logit", marks)
    figure.tight_layout()
    return figure_to_array(figure)


def offsets_figure(lab: AttentionLab, aligned: np.ndarray, block: int, head: HeadChoice) -> np.ndarray:
    """The row-offset map (what softmax discards, per query) beside the received map (the score's patch map)."""
    figure, axes = _figure(7.2, 3.4, ncols=2)
    _map_on_face(axes[0], figure, lab, aligned, lab.row_offsets(block, head),
                 "row offsets o[i] = mean_j L[i, j] (dropped by softmax)", "logit", {})
    _map_on_face(axes[1], figure, lab, aligned, lab.received(block, head),
                 "received m[j] = mean_i L[i, j] (the patch map)", "logit", {})
    figure.tight_layout()
    return figure_to_array(figure)


def matrix_figure(lab: AttentionLab, block: int, head: HeadChoice, query: int | None = None,
                  key: int | None = None) -> np.ndarray:
    """A head's N x N logit matrix (rows: queries, columns: keys), with the chosen row and column drawn."""
    matrix = lab.matrix(block, head)
    figure, axis = _figure(4.8, 4.2)
    image = axis.imshow(matrix, cmap="coolwarm", interpolation="nearest")
    if query is not None:
        axis.axhline(query, color="black", lw=0.8)
    if key is not None:
        axis.axvline(key, color="black", lw=0.8, ls="--")
    if lab.num_prefix_tokens:
        edge = lab.num_prefix_tokens - 0.5
        axis.axhline(edge, color="grey", lw=0.5)
        axis.axvline(edge, color="grey", lw=0.5)
    heads = "mean of heads" if head is None else f"head {head}"
    axis.set_title(f"logits, block {lab.block_index(block)}, {heads}: mean {matrix.mean():+.4f}", fontsize=8)
    axis.set_xlabel("key token j", fontsize=7)
    axis.set_ylabel("query token i", fontsize=7)
    axis.tick_params(labelsize=6)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.03).set_label("logit", fontsize=7)
    figure.tight_layout()
    return figure_to_array(figure)


def model_view_figure(lab: AttentionLab, aligned: np.ndarray, view: str = "received", query: int | None = None) -> np.ndarray:
    """Blocks x heads thumbnails of the received map ("received") or of the query's logit row ("row")."""
    if view not in ("received", "row"):
        raise ValueError(f"Unknown model view {view!r}; choose 'received' or 'row'.")
    if view == "row" and query is None:
        raise ValueError("The 'row' model view needs a query patch.")
    figure, axes = _figure(1.1 * lab.num_heads + 0.6, 1.1 * lab.depth + 0.4, nrows=lab.depth, ncols=lab.num_heads,
                           squeeze=False)
    extent = _covered_extent(lab, aligned.shape[0])
    for b in range(lab.depth):
        for h in range(lab.num_heads):
            values = lab.received(b, h) if view == "received" else lab.row(b, h, query)
            axis = axes[b, h]
            axis.imshow(aligned, alpha=0.6)
            axis.imshow(lab.to_grid(values), cmap="jet", alpha=0.6, extent=extent, interpolation="nearest")
            axis.set_xlim(0, aligned.shape[0])
            axis.set_ylim(aligned.shape[0], 0)
            axis.set_xticks([])
            axis.set_yticks([])
            if b == 0:
                axis.set_title(f"head {h}", fontsize=7)
            if h == 0:
                axis.set_ylabel(f"block {b}", fontsize=7)
    figure.tight_layout(pad=0.3)
    return figure_to_array(figure)


def block_scores_figure(lab: AttentionLab, block: int | None = None) -> np.ndarray:
    """The score at every block; the last point is the method's score. Type sized for a lecture hall."""
    figure, axis = _figure(5.6, 3.6)
    scores = lab.block_scores
    axis.plot(range(lab.depth), scores, marker="o", ms=5, lw=2)
    if block is not None:
        index = lab.block_index(block)
        axis.plot([index], [scores[index]], marker="o", ms=12, mfc="none", mec="red", mew=2,
                  label=f"block {index}: {scores[index]:+.4f}")
        axis.legend(fontsize=10, loc="best")
    axis.set_xlabel("block", fontsize=11)
    axis.set_ylabel("score (mean logit)", fontsize=11)
    axis.set_title(f"Score by block; last = the method's score {lab.score:+.4f}", fontsize=12)
    axis.tick_params(labelsize=10)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure_to_array(figure)


def head_stats_figure(lab: AttentionLab, head: int | None = None) -> np.ndarray:
    """Mean row entropy (fraction of ln N) and mean attention distance (px) of every head over the blocks: thin grey
    lines for the heads, the selected head in red (or, with none selected, the mean of the heads in black)."""
    stats = lab.head_stats
    figure, axes = _figure(9.0, 3.6, ncols=2)
    for axis, values, label in ((axes[0], stats.entropy_fraction, "row entropy / ln N"),
                                (axes[1], stats.distance_px, "mean attention distance (px)")):
        for h in range(lab.num_heads):
            axis.plot(range(lab.depth), values[:, h], lw=0.8, color="0.6", alpha=0.8,
                      label="each head" if h == 0 else None)
        if head is None:
            axis.plot(range(lab.depth), values.mean(axis=1), marker="o", ms=4, lw=2.4, color="black",
                      label="mean of the heads")
        else:
            axis.plot(range(lab.depth), values[:, head], marker="o", ms=5, lw=2.4, color="red", label=f"head {head}")
        axis.set_xlabel("block", fontsize=11)
        axis.set_ylabel(label, fontsize=11)
        axis.tick_params(labelsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=9, loc="best")
    figure.tight_layout()
    return figure_to_array(figure)


def qk_terms_figure(lab: AttentionLab, block: int, head: int, query: int, key: int, top: int = 16) -> np.ndarray:
    """The largest per-dimension terms q_i[d] k_j[d] * scale of one head, with their sum = the logit."""
    terms = lab.qk_terms(block, head, query, key)
    order = np.argsort(-np.abs(terms))[:top]
    figure, axis = _figure(6.0, 2.8)
    axis.bar(range(len(order)), terms[order], color=["tab:red" if t > 0 else "tab:blue" for t in terms[order]])
    axis.set_xticks(range(len(order)), [str(d) for d in order], fontsize=6)
    axis.set_xlabel("dimension d (largest |term| first)", fontsize=7)
    axis.set_ylabel("q_i[d] k_j[d] scale", fontsize=7)
    axis.axhline(0, color="black", lw=0.5)
    axis.set_title(f"{_token_name(lab, query)} -> {_token_name(lab, key)}, head {head}: sum of all "
                   f"{len(terms)} terms = logit {terms.sum():+.4f}", fontsize=8)
    axis.tick_params(labelsize=6)
    figure.tight_layout()
    return figure_to_array(figure)
