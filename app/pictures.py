"""Pictures handed to Gradio as files (PNG, JPEG for whole photos), each written once, atomically, under the hash of its bytes.

Why not return numpy arrays: Gradio saves a returned array by rewriting ``<cache>/<hash of the bytes>/image.png`` in
place on every request (``processing_utils.save_pil_to_cache``). Two requests that produce the same picture (two
users inspecting one example face) then race: while one response streams the file, the other truncates and rewrites
it, and the client receives a body shorter than its Content-Length (``h11`` "Too little data for declared
Content-Length" on the server, ``RemoteProtocolError`` in the client). A returned file path is instead copied into
Gradio's cache under a temporary name and renamed into place (``save_file_to_cache``), so it is never seen half
written. Files here are written the same way and kept only briefly: Gradio copies them as the response is built.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

PHOTO_DISPLAY_SIDE = 1280  # pictures of the whole photo are shown at most this large
PHOTO_QUALITY = 95
# Gradio has copied a picture, a CSV or a report into its own cache long before this; ATTN_FIQA_TEMP_KEEP_S shortens it
# (tests). Gradio's own copies are deleted by the app's ``delete_cache`` (app/ui.py) after the same time.
KEEP_SECONDS = float(os.environ.get("ATTN_FIQA_TEMP_KEEP_S", 300))
PRUNE_EVERY = 500  # pictures written between two clean-ups

_lock = threading.Lock()
_written = 0
_folder: Path | None = None


def _app_folder() -> Path:
    """The one temporary folder of this server process: pictures, and each request's files in sub-folders; all of it
    goes at exit, and each request's files once they are KEEP_SECONDS old (``request_folder``)."""
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="attn_fiqa_app_"))  # under the temp dir Gradio may serve from
        atexit.register(shutil.rmtree, _folder, True)
    return _folder


def _pictures_folder() -> Path:
    folder = _app_folder() / "pictures"
    folder.mkdir(exist_ok=True)
    return folder


def request_folder(prefix: str) -> Path:
    """A new folder for one request's downloads (a CSV, a report); older ones than KEEP_SECONDS are removed first, so
    the server keeps at most the files of the last few minutes, however many requests it has served."""
    with _lock:
        root = _app_folder() / "requests"
        root.mkdir(exist_ok=True)
    cutoff = time.time() - KEEP_SECONDS
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # another request removed it first
            pass
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def png_file(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 RGB picture as a lossless PNG named by its content hash (crops, maps); returns its path."""
    # OpenCV's default PNG settings: lossless, and faster here than any explicit zlib level (measured).
    return _write(encode(".png", rgb, []), ".png")


def photo_file(rgb: np.ndarray) -> str:
    """A picture of the whole photo (face boxes, the map warped onto it), shown at most PHOTO_DISPLAY_SIDE large,
    as a JPEG of quality PHOTO_QUALITY: 3 ms instead of 25 ms for a 800x700 PNG, drawn on every request; the exact
    pixels of the map live in the crop pictures, which stay PNG."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if max(rgb.shape[:2]) > PHOTO_DISPLAY_SIDE:
        scale = PHOTO_DISPLAY_SIDE / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return _write(encode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, PHOTO_QUALITY]), ".jpg")


def encode(suffix: str, rgb: np.ndarray, params: list[int] | None = None) -> bytes:
    """An RGB picture as the bytes of a ``suffix`` file (".png", ".jpg"), with OpenCV's ``params``."""
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                               params or [])
    if not ok:
        raise RuntimeError(f"could not encode a picture as {suffix}")
    return encoded.tobytes()


def _write(data: bytes, suffix: str) -> str:
    with _lock:
        folder = _pictures_folder()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}{suffix}"
    if not path.exists():
        partial = folder / f"{path.stem}.{threading.get_ident()}.part"
        partial.write_bytes(data)
        os.replace(partial, path)  # atomic: a reader sees no file or the whole file
        _count_and_prune(folder)
    else:
        os.utime(path)  # in use again: keep it
    return str(path)


def _count_and_prune(folder: Path) -> None:
    global _written
    with _lock:
        _written += 1
        if _written % PRUNE_EVERY:
            return
    cutoff = time.time() - KEEP_SECONDS
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:  # another thread pruned it first
            pass
