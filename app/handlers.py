"""Everything the UI calls, as plain functions (each is also a named API endpoint): glue between Gradio and attn_core.

No scoring logic lives here: scores and maps come from ``FaceQualityModel`` and ``QualityResult.with_options``,
pictures from ``attn_core.render``. This module only caches results, picks what to show, and turns attn_core's
expected errors into one plain sentence for the user (``gr.Error``), never a traceback.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import gradio as gr
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from attn_core.api import IMAGE_SUFFIXES, FaceQualityModel, ScoreOptions
from attn_core.degrade import DEGRADATIONS, degrade
from attn_core.eval_commands import (
    DEFAULT_FMRS,
    EXAMPLE_IDENTITIES,
    THRESHOLD_MODES,
    EvalReport,
    QualityMethod,
    crop_landmarks,
    demo_identity_folder,
    run_eval,
    sweep_face,
)
from attn_core.evaluation import edc_table_markdown, format_fmr
from attn_core.faces import AlignedFace, extract_faces
from attn_core.matcher import available_matchers, cosine, get_matcher
from attn_core.quality import QualityResult
from attn_core.hub import check_reachable, offline_reason
from attn_core.registry import (
    DEFAULT_BACKBONE,
    ONLINE_DEFAULT,
    installed_default,
    no_backbone_message,
    TIMM_TEST_MODEL,
    BackboneNotAvailable,
    get_spec,
    how_to_get,
    list_backbones,
    resolve_default,
    weights_available,
)
from attn_core.render import crop_overlay, draw_boxes, figure_to_array, patch_map_figure, photo_overlay
from attn_core.specs import ASSETS_DIR, BackboneSpec

log = logging.getLogger("attn_fiqa.app")

EXAMPLES_DIR = ASSETS_DIR / "examples"
RANDOM_LABEL = "random weights (mechanics demo only)"
MEAN_VIEW = -1  # "map shown": the mean over the selected heads; 0..H-1 = that head alone
NORMALISATIONS = ("per image", "fixed range")
SWEEP_STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
GALLERY_SIZE = 4  # lowest / highest faces shown in the batch tab

# Guards for uploads in the batch tab: a burst of users, or one zip bomb, must not exhaust memory or disk.
MAX_BATCH_FILES = 500
MAX_ZIP_MEMBERS = 500
MAX_ZIP_MEMBER_BYTES = 40 * 1024 * 1024
MAX_ZIP_TOTAL_BYTES = 400 * 1024 * 1024  # per run, over all zips
MAX_UPLOAD = "200mb"  # any one uploaded file (Gradio rejects larger ones before they reach us)

_PHOTO_CACHE_SIZE = 32


# --------------------------------------------------------------------------------------------- errors


def _upload_folders() -> list[str]:
    """Where Gradio keeps uploads (``GRADIO_TEMP_DIR``, default <tmp>/gradio): never shown to users."""
    return [os.path.realpath(os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")),
            os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")]


def public_message(message: str) -> str:
    """The message with the server's upload folders removed: users see their own file names, not /tmp/gradio/<hash>/."""
    for folder in _upload_folders():
        message = re.sub(re.escape(folder.rstrip("/")) + r"/[0-9a-fA-F]{16,}/", "", message)
    return message


def user_errors(function: Callable) -> Callable:
    """Expected failures (bad input, no face, missing weights, bad checkpoint) reach the user as one sentence."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except KeyError as error:  # unknown backbone names: KeyError's str() would add quotes
            raise gr.Error(str(error.args[0]) if error.args else "Unknown name.", print_exception=False) from None
        except (ValueError, RuntimeError, FileNotFoundError) as error:
            # ImageLoadError, NoFaceError, CheckpointError are ValueErrors; BackboneNotAvailable is a RuntimeError.
            raise gr.Error(public_message(str(error)), print_exception=False) from None
        except Exception as error:  # a bug: log it for us, tell the user plainly
            log.exception("unexpected error in %s", function.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}); the server log has the details.",
                           print_exception=False) from None

    return wrapper


# -------------------------------------------------------------------------------------------- backbones


@dataclass(frozen=True)
class Startup:
    """What the app knows at launch: the default backbone and, when none is face-trained, why and what to do."""

    default_backbone: str
    default_random: bool
    missing_message: str | None


def use_weights(backbone: str, weights: str, num_heads: int | None = None) -> str:
    """Serve ``backbone`` (empty: read the architecture from the file) with the user's checkpoint ``weights``.

    The file is loaded once here, so a bad checkpoint stops the launch with its reason instead of failing later.
    Returns the backbone name the app lists it under.
    """
    model = FaceQualityModel(backbone, weights=weights, num_heads=num_heads, precision=_launch["precision"])
    name = backbone or model.spec.name
    _user_models[name] = model
    return name


# The user's own checkpoints given at launch (``attn-fiqa app --weights FILE``): listed name -> loaded model.
_user_models: dict[str, FaceQualityModel] = {}
# Launch options every request follows (``attn-fiqa app --precision``, set by ui.launch: "auto" = bf16 where the
# hardware has it, measured to cut the ViT-S request p50 from 164 to 100 ms on this project's CPU, see
# benchmarks/RESULTS.md). fp32 until launch, for handlers called directly.
_launch: dict[str, str] = {"precision": "fp32"}


def set_precision(precision: str) -> None:
    """The arithmetic of every model this app serves (``--precision``; "auto": bf16 where the hardware has it)."""
    import torch

    from attn_core.quality import resolve_precision

    _launch["precision"] = resolve_precision(precision, "cuda" if torch.cuda.is_available() else "cpu")


def spec_of(backbone: str) -> BackboneSpec:
    """The spec of a listed backbone, including one served with the user's own checkpoint."""
    return _user_models[backbone].spec if backbone in _user_models else get_spec(backbone)


