"""The Gradio app: the shared backbone picker and six tabs (one module each in ``app.tabs``), every handler also a
named API endpoint."""

from __future__ import annotations

import html
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from app import models  # noqa: E402
from app.live import set_time_limit  # noqa: E402
from app.models import RANDOM_LABEL  # noqa: E402
from app.photos import EXAMPLES_DIR, example_paths  # noqa: E402
from app.pictures import KEEP_SECONDS  # noqa: E402
from app.tabs import about, batch, compare, degrade, evaluate, inspect, lab, live  # noqa: E402
from app.uploads import MAX_UPLOAD  # noqa: E402

# Queue limits: at most this many handlers run at once (each may hold a model and a few images), and at most
# QUEUE_SIZE requests wait; beyond that users are told the app is busy instead of the server running out of memory.
CONCURRENCY = 2
QUEUE_SIZE = 24
# How often Gradio's queue looks for a new request when it has none. Its own default on Linux, 1 ms, keeps ~8 % of a
# core busy on an idle server (measured on this 2-core machine: 0.08 cores with nobody connected), a core the Live
# tab's scoring shares with the browser; 10 ms adds at most 10 ms to a request's wait.
QUEUE_POLL_SECONDS = 0.01

CSS = """
.score-box h2 {margin: 0 0 .3em 0;}
.banner {border: 2px solid #d97706; border-radius: 8px; padding: .6em 1em; background: #fff7ed !important;}
.banner, .banner *:not(button) {color: #7c2d12 !important; background: #fff7ed;}
.banner button {width: fit-content; margin-top: .4em;}
.fill-image img {width: 100%; height: 100%; object-fit: contain;
            padding-top: 2.4em; box-sizing: border-box;}  /* the picture below its label, whose chip covered
                                                          a wide figure's title (score by block, q.k terms) */
.compact-table table {font-size: .85em;}
.compact-table th, .compact-table td {white-space: nowrap; padding: .25em .5em;}
#eval-plots .fixed-height {max-height: none;}  /* every EDC plot in view, not a 55vh box with a scrollbar */
"""


def build_demo() -> gr.Blocks:
    startup = models.startup_state()
    spec = models.spec_of(startup.default_backbone)
    # Gradio's copies of what requests uploaded and were sent back are deleted once KEEP_SECONDS old (checked as often),
    # and all of them when the app stops; the app's own temporary files follow the same clock (app.pictures).
    keep = max(1, round(KEEP_SECONDS))
    with gr.Blocks(title="ATTN-FIQA: face image quality from attention", delete_cache=(keep, keep)) as demo:
        gr.Markdown("# ATTN-FIQA\nTraining-free face image quality from the pre-softmax attention of a face-recognition "
                    "ViT, with maps that show why. **Higher score = better.**")
        try_random = None
        if startup.missing_message:
            with gr.Group(elem_classes=["banner"], elem_id="banner"):
                gr.Markdown(f"**No face-trained backbone is installed**, so there is no real face-quality score yet. "
                            f"{html.escape(startup.missing_message.split('. ', 1)[-1])} Then restart the app. Until "
                            f"then, see how the method works with random weights (the score then means nothing):")
                try_random = gr.Button("Try the mechanics with random weights", variant="primary", size="sm",
                                       elem_id="try-random")
        with gr.Row(equal_height=True):
            backbone = gr.Dropdown(models.backbone_choices(), value=startup.default_backbone, label="Backbone", scale=4,
                                   elem_id="backbone")
            random_weights = gr.Checkbox(label=RANDOM_LABEL, value=startup.default_random, scale=1,
                                         elem_id="random-weights")
        status = gr.Markdown(models.backbone_status(startup.default_backbone, startup.default_random),
                             elem_id="backbone-status")

        with gr.Tabs() as tabs:
            with gr.Tab("Inspect", id="inspect"):
                controls = inspect.build(backbone, random_weights, status, spec)
            lab.tab(backbone, random_weights, controls, tabs)
            live.tab(backbone, random_weights, demo)
            with gr.Tab("Degradation explorer", id="degrade"):
                degrade.build(backbone, random_weights, controls)
            with gr.Tab("Compare backbones", id="compare"):
                compare.build(startup.default_backbone, random_weights, controls)
            with gr.Tab("Batch and rank", id="batch"):
                batch.build(backbone, random_weights, controls)
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate.build(startup.default_backbone, random_weights)
            with gr.Tab("About", id="about"):
                card = about.build(startup.default_backbone)

        # A backbone change updates the picker's status, the Inspect controls and the card (no forward pass), then
        # re-inspects the photo with the new backbone.
        gr.on([backbone.input, random_weights.input], models.backbone_info, [backbone, random_weights],
              [status, controls.block, controls.heads, controls.view, controls.tokens, card], api_name="backbone_info",
              ).then(inspect.inspect, controls.inputs, controls.outputs, api_name="inspect_after_backbone_change",
                     preprocess=False)
        if try_random is not None:
            # One click: the one random-weights switch ticked, the controls updated, and the photo (the first example
            # face when none is chosen yet) inspected.
            try_random.click(_try_random, [controls.image], [random_weights, controls.image], api_visibility="private",
                             ).then(models.backbone_info, [backbone, random_weights],
                                    [status, controls.block, controls.heads, controls.view, controls.tokens, card],
                                    api_visibility="private",
                                    ).then(inspect.inspect, controls.inputs, controls.outputs, preprocess=False,
                                           api_visibility="private")
    return demo


def _try_random(image):
    """The banner's button: tick random weights; with no photo yet, take the first example face."""
    if image is None and example_paths():
        image = str(example_paths()[0])
    return True, image


def launch(host: str = "127.0.0.1", port: int | None = None, share: bool = False, *, weights: str | None = None,
           backbone: str = "", num_heads: int | None = None, precision: str = "auto", live_limit: float | None = None,
           **kwargs):
    """Build, queue and serve the app; ``prevent_thread_lock=True`` returns at once (tests, scripts).

    ``weights``: the user's own checkpoint, served as the default backbone (``backbone`` names its architecture).
    ``precision``: auto (default: bf16 where the hardware multiplies it fast, else fp32), fp32, bf16 or fp16.
    ``live_limit``: seconds a Live webcam stream runs before it stops by itself (default 600).
    """
    models.set_precision(precision)
    if live_limit is not None:
        set_time_limit(live_limit)
    if weights:
        models.use_weights(backbone, weights, num_heads)
    demo = build_demo()
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    demo._queue.sleep_when_free = max(demo._queue.sleep_when_free, QUEUE_POLL_SECONDS)  # no public setting for it
    demo.launch(server_name=host, server_port=port, share=share, theme=gr.themes.Soft(), css=CSS,
                allowed_paths=[str(EXAMPLES_DIR)], show_error=False, max_file_size=MAX_UPLOAD, **kwargs)
    return demo
