"""Live webcam scoring, apart from its layout (app.tabs.live): each browser session's stream state (its score
history, its best frame, its clock), its lanes (``hand_in``: frames scored side by side, the newest waiting),
the two scoring slots, and one frame through the one scoring path.

Why a registry keyed by Gradio's session hash rather than ``gr.State``: Gradio keeps a closed session's state for
an hour, while a live session holds a best frame and its history; ``forget`` (the app's ``unload`` event) frees it
the moment the tab closes, and the registry is bounded anyway (LIVE_SESSIONS, least recently used first).
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import contextvars
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cachetools
import numpy as np
import torch

from app.errors import RequestTimeout
from app.models import load_model
from app.photos import image_path
from attn_core import QualityResult, ScoreOptions
from attn_core.faces import AlignedFace, extract_faces, load_image

log = logging.getLogger(__name__)

# Detection runs on a copy of the frame at most this long (YuNet still finds a face of ~40 px in a 640x480 frame
# scaled to 320x240); the crop is cut from the full frame.
DETECT_SIDE = 320
HISTORY_SECONDS = 30.0  # the plot's window
RATE_SECONDS = 5.0  # fps and ms per frame are measured over this window
STREAMS = 2  # streams scored at once; a third is told to wait
LANES = 2  # frames of one stream scored at once (see lanes()); the webcam feeds each lane its own stream event
IDLE_SECONDS = 3.0  # a stream that sent no frame for this long gives its slot up
LIVE_SESSIONS = 64  # sessions remembered at most (each: <= 30 s of scores and one best frame)
MAX_FRAME_BYTES = 8 * 2**20  # an encoded frame (a 1920x1080 JPEG is ~1 MB)
DEFAULT_TIME_LIMIT = 600.0  # a stream stops by itself after this long (attn-fiqa app --live-limit)
_settings = {"time_limit": float(os.environ.get("ATTN_FIQA_LIVE_LIMIT_S", DEFAULT_TIME_LIMIT))}

START_TEXT = "Show your face to the camera."
WAIT_SENTENCE = (f"{STREAMS} live streams are being scored already; yours starts by itself as soon as one of them "
                 f"stops, so keep this tab open.")


def set_time_limit(seconds: float) -> None:
    """How long one stream may run (seconds) before it stops by itself; set at launch."""
    if not seconds > 0:
        raise ValueError(f"The live time limit must be a positive number of seconds, got {seconds}.")
    _settings["time_limit"] = float(seconds)


def time_limit() -> float:
    return _settings["time_limit"]


@dataclass
class BestFrame:
    """The highest-scoring frame of a stream: its crop and map pictures and its numbers (the frame is not kept)."""

    score: float
    aligned: np.ndarray  # (112, 112, 3) uint8: exactly the pixels scored
    result: QualityResult
    at: float  # seconds since the stream started
    frame: int  # its number among the frames scored


@dataclass
class Job:
    """A frame handed to a stream's lanes: its pixels, how to score it, the request it came with (its context:
    Gradio's request, the file rules, the time limit's flag) and when it arrived."""

    pixels: np.ndarray
    backbone: str
    random_weights: bool
    number: int  # its place among the frames the stream handed in
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    arrived: float = field(default_factory=time.perf_counter)
    settled: threading.Event = field(default_factory=threading.Event)  # scored, or replaced by a newer frame
    score: float | None = None  # what its lane found: the score (None: not scored) and why not
    reason: str = ""


@dataclass
class LiveSession:
    """One browser session's stream: scores of the last HISTORY_SECONDS, frame timings, the best frame, and its
    lanes: the frames being scored (at most LANES) and the one frame waiting for a lane (the newest)."""

    started: float = field(default_factory=time.monotonic)
    settings: tuple[str, bool] | None = None  # (backbone, random weights) the history was scored with
    points: deque = field(default_factory=deque)  # (monotonic time, score)
    timings: deque = field(default_factory=deque)  # (monotonic time done, ms spent)
    scored: int = 0
    best: BestFrame | None = None
    best_page: tuple[BestFrame, str, dict] | None = None  # a best frame, its HTML and numbers (built by its lane)
    view: str = ""  # what the panel shows: the latest frame drawn (a data URL), the score text, the reason line
    headline: str = START_TEXT
    reason: str = ""
    shown: int = 0  # the number of the frame the panel shows (a lane that finishes an older one leaves it)
    last_frame: float = 0.0  # when its latest frame arrived: after a pause of IDLE_SECONDS, a new stream begins
    lock: threading.RLock = field(default_factory=threading.RLock)  # every field, updated by the lanes
    pending: Job | None = None  # the newest frame, waiting for a lane (one place: never a queue of old frames)
    handed_in: int = 0  # frames handed to the lanes
    scoring: int = 0  # lanes at work
    finished: int = 0  # frames the lanes finished (scored, or told why not)
    delivered: tuple[int, BestFrame | None] = (0, None)  # what the page was last sent: frames finished, best frame

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)  # a lane finished a frame, or took the waiting one

    def restart(self, settings: tuple[str, bool] | None = None) -> None:
        """Start over: no history, no best frame, the time limit counted from now."""
        self.started = time.monotonic()
        self.settings = settings
        self.points.clear()
        self.timings.clear()
        self.scored = 0
        self.best = self.best_page = None
        self.view, self.headline, self.reason = "", START_TEXT, ""

    def show(self, view: str | None, headline: str | None, reason: str, number: int | None = None) -> None:
        """What the panel shows from now on: the latest view and score text (None: keep them) and the reason; a
        frame older than the one shown (``number``: its place in the stream) changes nothing."""
        if number is not None:
            if number < self.shown:
                return
            self.shown = number
        self.view = self.view if view is None else view
        self.headline = self.headline if headline is None else headline
        self.reason = reason

    def record(self, now: float, score: float | None, milliseconds: float) -> None:
        if score is not None:
            self.points.append((now, score))
            self.scored += 1
        self.timings.append((now, milliseconds))
        while self.points and self.points[0][0] < now - HISTORY_SECONDS:
            self.points.popleft()
        while len(self.timings) > 2 and self.timings[0][0] < now - RATE_SECONDS:  # the last two always count
            self.timings.popleft()

    def stats(self) -> str:
        """The status line: frames scored, frames handled per second over the last RATE_SECONDS (at least the last
        two frames), and the server's time for the latest frame, from its arrival to its view drawn (decode, any wait
        for a lane, detect, align, score, draw)."""
        times = [t for t, _ in self.timings]
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        ms = self.timings[-1][1] if self.timings else 0.0
        return f"frames scored: {self.scored} · {fps:.1f} fps · {ms:.0f} ms per frame"

    def arrived(self, now: float) -> None:
        """A frame arrived: after a pause (the camera stopped and started again) the time limit counts anew."""
        if self.last_frame and now - self.last_frame > IDLE_SECONDS:
            self.started = now
            self.timings.clear()  # the rate of this stream, not of the one before the pause
        self.last_frame = now

    def expired(self, now: float) -> bool:
        return now - self.started > time_limit()


_sessions: cachetools.LRUCache = cachetools.LRUCache(maxsize=LIVE_SESSIONS)
_slots: dict[str, float] = {}  # session -> time of its last frame scored
_lock = threading.Lock()


def session(key: str) -> LiveSession:
    """This browser session's stream state (created on its first frame)."""
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = _sessions[key] = LiveSession()
        return found


