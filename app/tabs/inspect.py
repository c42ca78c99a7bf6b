"""The Inspect tab: one photo, its score in context, and why: face boxes, the aligned crop, the map on the crop and
on the photo, the raw patch map and every head's map. Only the first call for a (photo, backbone, block) runs the
model; every other control re-summarises the cached attention statistics (``QualityResult.with_options``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from app.errors import user_errors
from app.models import MEAN_VIEW, after_score, load_model, weights_text, weights_warning
from app.photos import example_results, option_values, score_photo
from app.pictures import photo_file, png_file
from app.widgets import examples, image_out, photo_input
from attn_core import QualityResult
from attn_core.faces import AlignedFace
from attn_core.scoring import AGGREGATIONS
from attn_core.viz import (
    COLORMAPS,
    crop_overlay,
    draw_boxes,
    patch_map_image,
    photo_overlay,
)
from attn_core.zoo import BackboneSpec

NORMALISATIONS = ("per image", "fixed range")


def _value_range(normalisation: str, vmin: float | None, vmax: float | None,
                 fallback: Callable[[], tuple[float, float]]) -> tuple[str, tuple[float, float] | None]:
    """render's normalisation mode: per image, or a fixed (vmin, vmax); a blank bound comes from ``fallback``."""
    if normalisation in (None, "", "per image", "per_image"):
        return "per_image", None
    if normalisation not in ("fixed range", "fixed"):
        raise ValueError(f"Unknown map normalisation {normalisation!r}; choose 'per image' or 'fixed range'.")
    low, high = fallback()
    low = low if vmin is None else float(vmin)
    high = high if vmax is None else float(vmax)
    if not high > low:
        raise ValueError(f"The fixed range needs vmin < vmax, got {low:g} and {high:g}.")
    return "fixed", (low, high)


def _shown_map(result: QualityResult, view: int | None) -> tuple[np.ndarray, str]:
    view = MEAN_VIEW if view is None else int(view)
    if view == MEAN_VIEW:
        selected = heads_text(result)
        return result.patch_map, "mean of all heads" if selected == "all" else f"mean of heads {selected}"
    if not 0 <= view < len(result.head_scores):
        raise ValueError(f"Head {view} does not exist: this block has heads 0..{len(result.head_scores) - 1}.")
    return result.head_maps[view], f"head {view} alone (its score {result.head_scores[view]:+.4f})"


def heads_text(result: QualityResult) -> str:
    return "all" if len(result.heads) == len(result.head_scores) else ", ".join(map(str, result.heads))


def _rank_text(score: float, examples: list[float]) -> str:
    if not examples:
        return ""
    below = sum(s < score for s in examples)
    return (f"Within the {len(examples)} bundled example faces scored by this backbone and these settings "
            f"(range {min(examples):+.4f} to {max(examples):+.4f}), this face scores higher than **{below} of "
            f"{len(examples)}**.")


def _select_face(results: list[QualityResult], face_index: int | None) -> tuple[int, QualityResult]:
    index = int(face_index or 0)
    if not 0 <= index < len(results):
        raise ValueError(f"Face {index} does not exist: {len(results)} face(s) were scored in this photo "
                         f"(0 is the largest).")
    return index, results[index]


INSPECT_OUTPUTS = ("photo with face boxes", "aligned crop", "overlay on crop", "overlay on photo", "raw patch map",
                   "score", "per-head maps", "faces found", "details")