def has_weights(spec: BackboneSpec) -> bool:
    return spec.name in _user_models or weights_available(spec)


def downloadable(spec: BackboneSpec) -> bool:
    """Weights on the Hub that this server may download on first use (not in offline mode)."""
    return spec.weights.kind in ("hf", "timm") and bool(spec.weights.location) and offline_reason() is None


def startup_state() -> Startup:
    """The default backbone at launch, without blocking: installed weights first; else, if the Hub answers, the
    online default (downloaded on first use, with progress); else the banner with the exact reason."""
    if _user_models:
        return Startup(next(iter(_user_models)), False, None)
    installed = installed_default()
    if installed is not None:
        return Startup(installed, False, None)
    reason = check_reachable(get_spec(ONLINE_DEFAULT).weights.location)
    if reason is None:
        return Startup(ONLINE_DEFAULT, False, None)
    return Startup(DEFAULT_BACKBONE, False, no_backbone_message(f"Nothing can be downloaded now: {reason}."))


@functools.lru_cache(maxsize=1)
def backbone_specs() -> tuple[BackboneSpec, ...]:
    """Every registry entry (face ViTs, curated timm ViTs), plus the tiny random ones for the mechanics demo:
    two face ViTs (8- and 9-px patches) and timm's test ViT, which has a class token."""
    return tuple(list_backbones(include_tests=True)) + (get_spec(f"timm:{TIMM_TEST_MODEL}"),)


def backbone_choices() -> list[tuple[str, str]]:
    choices = []
    specs = list(backbone_specs()) + [m.spec for n, m in _user_models.items() if n not in {s.name for s in backbone_specs()}]
    for spec in specs:
        if spec.weights.kind == "none" and spec.name not in _user_models:
            status = "random weights only"
        elif has_weights(spec):
            status = "your weights" if spec.name in _user_models else "weights installed"
        else:
            status = "downloaded on first use" if downloadable(spec) else "weights not installed"
        kind = "face" if spec.face_trained else "not face-trained"
        choices.append((f"{spec.name}  ({kind}; {status})", spec.name))
    return choices


def load_model(backbone: str, random_weights: bool) -> FaceQualityModel:
    """The cached model; never random unless the user ticked the box."""
    if not backbone:
        raise ValueError("Choose a backbone first.")
    if backbone in _user_models and not random_weights:
        return _user_models[backbone]
    if backbone not in {spec.name for spec in backbone_specs()}:
        # Only what the picker lists: any other timm name would let a remote user load arbitrary (huge) models.
        raise ValueError(f"Unknown backbone {backbone!r}: this app serves only the backbones its picker lists.")
    spec = spec_of(backbone)
    # Hub weights not yet cached are downloaded by FaceQualityModel on first use (huggingface_hub's progress bars,
    # which the calling handler's gr.Progress(track_tqdm=True) shows), then cached for every later run.
    if not random_weights and not weights_available(spec) and not downloadable(spec):
        raise BackboneNotAvailable(
            f"{how_to_get(spec)} Or tick '{RANDOM_LABEL}' to see the mechanics with random weights (that score "
            f"means nothing about face quality)."
        )
    return FaceQualityModel(backbone, random_init=bool(random_weights), precision=_launch["precision"])


def backbone_status(backbone: str, random_weights: bool) -> str:
    """The sentence shown under the backbone picker: what the weights are and what the score can mean."""
    if backbone in _user_models and not random_weights:
        model = _user_models[backbone]
        return f"Your weights for **{model.spec.name}**: `{model.backbone.weights_name}` (sha256 " \
               f"{model.backbone.weights_sha256[:12]}...)."
    spec = spec_of(backbone)
    lines = []
    if random_weights:
        lines.append(f"**Random weights**: {spec.name} runs with seeded random weights. This shows the mechanics only; "
                     "the score says nothing about face quality.")
    elif spec.weights.kind == "none":
        lines.append(f"**{spec.name} has no trained weights.** Tick '{RANDOM_LABEL}' to run it.")
    elif not weights_available(spec) and downloadable(spec):
        size = f"about {spec.weights.size_mb:.0f} MB" if spec.weights.size_mb else "size unknown"
        lines.append(f"**{spec.name}**: face-trained weights from the Hugging Face Hub ({spec.weights.location}, "
                     f"{size}), downloaded on first use with a progress bar, then cached. Licence: {spec.weights.licence}.")
    elif not weights_available(spec):
        lines.append(f"**Weights not installed.** {how_to_get(spec)} Or tick '{RANDOM_LABEL}'.")
    else:
        lines.append(f"Trained weights installed for **{spec.name}**.")
    if not spec.face_trained:
        lines.append("Not trained for face recognition: its score is not a face-quality measure.")
    return " ".join(lines)


