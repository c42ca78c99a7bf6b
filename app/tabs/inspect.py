"""The Inspect tab: one photo, its score in context, and why: face boxes, the aligned crop, the map on the crop and
on the photo, the raw patch map and every head's map. Only the first call for a (photo, backbone, block) runs the
model; every other control re-summarises the cached attention statistics (``QualityResult.with_options``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from app.errors import user_errors
from app.models import MEAN_VIEW, after_score, load_model, weights_text, weights_warning
from app.photos import CENTRE_CROP_LABEL, example_paths, example_results, image_path, option_values, score_photo
from app.pictures import photo_file, png_file
from app.reference import reference_picker, reference_standing, refresh_choices
from app.widgets import examples, image_out, photo_input
from attn_core import QualityResult
from attn_core.digests import file_digest
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


def _bound(text: Any, name: str) -> float | None:
    """A fixed-range bound as typed: blank means blank (the example set's value), else a number."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or blank (blank: the example set's value), not {text!r}.") from None


def _value_range(normalisation: str, vmin: Any, vmax: Any,
                 fallback: Callable[[], tuple[float, float]]) -> tuple[str, tuple[float, float] | None]:
    """render's normalisation mode: per image, or a fixed (vmin, vmax); a blank bound comes from ``fallback``."""
    if normalisation in (None, "", "per image", "per_image"):
        return "per_image", None
    if normalisation not in ("fixed range", "fixed"):
        raise ValueError(f"Unknown map normalisation {normalisation!r}; choose 'per image' or 'fixed range'.")
    vmin, vmax = _bound(vmin, "vmin"), _bound(vmax, "vmax")
    low, high = fallback() if vmin is None or vmax is None else (vmin, vmax)
    low = low if vmin is None else vmin
    high = high if vmax is None else vmax
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


def _rank_text(score: float, examples: list[float], itself: bool = False) -> str:
    """Where ``score`` ranks among the example faces' scores (``itself``: the photo is one of them, already left
    out of ``examples``, so it is ranked among the others)."""
    if not examples:
        return ""
    below = sum(s < score for s in examples)
    others = "other " if itself else ""
    return (f"Within the {len(examples)} {others}bundled example faces scored by this backbone and these settings "
            f"(range {min(examples):+.4f} to {max(examples):+.4f}), this face scores higher than **{below} of "
            f"{len(examples)}**.")


@functools.lru_cache(maxsize=64)
def _example_digests() -> dict[str, str]:
    return {path.name: file_digest(path) for path in example_paths()}


def _example_name(image: Any) -> str | None:
    """The example file this photo is (same content), or None: it is then ranked among the other examples."""
    try:
        digest = file_digest(image_path(image))
    except (OSError, TypeError, ValueError):
        return None
    return next((name for name, known in _example_digests().items() if known == digest), None)


def _map_sentence(result: QualityResult, view: int | None) -> str:
    """What is true of the map shown: mean(map) is the score only for the mean view in an exact mode; a single head's
    map averages to that head's own score (in patch-only or prefix-free token modes), not to the score."""
    view = MEAN_VIEW if view is None else int(view)
    if view == MEAN_VIEW:
        return "mean(map) equals the score exactly" if result.map_is_exact else (
            "the map is the mean over the selected heads; with this aggregation/token mode it is not an exact "
            "decomposition")
    head_exact = result.tokens == "patch" or result.stats.num_prefix_tokens == 0
    own = f"head {view}'s own score {result.head_scores[view]:+.4f}"
    if head_exact:
        return f"mean(map) equals {own}, not the score above (which aggregates heads {heads_text(result)})"
    return f"this map leaves out the prefix tokens, so its mean is not exactly {own}"


def _no_result(message: str) -> tuple:
    """A request that cannot run: its reason once, in the score box; every picture cleared (no stale results)."""
    return (None,) * 5 + (f"**{message}**", [], "", {})


def _select_face(results: list[QualityResult], face_index: int | None) -> tuple[int, QualityResult]:
    index = int(face_index or 0)
    if not 0 <= index < len(results):
        raise ValueError(f"Face {index} does not exist: {len(results)} face(s) were scored in this photo "
                         f"(0 is the largest).")
    return index, results[index]


INSPECT_OUTPUTS = ("photo with face boxes", "aligned crop", "overlay on crop", "overlay on photo", "raw patch map",
                   "score", "per-head maps", "faces found", "details")


