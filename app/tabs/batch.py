"""Batch and rank: many photos or zips of photos scored with the backbone and Inspect settings, ranked best first,
the extremes shown with their maps, and a CSV to download; a file that cannot be scored is a row with its reason."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from typing import Any

import gradio as gr

from app.errors import LONG_REQUEST_SECONDS, public_message, user_errors
from app.models import load_model, weights_warning
from app.photos import app_wording, option_values
from app.pictures import png_file, request_folder
from app.reference import (
    NO_REFERENCE,
    chosen_reference,
    reference_picker,
    refresh_choices,
)
from app.tabs.inspect import InspectControls
from app.uploads import (
    MAX_BATCH_FILES,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_TOTAL_BYTES,
    collect_batch,
)
from attn_core import QualityResult, ScoreOptions
from attn_core.faces import IMAGE_SUFFIXES
from attn_core.scoring import model_settings
from attn_core.viz import crop_overlay

GALLERY_SIZE = 4  # lowest / highest faces shown in the batch tab
BATCH_HEADERS = ["file", "score", "faces found", "error"]
REFERENCE_HEADERS = ["percentile", "quality 0-100", "pass"]  # with a reference chosen (pass: when it has a threshold)
BATCH_COLUMN_WIDTHS = ["34%", "14%", "14%", "38%"]  # "faces found" on one line, the reason with room to wrap


@user_errors(seconds=LONG_REQUEST_SECONDS)
def batch(files: Sequence[Any] | None, backbone: str = "", random_weights: bool = False, block: int = -1,
          heads: list[int] | None = None, aggregation: str = "mean", tokens: str = "all", colormap: str = "jet",
          opacity: float = 0.4, centre_crop: bool = False, reference: str = NO_REFERENCE):
    """Score many images or zips: a table sorted by score (best first), the extremes with overlays, and a CSV;
    with a saved ``reference``, each face's percentile and 0-100 value, and pass/fail when it holds a threshold."""
    if not files:
        raise ValueError("Add some image files or a zip of images first.")
    model = load_model(backbone, random_weights)
    block_index = model.backbone.block_index(int(block))
    options = ScoreOptions(block=block_index, **option_values(heads, aggregation, tokens))
    chosen = chosen_reference(reference)
    if chosen is not None:  # other weights or settings: one sentence before any file is unpacked or scored
        chosen.check(model_settings(model, options), "this batch (the backbone above and the Inspect settings)")
    inputs = collect_batch(files)
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
    finally:
        shutil.rmtree(inputs.folder, ignore_errors=True)
    scored.sort(key=lambda pair: pair[1].score, reverse=True)
    rows = [[shown, round(r.score, 6), r.face.num_faces, ""] for shown, r in scored]
    # A reason names the user's file (the zip member), never where it was unpacked on this server.
    names = {path: shown for shown, path in inputs.files} | {inputs.folder: "the zip"}
    rows += [[shown, None, None, app_wording(public_message(error, names))] for shown, error in failed]
    # With a reference: one standing per scored row (the rows of failed files have none).
    standings = [chosen.standing_of(r.score) for _, r in scored] if chosen is not None else []
    headers = BATCH_HEADERS + REFERENCE_HEADERS if chosen is not None else BATCH_HEADERS
    if chosen is not None:
        rows = [row + ([round(s.percentile, 2), round(s.quality_0_100, 2), _pass_mark(s.passed)] if s else
                       [None, None, ""]) for row, s in zip(rows, standings + [None] * (len(rows) - len(scored)))]

    def pictures(pairs):  # captioned by the score and the file's own name (a zip member's, not the path to it)
        return [(png_file(crop_overlay(r.face.aligned, r.patch_map, model.spec, cmap=colormap, alpha=float(opacity))),
                 f"{r.score:+.4f} {shown.rsplit('/', 1)[-1]}") for shown, r in pairs]  # score first: never cut

    lowest = pictures(scored[::-1][:GALLERY_SIZE])
    highest = pictures(scored[:GALLERY_SIZE])
    csv_path = request_folder("attn_fiqa_csv_") / "attn_fiqa_scores.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        extra = ["percentile", "quality_0_100", "threshold", "pass", "reference", "reference_sha256"] if chosen else []
        writer.writerow(["file", "score", "faces_found", "error", "backbone", "weights", "weights_sha256", "precision",
                         "block", "heads", "aggregation", "tokens"] + extra)
        heads_text = "all" if options.heads is None else " ".join(map(str, options.heads))
        for index, (shown, score, faces, error, *_) in enumerate(rows):
            standing = standings[index] if index < len(standings) else None
            marks = [] if chosen is None else [
                *(("", "", "", "") if standing is None else (standing.percentile, standing.quality_0_100,
                  "" if standing.threshold is None else standing.threshold,
                  "" if standing.passed is None else standing.passed)), chosen.name, chosen.sha256]
            writer.writerow([shown, "" if score is None else f"{score:.6f}", "" if faces is None else faces, error,
                             model.spec.name, model.backbone.weights_name, model.backbone.weights_sha256,
                             model.precision, block_index, heads_text, options.aggregation,
                             options.tokens] + marks)
    summary = (f"Scored **{len(scored)}** face image(s); **{len(failed)}** could not be scored (see the error column). "
               f"Sorted best first (higher = better).")
    if chosen is not None:
        summary += (f" Against the reference **{chosen.name}** ({chosen.faces} faces, sha256 {chosen.sha256[:12]}): "
                    f"percentile and 0-100 value per face" + (
                        f"; **{sum(not s.passed for s in standings)}** face(s) score below its threshold "
                        f"{chosen.threshold_value:+.4f} (pass: NO)." if chosen.threshold is not None else
                        "; it holds no threshold (attn-fiqa eval --save-threshold-to adds one)."))
    summary += weights_warning(model, random_weights)
    return {"headers": headers, "data": rows}, lowest, highest, str(csv_path), summary