@user_errors
def after_score(backbone: str, random_weights: bool = False):
    """After a request that may have downloaded weights: the status line, and the picker's labels (which said
    "downloaded on first use" until now). The picker's value is kept; only user input re-runs anything."""
    return backbone_status(backbone, random_weights), gr.update(choices=backbone_choices(), value=backbone)


def backbone_info(backbone: str, random_weights: bool = False):
    """On a backbone change: its status line, block range, heads, token options and card (no forward pass)."""
    spec = spec_of(backbone)
    heads = [(f"head {h}", h) for h in range(spec.num_heads)]
    views = [("mean of selected heads", MEAN_VIEW)] + heads
    has_prefix = spec.num_prefix_tokens > 0
    return (
        backbone_status(backbone, random_weights),
        gr.update(minimum=0, maximum=spec.depth - 1, value=spec.depth - 1, step=1),
        gr.update(choices=heads, value=[]),
        gr.update(choices=views, value=MEAN_VIEW),
        gr.update(value="all", interactive=has_prefix,
                  info=f"{spec.num_prefix_tokens} prefix token(s) (CLS/registers)" if has_prefix
                  else "this model has no prefix tokens: all = patch only"),
        backbone_card(backbone),
    )


def _weights_text(result: QualityResult) -> str:
    """The weights by file name and hash (never the server's own path), and the precision when it is not fp32."""
    text = f"{result.weights}, sha256 {result.weights_sha256[:12]}" if result.weights_sha256 else result.weights
    return text if result.precision == "fp32" else f"{text}, {result.precision}"


def backbone_card(backbone: str) -> str:
    spec = spec_of(backbone)
    rows = "\n".join(f"| {key} | {value} |" for key, value in spec.card().items())
    available = "installed" if has_weights(spec) else (
        "downloaded on first use" if downloadable(spec) else f"not installed. {how_to_get(spec)}")
    return f"### Backbone card: {spec.name}\n\n| field | value |\n|---|---|\n{rows}\n| trained weights | {available} |\n"


# --------------------------------------------------------------------------------------------- caches