def forget(key: str) -> None:
    """The tab closed: drop its stream state and its scoring slot."""
    with _lock:
        _sessions.pop(key, None)
        _slots.pop(key, None)


def known_sessions() -> set[str]:
    with _lock:
        return set(_sessions.keys())


def take_slot(key: str, now: float) -> bool:
    """True when this session may score now: it holds one of the STREAMS slots, or one is free (a slot whose
    stream sent nothing for IDLE_SECONDS is free)."""
    with _lock:
        for other, last in list(_slots.items()):
            if now - last > IDLE_SECONDS:
                del _slots[other]
        if key in _slots or len(_slots) < STREAMS:
            _slots[key] = now
            return True
        return False


def release_slot(key: str) -> None:
    with _lock:
        _slots.pop(key, None)


_pool: concurrent.futures.ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()  # one lane worker at a time changes torch's default and puts it back


def _lane_worker(threads: int, default: int) -> None:
    """A lane worker's first act: its torch ops use ``threads`` threads from now on. ``torch.set_num_threads`` also
    sets the count that threads started later begin with, so a throwaway thread puts ``default`` back (the request
    threads of the other tabs keep it; this worker keeps its own)."""
    with _threads_lock:
        torch.get_num_threads()  # torch's own per-thread setup first, or it would overwrite the count below later
        torch.set_num_threads(threads)
        restore = threading.Thread(target=torch.set_num_threads, args=(default,), name="attn_fiqa:threads")
        restore.start()
        restore.join()


