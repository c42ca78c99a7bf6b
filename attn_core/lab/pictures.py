"""The lab's per-click pictures, drawn with OpenCV and numpy (a few ms each, instead of ~100 ms of matplotlib
layout): a token vector on the face beside its colour bar in its own units, the N x N matrix with the chosen row
and column, and the blocks x heads model view."""

from __future__ import annotations

import cv2
import numpy as np

from attn_core.lab.attention import AttentionLab
from attn_core.viz import colorize, patch_map_image

INK = (20, 20, 20)


def _heat_on_face(lab: AttentionLab, aligned: np.ndarray, grid_values: np.ndarray, size: int, cmap: str,
                  alpha: float = 0.55) -> np.ndarray:
    """The grid values (min-max coloured) over the face scaled to ``size`` px; the uncovered edge of a 9-px grid
    (pixels 108-111 of 112) stays plain face."""
    face = aligned if aligned.shape[0] == size else cv2.resize(aligned, (size, size), interpolation=cv2.INTER_LINEAR)
    return _heat_mosaic(lab, face, np.asarray(grid_values), cmap, alpha)


def mark_patch(lab: AttentionLab, picture: np.ndarray, token: int | None, colour: tuple[int, int, int]) -> np.ndarray:
    """A box around patch ``token`` on a square picture of the model input (nothing for prefix tokens)."""
    where = None if token is None else lab.patch_of_token(token)
    if where is None:
        return picture
    side = lab.patch_size * picture.shape[0] / lab.input_size
    top, left = int(round(where[0] * side)), int(round(where[1] * side))
    cv2.rectangle(picture, (left, top), (int(round(left + side)) - 1, int(round(top + side)) - 1), colour, 2)
    return picture


def face_grid_picture(lab: AttentionLab, aligned: np.ndarray, query: int | None, key: int | None,
                      size: int = 336) -> np.ndarray:
    """The face scaled to ``size`` px with its patch grid, the query in red and the key in cyan: the click target."""
    picture = cv2.resize(aligned, (size, size), interpolation=cv2.INTER_LINEAR)
    side = lab.patch_size * size / lab.input_size
    rows, cols = lab.grid
    for r in range(rows + 1):
        y = min(int(round(r * side)), size - 1)
        cv2.line(picture, (0, y), (int(round(cols * side)), y), (255, 255, 255), 1)
    for c in range(cols + 1):
        x = min(int(round(c * side)), size - 1)
        cv2.line(picture, (x, 0), (x, int(round(rows * side))), (255, 255, 255), 1)
    mark_patch(lab, picture, key, (0, 255, 255))
    return mark_patch(lab, picture, query, (255, 0, 0))