class _LRU:
    """A small thread-safe LRU cache (the queue runs handlers on several worker threads)."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_photo_results = _LRU(_PHOTO_CACHE_SIZE)  # (digest, backbone, random, block, no-face mode) -> results of every face
_example_results = _LRU(16)  # (backbone, random, block) -> example-set results
forward_passes = {"count": 0}  # forward passes run by the app (tests check control changes add none)


def _digest(path: str | os.PathLike) -> str:
    hasher = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _image_path(image: Any) -> str:
    if isinstance(image, dict):  # gradio_client FileData / ImageData payloads
        image = image.get("path") or image.get("url")
    if not image:
        raise ValueError("Add a photo first: upload one, use the webcam, paste one, or click an example face.")
    return str(image)


def score_photo(image: Any, backbone: str, random_weights: bool, block: int, centre_crop: bool) -> list[QualityResult]:
    """Every face of the photo scored at ``block`` (default options), cached: control changes re-summarise these."""
    path = _image_path(image)
    model = load_model(backbone, random_weights)
    index = model.backbone.block_index(int(block))
    key = (_digest(path), backbone, bool(random_weights), index, bool(centre_crop))
    results = _photo_results.get(key)
    if results is None:
        on_no_face = "center_crop" if centre_crop else "error"
        results = model.score_image(path, ScoreOptions(block=index), all_faces=True, on_no_face=on_no_face)
        forward_passes["count"] += 1
        _photo_results.put(key, results)
    return results


@functools.lru_cache(maxsize=1)
def example_faces() -> tuple[tuple[str, AlignedFace], ...]:
    """The bundled example photos, detected and aligned once (largest face of each)."""
    faces = []
    for path in example_paths():
        try:
            faces.append((path.name, extract_faces(path)[0]))
        except ValueError:
            log.warning("example %s has no detectable face; left out of the score context", path)
    return tuple(faces)


def example_paths() -> list[Path]:
    return sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def example_results(model: FaceQualityModel, random_weights: bool, block: int) -> list[tuple[str, QualityResult]]:
    """The example set scored once per (backbone, weights, block); callers re-summarise for their options."""
    index = model.backbone.block_index(int(block))
    key = (model.spec.name, bool(random_weights), index)
    cached = _example_results.get(key)
    if cached is None:
        named = example_faces()
        results = model.score_aligned([face for _, face in named], ScoreOptions(block=index))
        forward_passes["count"] += 1
        cached = [(name, result) for (name, _), result in zip(named, results)]
        _example_results.put(key, cached)
    return cached


# ------------------------------------------------------------------------------------------- helpers


def _heads(heads: Sequence[int] | None) -> tuple[int, ...] | None:
    if not heads:
        return None
    return tuple(sorted(int(h) for h in heads))


def _options(heads, aggregation: str, tokens: str) -> dict:
    return {"heads": _heads(heads), "aggregation": aggregation or "mean", "tokens": tokens or "all"}


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
        selected = _heads_text(result)
        return result.patch_map, "mean of all heads" if selected == "all" else f"mean of heads {selected}"
    if not 0 <= view < len(result.head_scores):
        raise ValueError(f"Head {view} does not exist: this block has heads 0..{len(result.head_scores) - 1}.")
    return result.head_maps[view], f"head {view} alone (its score {result.head_scores[view]:+.4f})"


def _heads_text(result: QualityResult) -> str:
    return "all" if len(result.heads) == len(result.head_scores) else ", ".join(map(str, result.heads))


def _rank_text(score: float, examples: list[float]) -> str:
    if not examples:
        return ""
    below = sum(s < score for s in examples)
    return (f"Within the {len(examples)} bundled example faces scored by this backbone and these settings "
            f"(range {min(examples):+.4f} to {max(examples):+.4f}), this face scores higher than **{below} of "
            f"{len(examples)}**.")


def _warning(model: FaceQualityModel, random_weights: bool) -> str:
    if random_weights:
        return ("\n\n> **Random weights: mechanics demo only.** This number is not a face-quality score; install a "
                "face-trained backbone for that.")
    if not model.spec.face_trained:
        return ("\n\n> **Not a face-recognition model.** On a general ViT this number is not face quality; use it "
                "to compare and teach only.")
    return ""


def _select_face(results: list[QualityResult], face_index: int | None) -> tuple[int, QualityResult]:
    index = int(face_index or 0)
    if not 0 <= index < len(results):
        raise ValueError(f"Face {index} does not exist: {len(results)} face(s) were scored in this photo "
                         f"(0 is the largest).")
    return index, results[index]


# --------------------------------------------------------------------------------------------- inspect

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
    options = _options(heads, aggregation, tokens)
    all_results = score_photo(image, backbone, random_weights, block, centre_crop)
    index, base = _select_face(all_results, face_index)
    result = base.with_options(**options)
    face: AlignedFace = result.face
    grid_map, map_label = _shown_map(result, view)

    examples = [r.with_options(**options) for _, r in example_results(model, random_weights, block)]

    def example_range() -> tuple[float, float]:
        maps = [_shown_map(r, view)[0] for r in examples] or [grid_map]
        return float(min(np.nanmin(m) for m in maps)), float(max(np.nanmax(m) for m in maps))

    mode, value_range = _value_range(normalisation, vmin, vmax, example_range)
    render = {"cmap": colormap, "alpha": float(opacity), "normalisation": mode, "value_range": value_range}

    boxes = [r.face.box for r in all_results if r.face.box is not None]
    photo_boxes = draw_boxes(face.image, boxes, highlight=index) if boxes else face.image
    on_crop = crop_overlay(face.aligned, grid_map, spec, **render)
    on_photo = photo_overlay(face, grid_map, spec, **render)
    raw = figure_to_array(patch_map_figure(grid_map, cmap=colormap, title=f"raw patch map (logits): {map_label.split(' (')[0]}"))

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
        f"{spec.name} ({_weights_text(result)}), block {result.block}, heads {_heads_text(result)}, aggregation "
        f"{result.aggregation}, tokens {result.tokens}. Map shown: {map_label}; {exact}."
        + _warning(model, random_weights)
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
        "weights": model.backbone.weights, "weights_file": result.weights, "weights_sha256": result.weights_sha256,
        "precision": result.precision, "face_index": index, "faces_found": face.num_faces,
        "alignment": face.method, "grid": list(spec.grid), "patch_size": spec.patch_size,
        "example_scores": example_scores, "map_is_exact": result.map_is_exact,
    }
    return photo_boxes, face.aligned, on_crop, on_photo, raw, score_md, gallery, faces_md, details


# ------------------------------------------------------------------------------------------ degradation


def _largest_face(image, backbone, random_weights, block, centre_crop, options) -> QualityResult:
    return score_photo(image, backbone, random_weights, block, centre_crop)[0].with_options(**options)


@user_errors
def degrade_face(image: Any, degradation: str, strength: float, seed: int = 0, backbone: str = "",
                 random_weights: bool = False, block: int = -1, heads: list[int] | None = None,
                 aggregation: str = "mean", tokens: str = "all", colormap: str = "jet", opacity: float = 0.4,
                 centre_crop: bool = False):
    """Clean vs degraded aligned face: both maps (one shared colour range), both scores, and SFace similarity."""
    if image is None:
        return None, None, None, None, "", {}
    if degradation not in DEGRADATIONS:
        raise ValueError(f"Unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}.")
    model = load_model(backbone, random_weights)
    options = _options(heads, aggregation, tokens)
    clean = _largest_face(image, backbone, random_weights, block, centre_crop, options)
    damaged_crop = degrade(clean.face.aligned, degradation, float(strength), int(seed),
                           landmarks=crop_landmarks(clean.face))  # occluders at this face's eyes / mouth, as the sweep
    (damaged,) = model.score_faces(damaged_crop, ScoreOptions(block=clean.block, **options))
    forward_passes["count"] += 1
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
        + _warning(model, random_weights)
    )
    details = {"degradation": degradation, "strength": float(strength), "seed": int(seed), "clean_score": clean.score,
               "degraded_score": damaged.score, "sface_cosine": utility}
    return clean.face.aligned, clean_overlay, damaged_crop, damaged_overlay, summary, details


@user_errors
def sweep(image: Any, seed: int = 0, backbone: str = "", random_weights: bool = False, block: int = -1,
          heads: list[int] | None = None, aggregation: str = "mean", tokens: str = "all", centre_crop: bool = False):
    """Score and SFace utility against strength for every degradation, in one figure (one batched forward)."""
    if image is None:
        return None, {}
    model = load_model(backbone, random_weights)
    options = _options(heads, aggregation, tokens)
    clean = _largest_face(image, backbone, random_weights, block, centre_crop, options)
    # The same sweep step as `attn-fiqa sweep` and the training validity log (attn_core.eval_commands.sweep_face).
    method = QualityMethod("score", model, ScoreOptions(block=clean.block, **options))
    measured = sweep_face(clean.face, [method], get_matcher("sface"), list(DEGRADATIONS), SWEEP_STRENGTHS, int(seed))
    forward_passes["count"] += 1
    table: dict[str, dict[str, list[float]]] = {
        name: {"strength": [0.0], "score": [float(measured.scores["score"][0])], "sface_cosine": [1.0]}
        for name in DEGRADATIONS
    }
    for (name, strength), score, utility in zip(measured.variants[1:], measured.scores["score"][1:],
                                                measured.utility[1:]):
        table[name]["strength"].append(strength)
        table[name]["score"].append(float(score))
        table[name]["sface_cosine"].append(float(utility))

    figure = Figure(figsize=(11, 4.2), dpi=100)  # no pyplot: handlers run in worker threads
    left, right = figure.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"]
    for number, (name, curve) in enumerate(table.items()):
        style = {"color": colours(number % 10), "marker": "o", "markersize": 3, "label": DEGRADATIONS[name].label}
        left.plot(curve["strength"], curve["score"], **style)
        right.plot(curve["strength"], curve["sface_cosine"], **style)
    left.set(xlabel="strength", ylabel="attention score (higher = better)",
             title=f"{model.spec.name}" + (" (random weights)" if random_weights else ""))
    right.set(xlabel="strength", ylabel="SFace cosine to the clean face", title="recognition utility (SFace)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.title.set_fontsize(10)
    right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    return figure_to_array(figure), table


# --------------------------------------------------------------------------------------------- compare


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
    gallery, rows = [], []
    for name in backbones:
        spec = spec_of(name)
        grid = f"{spec.grid[0]}x{spec.grid[1]}"
        try:
            model = load_model(name, random_weights)
            result = score_photo(image, name, random_weights, -1, centre_crop)[0]
        except (ValueError, RuntimeError, FileNotFoundError) as error:  # one backbone failing is a row, not a crash
            rows.append([name, None, "", grid, spec.patch_size, spec.num_prefix_tokens,
                         "yes" if spec.face_trained else "no", str(error)])
            continue
        picture = crop_overlay(result.face.aligned, result.patch_map, spec, cmap=colormap, alpha=float(opacity))
        weights = "random" if random_weights else "trained"
        gallery.append((_grid_lines(picture, spec), f"{name}: {result.score:+.4f} ({weights}; {grid} of "
                                                    f"{spec.patch_size}px)"))
        rows.append([name, round(result.score, 6), model.backbone.weights, grid, spec.patch_size,
                     spec.num_prefix_tokens, "yes" if spec.face_trained else "no", ""])
    return gallery, {"headers": COMPARE_HEADERS, "data": rows}


# ----------------------------------------------------------------------------------------------- batch

BATCH_HEADERS = ["file", "score", "faces found", "error"]


@dataclass
class _BatchInputs:
    files: list[tuple[str, Path]]  # (name shown to the user, file on disk)
    errors: list[tuple[str, str]]  # (name, reason) for inputs rejected before scoring
    folder: Path  # temporary folder holding extracted zip members
    unpacked: int = 0  # bytes extracted so far, over every zip of the run


def _metadata(member_name: str) -> bool:
    """OS clutter that is never a photo: macOS resource forks (``__MACOSX/``, ``._x.jpg``), ``.DS_Store``, dot files."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(member_name).parts)