def _pass_mark(passed: bool | None) -> str:
    """The table's pass column: blank without a threshold; a face below it is marked so it stands out."""
    return "" if passed is None else "yes" if passed else "NO (below threshold)"


def build(backbone: gr.Dropdown, random_weights: gr.Checkbox, controls: InspectControls) -> None:
    """The Batch tab (inside an open ``gr.Tab``) and its events."""
    gr.Markdown(f"Score many photos (or zips of photos: up to {MAX_ZIP_MEMBERS} files a zip and "
                f"{MAX_ZIP_TOTAL_BYTES // 2**20} MiB unpacked in all; at most {MAX_BATCH_FILES} images a run) with "
                f"the backbone above and the Inspect settings. A file that cannot be scored is a row with its reason.")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            batch_files = gr.File(file_count="multiple", label="Images or .zip", elem_id="batch-files",
                                  file_types=sorted(IMAGE_SUFFIXES) + [".zip"])
            batch_reference = reference_picker("batch-reference", "adds percentile, 0-100 value and pass/fail "
                                               "(below the reference's threshold) to every face")
            batch_button = gr.Button("Score all", variant="primary", elem_id="batch")
            batch_csv = gr.File(label="CSV download", interactive=False)
        with gr.Column(scale=3):
            batch_md = gr.Markdown()
            batch_table = gr.Dataframe(headers=BATCH_HEADERS, label="Ranked (best first)", interactive=False, wrap=True,
                                       column_widths=BATCH_COLUMN_WIDTHS, elem_id="batch-table")
            with gr.Row():
                lowest = gr.Gallery(label="Lowest scores", columns=2, height="auto", format="png")
                highest = gr.Gallery(label="Highest scores", columns=2, elem_id="batch-highest", height="auto",
                                     format="png")
    model_inputs = [backbone, random_weights, controls.block, controls.heads, controls.aggregation, controls.tokens]
    batch_reference.focus(refresh_choices, batch_reference, batch_reference, api_name="batch_reference_choices")
    batch_button.click(batch, [batch_files] + model_inputs + [controls.colormap, controls.opacity, controls.centre_crop,
                                                               batch_reference],
                       [batch_table, lowest, highest, batch_csv, batch_md], api_name="batch", concurrency_limit=1,
                       # preprocess=False: the block is checked against the chosen backbone (the slider's range is the
                       # startup default's), and every file by app.photos.image_path.
                       preprocess=False)
