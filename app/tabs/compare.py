"""Compare backbones: one face through several backbones with the paper's settings, each map drawn with the
patch grid that backbone uses."""

from __future__ import annotations

from typing import Any

import cv2
import gradio as gr
import numpy as np

from app.errors import public_message, user_errors
from app.models import backbone_choices, load_model, spec_of
from app.photos import image_path, score_photo
from app.pictures import png_file
from app.tabs.inspect import InspectControls
from app.widgets import examples, photo_input
from attn_core.viz import crop_overlay
from attn_core.zoo import BackboneSpec


def _grid_lines(overlay_rgb: np.ndarray, spec: BackboneSpec, scale: int = 3) -> np.ndarray:
    """Enlarge a crop overlay and draw the backbone's patch grid on it (the area the grid covers)."""
    size = overlay_rgb.shape[0]
    big = cv2.resize(overlay_rgb, (size * scale, size * scale), interpolation=cv2.INTER_NEAREST)
    step = spec.patch_size * size / spec.input_size * scale
    covered_h, covered_w = (c * size / spec.input_size * scale for c in spec.covered_size)
    for i in range(spec.grid[0] + 1):
        y = int(round(i * step))
        cv2.line(big, (0, y), (int(round(covered_w)), y), (255, 255, 255), 1)
    for j in range(spec.grid[1] + 1):
        x = int(round(j * step))
        cv2.line(big, (x, 0), (x, int(round(covered_h))), (255, 255, 255), 1)
    return big


COMPARE_HEADERS = ["backbone", "score", "weights", "grid", "px", "prefix", "face", "error"]


@user_errors
def compare(image: Any, backbones: list[str] | None, random_weights: bool = False, colormap: str = "jet",
            opacity: float = 0.4, centre_crop: bool = False):
    """One face through several backbones (last block, all heads, mean: the paper's score): maps, scores, grids."""
    if image is None:
        return [], {"headers": COMPARE_HEADERS, "data": []}
    if not backbones:
        raise ValueError("Tick at least one backbone to compare.")
    image = image_path(image)  # a refused file refuses the request, not one backbone's row
    gallery, rows = [], []
    for name in backbones:
        spec = spec_of(name)
        grid = f"{spec.grid[0]}x{spec.grid[1]}"
        try:
            model = load_model(name, random_weights)
            result = score_photo(image, name, random_weights, -1, centre_crop)[0]
        except (ValueError, RuntimeError, FileNotFoundError) as error:  # one backbone failing is a row, not a crash
            rows.append([name, None, "", grid, spec.patch_size, spec.num_prefix_tokens,
                         "yes" if spec.face_trained else "no", public_message(str(error))])
            continue
        picture = crop_overlay(result.face.aligned, result.patch_map, spec, cmap=colormap, alpha=float(opacity))
        weights = "random" if random_weights else "trained"
        gallery.append((png_file(_grid_lines(picture, spec)), f"{name}: {result.score:+.4f} ({weights}; {grid} of "
                                                    f"{spec.patch_size}px)"))
        rows.append([name, round(result.score, 6), model.backbone.weights_name, grid, spec.patch_size,
                     spec.num_prefix_tokens, "yes" if spec.face_trained else "no", ""])
    return gallery, {"headers": COMPARE_HEADERS, "data": rows}


def build(default_backbone: str, random_weights: gr.Checkbox, controls: InspectControls) -> None:
    """The Compare tab (inside an open ``gr.Tab``) and its events; ``random_weights``: the app's one switch (top)."""
    gr.Markdown("One face through several backbones with the paper's settings (last block, all heads, mean). White "
                "lines: the patch grid each backbone uses (9-px grids cover only 108x108).")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            compare_image = photo_input("Face photo", "compare-image")
            examples(compare_image)
            compare_backbones = gr.CheckboxGroup(
                backbone_choices(), label="Backbones",
                value=list(dict.fromkeys([default_backbone, "test-face-vit-p8", "test-face-vit-p9"])))
            compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
        with gr.Column(scale=3):
            compare_gallery = gr.Gallery(label="Maps", columns=3, elem_id="compare-gallery", height=320, format="png",
                                         object_fit="contain")
            compare_table = gr.Dataframe(headers=COMPARE_HEADERS, label="Scores", interactive=False, elem_id="compare-table")
    compare_button.click(compare, [compare_image, compare_backbones, random_weights, controls.colormap, controls.opacity,
                                   controls.centre_crop], [compare_gallery, compare_table], api_name="compare",
                         concurrency_limit=1, preprocess=False)