@user_errors
def inspect(image: Any, backbone: str, random_weights: bool = False, block: int = -1, heads: list[int] | None = None,
            aggregation: str = "mean", tokens: str = "all", face_index: int = 0, view: int = MEAN_VIEW,
            colormap: str = "jet", opacity: float = 0.4, normalisation: str = "per image",
            vmin: float | None = None, vmax: float | None = None, centre_crop: bool = False,
            progress: gr.Progress = gr.Progress(track_tqdm=True)):
    """Score a photo and show why: boxes, crop, overlays, raw map, score in context, per-head maps.

    Only the first call for a (photo, backbone, block) runs the model; every other control re-summarises the
    cached attention statistics (``QualityResult.with_options``) and re-renders.
    """
    if image is None:
        return (None,) * 6 + ([], "", {})
    model = load_model(backbone, random_weights)
    spec = model.spec
    options = option_values(heads, aggregation, tokens)
    all_results = score_photo(image, backbone, random_weights, block, centre_crop)
    index, base = _select_face(all_results, face_index)
    result = base.with_options(**options)
    face: AlignedFace = result.face
    grid_map, map_label = _shown_map(result, view)

    examples = [r.with_options(**options) for _, r in example_results(backbone, random_weights, block)]

    def example_range() -> tuple[float, float]:
        maps = [_shown_map(r, view)[0] for r in examples] or [grid_map]
        return float(min(np.nanmin(m) for m in maps)), float(max(np.nanmax(m) for m in maps))

    mode, value_range = _value_range(normalisation, vmin, vmax, example_range)
    render = {"cmap": colormap, "alpha": float(opacity), "normalisation": mode, "value_range": value_range}

    boxes = [r.face.box for r in all_results if r.face.box is not None]
    photo_boxes = draw_boxes(face.image, boxes, highlight=index) if boxes else face.image
    on_crop = crop_overlay(face.aligned, grid_map, spec, **render)
    on_photo = photo_overlay(face, grid_map, spec, **render)
    raw = patch_map_image(grid_map, cmap=colormap, title=f"raw patch map (logits): {map_label.split(' (')[0]}")

    # Heads share one colour range (per image: the range over this face's heads), so they compare at a glance.
    head_range = value_range or (float(result.head_maps.min()), float(result.head_maps.max()))
    head_render = dict(render, normalisation="fixed", value_range=head_range)
    gallery = [
        (crop_overlay(face.aligned, result.head_maps[h], spec, **head_render),
         f"head {h}: {result.head_scores[h]:+.4f}" + ("" if h in result.heads else " (not selected)"))
        for h in range(len(result.head_scores))
    ]

    example_scores = [r.score for r in examples]
    exact = "mean(map) equals the score exactly" if result.map_is_exact else \
        "the map is the mean over the selected heads; with this aggregation/token mode it is not an exact decomposition"
    score_md = (
        f"## Score {result.score:+.4f}\n"
        f"Higher (less negative) = better. {_rank_text(result.score, example_scores)}\n\n"
        f"{spec.name} ({weights_text(result)}), block {result.block}, heads {heads_text(result)}, aggregation "
        f"{result.aggregation}, tokens {result.tokens}. Map shown: {map_label}; {exact}."
        + weights_warning(model, random_weights)
    )
    if face.method == "detected":
        faces_md = (f"**{face.num_faces} face(s) found**; showing face {index} "
                    f"({'the largest, ' if index == 0 else ''}green box).")
    elif face.method == "pre_aligned":
        faces_md = "**Pre-aligned 112x112 crop**: used as is, no detection."
    else:
        faces_md = "**No face found**: scored the centre square (as you asked)."
    details = {
        "score": result.score, "head_scores": [float(s) for s in result.head_scores], "heads": list(result.heads),
        "aggregation": result.aggregation, "tokens": result.tokens, "block": result.block, "backbone": spec.name,
        "weights": model.backbone.weights_name, "weights_file": result.weights, "weights_sha256": result.weights_sha256,
        "precision": result.precision, "face_index": index, "faces_found": face.num_faces,
        "alignment": face.method, "grid": list(spec.grid), "patch_size": spec.patch_size,
        "example_scores": example_scores, "map_is_exact": result.map_is_exact,
    }
    pictures = [photo_file(photo_boxes), png_file(face.aligned), png_file(on_crop), photo_file(on_photo), png_file(raw)]
    return (*pictures, score_md, [(png_file(p), caption) for p, caption in gallery], faces_md, details)


@dataclass
class InspectControls:
    """The Inspect tab's controls: the other tabs score with the same block, heads, aggregation, tokens and display."""

    image: gr.Image
    block: gr.Slider
    heads: gr.CheckboxGroup
    view: gr.Dropdown
    aggregation: gr.Radio
    tokens: gr.Radio
    face_index: gr.Number
    centre_crop: gr.Checkbox
    colormap: gr.Dropdown
    opacity: gr.Slider
    normalisation: gr.Radio
    vmin: gr.Number
    vmax: gr.Number
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