def token_picture(lab: AttentionLab, aligned: np.ndarray, values: np.ndarray, title: str, mark: int | None,
                  cmap: str = "jet") -> np.ndarray:
    """A per-token vector (N,) on the face, the marked patch boxed, beside its raw grid with a colour bar in its
    own units; prefix-token values are written under it (they have no place on the grid)."""
    grid_values = lab.to_grid(values)
    bar = patch_map_image(grid_values, cmap=cmap, title=title, cell=20)
    side = bar.shape[0] - 36
    face = mark_patch(lab, _heat_on_face(lab, aligned, grid_values, side, cmap), mark, (255, 255, 255))
    canvas = np.full((bar.shape[0] + (18 if lab.num_prefix_tokens else 0), side + 12 + bar.shape[1], 3), 255, np.uint8)
    canvas[26:26 + side, 6:6 + side] = face
    canvas[: bar.shape[0], side + 12:] = bar
    if lab.num_prefix_tokens:
        prefix = ", ".join(f"{v:+.3g}" for v in np.asarray(values)[: lab.num_prefix_tokens])
        cv2.putText(canvas, f"prefix token(s): {prefix}", (6, canvas.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    INK, 1, cv2.LINE_AA)
    return canvas


def matrix_picture(lab: AttentionLab, matrix: np.ndarray, query: int | None, key: int | None,
                   size: int = 432) -> np.ndarray:
    """The N x N logits (rows: queries, columns: keys) coloured min-max, the query row and key column outlined,
    with the colour range in logits written below."""
    n = matrix.shape[0]
    low, high = float(matrix.min()), float(matrix.max())
    heat = colorize((matrix - low) / (high - low if high > low else 1.0), "coolwarm")
    heat = cv2.resize(heat, (size, size), interpolation=cv2.INTER_NEAREST)
    cell = size / n
    if lab.num_prefix_tokens:
        edge = int(round(lab.num_prefix_tokens * cell))
        cv2.line(heat, (edge, 0), (edge, size - 1), (120, 120, 120), 1)
        cv2.line(heat, (0, edge), (size - 1, edge), (120, 120, 120), 1)
    if query is not None:
        top = int(round(query * cell))
        cv2.rectangle(heat, (0, top), (size - 1, int(round(top + cell))), INK, 1)
    if key is not None:
        left = int(round(key * cell))
        cv2.rectangle(heat, (left, 0), (int(round(left + cell)), size - 1), INK, 1)
    canvas = np.full((size + 24, size, 3), 255, np.uint8)
    canvas[:size] = heat
    cv2.putText(canvas, f"logits: blue {low:+.3f} .. red {high:+.3f}; rows = queries, columns = keys",
                (4, size + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.38, INK, 1, cv2.LINE_AA)
    return canvas


def model_view_picture(lab: AttentionLab, aligned: np.ndarray, view: str, query: int | None,
                       thumb: int = 72, selected: tuple[int, int | None] | None = None) -> np.ndarray:
    """Blocks (rows) x heads (columns) thumbnails of the received map or of the query's logit row, each coloured on
    its own range; the selected (block, head) is outlined in red."""
    if view not in ("received", "row"):
        raise ValueError(f"Unknown model view {view!r}; choose 'received' or 'row'.")
    if view == "row" and query is None:
        raise ValueError("The 'row' model view needs a query patch: click one.")
    label_w, label_h = 54, 18
    pad = thumb + 2
    small = cv2.resize(aligned, (thumb, thumb), interpolation=cv2.INTER_AREA)  # once, not per thumbnail
    per_block = [lab.head_received(b) if view == "received" else lab.head_rows(b, query) for b in range(lab.depth)]
    thumbs = _heat_mosaic(lab, small, lab.to_grid(np.stack(per_block)), "jet")  # (depth, H, thumb, thumb, 3)
    canvas = np.full((label_h + lab.depth * pad, label_w + lab.num_heads * pad, 3), 255, np.uint8)
    # Every thumbnail in one strided assignment: the canvas cells are thumb x thumb with a 2-px white gutter.
    cells = canvas[label_h:, label_w:].reshape(lab.depth, pad, lab.num_heads, pad, 3)
    cells[:, :thumb, :, :thumb] = thumbs.transpose(0, 2, 1, 3, 4)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for h in range(lab.num_heads):
        cv2.putText(canvas, f"head {h}", (label_w + h * pad + 8, 13), font, 0.36, INK, 1, cv2.LINE_AA)
    for b in range(lab.depth):
        y = label_h + b * pad
        cv2.putText(canvas, f"block {b}", (2, y + thumb // 2 + 4), font, 0.36, INK, 1, cv2.LINE_AA)
        for h in range(lab.num_heads):
            if selected is not None and selected[0] == b and selected[1] in (None, h):
                x = label_w + h * pad
                cv2.rectangle(canvas, (x, y), (x + thumb - 1, y + thumb - 1), (255, 0, 0), 2)
    return canvas


def _heat_mosaic(lab: AttentionLab, face: np.ndarray, grids: np.ndarray, cmap: str, alpha: float = 0.55) -> np.ndarray:
    """:func:`_heat_on_face` for a stack of grids (..., rows, cols) at once on one face of ``size`` px: each grid
    min-max coloured on its own range, upsampled to the covered part by nearest neighbour (as cv2.INTER_NEAREST),
    blended; returns (..., size, size, 3) uint8. One vectorised pass instead of a Python loop per thumbnail."""
    size = face.shape[0]
    low = grids.min(axis=(-2, -1), keepdims=True)
    span = grids.max(axis=(-2, -1), keepdims=True) - low
    heat = colorize((grids - low) / np.where(span > 0, span, 1.0), cmap)  # (..., rows, cols, 3)
    # Patch r covers pixels round(r * side) .. round((r + 1) * side) - 1: the cells meet the grid lines and boxes
    # that face_grid_picture and mark_patch draw at the same rounded positions.
    side = lab.patch_size * size / lab.input_size
    edges = [np.round(np.arange(g + 1) * side).astype(int) for g in lab.grid]
    covered = [int(e[-1]) for e in edges]
    rows, cols = (np.searchsorted(e, np.arange(c), side="right") - 1 for e, c in zip(edges, covered))
    heat = heat[..., rows, :, :][..., cols, :]
    pictures = np.broadcast_to(face, (*grids.shape[:-2], *face.shape)).copy()
    heat = np.ascontiguousarray(heat)
    region = np.ascontiguousarray(pictures[..., : covered[0], : covered[1], :])
    # OpenCV's saturating blend on the flat stack: several times faster than numpy's float arithmetic here.
    flat = (-1, covered[1], 3)
    blended = cv2.addWeighted(heat.reshape(flat), alpha, region.reshape(flat), 1 - alpha, 0.0)
    pictures[..., : covered[0], : covered[1], :] = blended.reshape(heat.shape)
    return pictures


def qk_terms_picture(lab: AttentionLab, block: int, head: int, query: int, key: int, top: int = 16,
                     width: int = 560, height: int = 240) -> np.ndarray:
    """Bars of the largest per-dimension terms q_i[d] k_j[d] * scale (red positive, blue negative), labelled with
    their dimension, and the sum of all terms = the logit."""
    terms = lab.qk_terms(block, head, query, key)
    order = np.argsort(-np.abs(terms))[:top]
    shown = terms[order]
    canvas = np.full((height, width, 3), 255, np.uint8)
    font, top_margin, bottom_margin, left = cv2.FONT_HERSHEY_SIMPLEX, 30, 34, 60
    plot_h = height - top_margin - bottom_margin
    extent = float(np.abs(shown).max()) or 1.0
    zero = top_margin + plot_h // 2
    step = (width - left - 10) / max(len(shown), 1)
    cv2.line(canvas, (left, zero), (width - 10, zero), INK, 1)
    for value, y in ((extent, top_margin), (-extent, top_margin + plot_h)):
        cv2.putText(canvas, f"{value:+.3g}", (4, y + 4), font, 0.34, INK, 1, cv2.LINE_AA)
    for slot, (dimension, value) in enumerate(zip(order, shown)):
        x0 = int(left + slot * step + 2)
        x1 = int(left + (slot + 1) * step - 2)
        y = int(round(zero - value / extent * (plot_h / 2)))
        colour = (214, 39, 40) if value > 0 else (31, 119, 180)
        cv2.rectangle(canvas, (x0, min(y, zero)), (x1, max(y, zero)), colour, -1)
        cv2.putText(canvas, str(int(dimension)), (x0, height - bottom_margin + 14), font, 0.32, INK, 1, cv2.LINE_AA)
    cv2.putText(canvas, "dimension d (largest |term| first)", (left, height - 6), font, 0.36, INK, 1, cv2.LINE_AA)
    names = [lab.patch_of_token(t) for t in (query, key)]
    who = [f"patch {n}" if n is not None else f"token {t}" for n, t in zip(names, (query, key))]
    cv2.putText(canvas, f"{who[0]} -> {who[1]}, head {head}: sum of all {len(terms)} terms = logit {terms.sum():+.4f}",
                (6, 18), font, 0.4, INK, 1, cv2.LINE_AA)
    return canvas
