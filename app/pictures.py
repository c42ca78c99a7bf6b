"""Pictures handed to Gradio as PNG files, each written once, atomically, under the hash of its bytes.

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

KEEP_SECONDS = 300  # Gradio has copied a picture long before this
PRUNE_EVERY = 500  # pictures written between two clean-ups

_lock = threading.Lock()
_written = 0
_folder: Path | None = None


def _pictures_folder() -> Path:
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="attn_fiqa_pictures_"))  # under the temp dir Gradio may serve from
        atexit.register(shutil.rmtree, _folder, True)
    return _folder


def png_file(rgb: np.ndarray) -> str:
    """Write an (H, W, 3) uint8 RGB picture as a PNG named by its content hash; returns its path."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode a picture as PNG")
    data = encoded.tobytes()
    with _lock:
        folder = _pictures_folder()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}.png"
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
    for old in folder.glob("*.png"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:  # another thread pruned it first
            pass