@user_errors
def _inspect(image: Any, backbone: str, random_weights: bool = False, block: int = -1, heads: list[int] | None = None,
            aggregation: str = "mean", tokens: str = "all", face_index: int = 0, view: int = MEAN_VIEW,
            colormap: str = "jet", opacity: float = 0.4, normalisation: str = "per image",
            vmin: Any = None, vmax: Any = None, centre_crop: bool = False,
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

    itself = _example_name(image)
    examples = [r.with_options(**options) for name, r in example_results(backbone, random_weights, block)
                if name != itself]

    def example_range() -> tuple[float, float]:
        maps = [_shown_map(r, view)[0] for r in examples] or [grid_map]
        return float(min(np.nanmin(m) for m in maps)), float(max(np.nanmax(m) for m in maps))

    mode, value_range = _value_range(normalisation, vmin, vmax, example_range)
    render = {"cmap": colormap, "alpha": float(opacity), "normalisation": mode, "value_range": value_range}

    boxes = [r.face.box for r in all_results if r.face.box is not None]
    photo_boxes = draw_boxes(face.image, boxes, highlight=index) if boxes else face.image
    on_crop = crop_overlay(face.aligned, grid_map, spec, **render)
    on_photo = photo_overlay(face, grid_map, spec, **render)
    raw = patch_map_image(grid_map, cmap=colormap, title=f"raw patch map (logits): {map_label.split(' (')[0]}",
                          value_range=value_range)

    # Heads share one colour range (per image: the range over this face's heads), so they compare at a glance.
    head_range = value_range or (float(result.head_maps.min()), float(result.head_maps.max()))
    head_render = dict(render, normalisation="fixed", value_range=head_range)
    gallery = [
        (crop_overlay(face.aligned, result.head_maps[h], spec, **head_render),
         f"head {h}: {result.head_scores[h]:+.4f}" + ("" if h in result.heads else " (not selected)"))
        for h in range(len(result.head_scores))
    ]

    example_scores = [r.score for r in examples]
    exact = _map_sentence(result, view)
    score_md = (
        f"## Score {result.score:+.4f}\n"
        f"Higher (less negative) = better. {_rank_text(result.score, example_scores, itself is not None)}\n\n"
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


@functools.wraps(_inspect)  # the API info names _inspect's parameters
def inspect(*args, **kwargs):
    """Score a photo and show why (``_inspect``); a request that cannot run says so once, in the score box, instead of
    an error badge on every output and a toast over the controls."""
    try:
        return _inspect(*args, **kwargs)
    except gr.Error as error:
        return _no_result(error.message)


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
    vmin: gr.Textbox
    vmax: gr.Textbox
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


def build(backbone: gr.Dropdown, random_weights: gr.Checkbox, status: gr.Markdown, spec: BackboneSpec) -> InspectControls:
    """The Inspect tab (inside an open ``gr.Tab``) and its events; returns its controls."""
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            image = photo_input("Photo (upload, webcam or paste)", "inspect-image")
            examples(image)
            with gr.Accordion("Attention", open=True):
                block = gr.Slider(0, spec.depth - 1, value=spec.depth - 1, step=1, label="Block", elem_id="block",
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
                centre_crop = gr.Checkbox(False, label=CENTRE_CROP_LABEL)
            with gr.Accordion("Display", open=False):
                colormap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
                opacity = gr.Slider(0.0, 1.0, value=0.4, step=0.05, label="Overlay opacity")
                normalisation = gr.Radio(list(NORMALISATIONS), value="per image", label="Map normalisation",
                                         info="fixed range: same colours across images (blank bounds = the example "
                                              "set's range)")
                with gr.Row():  # text boxes: a blank bound stays blank (a Number box would show and send 0)
                    vmin = gr.Textbox("", label="vmin (fixed range)", placeholder="blank: example set's minimum",
                                      elem_id="vmin")
                    vmax = gr.Textbox("", label="vmax (fixed range)", placeholder="blank: example set's maximum",
                                      elem_id="vmax")
        with gr.Column(scale=3):
            score_md = gr.Markdown("Add a photo or click an example face.", elem_id="score", elem_classes=["score-box"],
                                   latex_delimiters=[])
            with gr.Row(equal_height=True):  # what value is good? the score against a reference set (app.reference)
                reference = reference_picker("inspect-reference", "percentile and 0-100 value against faces you chose")
                standing_md = gr.Markdown(elem_id="reference-standing", latex_delimiters=[])
            faces_md = gr.Markdown(elem_id="faces-found")
            with gr.Row():
                boxes_img = image_out("Detected face", elem_id="boxes", height=260)
                crop_img = image_out("Aligned crop", elem_id="crop", height=260)  # 112x112; a longer label is clipped
                crop_overlay_img = image_out("Map on the crop", elem_id="crop-overlay", height=260)
            with gr.Row():
                photo_overlay_img = image_out("Map on the photo", elem_id="photo-overlay")
                raw_map_img = image_out("Raw patch map (logit units)", elem_id="raw-map")
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
           colormap.input, opacity.release, normalisation.input, vmin.submit, vmin.blur, vmax.submit, vmax.blur],
          inspect, controls.inputs, controls.outputs, api_name="rerender", trigger_mode="always_last", preprocess=False)
    # The block runs the model: on every way of changing it (drag and release, typing + Enter, arrow keys), the
    # last value wins. A backbone change that moves it runs here too (cached: its own re-inspect is a re-render).
    block.change(inspect, controls.inputs, controls.outputs, api_name="rerun_block", trigger_mode="always_last",
                 preprocess=False)
    gr.on([details.change, reference.input], reference_standing, [details, reference], standing_md,
          api_name="reference_standing", trigger_mode="always_last")
    reference.focus(refresh_choices, reference, reference, api_name="reference_choices")
    return controls