def _folder_name(parts: Sequence[str]) -> str:
    """One safe file or folder name for a member's path parts (``faces/A`` -> ``faces_A``): no separators, no dots."""
    return "_".join(re.sub(r"[^\w-]+", "_", part).strip("_") or "_" for part in parts)


def _unzip(archive: Path, folder: Path, shown: str, inputs: _BatchInputs, identity_folders: bool = False) -> None:
    """Extract image members with hard limits on count and size (zip bombs, huge archives), no path traversal.

    With ``identity_folders`` each image lands in ``folder/<its directory path, as one name>/`` (the layout
    ``attn_core``'s evaluation reads: one sub-folder per identity); otherwise all land flat in ``folder``.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist()
                       if not m.is_dir() and not _metadata(m.filename.replace("\\", "/"))]
            if len(members) > MAX_ZIP_MEMBERS:
                inputs.errors.append((shown, f"The zip has {len(members)} files; the limit is {MAX_ZIP_MEMBERS}. "
                                             f"Split it into smaller zips."))
                return
            declared = sum(m.file_size for m in members)
            if inputs.unpacked + declared > MAX_ZIP_TOTAL_BYTES:
                inputs.errors.append((shown, f"The zip unpacks to {declared / 2**20:.0f} MiB; the limit is "
                                             f"{MAX_ZIP_TOTAL_BYTES / 2**20:.0f} MiB for all zips of one run."))
                return
            for number, member in enumerate(members):
                name = f"{shown}/{member.filename}"
                if Path(member.filename).suffix.lower() not in IMAGE_SUFFIXES:
                    inputs.errors.append((name, "Not an image file (by its extension); skipped."))
                    continue
                if member.file_size > MAX_ZIP_MEMBER_BYTES:
                    inputs.errors.append((name, f"Too large ({member.file_size / 2**20:.0f} MiB unpacked); the limit "
                                                f"is {MAX_ZIP_MEMBER_BYTES / 2**20:.0f} MiB per file."))
                    continue
                target = folder / f"{number:05d}{Path(member.filename).suffix.lower()}"
                if identity_folders:
                    member_path = PurePosixPath(member.filename.replace("\\", "/"))
                    if len(member_path.parts) < 2:
                        inputs.errors.append((name, "Not inside an identity folder; skipped."))
                        continue
                    # Keep the file's name readable in the report's per-file CSV; the number keeps it unique.
                    target = (folder / _folder_name(member_path.parts[:-1])
                              / f"{number:05d}_{_folder_name([member_path.stem])}{member_path.suffix.lower()}")
                    target.parent.mkdir(exist_ok=True)
                # Never trust the declared sizes: stop reading once the real output passes the limits.
                written = 0
                with bundle.open(member) as source, open(target, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_ZIP_MEMBER_BYTES or inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                            break
                        sink.write(chunk)
                if written > MAX_ZIP_MEMBER_BYTES or inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                    target.unlink(missing_ok=True)
                    inputs.errors.append((name, "Unpacks to more than the size limit; skipped (possible zip bomb)."))
                    if inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                        return
                    continue
                inputs.unpacked += written
                inputs.files.append((name, target))
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as error:
        # RuntimeError: encrypted members; NotImplementedError: unsupported compression.
        inputs.errors.append((shown, f"Cannot read the zip: {error}."))


def _collect(files: Sequence[Any]) -> _BatchInputs:
    inputs = _BatchInputs([], [], Path(tempfile.mkdtemp(prefix="attn_fiqa_batch_")))
    for number, item in enumerate(files):
        path = Path(_image_path(item))
        shown = path.name
        if path.suffix.lower() == ".zip":
            member_folder = inputs.folder / f"zip{number}"
            member_folder.mkdir()
            _unzip(path, member_folder, shown, inputs)
        else:
            inputs.files.append((shown, path))
    if len(inputs.files) > MAX_BATCH_FILES:
        for shown, _ in inputs.files[MAX_BATCH_FILES:]:
            inputs.errors.append((shown, f"Not scored: one batch takes at most {MAX_BATCH_FILES} images."))
        inputs.files = inputs.files[:MAX_BATCH_FILES]
    return inputs


@user_errors
def batch(files: Sequence[Any] | None, backbone: str = "", random_weights: bool = False, block: int = -1,
          heads: list[int] | None = None, aggregation: str = "mean", tokens: str = "all", colormap: str = "jet",
          opacity: float = 0.4, centre_crop: bool = False):
    """Score many images or zips: a table sorted by score (best first), the extremes with overlays, and a CSV."""
    if not files:
        raise ValueError("Add some image files or a zip of images first.")
    model = load_model(backbone, random_weights)
    block_index = model.backbone.block_index(int(block))
    options = ScoreOptions(block=block_index, **_options(heads, aggregation, tokens))
    inputs = _collect(files)
    try:
        shown_by_path = {path: shown for shown, path in inputs.files}
        scored: list[tuple[str, QualityResult]] = []
        failed: list[tuple[str, str]] = list(inputs.errors)
        on_no_face = "center_crop" if centre_crop else "error"
        for item in model.score_files([path for _, path in inputs.files], options, batch_size=16,
                                      on_no_face=on_no_face):
            shown = shown_by_path.get(item.path, item.path.name)
            if item.ok:
                scored.append((shown, item.result))
            else:
                failed.append((shown, item.error))
        forward_passes["count"] += 1
    finally:
        shutil.rmtree(inputs.folder, ignore_errors=True)
    scored.sort(key=lambda pair: pair[1].score, reverse=True)
    rows = [[shown, round(r.score, 6), r.face.num_faces, ""] for shown, r in scored]
    rows += [[shown, None, None, public_message(error)] for shown, error in failed]

    def pictures(pairs):
        return [(crop_overlay(r.face.aligned, r.patch_map, model.spec, cmap=colormap, alpha=float(opacity)),
                 f"{shown}: {r.score:+.4f}") for shown, r in pairs]

    lowest = pictures(scored[::-1][:GALLERY_SIZE])
    highest = pictures(scored[:GALLERY_SIZE])
    csv_path = Path(tempfile.mkdtemp(prefix="attn_fiqa_csv_")) / "attn_fiqa_scores.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "score", "faces_found", "error", "backbone", "weights", "weights_sha256", "precision",
                         "block", "heads", "aggregation", "tokens"])
        heads_text = "all" if options.heads is None else " ".join(map(str, options.heads))
        for shown, score, faces, error in rows:
            writer.writerow([shown, "" if score is None else f"{score:.6f}", "" if faces is None else faces, error,
                             model.spec.name, model.backbone.weights_name, model.backbone.weights_sha256,
                             model.precision, block_index, heads_text, options.aggregation,
                             options.tokens])
    summary = (f"Scored **{len(scored)}** face image(s); **{len(failed)}** could not be scored (see the error column). "
               f"Sorted best first (higher = better)." + _warning(model, random_weights))
    return {"headers": BATCH_HEADERS, "data": rows}, lowest, highest, str(csv_path), summary


# -------------------------------------------------------------------------------------------- evaluate

DEMO_SET, UPLOADED_ZIP = "demo", "zip"
EVAL_SOURCES = (
    (f"bundled demo set ({sum(map(len, EXAMPLE_IDENTITIES.values()))} photos of {len(EXAMPLE_IDENTITIES)} identities)",
     DEMO_SET),
    ("my zip of identity folders", UPLOADED_ZIP),
)
_THRESHOLD_MODE_LABELS = {"per_fraction": "re-set per discard fraction (the papers)",
                          "fixed": "fixed at r=0 (ISO/IEC 29794-1 style)"}


def matcher_choices() -> list[tuple[str, str]]:
    """The registered recognisers (sface, the default, first), then each face-trained backbone's embedding head."""
    registered = sorted((name for name in available_matchers() if "@" not in name), key=lambda name: name != "sface")
    choices = [("sface (OpenCV Zoo CNN; default)" if name == "sface" else name, name)
               for name in registered]
    for spec in backbone_specs():
        if spec.face_trained:
            status = "weights installed" if weights_available(spec) else "weights not installed"
            choices.append((f"{spec.name} embeddings ({status})", spec.name))
    return choices