def build(backbone: gr.Dropdown, random_weights: gr.Checkbox, status: gr.Markdown, spec: BackboneSpec) -> InspectControls:
    """The Inspect tab (inside an open ``gr.Tab``) and its events; returns its controls."""
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            image = photo_input("Photo (upload, webcam or paste)", "inspect-image")
            examples(image)
            with gr.Accordion("Attention", open=True):
                block = gr.Slider(0, spec.depth - 1, value=spec.depth - 1, step=1, label="Block",
                                  info="transformer block read (default: the last, as in the paper)")
                heads = gr.CheckboxGroup([(f"head {h}", h) for h in range(spec.num_heads)], value=[],
                                         label="Heads", info="none ticked = all heads (the paper)", elem_id="heads")
                view = gr.Dropdown([("mean of selected heads", MEAN_VIEW)] + [(f"head {h}", h) for h in range(spec.num_heads)],
                                   value=MEAN_VIEW, label="Map shown", elem_id="view")
                aggregation = gr.Radio(list(AGGREGATIONS), value="mean", label="Head aggregation",
                                       info="how head scores combine: mean (paper), median, max, 1/std")
                tokens = gr.Radio([("all tokens (paper)", "all"), ("patch tokens only", "patch")], value="all",
                                  label="Prefix tokens", interactive=spec.num_prefix_tokens > 0)
                face_index = gr.Number(0, precision=0, minimum=0, label="Face (0 = largest)")
                centre_crop = gr.Checkbox(False, label="If no face is found, score the centre square")
            with gr.Accordion("Display", open=False):
                colormap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
                opacity = gr.Slider(0.0, 1.0, value=0.4, step=0.05, label="Overlay opacity")
                normalisation = gr.Radio(list(NORMALISATIONS), value="per image", label="Map normalisation",
                                         info="fixed range: same colours across images (blank bounds = the example "
                                              "set's range)")
                with gr.Row():
                    vmin = gr.Number(None, label="vmin (fixed range)")
                    vmax = gr.Number(None, label="vmax (fixed range)")
        with gr.Column(scale=3):
            score_md = gr.Markdown("Add a photo or click an example face.", elem_id="score", elem_classes=["score-box"],
                                   latex_delimiters=[])
            faces_md = gr.Markdown(elem_id="faces-found")
            with gr.Row():
                boxes_img = image_out("Detected face", elem_id="boxes", height=260)
                crop_img = image_out("Aligned crop (112x112)", elem_id="crop", height=260)
                crop_overlay_img = image_out("Map on the crop", elem_id="crop-overlay", height=260)
            with gr.Row():
                photo_overlay_img = image_out("Map on the photo", elem_id="photo-overlay")
                raw_map_img = image_out("Raw patch map (logit units)", elem_id="raw-map", show_label=False)
            head_gallery = gr.Gallery(label="Per-head maps (each with its own head score)", columns=4, height="auto",
                                      format="png", elem_id="head-gallery", object_fit="contain")
            with gr.Accordion("Raw numbers", open=False):
                details = gr.JSON(label="details")

    controls = InspectControls(image, block, heads, view, aggregation, tokens, face_index, centre_crop, colormap,
                               opacity, normalisation, vmin, vmax)
    controls.inputs = [image, backbone, random_weights, block, heads, aggregation, tokens, face_index, view, colormap,
                       opacity, normalisation, vmin, vmax, centre_crop]
    controls.outputs = [boxes_img, crop_img, crop_overlay_img, photo_overlay_img, raw_map_img, score_md, head_gallery,
                        faces_md, details]
    # preprocess=False: the uploaded file reaches attn_core as it is (its own loader handles EXIF, formats and
    # unreadable files with a plain message). Gradio checks only payloads that carry "meta":
    # app.photos.image_path checks every file of every request (upload cache or examples, regular, size-capped).
    image.change(inspect, controls.inputs, controls.outputs, api_name="inspect", preprocess=False).success(
        after_score, [backbone, random_weights], [status, backbone],
        api_visibility="private")  # after a download: status line and picker labels
    # Controls re-summarise cached attention (no forward pass); only block and backbone changes run the model.
    gr.on([heads.input, aggregation.input, tokens.input, view.input, face_index.input, centre_crop.input,
           colormap.input, opacity.release, normalisation.input, vmin.input, vmax.input, block.release],
          inspect, controls.inputs, controls.outputs, api_name="rerender", trigger_mode="always_last", preprocess=False)
    return controls
