"""All overlay and figure logic: maps -> heat images on the aligned crop and on the original photo. RGB throughout."""

from __future__ import annotations

import functools
import sys
from typing import Literal, Sequence

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attn_core.zoo.specs import BackboneSpec

# Figures are drawn with the object API on an Agg canvas: no pyplot state, safe in worker threads, and the user's
# matplotlib backend is left as it was.

Normalisation = Literal["per_image", "shared", "fixed"]
COLORMAPS = ("jet", "viridis", "inferno", "magma", "plasma", "turbo", "coolwarm", "gray")


def normalise_maps(
    maps: Sequence[np.ndarray], mode: Normalisation = "per_image", value_range: tuple[float, float] | None = None
) -> list[np.ndarray]:
    """Min-max normalise to [0, 1]: each map alone, all maps together, or over a fixed (vmin, vmax)."""
    if mode not in ("per_image", "shared", "fixed"):
        raise ValueError(f"Unknown normalisation {mode!r}; choose per_image, shared or fixed.")
    if mode == "fixed":
        if value_range is None:
            raise ValueError("Normalisation 'fixed' needs value_range=(vmin, vmax).")
        low, high = value_range
        ranges = [(low, high)] * len(maps)
    elif mode == "shared":
        low = min(float(np.nanmin(m)) for m in maps)
        high = max(float(np.nanmax(m)) for m in maps)
        ranges = [(low, high)] * len(maps)
    else:
        ranges = [(float(np.nanmin(m)), float(np.nanmax(m))) for m in maps]
    out = []
    for values, (low, high) in zip(maps, ranges):
        span = high - low
        scaled = (values - low) / span if span > 0 else np.zeros_like(values, dtype=np.float64)
        out.append(np.clip(scaled, 0.0, 1.0))
    return out


def map_to_crop(grid_map: np.ndarray, spec: BackboneSpec, size: int = 112) -> np.ndarray:
    """Bilinear upsampling of a patch-grid map onto the aligned crop; NaN where no patch covers (9-px grids: 108 of 112)."""
    covered_h, covered_w = spec.covered_size
    scale = size / spec.input_size
    height, width = int(round(covered_h * scale)), int(round(covered_w * scale))
    resized = cv2.resize(np.asarray(grid_map, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size), np.nan, dtype=np.float32)
    canvas[:height, :width] = resized  # patches start at the top-left pixel; the uncovered strip is right/bottom
    return canvas


@functools.lru_cache(maxsize=32)
def _lookup_table(cmap: str) -> np.ndarray:
    """256 RGB uint8 entries of a matplotlib colormap: colouring by table lookup is ~20x faster than calling it."""
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"Unknown colormap {cmap!r}; try one of {', '.join(COLORMAPS)}.")
    rgba = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))
    return (rgba[:, :3] * 255).round().astype(np.uint8)


