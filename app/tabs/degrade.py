"""The Degradation explorer: degrade the aligned face and watch the score and the map next to what an independent
recogniser (SFace) loses; the sweep runs the same step as ``attn-fiqa sweep`` (``attn_core.eval.sweep_face``)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import matplotlib
from matplotlib.figure import Figure

from app.errors import LONG_REQUEST_SECONDS, user_errors
from app.models import load_model, weights_warning
from app.photos import largest_face, option_values
from app.pictures import png_file
from app.tabs.inspect import InspectControls
from app.widgets import examples, image_out, photo_input
from attn_core import ScoreOptions
from attn_core.eval import (
    QualityMethod,
    cosine,
    crop_landmarks,
    get_matcher,
    sweep_face,
)
from attn_core.faces import DEGRADATIONS, degrade
from attn_core.lab import head_change_figure, head_changes
from attn_core.viz import colour_bar_image, crop_overlay, figure_to_array

SWEEP_STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _degraded(image: Any, degradation: str, strength: float, seed: int, backbone: str, random_weights: bool,
              block: int, heads: list[int] | None, aggregation: str, tokens: str, centre_crop: bool):
    """The model, the clean face's result (cached), the degraded crop and its result (one forward pass)."""
    if degradation not in DEGRADATIONS:
        raise ValueError(f"Unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}.")
    model = load_model(backbone, random_weights)
    options = option_values(heads, aggregation, tokens)
    clean = largest_face(image, backbone, random_weights, block, centre_crop, options)
    damaged_crop = degrade(clean.face.aligned, degradation, float(strength), int(seed),
                           landmarks=crop_landmarks(clean.face))  # occluders at this face's eyes / mouth, as the sweep
    (damaged,) = model.score_faces(damaged_crop, ScoreOptions(block=clean.block, **options))
    return model, clean, damaged_crop, damaged


@user_errors
def degrade_face(image: Any, degradation: str, strength: float, seed: int = 0, backbone: str = "",
                 random_weights: bool = False, block: int = -1, heads: list[int] | None = None,
                 aggregation: str = "mean", tokens: str = "all", colormap: str = "jet", opacity: float = 0.4,
                 centre_crop: bool = False):
    """Clean vs degraded aligned face: both maps (one shared colour range), both scores, and SFace similarity."""
    if image is None:
        return None, None, None, None, None, "", {}
    model, clean, damaged_crop, damaged = _degraded(image, degradation, strength, seed, backbone, random_weights,
                                                    block, heads, aggregation, tokens, centre_crop)
    utility = float(cosine(*get_matcher("sface").embed([clean.face.aligned, damaged_crop])))
    shared = (float(min(clean.patch_map.min(), damaged.patch_map.min())),
              float(max(clean.patch_map.max(), damaged.patch_map.max())))
    render = {"cmap": colormap, "alpha": float(opacity), "normalisation": "fixed", "value_range": shared}
    clean_overlay = crop_overlay(clean.face.aligned, clean.patch_map, model.spec, **render)
    damaged_overlay = crop_overlay(damaged_crop, damaged.patch_map, model.spec, **render)
    threshold = getattr(get_matcher("sface"), "threshold", None)
    same = "" if threshold is None else (
        f" (OpenCV's same-person threshold is {threshold}: {'still matches' if utility >= threshold else 'no longer matches'})")
    label = DEGRADATIONS[degradation].label
    summary = (
        f"### {label} at strength {float(strength):.2f}\n"
        f"| | clean | degraded | change |\n|---|---|---|---|\n"
        f"| attention score (higher = better) | {clean.score:+.4f} | {damaged.score:+.4f} | "
        f"{damaged.score - clean.score:+.4f} |\n"
        f"| recognition utility: SFace cosine to the clean face | 1.000 | {utility:.3f} | {utility - 1:+.3f} |\n\n"
        f"SFace (OpenCV Zoo, a separate CNN recogniser) measures what recognition loses{same}. If the attention "
        f"score follows it, the quality score tracks recognition utility. Maps share one colour range."
        + weights_warning(model, random_weights)
    )
    details = {"degradation": degradation, "strength": float(strength), "seed": int(seed), "clean_score": clean.score,
               "degraded_score": damaged.score, "sface_cosine": utility}
    pictures = [png_file(p) for p in (clean.face.aligned, clean_overlay, damaged_crop, damaged_overlay)]
    key = colour_bar_image(*shared, cmap=colormap, label="Both maps, one colour range: attention received per patch "
                                                         "(logit units)")
    return (*pictures, png_file(key), summary, details)


@user_errors
def degrade_heads(image: Any, degradation: str, strength: float, seed: int = 0, backbone: str = "",
                  random_weights: bool = False, block: int = -1, heads: list[int] | None = None,
                  aggregation: str = "mean", tokens: str = "all", centre_crop: bool = False):
    """Which heads lose their query-key alignment: every head's map, degraded minus clean, in one symmetric colour
    range with a colour bar, each titled with its head score change (``attn_core.lab.head_changes``)."""
    if image is None:
        return None, {}
    model, clean, _, damaged = _degraded(image, degradation, strength, seed, backbone, random_weights, block, heads,
                                         aggregation, tokens, centre_crop)
    change = head_changes(clean, damaged)
    label = f"{DEGRADATIONS[degradation].label} at {float(strength):.2f}"
    title = (f"{model.spec.name}, block {clean.block}: {label}, every head (degraded \u2212 clean)"
             + (" \u2014 RANDOM WEIGHTS" if random_weights else ""))
    return png_file(head_change_figure(change, title)), {"degradation": degradation, "strength": float(strength),
                                                         "seed": int(seed), "block": clean.block, **change.record()}