def fmr_choices() -> list[tuple[str, float]]:
    return [(format_fmr(fmr), fmr) for fmr in DEFAULT_FMRS]


def threshold_mode_choices() -> list[tuple[str, str]]:
    return [(_THRESHOLD_MODE_LABELS.get(mode, mode), mode) for mode in THRESHOLD_MODES]


def _evaluation_data(source: str, data_zip: Any, folder: Path) -> tuple[Path, str, dict[Path, str], list[tuple[str, str]]]:
    """The identity folder to evaluate (under ``folder``), what to call it in messages, each image's name as the user
    knows it, and the zip members skipped (name, reason)."""
    if source == DEMO_SET:
        root = demo_identity_folder(folder)
        return root, "the demo set", {path: str(path.relative_to(root)) for path in root.rglob("*")}, []
    if source != UPLOADED_ZIP:
        raise ValueError(f"Unknown data source {source!r}; choose the demo set or a zip.")
    if not data_zip:
        raise ValueError("Upload a zip with one sub-folder per identity first, or pick the bundled demo set.")
    archive = Path(_image_path(data_zip))
    if archive.suffix.lower() != ".zip":
        raise ValueError(f"{archive.name} is not a .zip file: upload a zip with one sub-folder per identity.")
    root = folder / "identities"
    root.mkdir()
    inputs = _BatchInputs([], [], root)
    _unzip(archive, root, archive.name, inputs, identity_folders=True)
    if not inputs.files:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in inputs.errors[:3])
        raise ValueError(f"{archive.name} has no usable image inside an identity folder"
                         + (f" ({reasons})." if reasons else "."))
    return root, archive.name, {path: shown for shown, path in inputs.files}, inputs.errors


