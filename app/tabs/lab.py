"""The Attention lab tab: click a patch of the face and see its pre-softmax logits beside its softmax, the column it
receives, the head's N x N matrix with the exact decomposition of the score, the softmax lesson, every block and
head, and the q.k terms of a pair. The model runs once per (photo, backbone, weights, precision): q and k of every
block are cached (bounded by memory) and every click, head, block or view change only re-reads them."""

from __future__ import annotations

import functools
import threading
from typing import Any

import cachetools
import gradio as gr

from app.errors import user_errors
from app.models import load_model, serving_precision, spec_of
from app.photos import image_path
from app.pictures import photo_file, png_file
from app.widgets import image_out
from attn_core import lab as attention_lab
from attn_core.digests import file_digest

MEAN_HEADS = -1
CLICK_SIZE = 336  # px of the clickable face (3x the 112-px crop)
# q and k of every block of a face: 7 MB for ViT-S shapes (12 blocks, 144 tokens, 512 dims, fp32), so the budget
# keeps the last ~30 photos; at least LAB_CACHE_BYTES / LAB_CACHE_COUNT each, so the count bound holds too.
LAB_CACHE_BYTES = 256 * 2**20
LAB_CACHE_COUNT = 32


def _lab_bytes(lab) -> int:
    return max(lab.nbytes + lab.face.aligned.nbytes, LAB_CACHE_BYTES // LAB_CACHE_COUNT)


_lab_cache: cachetools.LRUCache = cachetools.LRUCache(maxsize=LAB_CACHE_BYTES, getsizeof=_lab_bytes)
_lab_lock = threading.Lock()


def _block(lab, block: Any) -> int:
    return lab.block_index(-1 if block in (None, "") else int(block))


def lab_of(image: Any, backbone: str, random_weights: bool):
    """The cached AttentionLab of the photo's largest face (one forward pass on the first call, none after)."""
    path = image_path(image)
    model = load_model(backbone, random_weights)
    key = (file_digest(path), backbone, bool(random_weights), serving_precision())
    with _lab_lock:  # one forward pass per key even when several views ask at once
        found = _lab_cache.get(key)
        if found is None:
            found = _lab_cache[key] = attention_lab.capture_lab(model, path)
    return found


def needs_photo(outputs: int, reason_at: int | None = None, clear_on_error: bool = True):
    """No photo yet (the tab opened, or the backbone changed, before an upload): leave the views as they are.

    A view that cannot run (no weights, a refused file) clears its outputs instead of raising a toast: the six views
    run together on every new photo, even with the tab closed, and the reason is said once, in the output at
    ``reason_at`` (the caption above the row views), as Inspect says it once in its score box. A click outside the
    grid (``clear_on_error=False``) is the user's own act and is answered where it happened.
    """

    def wrap(function):
        @functools.wraps(function)
        def wrapper(image, *args, **kwargs):
            if not image:
                return gr.skip() if outputs == 1 else tuple(gr.skip() for _ in range(outputs))
            try:
                return function(image, *args, **kwargs)
            except gr.Error as error:
                if not clear_on_error:
                    raise
                cleared = [None] * outputs
                if reason_at is not None:
                    cleared[reason_at] = f"**{error.message}**"
                return cleared[0] if outputs == 1 else tuple(cleared)

        return wrapper

    return wrap


def _head(head: Any) -> int | None:
    return None if head in (None, "", MEAN_HEADS) or int(head) == MEAN_HEADS else int(head)


def _patch(lab, text: str | None, what: str) -> int | None:
    """Token of a "row,col" field (None when blank)."""
    if text is None or not str(text).strip():
        return None
    try:
        row, col = (int(part) for part in str(text).replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"The {what} patch is ROW,COL of the patch grid (0-based), e.g. 5,6; not {text!r}.") from None
    return lab.token_of_patch(row, col)


def _query(lab, text: str | None) -> int:
    token = _patch(lab, text, "query")
    return lab.token_of_patch(lab.grid[0] // 2, lab.grid[1] // 2) if token is None else token


def _name(lab, token: int | None) -> str:
    where = None if token is None else lab.patch_of_token(token)
    return "none" if token is None else f"prefix token {token}" if where is None else f"patch ({where[0]}, {where[1]})"


@needs_photo(2, clear_on_error=False)
@user_errors
def lab_pick(image, backbone, random_weights, query_text, key_text, pick, evt: gr.SelectData):
    """A click on the face: the patch under it becomes the query (or the key); no forward pass."""
    lab = lab_of(image, backbone, random_weights)
    x, y = (float(v) for v in evt.index)
    side = lab.patch_size * CLICK_SIZE / lab.input_size
    row, col = int(y // side), int(x // side)
    if not (0 <= row < lab.grid[0] and 0 <= col < lab.grid[1]):
        raise ValueError(f"That point is outside the patch grid (a {lab.grid[0]}x{lab.grid[1]} grid of "
                         f"{lab.patch_size}-px patches covers {lab.grid[0] * lab.patch_size} px of "
                         f"{lab.input_size}); click inside it.")
    text = f"{row},{col}"
    return (query_text, text) if pick == "key" else (text, key_text)


@needs_photo(5, reason_at=4)
@user_errors
def lab_row(image, backbone, random_weights, block, head, query_text, key_text):
    """The clicked face, the query's logits row, its softmax row and the column the patch receives."""
    lab = lab_of(image, backbone, random_weights)
    block = _block(lab, block)
    head, query, key = _head(head), _query(lab, query_text), _patch(lab, key_text, "key")
    aligned, who = lab.face.aligned, _name(lab, query)
    face = attention_lab.face_grid_picture(lab, aligned, query, key, CLICK_SIZE)
    row = attention_lab.token_picture(lab, aligned, lab.row(block, head, query), f"row of {who}: logits", query)
    soft = attention_lab.token_picture(lab, aligned, lab.row_softmax(block, head, query),
                                       f"row of {who}: softmax (sums to 1)", query, cmap="viridis")
    column = attention_lab.token_picture(lab, aligned, lab.column(block, head, query), f"column: logits {who} "
                                         "receives", query)
    caption = (f"Query **{who}** (token {query} of {lab.num_tokens}), block {lab.block_index(block)}, "
               f"{'mean of all heads' if head is None else f'head {head}'}. Row: max logit "
               f"{lab.row(block, head, query).max():+.4f}, max probability {lab.row_softmax(block, head, query).max():.4f}.")
    return png_file(face), png_file(row), png_file(soft), png_file(column), caption


@needs_photo(2)
@user_errors
def lab_matrix(image, backbone, random_weights, block, head, query_text, key_text):
    """The head's N x N logit matrix with the query row and key column, and the score's decomposition in numbers."""
    lab = lab_of(image, backbone, random_weights)
    block = _block(lab, block)
    head, query, key = _head(head), _query(lab, query_text), _patch(lab, key_text, "key")
    index = block
    matrix = lab.matrix(index, head)
    picture = attention_lab.matrix_picture(lab, matrix, query, key)
    offsets, received, head_scores = lab.row_offsets(index, head), lab.received(index, head), lab.head_scores(index)
    which = "mean of all heads" if head is None else f"head {head}"
    text = (f"**{which}, block {index}**: mean of the {lab.num_tokens}x{lab.num_tokens} matrix = "
            f"**{matrix.mean():+.6f}** = mean of its row offsets {offsets.mean():+.6f} = mean of its column means "
            f"(the map) {received.mean():+.6f}.\n\nHead scores: "
            + ", ".join(f"{h}: {s:+.4f}" for h, s in enumerate(head_scores))
            + f"; their mean = the score at block {index} = **{head_scores.mean():+.6f}** "
              f"(the method's score, last block: {lab.score:+.6f}).")
    return png_file(picture), text


@needs_photo(3)
@user_errors
def lab_lesson(image, backbone, random_weights, block, head):
    """The softmax lesson with this face's numbers, and the row-offset map beside the received map."""
    lab = lab_of(image, backbone, random_weights)
    block = _block(lab, block)
    head = _head(head)
    aligned = lab.face.aligned
    offsets = attention_lab.token_picture(lab, aligned, lab.row_offsets(block, head),
                                          "row offsets: what softmax drops", None)
    received = attention_lab.token_picture(lab, aligned, lab.received(block, head), "received: the patch map", None)
    return attention_lab.softmax_lesson(lab, block, head), png_file(offsets), png_file(received)


@needs_photo(1)
@user_errors
def lab_model_view(image, backbone, random_weights, block, head, query_text, view):
    """Blocks x heads thumbnails of the received map or of the query's row, with the selected block/head outlined."""
    lab = lab_of(image, backbone, random_weights)
    block = _block(lab, block)
    picture = attention_lab.model_view_picture(lab, lab.face.aligned, view or "received", _query(lab, query_text),
                                               selected=(lab.block_index(block), _head(head)))
    # JPEG q95 like the whole-photo pictures: ~100 thumbnails make a 1 MB PNG that takes ~60 ms to encode on every
    # click, against ~8 ms; the exact values of any thumbnail are in the row / received views, which stay PNG.
    return photo_file(picture)


@needs_photo(2)
@user_errors
def lab_curves(image, backbone, random_weights, block, head):
    """The per-block score curve and the per-head entropy and distance over blocks."""
    lab = lab_of(image, backbone, random_weights)
    block = _block(lab, block)
    return (png_file(attention_lab.block_scores_figure(lab, block)),
            png_file(attention_lab.head_stats_figure(lab, _head(head))))


@needs_photo(2)
@user_errors
def lab_qk(image, backbone, random_weights, block, head, query_text, key_text):
    """The q.k terms of (query, key, head): the largest per-dimension terms and their sum, the logit."""
    lab = lab_of(image, backbone, random_weights)
    block = _block(lab, block)
    key = _patch(lab, key_text, "key")
    if key is None:
        return None, "Pick a key patch (tick *key* and click the face, or type ROW,COL) to see the q.k terms."
    query, chosen = _query(lab, query_text), _head(head)
    head = 0 if chosen is None else chosen  # q.k terms belong to one head: the mean of heads shows head 0's
    terms = lab.qk_terms(block, head, query, key)
    picture = attention_lab.qk_terms_picture(lab, block, head, query, key)
    note = " (q.k terms are those of one head: choose a head; head 0 shown.)" if chosen is None else ""
    return png_file(picture), (f"{_name(lab, query)} -> {_name(lab, key)}, head {head}: the {len(terms)} terms sum "
                               f"to {terms.sum():+.6f} = the logit L[{head}, {query}, {key}] = "
                               f"{lab.row(block, head, query)[key]:+.6f}.{note}")


@user_errors
def lab_controls(backbone: str):
    """A new backbone: the block slider and head list of its own depth and head count (no forward pass)."""
    spec = spec_of(backbone)
    return (gr.Slider(0, spec.depth - 1, value=spec.depth - 1, step=1),
            gr.Dropdown([("mean of all heads", MEAN_HEADS)] + [(f"head {h}", h) for h in range(spec.num_heads)],
                        value=MEAN_HEADS))


LAB_LABEL = "Attention lab"


@user_errors
def lab_opened(evt: gr.SelectData) -> bool:
    """Whether the tab the page just selected is the lab (``gr.Tabs``' select event: its label is ``evt.value``)."""
    return evt.value == LAB_LABEL


def when_open(fn, outputs: int):
    """``fn`` run only while the page shows the lab (its first input, the page's ``lab_open`` state); otherwise
    nothing runs and its outputs stay as they are: the lab's select event runs every view when it opens."""

    def run(is_open, *args):
        if not is_open:
            return gr.skip() if outputs == 1 else tuple(gr.skip() for _ in range(outputs))
        return fn(*args)

    # Its name and text, not functools.wraps: Gradio reads the signature through __wrapped__ and would count fn's
    # parameters against the inputs, which have the state in front.
    run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    return user_errors(run)


def tab(backbone: gr.Dropdown, random_weights: gr.Checkbox, controls, tabs: gr.Tabs) -> None:
    """The Attention lab tab on the Inspect photo and the shared backbone picker (``tabs``: the page's tabs, whose
    select event tells the lab whether it is open)."""
    spec_heads = controls.heads
    with gr.Tab(LAB_LABEL, id="lab") as lab_tab:
        # Made inside the tab: a State among the Tabs' own children is counted as a tab by Gradio's page (the lab's
        # name showed twice and the next tab vanished).
        lab_open = gr.State(False)  # this page's lab is the selected tab
        tabs.select(lab_opened, None, lab_open, api_visibility="private", show_progress="hidden", queue=False)
        gr.Markdown("Click a patch of the face: its row of **pre-softmax logits** (what this method averages) beside "
                    "its **softmax** (what the model uses), the column it receives, the head's matrix, and every "
                    "block and head. The model ran once for this photo; clicks only re-read its cached q and k.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                face = gr.Image(label="Click a patch (red: query, cyan: key)", format="png", interactive=False,
                                elem_id="lab-face", height=340)
                pick = gr.Radio([("query", "query"), ("key (q.k terms)", "key")], value="query",
                                label="A click picks the", elem_id="lab-pick")
                with gr.Row():
                    query = gr.Textbox("", label="Query patch ROW,COL (blank: centre)", elem_id="lab-query")
                    key = gr.Textbox("", label="Key patch ROW,COL", elem_id="lab-key")
                block = gr.Slider(0, controls.block.maximum, value=controls.block.maximum, step=1, label="Block",
                                  elem_id="lab-block")
                head = gr.Dropdown([("mean of all heads", MEAN_HEADS)] + list(spec_heads.choices), value=MEAN_HEADS,
                                   label="Head", elem_id="lab-head")
            with gr.Column(scale=3):
                caption = gr.Markdown(elem_id="lab-caption")
                row_img = image_out("Row: logits", elem_id="lab-row", height=260)
                with gr.Row():
                    soft_img = image_out("Row: softmax", elem_id="lab-softmax", height=260)
                    column_img = image_out("Column received", elem_id="lab-column", height=260)
        with gr.Row():
            matrix_img = image_out("N x N logits", elem_id="lab-matrix", height=440)
            decomposition = gr.Markdown(elem_id="lab-decomposition", latex_delimiters=[])
        lesson = gr.Markdown(elem_id="lab-lesson", latex_delimiters=[])
        with gr.Row():
            offsets_img = image_out("Row offsets", elem_id="lab-offsets", height=260)
            received_img = image_out("Received", elem_id="lab-received", height=260)
        view = gr.Radio([("attention received (the map)", "received"), ("the query's row", "row")], value="received",
                        label="Model view shows", elem_id="lab-view")
        with gr.Row():
            model_img = image_out("Model view: blocks x heads", elem_id="lab-model-view")
            with gr.Column():
                curve_img = image_out("Score by block", elem_id="lab-curve")
                stats_img = image_out("Per-head statistics", elem_id="lab-stats")
        with gr.Row():
            qk_img = image_out("q.k terms", elem_id="lab-qk", height=280)
            qk_text = gr.Markdown(elem_id="lab-qk-text", latex_delimiters=[])

    base = [controls.image, backbone, random_weights]
    query_views = [
        (lab_row, [*base, block, head, query, key], [face, row_img, soft_img, column_img, caption], "lab_row"),
        (lab_matrix, [*base, block, head, query, key], [matrix_img, decomposition], "lab_matrix"),
        (lab_qk, [*base, block, head, query, key], [qk_img, qk_text], "lab_qk"),
        (lab_model_view, [*base, block, head, query, view], [model_img], "lab_model_view"),
    ]
    overview = [
        (lab_lesson, [*base, block, head], [lesson, offsets_img, received_img], "lab_lesson"),
        (lab_curves, [*base, block, head], [curve_img, stats_img], "lab_curves"),
    ]

    def attach(triggers, views, prefix: str) -> None:
        for fn, inputs, outputs, name in views:
            gr.on(triggers, fn, inputs, outputs, api_name=f"{name}{prefix}", trigger_mode="always_last",
                  preprocess=False, show_progress="minimal")

    # Opening the tab, or a new block or head: every view (the first one captures q/k, the rest wait on its lock).
    # Not the photo's change: the photo is chosen in Inspect, so the lab is closed then and its select runs the
    # views when it opens (on a change they ran six views per upload for nobody, and again for each of the change
    # events Gradio's page fires for one upload).
    attach([lab_tab.select, block.release, head.input], query_views + overview, "")
    # The top bar's random-weights switch and backbone picker (a new backbone: its block and head controls first):
    # every view, only while the lab is open (with it closed they ran six forward-pass views for nobody at each
    # change, seen from every other tab, Live included).
    changed = backbone.input(lab_controls, [backbone], [block, head], api_name="lab_controls")
    for fn, inputs, outputs, name in query_views + overview:
        gated = when_open(fn, len(outputs))
        gr.on([random_weights.input], gated, [lab_open, *inputs], outputs, api_name=f"{name}_after_random_weights",
              api_visibility="private", trigger_mode="always_last", preprocess=False, show_progress="minimal")
        changed.then(gated, [lab_open, *inputs], outputs, api_name=f"{name}_after_backbone_change",
                     api_visibility="private", preprocess=False)
    # A click or a typed patch: only the views that depend on the query or the key.
    picked = face.select(lab_pick, [*base, query, key, pick], [query, key], api_name="lab_pick", preprocess=False)
    for fn, inputs, outputs, name in query_views:
        picked.then(fn, inputs, outputs, api_name=f"{name}_after_click", preprocess=False, show_progress="hidden")
    attach([query.submit, key.submit], query_views, "_after_typed_patch")
    gr.on([view.input], lab_model_view, [*base, block, head, query, view], [model_img], api_name="lab_model_view_switch",
          preprocess=False)