def lanes() -> concurrent.futures.ThreadPoolExecutor:
    """The workers that score live frames: LANES per stream, each with its share of the cores.

    Why: one frame at a time with torch's threads on every core reached ~3 frames/s on a 2-core CPU beside the
    browser: at batch size 1 each of the ~100 matrix products per frame waits for its slowest thread, and the
    browser holds a core for part of every frame. Two frames at once on one thread each keep both cores busy with
    no such waits (measured: 8.7 ViT-S frames/s against 6.9-8.0 on an idle machine; benchmarks/RESULTS.md).
    """
    global _pool
    with _lock:
        if _pool is None:
            default = torch.get_num_threads()
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=STREAMS * LANES, thread_name_prefix="attn_fiqa:live_lane", initializer=_lane_worker,
                initargs=(max(1, default // LANES), default))
        return _pool


def hand_in(session: LiveSession, job: Job, work: Callable[[LiveSession, Job], None]) -> None:
    """The stream's newest frame to its lanes: a free lane starts on it at once; when all LANES are busy it waits
    in the session's one place, replacing (and settling) the frame that waited there, so the next lane to finish
    takes the newest frame with no wait and no queue of old ones builds up. ``work(session, job)`` scores one
    frame on a lane worker, in the context of the request that sent it."""
    with session.changed:
        session.handed_in = max(session.handed_in, job.number)
        if session.scoring < LANES:
            session.scoring += 1
            lanes().submit(_lane, session, work, job)
            return
        if session.pending is not None:  # never scored: a newer frame came first
            session.pending.reason = "A newer frame of this stream came before a lane was free; it was scored instead."
            session.pending.settled.set()
        session.pending = job


def _lane(session: LiveSession, work: Callable[[LiveSession, Job], None], job: Job) -> None:
    """One lane: its frame, then the frame waiting when it is done, and so on until none waits."""
    while True:
        try:
            job.context.run(work, session, job)
        except Exception:  # work says expected failures itself; anything else must not end the lane
            log.exception("a live frame failed")
            with session.lock:
                session.show(None, None, "This frame could not be scored (a server error, logged); the stream goes on.")
        finally:
            with session.changed:
                session.finished += 1
                job.settled.set()
                job, session.pending = session.pending, None
                if job is None:
                    session.scoring -= 1  # a lane is free: the stream may send its next frame
                session.changed.notify_all()
        if job is None:
            return


def next_update(session: LiveSession, seconds: float) -> bool:
    """Waits (at most ``seconds``) until the stream's page has something new to show (a lane finished a frame since
    the last update), or a lane is free and no frame waits for one (the page should send the next frame). True when
    something is new; either way the page is up to date from now on."""
    with session.changed:
        if not session.changed.wait_for(lambda: session.finished > session.delivered[0] or (
                session.scoring < LANES and session.pending is None), seconds):
            raise RequestTimeout
        new = session.finished > session.delivered[0]
        session.delivered = (session.finished, session.delivered[1])
        return new


def new_best(session: LiveSession) -> str | None:
    """The best frame's HTML when it changed since the page was last sent it (None: unchanged)."""
    with session.lock:
        if session.best_page is None or session.best_page[0] is session.delivered[1]:
            return None
        session.delivered = (session.delivered[0], session.best_page[0])
        return session.best_page[1]


def best_numbers(session: LiveSession) -> dict | None:
    """The best frame's numbers (what its JSON download holds), or None before the first score."""
    with session.lock:
        return None if session.best_page is None else session.best_page[2]


def frame_pixels(frame: Any) -> np.ndarray:
    """The frame a stream request sent: a ``data:image/...;base64,`` URL (how the browser streams it), or a file
    it uploaded (checked like every file a request names, ``app.photos.image_path``)."""
    if isinstance(frame, dict):
        url = frame.get("url") or ""
        frame = url if str(url).startswith("data:") else frame
    if isinstance(frame, str) and frame.startswith("data:"):
        header, _, encoded = frame.partition(",")
        if not header.startswith("data:image/") or ";base64" not in header:
            raise ValueError("The frame is not an image: the camera stream sends JPEG or PNG frames.")
        if len(encoded) > MAX_FRAME_BYTES * 4 // 3 + 4:
            raise ValueError(f"The frame is over {MAX_FRAME_BYTES // 2**20} MiB; lower the camera's resolution.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("The frame could not be decoded (broken base64 data); restart the camera.") from None
        return load_image(data)
    return load_image(image_path(frame))


@dataclass
class FrameScore:
    """One frame scored: the largest face's result, every face found, and why nothing was scored (if so)."""

    faces: list[AlignedFace]
    result: QualityResult | None
    reason: str


def score_frame(pixels: np.ndarray, backbone: str, random_weights: bool) -> FrameScore:
    """Detect (on a copy at most DETECT_SIDE long), align and score the largest face, through the same functions
    as Inspect (``extract_faces``, ``FaceQualityModel.score_aligned``), at the app's precision, default options."""
    model = load_model(backbone, random_weights)
    faces = extract_faces(pixels, all_faces=True, on_no_face="center_crop", detect_max_side=DETECT_SIDE)
    if faces[0].method == "center_crop":
        return FrameScore([], None, "No face in this frame: face the camera, with your whole face in view and lit.")
    (result,) = model.score_aligned(faces[:1], ScoreOptions())
    reason = "" if len(faces) == 1 else (f"{len(faces)} faces in this frame: the largest (green box) is scored; "
                                         f"for a clean reading, only one person should face the camera.")
    return FrameScore(faces, result, reason)
