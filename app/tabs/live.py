"""The Live tab: the browser's webcam streamed to the server, each frame scored through the one scoring path, with
the map on the moving face, a running score plot, the best frame so far (downloadable) and a status line.

Never behind: the webcam's stream event hands each frame to the session's two lanes (``live.LANES``, ``live.hand_in``):
a free lane scores it at once; while both are busy the newest frame waits in one place, replacing the one before,
and the first lane to finish takes it. The handler answers as soon as a frame is finished or a lane is free, and
Gradio calls it again with the newest frame the browser sent (a stream's data is replaced, not queued), so each
frame is scored at most once, always the newest, and no backlog can build. At most ``STREAMS`` sessions are scored
at once (the others are told to wait), and a stream stops by itself after its time limit.

Two outputs, not one per piece: the page's per-frame work grows with the outputs of a stream event (Gradio's page
updates the loading state of every output of the event at every frame it sends: with the nine outputs of the first
version that was most of a core, measured in Chromium's profiler). So the score, the reason, the status line, the
view and the plot are one HTML panel, and the best frame (its pictures and downloads as data URLs) is the other.
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import replace
from typing import Any

import cv2
import gradio as gr
import numpy as np
import torch
from markdown_it import MarkdownIt

from app import live
from app.errors import RequestTimeout, user_errors
from app.models import load_model, weights_text, weights_warning
from app.photos import example_results
from app.pictures import encode
from app.tabs.inspect import _rank_text
from attn_core.viz import crop_overlay, draw_boxes, photo_overlay

FRAME_SECONDS = 30  # the time limit of one frame's work
# Seconds between two frames the browser encodes and sends to both lanes. It sends on this clock whether or not a
# lane is free, so the clock should match what the server scores: each frame sent and not scored costs the browser
# (and, on one machine, the cores the scoring needs) for nothing. On a CPU two lanes of ~0.3 s per ViT-S frame take
# one every ~0.15-0.2 s: measured on the 2-core benchmark machine, 0.12 s gave 3.7 frames/s, 0.15 s 4.6 and 0.18 s
# 5.3 (benchmarks/RESULTS.md). A GPU scores a frame in a few ms: there the browser may send 20 a second.
STREAM_EVERY = 0.05 if torch.cuda.is_available() else 0.18
# What the page asks the camera for. Gradio's own default is 1920x1440 (a 1080p webcam then sends 1920x1080 frames:
# ~6x the pixels to encode, send and decode for the same 112x112 crop); 640x480 is plenty for a face at a desk.
CAMERA = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}
VIEW_QUALITY = 80  # JPEG quality of the streamed-back view
PLOT_WIDTH, PLOT_HEIGHT = 560, 170
BEST_SIDE = 224  # the best frame's 112x112 crop and map, shown at twice their size
SKIP = (gr.skip(), gr.skip())
NO_BEST = '<div class="live-best"><p id="live-best-text">No best frame yet.</p></div>'
_markdown = MarkdownIt("commonmark", {"html": False})  # the score text is written in Markdown, as in Inspect

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


def _data_url(data: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def view_url(rgb: np.ndarray) -> str:
    return _data_url(encode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, VIEW_QUALITY]), "image/jpeg")


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


def panel_html(session: live.LiveSession, now: float) -> str:
    """The stream's panel as the session has it now: score in context, why nothing was scored (if so), the status
    line (``live-stats``), the latest frame with its face box and map, and the score plot."""
    view = (f'<img class="live-view" src="{session.view}" alt="the latest frame with its face box and map" '
            f'style="width:100%">' if session.view else "")
    return (f'<div class="live-panel"><div id="live-score" class="score-box">{_markdown.render(session.headline)}'
            f'</div><p id="live-reason" style="font-weight:600">{html.escape(session.reason)}</p>'
            f'<p id="live-stats">{html.escape(session.stats())}</p>{view}'
            f'<div id="live-plot">{plot_svg(list(session.points), now)}</div></div>')


def best_html(best: live.BestFrame, spec, numbers: dict) -> str:
    """The best frame: its aligned crop (exactly the pixels scored) and the map on it, shown and downloadable as
    PNG, and its numbers as JSON (data URLs: the browser saves them; nothing is kept on the server)."""
    crop = _data_url(encode(".png", best.aligned), "image/png")
    on_crop = _data_url(encode(".png", crop_overlay(best.aligned, best.result.patch_map, spec)), "image/png")
    report = _data_url(json.dumps(numbers, indent=2).encode(), "application/json")
    figure = ('<figure style="margin:0"><img src="{}" width="{side}" height="{side}" alt="{}" '
              'style="image-rendering:pixelated"><figcaption>{}</figcaption></figure>')
    return (f'<div class="live-best"><p id="live-best-text"><b>Best so far: {best.score:+.4f}</b> (frame '
            f'{best.frame}, {best.at:.1f} s into the stream). Keep still and face the light to beat it; Reset starts '
            f'over.</p><div style="display:flex; gap:1.5em; flex-wrap:wrap">'
            + figure.format(crop, "the best frame's aligned crop", "Aligned crop: the 112x112 pixels scored",
                            side=BEST_SIDE)
            + figure.format(on_crop, "the best frame's attention map", "Its map (attention each patch receives)",
                            side=BEST_SIDE)
            + f'</div><p id="live-best-files">Download: <a download="best_frame_crop.png" href="{crop}">crop (PNG)'
              f'</a> · <a download="best_frame_map.png" href="{on_crop}">map (PNG)</a> · <a '
              f'download="best_frame.json" href="{report}">numbers (JSON)</a></p></div>')


def _examples(backbone: str, random_weights: bool) -> list[float]:
    return [result.score for _, result in example_results(backbone, random_weights, -1)]


@user_errors(seconds=FRAME_SECONDS)
def _pixels(frame: Any) -> np.ndarray:
    """The frame decoded (a data URL), or a file the request uploaded; anything else ends the stream with one
    sentence (gr.Error): a browser never sends it."""
    return live.frame_pixels(frame)


@user_errors(seconds=FRAME_SECONDS)  # on a lane worker, in the frame's request context: its errors, as sentences
def _score(pixels: np.ndarray, backbone: str, random_weights: bool, session: live.LiveSession) -> tuple:
    """One frame (on a lane worker): scored and drawn; the session's best frame if it is. Returns the view (a data
    URL), the score text, the reason and the score (None: nothing scored)."""
    scored = live.score_frame(pixels, backbone, random_weights)
    model = load_model(backbone, random_weights)
    settings = (backbone, bool(random_weights))
    with session.lock:
        if session.settings != settings:  # another backbone: its scores do not compare with the history's
            session.restart(settings)
    if scored.result is None:
        return view_url(pixels), "## No score for this frame", scored.reason, None
    result, face = scored.result, scored.faces[0]
    boxes = [f.box for f in scored.faces if f.box is not None]
    view = view_url(draw_boxes(photo_overlay(face, result.patch_map, model.spec), boxes, highlight=0))
    examples = _examples(backbone, random_weights)
    headline = (f"## Score {result.score:+.4f}\nHigher (less negative) = better. {_rank_text(result.score, examples)}"
                f"\n\n{model.spec.name} ({weights_text(result)}), last block, all heads, mean."
                + weights_warning(model, random_weights))
    with session.lock:  # the two lanes finish frames side by side: one best frame, numbered in order
        if session.best is not None and result.score <= session.best.score:
            return view, headline, scored.reason, result.score
        best = session.best = live.BestFrame(result.score, face.aligned.copy(), replace(result, face=None),  # no frame
                                             time.monotonic() - session.started, session.scored + 1)
    numbers = {
        "score": result.score, "head_scores": [float(s) for s in result.head_scores], "block": result.block,
        "heads": list(result.heads), "aggregation": result.aggregation, "tokens": result.tokens,
        "backbone": model.spec.name, "weights": result.weights, "weights_sha256": result.weights_sha256,
        "precision": result.precision, "random_weights": bool(random_weights), "frame": best.frame,
        "seconds_into_stream": round(best.at, 3), "faces_in_frame": len(scored.faces),
        "box_xywh": [float(v) for v in face.box], "landmarks_xy": np.asarray(face.landmarks).round(2).tolist(),
        "example_scores": examples, "map_is_exact": result.map_is_exact,
    }
    page = best_html(best, model.spec, numbers)
    with session.lock:
        if session.best is best:  # else the other lane found a better one meanwhile: its page is the one to show
            session.best_page = (best, page, numbers)
    return view, headline, scored.reason, result.score


def _work(session: live.LiveSession, job: live.Job) -> None:
    """A lane's work on one frame: scored (``_score``), then the session updated: its history, status line, panel
    and best frame. The status line's ms per frame: from the frame's arrival at the server to this point."""
    try:
        view, headline, reason, score = _score(job.pixels, job.backbone, job.random_weights, session)
    except gr.Error as error:  # one sentence in the reason line; the stream goes on
        view, headline, reason, score = None, None, error.message, None
    job.score, job.reason = score, reason
    with session.lock:
        session.record(time.monotonic(), score, (time.perf_counter() - job.arrived) * 1000)
        session.show(view, headline, reason, job.number)


def _hand_in(frame: Any, backbone: str, random_weights: bool, request: gr.Request | None) -> tuple:
    """A frame of this session's stream to its lanes (``live.hand_in``). Returns the session and the frame's job,
    or the session and the page's answer (the panel with a reason, no new best frame) when the frame is not scored:
    the stream has run past its time limit, or both scoring slots are held by other streams."""
    key = _request_key(request)
    session = live.session(key)
    now = time.monotonic()
    with session.lock:
        session.arrived(now)
        expired = session.expired(now)
    if expired:
        live.release_slot(key)
        minutes = live.time_limit() / 60
        return session, _say(session, f"This live stream stopped after its {minutes:g}-minute limit, so a forgotten "
                                      f"tab does not hold the server; press Reset to start again.")
    arrived = time.perf_counter()
    pixels = _pixels(frame)
    if not live.take_slot(key, now):
        return session, _say(session, live.WAIT_SENTENCE)
    with session.lock:
        job = live.Job(pixels, backbone, bool(random_weights), session.handed_in + 1, arrived=arrived)
        live.hand_in(session, job, _work)
    return session, job


def _say(session: live.LiveSession, reason: str) -> tuple:
    """The panel as it was, with ``reason`` in its reason line."""
    with session.lock:
        session.show(None, None, reason)
        return panel_html(session, time.monotonic()), gr.skip()


def _update(session: live.LiveSession) -> tuple:
    """The panel as the session has it now, and the best frame if the page has not had it yet."""
    with session.lock:
        best = live.new_best(session)
        return panel_html(session, time.monotonic()), gr.skip() if best is None else best


@user_errors(seconds=FRAME_SECONDS)
def live_stream(frame: Any, backbone: str, random_weights: bool = False, request: gr.Request = None):
    """The webcam's stream event: hands each frame to the session's lanes and answers as soon as there is something
    new to show (a frame finished) or a lane is free (so the browser sends the next frame at once): the page shows
    the newest scored frame, about LANES frames behind the camera at most, and never a backlog."""
    if frame is None:
        return SKIP
    session, job = _hand_in(frame, backbone, random_weights, request)
    if not isinstance(job, live.Job):
        return job
    return _update(session) if live.next_update(session, FRAME_SECONDS - 1) else SKIP


@user_errors(seconds=FRAME_SECONDS)
def live_frame(frame: str, backbone: str, random_weights: bool = False, request: gr.Request = None) -> dict:
    """Score one webcam frame (a ``data:image/jpeg;base64,...`` URL) as a frame of this session's live stream, and
    answer when it is scored (the API's ``/live_frame``: one call, one answer). Returns JSON: this frame's score
    (null when none was scored) and the reason, the status line, the frames scored in the stream, the stream's best
    frame's numbers (what its JSON download holds), and the page's two parts as HTML: the panel (score in context,
    reason, status line, the view with box and map, the plot) and the best frame when it changed (else null)."""
    if frame is None:
        raise gr.Error("No frame was sent: send the webcam picture as a data URL (data:image/jpeg;base64,...).",
                       print_exception=False)
    session, job = _hand_in(frame, backbone, random_weights, request)
    if not isinstance(job, live.Job):  # not scored: the panel says why
        (panel, best), score, reason = job, None, session.reason
    else:
        if not job.settled.wait(FRAME_SECONDS - 1):
            raise RequestTimeout
        with session.lock:
            session.delivered = (session.finished, session.delivered[1])
        (panel, best), score, reason = _update(session), job.score, job.reason
        # One call is one frame, not a stream: its scoring slot is free again at once (a REST call without a
        # session_hash is a new session each time; holding a slot for IDLE_SECONDS would refuse the third call).
        live.release_slot(_request_key(request))
    with session.lock:
        return {"score": score, "reason": reason, "status": session.stats(), "frames_scored": session.scored,
                "best": live.best_numbers(session), "panel_html": panel,
                "best_html": best if isinstance(best, str) else None}


@user_errors(seconds=FRAME_SECONDS)
def live_reset(request: gr.Request = None):
    """Start this session's stream over: no plot, no best frame, the time limit counted from now."""
    session = live.session(_request_key(request))
    with session.lock:
        session.restart(session.settings)
        session.delivered = (session.finished, None)
        return panel_html(session, time.monotonic()), NO_BEST


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
                                  webcam_options=gr.WebcamOptions(mirror=False, constraints=CAMERA),
                                  elem_id="live-camera", height=300)
                reset = gr.Button("Reset (start over)", elem_id="live-reset", size="sm")
            with gr.Column(scale=3):
                panel = gr.HTML(panel_html(live.LiveSession(), 0.0), elem_id="live-panel", padding=False)
        best = gr.HTML(NO_BEST, elem_id="live-best", padding=False)
        # The API's one-frame call: one frame in, its answer out (a stream event would hold an HTTP caller's request
        # open until the stream's time limit, and gradio_client cannot read a stream's answers).
        gr.api(live_frame, api_name="live_frame", concurrency_limit=live.LIVE_SESSIONS // 4, concurrency_id="live")
    outputs = [panel, best]
    # preprocess=False: the frame reaches live.frame_pixels as sent (a data URL; a file payload is checked there).
    # One stream event; its handler answers before its own frame is scored when a lane is free, so the session's
    # LANES lanes are fed (live.hand_in). concurrency: each open stream holds one of these for its whole run, idle
    # between frames; live.take_slot lets STREAMS sessions score and tells the others to wait.
    camera.stream(live_stream, [camera, backbone, random_weights], outputs, preprocess=False, api_name="live_stream",
                  api_visibility="private", stream_every=STREAM_EVERY, time_limit=int(limit),
                  concurrency_limit=live.LIVE_SESSIONS // 4, concurrency_id="live", show_progress="hidden")
    reset.click(live_reset, None, outputs, api_name="live_reset")
    demo.unload(forget_session)