def _eval_warnings(report: EvalReport, skipped: list[tuple[str, str]], names: dict[Path, str],
                   random_weights: bool) -> str:
    """run_eval's warnings, its verdicts against random discard, and every file left out, as Markdown lists."""
    warnings = [f"**{warning}**" for warning in report.warnings]
    if random_weights:
        warnings.insert(0, "**Random weights: mechanics demo only.** These curves say nothing about face quality.")
    left_out = [f"`{name}`: {reason}" for name, reason in skipped]
    left_out += [f"`{names.get(path, path.name)}`: {reason}" for path, reason in report.failed_files]
    bullets = lambda lines: "\n".join(f"- {line}" for line in lines)  # noqa: E731
    parts = [f"**Warnings**\n\n{bullets(warnings)}"] if warnings else []
    if report.verdicts:  # one line per method, FMR and mode: folded, or they bury the rest
        parts.append(f"<details><summary><b>Against random discard: {len(report.verdicts)} verdict(s)</b> (methods "
                     f"that do not beat it, or cannot be judged)</summary>\n\n{bullets(report.verdicts)}\n\n</details>")
    else:
        parts.append("**Against random discard:** every quality measure beats it at every FMR and threshold mode.")
    if left_out:
        parts.append(f"**Files left out**\n\n{bullets(left_out)}")
    return "\n\n".join(parts)


