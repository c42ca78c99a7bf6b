"""Overlays: grid-to-pixel mapping (9-px grids cover 108x108), normalisation and blending, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from attn_core.viz import (
    colorize,
    crop_overlay,
    head_grid,
    map_to_crop,
    normalise_maps,
    overlay,
    patch_map_image,
)
from attn_core.zoo.registry import get_spec


def test_nine_pixel_grid_covers_top_left_108() -> None:
    spec = get_spec("test-face-vit-p9")
    grid = np.arange(144, dtype=float).reshape(12, 12)
    crop = map_to_crop(grid, spec)
    assert crop.shape == (112, 112)
    assert np.isnan(crop[:, 108:]).all() and np.isnan(crop[108:, :]).all()
    assert not np.isnan(crop[:108, :108]).any()
    # The centre pixel of patch (r, c) carries that patch's value.
    for r, c in [(0, 0), (5, 7), (11, 11)]:
        assert crop[r * 9 + 4, c * 9 + 4] == pytest.approx(grid[r, c], abs=0.5)


def test_eight_pixel_grid_covers_everything() -> None:
    crop = map_to_crop(np.ones((14, 14)), get_spec("test-face-vit-p8"))
    assert not np.isnan(crop).any()


def test_normalisation_modes() -> None:
    a, b = np.array([[1.0, 3.0]]), np.array([[5.0, 9.0]])
    per = normalise_maps([a, b], "per_image")
    np.testing.assert_allclose(per[0], [[0, 1]])
    np.testing.assert_allclose(per[1], [[0, 1]])
    shared = normalise_maps([a, b], "shared")
    np.testing.assert_allclose(shared[0], [[0, 0.25]])
    np.testing.assert_allclose(shared[1], [[0.5, 1.0]])
    fixed = normalise_maps([a], "fixed", (0.0, 10.0))
    np.testing.assert_allclose(fixed[0], [[0.1, 0.3]])
    with pytest.raises(ValueError, match="value_range"):
        normalise_maps([a], "fixed")


def test_overlay_blend_is_rgb_and_alpha_weighted() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    heat = np.ones((4, 4))
    heat[0, 0] = np.nan
    out = overlay(image, heat, "jet", 0.4)
    top = colorize(np.array([[1.0]]), "jet")[0, 0].astype(float)  # jet(1.0) is dark red: R high, B zero
    assert top[0] > 100 and top[2] == 0
    np.testing.assert_allclose(out[1, 1], np.round(0.4 * top), atol=1)
    assert (out[0, 0] == 0).all()  # NaN leaves the pixel untouched
    with pytest.raises(ValueError, match="opacity"):
        overlay(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match="colormap"):
        colorize(heat, "not-a-map")


def test_crop_overlay_and_head_grid_shapes() -> None:
    spec = get_spec("test-face-vit-p9")
    aligned = np.full((112, 112, 3), 200, np.uint8)
    out = crop_overlay(aligned, np.random.default_rng(0).normal(size=(12, 12)), spec, alpha=0.5)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert (out[110, 110] == 200).all() and not (out[50, 50] == 200).all()
    grid = head_grid(aligned, np.random.default_rng(1).normal(size=(4, 12, 12)), np.array([-1.0, 0.5, 2, 3]), spec)
    assert grid.ndim == 3 and grid.shape[2] == 3


def test_importing_the_renderer_leaves_the_matplotlib_backend_alone() -> None:
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import attn_core.viz as r, numpy as np; "
            "r.figure_to_array(r.patch_map_figure(np.zeros((3, 3)))); print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "svg"


def test_patch_map_image_squares_carry_each_patch_colour() -> None:
    """The app's raw map: patch (r, c) is a cell-sized square of colorize((v - min) / (max - min)), by hand."""
    grid = np.array([[-1.0, -0.5, 0.0], [0.5, 1.0, 2.0]])
    picture = patch_map_image(grid, cmap="viridis", title="t", cell=10)
    assert picture.dtype == np.uint8 and picture.ndim == 3
    top, left = 26, 10  # the layout: title band above, margin on the left
    expected = colorize((grid - grid.min()) / (grid.max() - grid.min()), "viridis")
    for r in range(2):
        for c in range(3):
            square = picture[top + r * 10: top + (r + 1) * 10, left + c * 10: left + (c + 1) * 10]
            assert (square == expected[r, c]).all()
    # the colour bar beside the map runs from the highest colour at the top to the lowest at the bottom
    bar = picture[top: top + 20, left + 30 + 10 + 5]
    assert (bar[0] == colorize(np.array([1.0]), "viridis")[0]).all()
    assert (bar[-1] == colorize(np.array([0.0]), "viridis")[0]).all()
