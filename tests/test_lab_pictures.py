"""The lab's pictures (attn_core/lab/pictures.py) against a direct, per-thumbnail computation: the model view's
cells are each head's map, min-max coloured through matplotlib's colormap, upsampled patch by patch and blended."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from attn_core.lab import capture_lab
from attn_core.lab.pictures import model_view_picture
from attn_core.zoo import load_backbone


@pytest.fixture(scope="module", params=["test-face-vit-p9", "timm:test_vit.r160_in1k"])
def lab(request):
    backbone = load_backbone(request.param, random_init=True, seed=2, device="cpu")
    crop = np.random.default_rng(5).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    return capture_lab(backbone, crop)


def expected_thumbnail(lab, face: np.ndarray, values: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    size = face.shape[0]
    grid = np.asarray(values)[lab.num_prefix_tokens:].reshape(lab.grid)
    unit = (grid - grid.min()) / (grid.max() - grid.min())
    colours = (matplotlib.colormaps["jet"](np.floor(unit * 255 + 0.5) / 255)[..., :3] * 255).round()
    picture = face.astype(np.float64)
    side = lab.patch_size * size / lab.input_size  # pixels of one patch on the thumbnail
    for r in range(lab.grid[0]):  # patch (r, c) fills the pixels between the grid lines drawn at round(r * side)
        for c in range(lab.grid[1]):
            rows = slice(round(r * side), round((r + 1) * side))
            cols = slice(round(c * side), round((c + 1) * side))
            picture[rows, cols] = alpha * colours[r, c] + (1 - alpha) * face[rows, cols]
    return picture


@pytest.mark.parametrize("view", ["received", "row"])
def test_model_view_cells_are_each_heads_map(lab, view):
    thumb, label_w, label_h = 40, 54, 18
    face = np.random.default_rng(1).integers(0, 256, size=(thumb, thumb, 3), dtype=np.uint8)
    query = lab.num_prefix_tokens + 3
    canvas = model_view_picture(lab, face, view, query, thumb=thumb, selected=None)
    assert canvas.shape == (label_h + lab.depth * (thumb + 2), label_w + lab.num_heads * (thumb + 2), 3)
    for block in range(lab.depth):
        # Independently of the lab's own views: the head's received map or query row from q and k.
        q, k = lab.queries[block].astype(np.float64), lab.keys[block].astype(np.float64)
        maps = (q.mean(axis=1)[:, None, :] * k).sum(-1) if view == "received" else (q[:, query][:, None, :] * k).sum(-1)
        for head in range(lab.num_heads):
            y, x = label_h + block * (thumb + 2), label_w + head * (thumb + 2)
            cell = canvas[y:y + thumb, x:x + thumb].astype(np.float64)
            np.testing.assert_allclose(cell, expected_thumbnail(lab, face, maps[head] * lab.scale), atol=1.01)


def test_the_matrix_is_kept_for_the_next_click_and_cannot_be_changed(lab):
    first = lab.matrix(-1, None)
    assert lab.matrix(-1, None) is first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
    q, k = lab.queries[-1].astype(np.float64), lab.keys[-1].astype(np.float64)
    np.testing.assert_allclose(first, np.mean([qh @ kh.T for qh, kh in zip(q, k)], axis=0) * lab.scale, atol=1e-9)
    lab.matrix(0, 0), lab.matrix(1, [0, 1])  # two other matrices push the first out: at most MATRICES_KEPT kept
    assert lab.matrix(-1, None) is not first