def colorize(values01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """[0, 1] values -> RGB uint8 through a matplotlib colormap quantised to 256 levels (NaN -> the 0 colour)."""
    table = _lookup_table(cmap)
    index = np.clip(np.nan_to_num(np.asarray(values01, dtype=np.float32), nan=0.0) * 255.0 + 0.5, 0, 255)
    return table[index.astype(np.uint8)]


def overlay(image_rgb: np.ndarray, heat01: np.ndarray, cmap: str = "jet", alpha: float = 0.4) -> np.ndarray:
    """Blend a [0, 1] heat map (NaN = leave the image as is) over an RGB image, like the release (jet, alpha 0.4)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Overlay opacity must be between 0 and 1, got {alpha}.")
    if heat01.shape != image_rgb.shape[:2]:
        heat01 = cv2.resize(heat01.astype(np.float32), image_rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    out = image_rgb.copy()
    covered = ~np.isnan(heat01)
    rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if rows.size == 0:
        return out
    # Only the covered box is blended: on a photo the face is a small part of the frame.
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    colour = colorize(heat01[box], cmap).astype(np.float32)
    weight = np.where(covered[box], np.float32(alpha), np.float32(0.0))[..., None]
    base = image_rgb[box].astype(np.float32)
    out[box] = (base * (1 - weight) + colour * weight + 0.5).clip(0, 255).astype(np.uint8)
    return out


def crop_overlay(aligned: np.ndarray, grid_map: np.ndarray, spec: BackboneSpec, *, cmap: str = "jet", alpha: float = 0.4,
                 normalisation: Normalisation = "per_image", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The map over the aligned crop."""
    (heat,) = normalise_maps([grid_map], normalisation, value_range)
    return overlay(aligned, map_to_crop(heat, spec, aligned.shape[0]), cmap, alpha)


def photo_overlay(face, grid_map: np.ndarray, spec: BackboneSpec, *, cmap: str = "jet", alpha: float = 0.4,
                  normalisation: Normalisation = "per_image", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The map warped back onto the original photo through the inverse alignment (face: attn_core.faces.AlignedFace)."""
    (heat,) = normalise_maps([grid_map], normalisation, value_range)
    on_photo = face.warp_to_image(map_to_crop(heat, spec, face.aligned.shape[0]))
    return overlay(face.image, on_photo, cmap, alpha)


def draw_boxes(image_rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], highlight: int = 0) -> np.ndarray:
    """Face boxes on a copy of the photo: the scored face in green, others in orange."""
    canvas = image_rgb.copy()
    thickness = max(2, int(round(max(canvas.shape[:2]) / 300)))
    for index, (x, y, w, h) in enumerate(boxes):
        colour = (0, 200, 0) if index == highlight else (255, 140, 0)
        cv2.rectangle(canvas, (int(x), int(y)), (int(x + w), int(y + h)), colour, thickness)
    return canvas


def _figure(width: float, height: float, **subplots) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(**subplots)


def figure_to_array(figure: Figure) -> np.ndarray:
    """RGB pixels of a figure (an Agg canvas is attached when it has none that can render)."""
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    if getattr(figure, "number", None) is not None and "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(figure)  # a pyplot-managed figure (the caller's): free it
    return rgba[..., :3].copy()


def patch_map_figure(grid_map: np.ndarray, *, cmap: str = "jet", title: str = "") -> Figure:
    """The raw (unnormalised) patch map on its grid, with a colour bar in logit units."""
    figure, axis = _figure(4.2, 3.6)
    image = axis.imshow(grid_map, cmap=cmap, interpolation="nearest")
    axis.set_title(title or "mean pre-softmax logit received per patch", fontsize=9)
    axis.set_xticks(range(grid_map.shape[1]))
    axis.set_yticks(range(grid_map.shape[0]))
    axis.tick_params(labelsize=6)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure


def patch_map_image(grid_map: np.ndarray, *, cmap: str = "jet", title: str = "", cell: int | None = None,
                    value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The raw (unnormalised) patch map as an RGB picture: one square per patch, a colour bar with five values in
    logit units, and a title. The same content as :func:`patch_map_figure`, drawn with OpenCV instead of matplotlib
    because it is drawn on every request of the app: about 1 ms instead of about 100 ms (axes, ticks and text layout
    dominate a matplotlib figure's cost). ``value_range``: a fixed (low, high) for the colours and the bar, so maps
    of different images compare; values outside it take the end colours. Default: the map's own range."""
    values = np.asarray(grid_map, dtype=np.float64)
    rows, cols = values.shape
    cell = cell or max(6, 280 // max(rows, cols))
    low, high = value_range if value_range is not None else (float(np.nanmin(values)), float(np.nanmax(values)))
    span = high - low if high > low else 1.0
    heat = np.repeat(np.repeat(colorize(np.clip((values - low) / span, 0.0, 1.0), cmap), cell, axis=0), cell, axis=1)
    font, small, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.38, (20, 20, 20)
    top, left, gap, bar_width, label_width = 26, 10, 10, 14, 64
    height, width = rows * cell, cols * cell
    canvas = np.full((top + height + 10, left + width + gap + bar_width + label_width), 255, np.uint8)
    canvas = np.repeat(canvas[..., None], 3, axis=2)
    canvas[top:top + height, left:left + width] = heat
    cv2.rectangle(canvas, (left - 1, top - 1), (left + width, top + height), ink, 1)
    bar_x = left + width + gap
    ramp = colorize(np.linspace(1.0, 0.0, height)[:, None], cmap)  # high at the top
    canvas[top:top + height, bar_x:bar_x + bar_width] = np.repeat(ramp, bar_width, axis=1)
    cv2.rectangle(canvas, (bar_x - 1, top - 1), (bar_x + bar_width, top + height), ink, 1)
    for fraction in np.linspace(0.0, 1.0, 5):
        y = top + int(round((1.0 - fraction) * (height - 1)))
        cv2.line(canvas, (bar_x + bar_width, y), (bar_x + bar_width + 3, y), ink, 1)
        cv2.putText(canvas, f"{low + fraction * (high - low):+.3g}", (bar_x + bar_width + 6, y + 4), font, small, ink, 1,
                    cv2.LINE_AA)
    text = title or "mean pre-softmax logit received per patch"
    scale = min(0.45, 0.45 * (canvas.shape[1] - 2 * left) / max(cv2.getTextSize(text, font, 0.45, 1)[0][0], 1))
    cv2.putText(canvas, text, (left, 17), font, scale, ink, 1, cv2.LINE_AA)
    return canvas


def colour_bar_image(low: float, high: float, *, cmap: str = "jet", label: str = "", width: int = 560) -> np.ndarray:
    """A horizontal colour bar from ``low`` (left) to ``high`` (right) with five values and a label, as an RGB picture
    drawn with OpenCV (about 1 ms): the key of maps drawn in one fixed colour range."""
    font, scale, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20)
    left, right, top, bar_height = 14, 14, 26 if label else 8, 18
    canvas = np.full((top + bar_height + 26, width, 3), 255, np.uint8)
    length = width - left - right
    canvas[top:top + bar_height, left:left + length] = colorize(np.linspace(0.0, 1.0, length)[None, :], cmap)
    cv2.rectangle(canvas, (left - 1, top - 1), (left + length, top + bar_height), ink, 1)
    for fraction in np.linspace(0.0, 1.0, 5):
        x = left + int(round(fraction * (length - 1)))
        cv2.line(canvas, (x, top + bar_height), (x, top + bar_height + 4), ink, 1)
        text = f"{low + fraction * (high - low):+.3g}"
        text_width = cv2.getTextSize(text, font, scale, 1)[0][0]
        x = min(max(x - text_width // 2, 0), width - text_width)
        cv2.putText(canvas, text, (x, top + bar_height + 20), font, scale, ink, 1, cv2.LINE_AA)
    if label:
        cv2.putText(canvas, label, (left, 18), font, scale, ink, 1, cv2.LINE_AA)
    return canvas


def head_grid(aligned: np.ndarray, head_maps: np.ndarray, head_scores: np.ndarray, spec: BackboneSpec, *,
              cmap: str = "jet", alpha: float = 0.4, normalisation: Normalisation = "shared",
              value_range: tuple[float, float] | None = None, columns: int = 4) -> np.ndarray:
    """One overlay per head, each titled with that head's own score, as a single RGB image."""
    heats = normalise_maps(list(head_maps), normalisation, value_range)
    rows = int(np.ceil(len(heats) / columns))
    figure, axes = _figure(2.2 * columns, 2.4 * rows, nrows=rows, ncols=columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(heats):
            axis.imshow(overlay(aligned, map_to_crop(heats[index], spec, aligned.shape[0]), cmap, alpha))
            axis.set_title(f"head {index}: {head_scores[index]:+.4f}", fontsize=9)
    figure.tight_layout()
    return figure_to_array(figure)


def show_map_on_image(result, *, on: Literal["crop", "photo"] = "crop", head: int | None = None, cmap: str = "jet",
                      alpha: float = 0.4, normalisation: Normalisation = "per_image",
                      value_range: tuple[float, float] | None = None) -> np.ndarray:
    """A result's map over its face, everything taken from the result (like pytorch-grad-cam's show_cam_on_image).

    Args:
        result: a ``QualityResult`` with its face (``score_image`` / ``score_aligned`` results carry one).
        on: ``"crop"`` (the aligned 112x112 face) or ``"photo"`` (warped back onto the original photo).
        head: one head's map instead of the mean over the result's heads.
    """
    face = result.face
    if face is None:
        raise ValueError("This result carries no face (score_faces on bare arrays); use score_image or score_aligned, "
                         "or crop_overlay(aligned, result.patch_map, spec).")
    stats = result.stats
    geometry = BackboneSpec(name=result.backbone, family="face_vit", patch_size=stats.patch_size or
                            stats.input_size // stats.grid[0], grid=stats.grid, embed_dim=1, depth=1, num_heads=1,
                            input_size=stats.input_size)
    grid_map = result.patch_map if head is None else result.head_maps[head]
    if on == "crop":
        return crop_overlay(face.aligned, grid_map, geometry, cmap=cmap, alpha=alpha, normalisation=normalisation,
                            value_range=value_range)
    if on == "photo":
        return photo_overlay(face, grid_map, geometry, cmap=cmap, alpha=alpha, normalisation=normalisation,
                             value_range=value_range)
    raise ValueError(f"on must be 'crop' or 'photo', not {on!r}")
