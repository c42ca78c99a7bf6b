"""The Evaluate tab: Error-versus-Discard curves of quality backbones against baselines, from
``attn_core.eval.run_eval`` (the same evaluation as ``attn-fiqa eval``); this tab only shows its report."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import LONG_REQUEST_SECONDS, public_message, user_errors
from app.models import backbone_choices, backbone_specs, load_model
from app.photos import image_path
from app.pictures import request_folder
from app.uploads import BatchInputs, unzip
from attn_core.eval import (
    DEFAULT_FMRS,
    DEMO_CREDIT,
    DEMO_IMPOSTORS_PER_GENUINE,
    DEMO_NAME,
    THRESHOLD_MODE_SOURCES,
    THRESHOLD_MODE_WORDS,
    THRESHOLD_MODES,
    EvalReport,
    available_matchers,
    demo_set_folder,
    edc_table_markdown,
    fmr_resolution_note,
    format_fmr,
    goals_from_report,
    run_eval,
    write_threshold_report,
)
from attn_core.zoo import weights_available

DEMO_SET, UPLOADED_ZIP = "demo", "zip"
EVAL_SOURCES = (
    ("bundled demo set: 102 people x 2 photos, one of each pair degraded (real identities, synthetic degradations)",
     DEMO_SET),
    ("my zip of identity folders", UPLOADED_ZIP),
)
GOALS = (("no threshold", "none"), ("FNMR at most (%)", "target_fnmr"), ("discard (%)", "discard"))
_THRESHOLD_MODE_LABELS = {mode: f"{words} ({THRESHOLD_MODE_SOURCES[mode]})" for mode, words in THRESHOLD_MODE_WORDS.items()}


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
        root = demo_set_folder(folder)
        return root, DEMO_NAME, {path: str(path.relative_to(root)) for path in root.rglob("*")}, []
    if source != UPLOADED_ZIP:
        raise ValueError(f"Unknown data source {source!r}; choose the demo set or a zip.")
    if not data_zip:
        raise ValueError("Upload a zip with one sub-folder per identity first, or pick the bundled demo set.")
    archive = Path(image_path(data_zip))
    if archive.suffix.lower() != ".zip":
        raise ValueError(f"{archive.name} is not a .zip file: upload a zip with one sub-folder per identity.")
    root = folder / "identities"
    root.mkdir()
    inputs = BatchInputs([], [], root)
    unzip(archive, root, archive.name, inputs, identity_folders=True)
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
    # Each file by the name the user sent (the zip member), in its reason too: never where it lies on this server.
    left_out = [f"`{name}`: {public_message(reason, names)}" for name, reason in skipped]
    left_out += [f"`{names.get(path, path.name)}`: {public_message(reason, names)}" for path, reason in report.failed_files]
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


@user_errors(seconds=LONG_REQUEST_SECONDS)
def evaluate(source: str = DEMO_SET, data_zip: Any = None, backbones: list[str] | None = None,
             random_weights: bool = False, matcher: str = "sface", fmrs: list[float] | None = None,
             threshold_modes: list[str] | None = None, goal: str = "none", goal_percent: float | None = 2.0,
             progress=gr.Progress()):
    """Error-versus-Discard evaluation (``attn_core.eval.run_eval``): EDC plots, AUC/pAUC table, warnings,
    and eval.json / eval.md / per-file CSV to download. All numbers come from run_eval; this only shows them.
    ``goal`` "target_fnmr" / "discard" with ``goal_percent``: the score threshold read off each quality model's EDC
    (``attn_core.eval.threshold``), shown above the warnings and written to threshold.json."""
    if not backbones:
        raise ValueError("Tick at least one backbone to evaluate.")
    if not fmrs:
        raise ValueError("Tick at least one FMR.")
    if not threshold_modes:
        raise ValueError("Tick at least one threshold mode.")
    if not matcher:
        raise ValueError("Choose a matcher (sface is the default).")
    target = _goal_fraction(goal, goal_percent)
    if matcher in backbones:
        raise ValueError(f"The matcher must be independent of the quality models, but {matcher} is both: choose "
                         f"another matcher (sface is the default).")
    models = [load_model(name, random_weights) for name in backbones]  # never random unless ticked
    work = Path(tempfile.mkdtemp(prefix="attn_fiqa_eval_"))
    out_dir = request_folder("attn_fiqa_eval_out_")
    try:
        progress(0.0, desc="preparing the data")
        root, shown, names, skipped = _evaluation_data(source, data_zip, work)
        try:
            report = run_eval(root, models, matcher, out_dir, fmrs=[float(f) for f in fmrs],
                              threshold_modes=list(threshold_modes), data_name=shown, file_names=names,
                              impostors_per_genuine=DEMO_IMPOSTORS_PER_GENUINE if source == DEMO_SET else 10.0,
                              progress=lambda fraction, message: progress(fraction, desc=message))
        except (ValueError, FileNotFoundError) as error:  # name the user's data, not our temporary folder
            raise ValueError(str(error).replace(str(root), shown)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pairs = report.summary["pairs"]
    overview = (f"**{pairs['used']} pairs** of {shown} ({pairs['genuine']} genuine, {pairs['impostor']} impostor; "
                f"{pairs['dropped']} dropped because {len(report.failed_files)} file(s) could not be used), judged by "
                f"**{report.summary['matcher']['name']}**. Pair quality = the lower of the two images; pAUC up to "
                f"r = {report.summary['protocol']['pauc_limit']:g}, \u00d710\u00b3. **Lower is better.**")
    settings = dict.fromkeys((curve.fmr, curve.threshold_mode) for curve in report.curves)  # run_eval's order
    unresolved = {fmr: fmr_resolution_note(pairs["impostor"], fmr) for fmr, _ in settings}
    table = "\n".join(
        f"**FMR {format_fmr(fmr)}, threshold {_THRESHOLD_MODE_LABELS.get(mode, mode)}**\n\n"
        + (f"*{unresolved[fmr]}.*\n\n" if unresolved[fmr] else "")
        + edc_table_markdown([c for c in report.curves if (c.fmr, c.threshold_mode) == (fmr, mode)])
        for fmr, mode in settings)
    plots = [(str(path), path.name) for path in report.plot_paths]
    notes = overview + "\n\n" + _eval_warnings(report, skipped, names, random_weights)
    per_file = report.json_path.with_name("eval_files.csv")  # run_eval writes it beside eval.json
    # run_eval wrote the reports naming the user's data (data_name), never the server's temporary folder.
    downloads = [str(path) for path in (report.json_path, report.markdown_path, per_file) if path.is_file()]
    if target is not None:
        text, written = _goal_thresholds(report, goal, target, [float(f) for f in fmrs], threshold_modes[0], out_dir)
        notes = text + "\n\n" + notes
        downloads.append(str(written))
    return plots, table, notes, downloads


def _goal_fraction(goal: str | None, percent: Any) -> float | None:
    """The goal as a fraction (None: no threshold asked for); a percentage outside [0, 100) is one sentence."""
    if goal in (None, "", "none"):
        return None
    if goal not in dict(map(reversed, GOALS)):
        raise ValueError(f"Unknown goal {goal!r}; choose a target FNMR, a fraction to discard, or no threshold.")
    try:
        fraction = float(percent) / 100
    except (TypeError, ValueError):
        raise ValueError(f"The goal needs a percentage, e.g. 2 for 2 %, not {percent!r}.") from None
    if goal == "discard" and not 0 <= fraction <= 0.95:
        raise ValueError(f"The share to discard must be from 0 to 95 %, the curve's range, not {percent!r}.")
    if goal == "target_fnmr" and not 0 <= fraction < 1:
        raise ValueError(f"The target FNMR must be from 0 to 100 % (excluded), not {percent!r}.")
    return fraction


def _goal_thresholds(report: EvalReport, goal: str, target: float, fmrs: list[float], mode: str,
                     out_dir: Path) -> tuple[str, Path]:
    """Each quality model's threshold for the goal at each FMR (read off its curve in the first threshold mode), as
    Markdown, and threshold.json."""
    heading = ("**Score threshold for your goal** (a face passes when its score is at least the threshold; save one "
               "into a reference with `attn-fiqa eval ... --save-threshold-to NAME`):")
    found, lines = [], [heading, ""]
    for label in report.pairs.settings:
        goals = goals_from_report(report.pairs, label, fmrs, mode, **{goal: target})
        found += goals
        for result in goals:
            lines.append(f"- **{label}**: {result.message}" if result.reached else f"- **{label}**: **{result.message}**")
            if result.images_below:
                shown = ", ".join(f"`{name}`" for name in result.images_below[:12])
                more = f" and {len(result.images_below) - 12} more (threshold.json)" if len(result.images_below) > 12 else ""
                lines.append(f"  - below it: {shown}{more}")
    return "\n".join(lines), write_threshold_report(out_dir, found)


def build(default_backbone: str, random_weights: gr.Checkbox) -> None:
    """The Evaluate tab (inside an open ``gr.Tab``) and its events; ``random_weights``: the app's one switch (top)."""
    gr.Markdown("Does the score predict recognition errors? Error-versus-Discard curves (EDC): discard the "
                "lowest-quality pairs first and watch the false non-match rate (FNMR) at a fixed false match rate "
                "(FMR), judged by an independent recogniser, next to baselines (random discard, sharpness, brightness, "
                "face size). The same evaluation as `attn-fiqa eval`.")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            eval_source = gr.Radio(list(EVAL_SOURCES), value=DEMO_SET, label="Data", elem_id="eval-source",
                                   info=DEMO_CREDIT)
            eval_zip = gr.File(label="Zip of identity folders (one sub-folder per person)", file_types=[".zip"],
                               elem_id="eval-zip", height=120)
            eval_backbones = gr.Dropdown(backbone_choices(), value=[default_backbone], multiselect=True,
                                         label="Quality backbones (one curve each)", elem_id="eval-backbones")
            eval_matcher = gr.Dropdown(matcher_choices(), value="sface", label="Matcher",
                                       info="the recogniser that decides match / non-match; never the quality model",
                                       elem_id="eval-matcher")
            with gr.Row():
                eval_fmrs = gr.CheckboxGroup(fmr_choices(), value=list(DEFAULT_FMRS), label="FMR", elem_id="eval-fmrs",
                                             min_width=120)
                eval_modes = gr.CheckboxGroup(threshold_mode_choices(), value=list(THRESHOLD_MODES),
                                              label="Threshold mode", elem_id="eval-modes", scale=2)
            with gr.Row():  # what value is good? a goal read off the curve as a score threshold
                eval_goal = gr.Radio([(label, value) for label, value in GOALS], value="none",
                                     label="Score threshold from the curve", elem_id="eval-goal", scale=2)
                eval_goal_value = gr.Number(2.0, label="Goal (%)", minimum=0, maximum=99, elem_id="eval-goal-value",
                                            info="FNMR at the FMR ticked, or pairs discarded", min_width=100)
            eval_button = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
        with gr.Column(scale=3):
            eval_warnings = gr.Markdown("Pick the data and backbones, then press *Evaluate*.", elem_id="eval-warnings",
                                        latex_delimiters=[])
            eval_plots = gr.Gallery(label="EDC plots (FNMR against the fraction of pairs discarded)", columns=1,
                                    height="auto", format="png", elem_id="eval-plots", object_fit="contain")
            eval_table = gr.Markdown(elem_id="eval-table", elem_classes=["compact-table"], latex_delimiters=[])
            eval_files = gr.File(label="Report: eval.json, eval.md, per-file scores (CSV)", file_count="multiple",
                                 interactive=False, elem_id="eval-files")
    # An uploaded zip is what the user wants evaluated: switch the data source to it (in the browser).
    eval_zip.upload(None, None, eval_source, js=f"() => {UPLOADED_ZIP!r}", api_visibility="private")
    eval_button.click(evaluate, [eval_source, eval_zip, eval_backbones, random_weights, eval_matcher, eval_fmrs, eval_modes,
                                 eval_goal, eval_goal_value],
                      [eval_plots, eval_table, eval_warnings, eval_files], api_name="evaluate", concurrency_limit=1)
