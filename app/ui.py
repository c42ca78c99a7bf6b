"""The Gradio layout: six tabs wired to the functions in app.handlers, each also a named API endpoint."""

from __future__ import annotations

import html
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from app import handlers  # noqa: E402
from app.handlers import MEAN_VIEW, NORMALISATIONS, RANDOM_LABEL  # noqa: E402
from attn_core.quality import AGGREGATIONS  # noqa: E402
from attn_core.registry import get_spec  # noqa: E402
from attn_core.render import COLORMAPS  # noqa: E402

# Queue limits: at most this many handlers run at once (each may hold a model and a few images), and at most
# QUEUE_SIZE requests wait; beyond that users are told the app is busy instead of the server running out of memory.
CONCURRENCY = 2
QUEUE_SIZE = 24

CSS = """
.score-box h2 {margin: 0 0 .3em 0;}
.banner {border: 2px solid #d97706; border-radius: 8px; padding: .6em 1em; background: #fff7ed;}
.banner, .banner * {color: #7c2d12 !important;}
.fill-image img {width: 100%; height: 100%; object-fit: contain;}
.compact-table table {font-size: .85em;}
.compact-table th, .compact-table td {white-space: nowrap; padding: .25em .5em;}
#eval-plots .fixed-height {max-height: none;}  /* every EDC plot in view, not a 55vh box with a scrollbar */
"""

METHOD_MD = r"""
## The method
ATTN-FIQA scores a face image **without any training**, from one forward pass of a face-recognition Vision
Transformer. For the final transformer block with $H$ heads over $N$ tokens, it takes the *pre-softmax* attention
logits and averages them:

$$A_h = \frac{Q_h K_h^\top}{\sqrt{d_\text{head}}}, \qquad \text{score} = \frac{1}{H N^2}\sum_{h=1}^{H}\sum_{i=1}^{N}\sum_{j=1}^{N} A_h[i, j]$$

The score is signed and unnormalised: on real face models it is negative, and **higher (less negative) = better**.
The map shows, for each patch $j$, the mean logit it receives, $m_j = \frac{1}{HN}\sum_{h,i} A_h[i, j]$; its mean
over patches is exactly the score, so the map is a spatial decomposition of the number. A per-head map fixes $h$.

## What the score does and does not mean
* It measures how strongly a **face-recognition** network's tokens attend to each other on this face: in the paper
  it tracks how useful the image is for recognition (low for blur, occlusion, bad light, extreme pose).
* It is **not** a beauty, aesthetics or identity score, and not a probability; compare scores only within one
  backbone and one set of options.
* On a backbone **not trained for faces** (the general timm ViTs), the same arithmetic runs but the score is
  **not** face quality. With **random weights** it only shows the mechanics.
* Other blocks, single heads, other aggregations and patch-only tokens are research and teaching options; the
  paper's score is the last block, all heads, mean, all tokens.
"""


def _image_out(label: str, **kwargs) -> gr.Image:
    """An output picture; small crops (112 px) are scaled up to fill their box."""
    return gr.Image(label=label, format="png", interactive=False, buttons=["download", "fullscreen"],
                    elem_classes=["fill-image"], **kwargs)


def _examples(target: gr.Image, label: str = "Example faces (click one)") -> gr.Examples:
    return gr.Examples(examples=[[str(p)] for p in handlers.example_paths()], inputs=target, label=label,
                       examples_per_page=12)


def _photo_input(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="filepath", sources=["upload", "webcam", "clipboard"],
                    webcam_options=gr.WebcamOptions(mirror=False), elem_id=elem_id, height=300)


