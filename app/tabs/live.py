"""The Live tab: the browser's webcam streamed to the server, each frame scored through the one scoring path, with
the map on the moving face, a running score plot, the best frame so far (downloadable) and a status line.

Never behind: Gradio keeps only the latest frame a stream sent while the previous one is being scored (the stream
request's data is replaced, not queued), a session never scores two frames at once, at most ``STREAMS`` sessions
are scored at once (the others are told to wait), and a stream stops by itself after its time limit.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from typing import Any

import cv2
import gradio as gr
import numpy as np

from app import live
from app.errors import user_errors
from app.models import load_model, weights_text, weights_warning
from app.photos import example_results
from app.pictures import request_folder
from app.tabs.inspect import _rank_text
from attn_core.viz import crop_overlay, draw_boxes, photo_overlay

FRAME_SECONDS = 30  # the time limit of one frame's work
STREAM_EVERY = 0.1  # seconds between two frames the browser sends (at most 10 fps; it sends none while busy)
VIEW_QUALITY = 80  # JPEG quality of the streamed-back view
PLOT_WIDTH, PLOT_HEIGHT = 560, 170
SKIP_BEST = (gr.skip(),) * 4

CAMERA_HINT_JS = """
const hint = element.querySelector('.live-camera-hint');
const show = (text) => { hint.textContent = text; hint.style.display = 'block'; };
const hide = () => { hint.textContent = ''; hint.style.display = 'none'; };
const refused = (error) => ({
  NotAllowedError: 'The browser refused the camera to this page: allow camera access (the camera icon in the ' +
    'address bar, or the site settings), then click the webcam box again.',
  NotFoundError: 'No camera was found: connect one, then click the webcam box again.',
  NotReadableError: 'The camera is busy or blocked by the system: close other programs that use it, then try again.',
}[error && error.name] || ('The camera could not be opened (' + ((error && error.name) || 'unknown error') +
  '): check the browser\\'s camera permission for this page.'));
if (!window.isSecureContext || !(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
  show('This browser allows the webcam only on https or on localhost: open the app as http://localhost:PORT on ' +
       'this computer, or serve it with --ssl-certfile/--ssl-keyfile.');
} else {
  if (!navigator.mediaDevices.attnFiqaWatched) {
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      try { const stream = await original(constraints); hide(); return stream; }
      catch (error) { if (constraints && constraints.video) show(refused(error)); throw error; }
    };
    navigator.mediaDevices.attnFiqaWatched = true;
  }
  if (navigator.permissions && navigator.permissions.query) {
    navigator.permissions.query({name: 'camera'}).then((status) => {
      const check = () => status.state === 'denied' ? show(refused({name: 'NotAllowedError'})) : null;
      check(); status.onchange = check;
    }).catch(() => {});
  }
}
"""


def _request_key(request: gr.Request | None) -> str:
    """The browser session a request belongs to (direct Python calls share one)."""
    return getattr(request, "session_hash", None) or "local"


def _data_url(rgb: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, VIEW_QUALITY])
    if not ok:
        raise RuntimeError("could not encode the live view")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def view_html(rgb: np.ndarray) -> str:
    return f'<img src="{_data_url(rgb)}" alt="the frame with its face box and map" style="width:100%">'


def plot_svg(points: list[tuple[float, float]], now: float) -> str:
    """The scores of the last HISTORY_SECONDS as an SVG line (x: seconds ago; y: this window's score range)."""
    window = live.HISTORY_SECONDS
    if not points:
        return (f'<svg id="live-plot-svg" data-points="0" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}"><text x="10" '
                f'y="{PLOT_HEIGHT // 2}" fill="currentColor">No score yet.</text></svg>')
    scores = [score for _, score in points]
    low, high = min(scores), max(scores)
    pad = max((high - low) * 0.1, 1e-3)
    low, high = low - pad, high + pad
    left, right, top, bottom = 64, PLOT_WIDTH - 10, 10, PLOT_HEIGHT - 24

    def xy(t: float, score: float) -> str:
        x = left + (right - left) * (1 - min(window, max(0.0, now - t)) / window)
        y = bottom - (bottom - top) * (score - low) / (high - low)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(t, score) for t, score in points)
    last = xy(*points[-1]).split(",")
    return (f'<svg id="live-plot-svg" data-points="{len(points)}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
            f'viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" style="max-width:100%" font-size="11">'
            f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#999"/>'
            f'<text x="2" y="{top + 10}" fill="currentColor">{high:+.4f}</text>'
            f'<text x="2" y="{bottom}" fill="currentColor">{low:+.4f}</text>'
            f'<text x="{left}" y="{PLOT_HEIGHT - 6}" fill="currentColor">{window:.0f} s ago</text>'
            f'<text x="{right - 22}" y="{PLOT_HEIGHT - 6}" fill="currentColor">now</text>'
            f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>'
            f'<circle cx="{last[0]}" cy="{last[1]}" r="4" fill="#2563eb"/></svg>')


def _examples(backbone: str, random_weights: bool) -> list[float]:
    return [result.score for _, result in example_results(backbone, random_weights, -1)]


def _best_files(best: live.BestFrame, spec, numbers: dict) -> list[str]:
    """The best frame as downloads: its aligned crop (exactly the pixels scored), the map on it, its numbers."""
    folder = request_folder("attn_fiqa_live_")
    crop, on_crop = folder / "best_frame_crop.png", folder / "best_frame_map.png"
    for path, rgb in ((crop, best.aligned), (on_crop, crop_overlay(best.aligned, best.result.patch_map, spec))):
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError("could not encode the best frame")
        path.write_bytes(encoded.tobytes())
    report = folder / "best_frame.json"
    report.write_text(json.dumps(numbers, indent=2))
    return [str(crop), str(on_crop), str(report)]


@user_errors(seconds=FRAME_SECONDS)
def _pixels(frame: Any) -> np.ndarray:
    """The frame decoded (a data URL), or a file the request uploaded; anything else ends the stream with one
    sentence (gr.Error): a browser never sends it."""
    return live.frame_pixels(frame)


@user_errors(seconds=FRAME_SECONDS)
def _score(pixels: np.ndarray, backbone: str, random_weights: bool, session: live.LiveSession) -> tuple:
    """One frame: scored, drawn, recorded; returns the outputs that change."""
    scored = live.score_frame(pixels, backbone, random_weights)
    model = load_model(backbone, random_weights)
    settings = (backbone, bool(random_weights))
    if session.settings != settings:  # another backbone: its scores do not compare with the history's
        session.restart(settings)
    if scored.result is None:
        return view_html(pixels), "## No score for this frame", scored.reason, None, SKIP_BEST
    result, face = scored.result, scored.faces[0]
    boxes = [f.box for f in scored.faces if f.box is not None]
    view = draw_boxes(photo_overlay(face, result.patch_map, model.spec), boxes, highlight=0)
    examples = _examples(backbone, random_weights)
    score_md = (f"## Score {result.score:+.4f}\nHigher (less negative) = better. {_rank_text(result.score, examples)}"
                f"\n\n{model.spec.name} ({weights_text(result)}), last block, all heads, mean."
                + weights_warning(model, random_weights))
    best = SKIP_BEST
    if session.best is None or result.score > session.best.score:
        session.best = live.BestFrame(result.score, face.aligned.copy(), replace(result, face=None),  # no frame kept
                                      time.monotonic() - session.started, session.scored + 1)
        numbers = {
            "score": result.score, "head_scores": [float(s) for s in result.head_scores], "block": result.block,
            "heads": list(result.heads), "aggregation": result.aggregation, "tokens": result.tokens,
            "backbone": model.spec.name, "weights": result.weights, "weights_sha256": result.weights_sha256,
            "precision": result.precision, "random_weights": bool(random_weights), "frame": session.best.frame,
            "seconds_into_stream": round(session.best.at, 3), "faces_in_frame": len(scored.faces),
            "box_xywh": [float(v) for v in face.box], "landmarks_xy": np.asarray(face.landmarks).round(2).tolist(),
            "example_scores": examples, "map_is_exact": result.map_is_exact,
        }
        files = _best_files(session.best, model.spec, numbers)
        best = (files[0], files[1], files, (f"**Best so far: {result.score:+.4f}** (frame {session.best.frame}, "
                                            f"{session.best.at:.1f} s into the stream). Download the crop, its map "
                                            f"and its numbers below."))
    return view_html(view), score_md, scored.reason, result.score, best


@user_errors(seconds=FRAME_SECONDS)
def live_frame(frame: Any, backbone: str, random_weights: bool = False, request: gr.Request = None):
    """Score one webcam frame of this browser session's stream: the view with box and map, the score in context,
    why nothing was scored (if so), the score plot, the status line, and the best frame when it improved."""
    key = _request_key(request)
    session = live.session(key)
    if frame is None or not session.lock.acquire(blocking=False):  # this session is busy: the next frame will do
        return (gr.skip(),) * 9
    try:
        start, now = time.perf_counter(), time.monotonic()
        session.arrived(now)
        if session.expired(now):
            live.release_slot(key)
            minutes = live.time_limit() / 60
            stopped = (f"This live stream stopped after its {minutes:g}-minute limit, so a forgotten tab does not "
                       f"hold the server; press Reset to start again.")
            return (gr.skip(), gr.skip(), stopped, gr.skip(), gr.skip(), *SKIP_BEST)
        pixels = _pixels(frame)
        if not live.take_slot(key, now):
            return (gr.skip(), gr.skip(), live.WAIT_SENTENCE, gr.skip(), gr.skip(), *SKIP_BEST)
        try:
            view, score_md, reason, score, best = _score(pixels, backbone, random_weights, session)
        except gr.Error as error:  # one sentence in the reason line; the stream goes on
            view, score_md, reason, score, best = gr.skip(), gr.skip(), error.message, None, SKIP_BEST
        done = time.monotonic()
        session.record(done, score, (time.perf_counter() - start) * 1000)
        return (view, score_md, reason, plot_svg(list(session.points), done), session.stats(), *best)
    finally:
        session.lock.release()


@user_errors(seconds=FRAME_SECONDS)
def live_reset(request: gr.Request = None):
    """Start this session's stream over: no plot, no best frame, the time limit counted from now."""
    session = live.session(_request_key(request))
    with session.lock:
        session.restart()
        return (None, "Show your face to the camera.", "", plot_svg([], time.monotonic()), session.stats(),
                None, None, None, "No best frame yet.")


@user_errors(seconds=FRAME_SECONDS)
def forget_session(request: gr.Request = None) -> None:
    """The tab closed (or reloaded): its stream state and scoring slot are freed at once, and so is Gradio's own
    copy of the session's page (``SessionState``: every component's config and last value, a few MiB for this app),
    which Gradio otherwise keeps until 10,000 sessions have come (measured: +16 MiB per closed Live session)."""
    key = _request_key(request)
    live.forget(key)
    holder = getattr(getattr(getattr(request, "request", None), "app", None), "state_holder", None)
    if holder is not None:
        with holder.lock:
            holder.session_data.pop(key, None)
            holder.time_last_used.pop(key, None)


def tab(backbone: gr.Dropdown, random_weights: gr.Checkbox, demo: gr.Blocks) -> None:
    """The Live tab (its own ``gr.Tab``) and its events; ``demo.unload`` frees a closed tab's stream state."""
    limit = live.time_limit()
    with gr.Tab("Live", id="live"):
        gr.Markdown(f"Your webcam, scored as it moves: the map on your face, a running score, and the best frame "
                    f"kept. Click the webcam box to start; keep still until the score is high, then download the "
                    f"best shot. A stream stops by itself after {limit / 60:g} minutes; at most {live.STREAMS} "
                    f"streams are scored at once.")
        gr.HTML('<div class="live-camera-hint" style="display:none; color:#b91c1c; font-weight:600"></div>',
                js_on_load=CAMERA_HINT_JS, elem_id="live-camera-hint", padding=False)
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                camera = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy",
                                  webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-camera", height=300)
                stats = gr.Markdown(live.LiveSession().stats(), elem_id="live-stats")
                reset = gr.Button("Reset (start over)", elem_id="live-reset", size="sm")
                reason = gr.Markdown(elem_id="live-reason")
                score_md = gr.Markdown("Show your face to the camera.", elem_id="live-score",
                                       elem_classes=["score-box"], latex_delimiters=[])
            with gr.Column(scale=3):
                view = gr.HTML(elem_id="live-view", label="Face box and map", padding=False)
                plot = gr.HTML(plot_svg([], 0.0), elem_id="live-plot", padding=False)
        with gr.Row():
            best_md = gr.Markdown("No best frame yet.", elem_id="live-best")
        with gr.Row():
            best_crop = gr.Image(label="Best frame: aligned crop", format="png", interactive=False, height=200,
                                 elem_id="live-best-crop", buttons=["download"])
            best_map = gr.Image(label="Best frame: map", format="png", interactive=False, height=200,
                                elem_id="live-best-map", buttons=["download"])
            best_files = gr.File(label="Best frame: PNG crop, PNG map, JSON numbers", file_count="multiple",
                                 interactive=False, elem_id="live-best-files")
    outputs = [view, score_md, reason, plot, stats, best_crop, best_map, best_files, best_md]
    # preprocess=False: the frame reaches live.frame_pixels as sent (a data URL; a file payload is checked there).
    # concurrency: each open stream holds one of these for its whole run, idle between frames; live.take_slot
    # lets STREAMS of them score and tells the others to wait.
    camera.stream(live_frame, [camera, backbone, random_weights], outputs, api_name="live_frame", preprocess=False,
                  stream_every=STREAM_EVERY, time_limit=int(limit), concurrency_limit=live.LIVE_SESSIONS // 8,
                  concurrency_id="live", show_progress="hidden")
    reset.click(live_reset, None, outputs, api_name="live_reset")
    demo.unload(forget_session)