@user_errors
def evaluate(source: str = DEMO_SET, data_zip: Any = None, backbones: list[str] | None = None,
             random_weights: bool = False, matcher: str = "sface", fmrs: list[float] | None = None,
             threshold_modes: list[str] | None = None, progress=gr.Progress()):
    """Error-versus-Discard evaluation (``attn_core.eval_commands.run_eval``): EDC plots, AUC/pAUC table, warnings,
    and eval.json / eval.md / per-file CSV to download. All numbers come from run_eval; this only shows them."""
    if not backbones:
        raise ValueError("Tick at least one backbone to evaluate.")
    if not fmrs:
        raise ValueError("Tick at least one FMR.")
    if not threshold_modes:
        raise ValueError("Tick at least one threshold mode.")
    if not matcher:
        raise ValueError("Choose a matcher (sface is the default).")
    if matcher in backbones:
        raise ValueError(f"The matcher must be independent of the quality models, but {matcher} is both: choose "
                         f"another matcher (sface is the default).")
    models = [load_model(name, random_weights) for name in backbones]  # never random unless ticked
    work = Path(tempfile.mkdtemp(prefix="attn_fiqa_eval_"))
    out_dir = Path(tempfile.mkdtemp(prefix="attn_fiqa_eval_out_"))
    try:
        progress(0.0, desc="preparing the data")
        root, shown, names, skipped = _evaluation_data(source, data_zip, work)
        try:
            report = run_eval(root, models, matcher, out_dir, fmrs=[float(f) for f in fmrs],
                              threshold_modes=list(threshold_modes), data_name=shown, file_names=names,
                              progress=lambda fraction, message: progress(fraction, desc=message))
        except (ValueError, FileNotFoundError) as error:  # name the user's data, not our temporary folder
            raise ValueError(str(error).replace(str(root), shown)) from None
        forward_passes["count"] += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pairs = report.summary["pairs"]
    overview = (f"**{pairs['used']} pairs** of {shown} ({pairs['genuine']} genuine, {pairs['impostor']} impostor; "
                f"{pairs['dropped']} dropped because {len(report.failed_files)} file(s) could not be used), judged by "
                f"**{report.summary['matcher']['name']}**. Pair quality = the lower of the two images; pAUC up to "
                f"r = {report.summary['protocol']['pauc_limit']:g}, \u00d710\u00b3. **Lower is better.**")
    settings = dict.fromkeys((curve.fmr, curve.threshold_mode) for curve in report.curves)  # run_eval's order
    table = "\n".join(
        f"**FMR {format_fmr(fmr)}, threshold {_THRESHOLD_MODE_LABELS.get(mode, mode)}**\n\n"
        + edc_table_markdown([c for c in report.curves if (c.fmr, c.threshold_mode) == (fmr, mode)])
        for fmr, mode in settings)
    plots = [(str(path), path.name) for path in report.plot_paths]
    notes = overview + "\n\n" + _eval_warnings(report, skipped, names, random_weights)
    per_file = report.json_path.with_name("eval_files.csv")  # run_eval writes it beside eval.json
    # run_eval wrote the reports naming the user's data (data_name), never the server's temporary folder.
    downloads = [str(path) for path in (report.json_path, report.markdown_path, per_file) if path.is_file()]
    return plots, table, notes, downloads


# ----------------------------------------------------------------------------------------------- about


@user_errors
def about(backbone: str) -> str:
    """The selected backbone's card."""
    return backbone_card(backbone)


def degradation_choices() -> list[tuple[str, str]]:
    return [(d.label, d.name) for d in DEGRADATIONS.values()]