def build_demo() -> gr.Blocks:
    startup = handlers.startup_state()
    spec = handlers.spec_of(startup.default_backbone)
    with gr.Blocks(title="ATTN-FIQA: face image quality from attention") as demo:
        gr.Markdown("# ATTN-FIQA\nTraining-free face image quality from the pre-softmax attention of a face-recognition "
                    "ViT, with maps that show why. **Higher score = better.**")
        if startup.missing_message:
            gr.Markdown(f"**No face-trained backbone is installed**, so there is no real face-quality score yet. "
                        f"{html.escape(startup.missing_message.split('. ', 1)[-1])} Then restart the app. Until then you can tick "
                        f"*{RANDOM_LABEL}* to see how the method works.", elem_classes=["banner"], elem_id="banner")
        with gr.Row(equal_height=True):
            backbone = gr.Dropdown(handlers.backbone_choices(), value=startup.default_backbone, label="Backbone",
                                   scale=4, elem_id="backbone")
            random_weights = gr.Checkbox(label=RANDOM_LABEL, value=startup.default_random, scale=1,
                                         elem_id="random-weights")
        status = gr.Markdown(handlers.backbone_status(startup.default_backbone, startup.default_random),
                             elem_id="backbone-status")

        with gr.Tabs():
            # ------------------------------------------------------------------------------------ Inspect
            with gr.Tab("Inspect", id="inspect"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=300):
                        image = _photo_input("Photo (upload, webcam or paste)", "inspect-image")
                        _examples(image)
                        with gr.Accordion("Attention", open=True):
                            block = gr.Slider(0, spec.depth - 1, value=spec.depth - 1, step=1, label="Block",
                                              info="transformer block read (default: the last, as in the paper)")
                            heads = gr.CheckboxGroup([(f"head {h}", h) for h in range(spec.num_heads)], value=[],
                                                     label="Heads", info="none ticked = all heads (the paper)",
                                                     elem_id="heads")
                            view = gr.Dropdown([("mean of selected heads", MEAN_VIEW)]
                                               + [(f"head {h}", h) for h in range(spec.num_heads)],
                                               value=MEAN_VIEW, label="Map shown", elem_id="view")
                            aggregation = gr.Radio(list(AGGREGATIONS), value="mean", label="Head aggregation",
                                                   info="how head scores combine: mean (paper), median, max, 1/std")
                            tokens = gr.Radio([("all tokens (paper)", "all"), ("patch tokens only", "patch")],
                                              value="all", label="Prefix tokens",
                                              interactive=spec.num_prefix_tokens > 0)
                            face_index = gr.Number(0, precision=0, minimum=0, label="Face (0 = largest)")
                            centre_crop = gr.Checkbox(False, label="If no face is found, score the centre square")
                        with gr.Accordion("Display", open=False):
                            colormap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
                            opacity = gr.Slider(0.0, 1.0, value=0.4, step=0.05, label="Overlay opacity")
                            normalisation = gr.Radio(list(NORMALISATIONS), value="per image", label="Map normalisation",
                                                     info="fixed range: same colours across images (blank bounds = "
                                                          "the example set's range)")
                            with gr.Row():
                                vmin = gr.Number(None, label="vmin (fixed range)")
                                vmax = gr.Number(None, label="vmax (fixed range)")
                    with gr.Column(scale=3):
                        score_md = gr.Markdown("Add a photo or click an example face.", elem_id="score",
                                               elem_classes=["score-box"], latex_delimiters=[])
                        faces_md = gr.Markdown(elem_id="faces-found")
                        with gr.Row():
                            boxes_img = _image_out("Detected face", elem_id="boxes", height=260)
                            crop_img = _image_out("Aligned crop (112x112)", elem_id="crop", height=260)
                            crop_overlay_img = _image_out("Map on the crop", elem_id="crop-overlay", height=260)
                        with gr.Row():
                            photo_overlay_img = _image_out("Map on the photo", elem_id="photo-overlay")
                            raw_map_img = _image_out("Raw patch map (logit units)", elem_id="raw-map", show_label=False)
                        head_gallery = gr.Gallery(label="Per-head maps (each with its own head score)", columns=4,
                                                  height="auto", format="png", elem_id="head-gallery",
                                                  object_fit="contain")
                        with gr.Accordion("Raw numbers", open=False):
                            details = gr.JSON(label="details")

            # ------------------------------------------------------------------------ Degradation explorer
            with gr.Tab("Degradation explorer", id="degrade"):
                gr.Markdown("Degrade the aligned face and watch the score and the map, next to what a separate "
                            "recogniser (SFace) loses. Uses the backbone above and the block / heads / aggregation / "
                            "tokens / colormap set in *Inspect*.")
                with gr.Row():
                    with gr.Column(scale=2, min_width=300):
                        degrade_image = _photo_input("Face photo", "degrade-image")
                        _examples(degrade_image)
                        degradation = gr.Dropdown(handlers.degradation_choices(), value="gaussian_blur",
                                                  label="Degradation", elem_id="degradation")
                        strength = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Strength (0 = clean)")
                        seed = gr.Number(0, precision=0, label="Seed (noise, direction, patch position)")
                        sweep_button = gr.Button("Sweep every degradation", variant="primary", elem_id="sweep")
                    with gr.Column(scale=3):
                        with gr.Row():
                            clean_img = _image_out("Clean", height=200)
                            clean_map = _image_out("Clean map", height=200)
                            degraded_img = _image_out("Degraded", elem_id="degraded", height=200)
                            degraded_map = _image_out("Degraded map", height=200)
                        degrade_md = gr.Markdown(elem_id="degrade-summary", latex_delimiters=[])
                        sweep_plot = _image_out("Score and recognition utility against strength", elem_id="sweep-plot",
                                                show_label=False)
                        with gr.Accordion("Raw numbers", open=False):
                            degrade_json = gr.JSON(label="degradation")
                            sweep_json = gr.JSON(label="sweep")

            # ---------------------------------------------------------------------------- Compare
            with gr.Tab("Compare backbones", id="compare"):
                gr.Markdown("One face through several backbones with the paper's settings (last block, all heads, "
                            "mean). White lines: the patch grid each backbone uses (9-px grids cover only 108x108).")
                with gr.Row():
                    with gr.Column(scale=2, min_width=300):
                        compare_image = _photo_input("Face photo", "compare-image")
                        _examples(compare_image)
                        compare_backbones = gr.CheckboxGroup(
                            handlers.backbone_choices(), label="Backbones",
                            value=list(dict.fromkeys([startup.default_backbone, "test-face-vit-p8", "test-face-vit-p9"])))
                        compare_random = gr.Checkbox(False, label=RANDOM_LABEL, elem_id="compare-random")
                        compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                    with gr.Column(scale=3):
                        compare_gallery = gr.Gallery(label="Maps", columns=3, elem_id="compare-gallery", height=320, format="png",
                                                     object_fit="contain")
                        compare_table = gr.Dataframe(headers=handlers.COMPARE_HEADERS, label="Scores",
                                                     interactive=False)

            # ---------------------------------------------------------------------------- Batch
            with gr.Tab("Batch and rank", id="batch"):
                gr.Markdown(f"Score many photos (or zips of photos: up to {handlers.MAX_ZIP_MEMBERS} files a zip and "
                            f"{handlers.MAX_ZIP_TOTAL_BYTES // 2**20} MiB unpacked in all; at most "
                            f"{handlers.MAX_BATCH_FILES} images a run) with the backbone above and the Inspect "
                            f"settings. A file that cannot be scored is a row with its reason.")
                with gr.Row():
                    with gr.Column(scale=2, min_width=300):
                        batch_files = gr.File(file_count="multiple", label="Images or .zip", elem_id="batch-files",
                                              file_types=sorted(handlers.IMAGE_SUFFIXES) + [".zip"])
                        batch_button = gr.Button("Score all", variant="primary", elem_id="batch")
                        batch_csv = gr.File(label="CSV download", interactive=False)
                    with gr.Column(scale=3):
                        batch_md = gr.Markdown()
                        batch_table = gr.Dataframe(headers=handlers.BATCH_HEADERS, label="Ranked (best first)",
                                                   interactive=False, wrap=True)
                        with gr.Row():
                            lowest = gr.Gallery(label="Lowest scores", columns=2, height="auto", format="png")
                            highest = gr.Gallery(label="Highest scores", columns=2, elem_id="batch-highest", height="auto", format="png")

            # ---------------------------------------------------------------------------- Evaluate
            with gr.Tab("Evaluate", id="evaluate"):
                gr.Markdown("Does the score predict recognition errors? Error-versus-Discard curves (EDC): discard the "
                            "lowest-quality pairs first and watch the false non-match rate (FNMR) at a fixed false "
                            "match rate (FMR), judged by an independent recogniser, next to baselines (random discard, "
                            "sharpness, brightness, face size). The same evaluation as `attn-fiqa eval`.")
                with gr.Row():
                    with gr.Column(scale=2, min_width=300):
                        eval_source = gr.Radio(list(handlers.EVAL_SOURCES), value=handlers.DEMO_SET, label="Data",
                                               elem_id="eval-source")
                        eval_zip = gr.File(label="Zip of identity folders (one sub-folder per person)",
                                           file_types=[".zip"], elem_id="eval-zip", height=120)
                        eval_backbones = gr.Dropdown(handlers.backbone_choices(), value=[startup.default_backbone],
                                                     multiselect=True, label="Quality backbones (one curve each)",
                                                     elem_id="eval-backbones")
                        eval_random = gr.Checkbox(False, label=RANDOM_LABEL, elem_id="eval-random")
                        eval_matcher = gr.Dropdown(handlers.matcher_choices(), value="sface", label="Matcher",
                                                   info="the recogniser that decides match / non-match; never the "
                                                        "quality model", elem_id="eval-matcher")
                        with gr.Row():
                            eval_fmrs = gr.CheckboxGroup(handlers.fmr_choices(), value=list(handlers.DEFAULT_FMRS),
                                                         label="FMR", elem_id="eval-fmrs", min_width=120)
                            eval_modes = gr.CheckboxGroup(handlers.threshold_mode_choices(),
                                                          value=list(handlers.THRESHOLD_MODES),
                                                          label="Threshold mode", elem_id="eval-modes", scale=2)
                        eval_button = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
                    with gr.Column(scale=3):
                        eval_warnings = gr.Markdown("Pick the data and backbones, then press *Evaluate*.",
                                                    elem_id="eval-warnings", latex_delimiters=[])
                        eval_plots = gr.Gallery(label="EDC plots (FNMR against the fraction of pairs discarded)",
                                                columns=2, height="auto", format="png", elem_id="eval-plots",
                                                object_fit="contain")
                        eval_table = gr.Markdown(elem_id="eval-table", elem_classes=["compact-table"],
                                                 latex_delimiters=[])
                        eval_files = gr.File(label="Report: eval.json, eval.md, per-file scores (CSV)",
                                             file_count="multiple", interactive=False, elem_id="eval-files")

            # ------------------------------------------------------------------------------ About
            with gr.Tab("About", id="about"):
                gr.Markdown(METHOD_MD, latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                                         {"left": "$", "right": "$", "display": False}])
                card = gr.Markdown(handlers.backbone_card(startup.default_backbone), elem_id="card")

        # -------------------------------------------------------------------------------------- events
        inspect_inputs = [image, backbone, random_weights, block, heads, aggregation, tokens, face_index, view,
                          colormap, opacity, normalisation, vmin, vmax, centre_crop]
        inspect_outputs = [boxes_img, crop_img, crop_overlay_img, photo_overlay_img, raw_map_img, score_md,
                           head_gallery, faces_md, details]
        # preprocess=False: the uploaded file reaches attn_core as it is (its own loader handles EXIF, formats and
        # unreadable files with a plain message); Gradio still checks every path is an upload before the call.
        raw = {"preprocess": False}
        image.change(handlers.inspect, inspect_inputs, inspect_outputs, api_name="inspect", **raw).success(
            handlers.after_score, [backbone, random_weights], [status, backbone],
            api_visibility="private")  # after a download: status line and picker labels
        # Controls re-summarise cached attention (no forward pass); only block and backbone changes run the model.
        gr.on([heads.input, aggregation.input, tokens.input, view.input, face_index.input, centre_crop.input,
               colormap.input, opacity.release, normalisation.input, vmin.input, vmax.input, block.release],
              handlers.inspect, inspect_inputs, inspect_outputs, api_name="rerender", trigger_mode="always_last", **raw)
        gr.on([backbone.input, random_weights.input], handlers.backbone_info, [backbone, random_weights],
              [status, block, heads, view, tokens, card], api_name="backbone_info",
              ).then(handlers.inspect, inspect_inputs, inspect_outputs, api_name="inspect_after_backbone_change", **raw)

        model_inputs = [backbone, random_weights, block, heads, aggregation, tokens]
        degrade_outputs = [clean_img, clean_map, degraded_img, degraded_map, degrade_md, degrade_json]
        gr.on([degrade_image.change, degradation.input, strength.release, seed.input], handlers.degrade_face,
              [degrade_image, degradation, strength, seed] + model_inputs + [colormap, opacity, centre_crop],
              degrade_outputs, api_name="degrade", trigger_mode="always_last", **raw)
        sweep_button.click(handlers.sweep, [degrade_image, seed] + model_inputs + [centre_crop],
                           [sweep_plot, sweep_json], api_name="sweep", concurrency_limit=1, **raw)

        compare_button.click(handlers.compare, [compare_image, compare_backbones, compare_random, colormap, opacity,
                                                centre_crop], [compare_gallery, compare_table], api_name="compare",
                             concurrency_limit=1, **raw)
        batch_button.click(handlers.batch, [batch_files] + model_inputs + [colormap, opacity, centre_crop],
                           [batch_table, lowest, highest, batch_csv, batch_md], api_name="batch", concurrency_limit=1)
        # An uploaded zip is what the user wants evaluated: switch the data source to it (in the browser).
        eval_zip.upload(None, None, eval_source, js=f"() => {handlers.UPLOADED_ZIP!r}", api_visibility="private")
        eval_button.click(handlers.evaluate, [eval_source, eval_zip, eval_backbones, eval_random, eval_matcher,
                                              eval_fmrs, eval_modes], [eval_plots, eval_table, eval_warnings, eval_files],
                          api_name="evaluate", concurrency_limit=1)
        gr.api(handlers.about, api_name="about")
    return demo


def launch(host: str = "127.0.0.1", port: int | None = None, share: bool = False, *, weights: str | None = None,
           backbone: str = "", num_heads: int | None = None, precision: str = "auto", **kwargs):
    """Build, queue and serve the app; ``prevent_thread_lock=True`` returns at once (tests, scripts).

    ``weights``: the user's own checkpoint, served as the default backbone (``backbone`` names its architecture).
    ``precision``: auto (default: bf16 where the hardware multiplies it fast, else fp32), fp32, bf16 or fp16.
    """
    handlers.set_precision(precision)
    if weights:
        handlers.use_weights(backbone, weights, num_heads)
    demo = build_demo()
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    demo.launch(server_name=host, server_port=port, share=share, theme=gr.themes.Soft(), css=CSS,
                allowed_paths=[str(handlers.EXAMPLES_DIR)], show_error=False,
                max_file_size=handlers.MAX_UPLOAD, **kwargs)
    return demo