@user_errors(seconds=LONG_REQUEST_SECONDS)
def sweep(image: Any, seed: int = 0, backbone: str = "", random_weights: bool = False, block: int = -1,
          heads: list[int] | None = None, aggregation: str = "mean", tokens: str = "all", centre_crop: bool = False):
    """Score and SFace utility against strength for every degradation, in one figure (one batched forward)."""
    if image is None:
        return None, {}
    model = load_model(backbone, random_weights)
    options = option_values(heads, aggregation, tokens)
    clean = largest_face(image, backbone, random_weights, block, centre_crop, options)
    # The same sweep step as `attn-fiqa sweep` and the training validity log (attn_core.eval.sweep_face).
    method = QualityMethod("score", model, ScoreOptions(block=clean.block, **options))
    measured = sweep_face(clean.face, [method], get_matcher("sface"), list(DEGRADATIONS), SWEEP_STRENGTHS, int(seed))
    table: dict[str, dict[str, list[float]]] = {
        name: {"strength": [0.0], "score": [float(measured.scores["score"][0])], "sface_cosine": [1.0]}
        for name in DEGRADATIONS
    }
    for (name, strength), score, utility in zip(measured.variants[1:], measured.scores["score"][1:],
                                                measured.utility[1:]):
        table[name]["strength"].append(strength)
        table[name]["score"].append(float(score))
        table[name]["sface_cosine"].append(float(utility))

    # Sized for the page: about 860 px wide, shown at about 800, so 10-pt text stays about 13 px high.
    figure = Figure(figsize=(8.6, 5.2), dpi=100, layout="constrained")  # no pyplot: handlers run in worker threads
    left, right = figure.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"]  # qualitative: ten distinct hues for the ten degradations
    markers = "osD^v<>pXh"
    for number, (name, curve) in enumerate(table.items()):
        style = {"color": colours(number % 10), "marker": markers[number % len(markers)], "markersize": 4,
                 "linewidth": 1.6, "label": DEGRADATIONS[name].label}
        left.plot(curve["strength"], curve["score"], **style)
        right.plot(curve["strength"], curve["sface_cosine"], **style)
    left.set_xlabel("strength", fontsize=10)
    left.set_ylabel("attention score (higher = better)", fontsize=10)
    left.set_title(f"{model.spec.name}" + (" (random weights)" if random_weights else ""), fontsize=11)
    right.set_xlabel("strength", fontsize=10)
    right.set_ylabel("SFace cosine to the clean face", fontsize=10)
    right.set_title("recognition utility (SFace)", fontsize=11)
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.tick_params(labelsize=9)
    figure.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=10, frameon=False)
    return png_file(figure_to_array(figure)), table


def degradation_choices() -> list[tuple[str, str]]:
    return [(d.label, d.name) for d in DEGRADATIONS.values()]


def build(backbone: gr.Dropdown, random_weights: gr.Checkbox, controls: InspectControls) -> None:
    """The Degradation explorer tab (inside an open ``gr.Tab``) and its events."""
    gr.Markdown("Degrade the aligned face and watch the score and the map, next to what a separate recogniser (SFace) "
                "loses. Uses the backbone above and the block / heads / aggregation / tokens / colormap set in *Inspect*.")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            degrade_image = photo_input("Face photo", "degrade-image")
            examples(degrade_image)
            degradation = gr.Dropdown(degradation_choices(), value="gaussian_blur", label="Degradation",
                                      elem_id="degradation")
            strength = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Strength (0 = clean)")
            seed = gr.Number(0, precision=0, label="Seed (noise, direction, patch position)")
            sweep_button = gr.Button("Sweep every degradation", variant="primary", elem_id="sweep")
        with gr.Column(scale=3):
            with gr.Row():
                small = {"height": 200, "min_width": 120, "buttons": ("fullscreen",)}  # labels stay whole
                clean_img = image_out("Clean", **small)
                clean_map = image_out("Clean map", **small)
                degraded_img = image_out("Degraded", elem_id="degraded", **small)
                degraded_map = image_out("Degraded map", elem_id="degraded-map", **small)
            map_key = image_out("Colour bar of both maps", elem_id="degrade-colour-bar", show_label=False,
                                height=70)
            degrade_md = gr.Markdown(elem_id="degrade-summary", latex_delimiters=[])
            head_change_plot = image_out("Per-head change: degraded minus clean map of every head, one colour range",
                                         elem_id="degrade-heads", show_label=False)  # the figure has its title
            sweep_plot = image_out("Score and recognition utility against strength", elem_id="sweep-plot",
                                   show_label=False)
            with gr.Accordion("Raw numbers", open=False):
                degrade_json = gr.JSON(label="degradation")
                heads_json = gr.JSON(label="per-head change")
                sweep_json = gr.JSON(label="sweep")

    model_inputs = [backbone, random_weights, controls.block, controls.heads, controls.aggregation, controls.tokens]
    gr.on([degrade_image.change, degradation.input, strength.release, seed.input], degrade_face,
          [degrade_image, degradation, strength, seed] + model_inputs + [controls.colormap, controls.opacity,
                                                                         controls.centre_crop],
          [clean_img, clean_map, degraded_img, degraded_map, map_key, degrade_md, degrade_json], api_name="degrade",
          trigger_mode="always_last", preprocess=False)
    gr.on([degrade_image.change, degradation.input, strength.release, seed.input], degrade_heads,
          [degrade_image, degradation, strength, seed] + model_inputs + [controls.centre_crop],
          [head_change_plot, heads_json], api_name="degrade_heads", trigger_mode="always_last", preprocess=False)
    sweep_button.click(sweep, [degrade_image, seed] + model_inputs + [controls.centre_crop], [sweep_plot, sweep_json],
                       api_name="sweep", concurrency_limit=1, preprocess=False)
