"""Face detection: OpenCV's YuNet on the bundled ONNX model, one shared detector per process."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from attn_core.paths import ASSETS_DIR

__all__ = ["DETECT_MAX_SIDE", "YUNET_FILENAME", "DetectedFace", "FaceDetector", "get_detector"]

DETECT_MAX_SIDE: int = 1280  # detection runs on a copy no larger than this; YuNet finds faces of ~10-300 px anyway
YUNET_FILENAME = "face_detection_yunet_2023mar_int8bq.onnx"




@dataclass(frozen=True)
class DetectedFace:
    """One YuNet detection in photo pixels; landmark rows follow ARCFACE_TEMPLATE's order."""

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray  # (5, 2) float32
    confidence: float


class FaceDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) on the bundled ONNX file; safe to share between threads.

    YuNet's landmark order is: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth
    corner (OpenCV's docs call them "right eye" etc. from the subject's point of view). That is already the row order
    of ARCFACE_TEMPLATE, so landmarks are passed through without reordering.
    """

    def __init__(self, model_path: Path | None = None, score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        path = Path(model_path) if model_path is not None else ASSETS_DIR / YUNET_FILENAME
        if not path.is_file():
            raise FileNotFoundError(
                f"YuNet face detector not found at '{path}'. It ships in assets/ ({YUNET_FILENAME}); "
                "reinstall the package or set ATTN_FIQA_ASSETS to the folder that holds it."
            )
        self.model_path = path
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        # The cv2 object keeps its input size as state, so setInputSize + detect must not interleave across threads.
        self._lock = threading.Lock()
        # OpenCV 5 warns on every create that its new DNN engine ignores target selection; harmless, so hush it.
        previous_level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), self.score_threshold, self.nms_threshold, 5000
            )
        finally:
            cv2.utils.logging.setLogLevel(previous_level)

    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """All faces in an (H, W, 3) uint8 RGB photo, largest box first (photo pixel coordinates)."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"detect expects an (H, W, 3) uint8 RGB array, got {image_rgb.shape} {image_rgb.dtype}.")
        height, width = image_rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        if scale < 1.0:
            small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = cv2.resize(image_rgb, small_size, interpolation=cv2.INTER_AREA)
            # Exact per-axis factors, so rounding of the small size does not shift coordinates.
            factor = np.array([width / small_size[0], height / small_size[1]], dtype=np.float64)
        else:
            work = image_rgb
            factor = np.ones(2, dtype=np.float64)
        bgr = cv2.cvtColor(work, cv2.COLOR_RGB2BGR)  # YuNet was trained on OpenCV's BGR frames
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._net.detect(bgr)
        if rows is None:
            return []
        faces = []
        for row in np.asarray(rows, dtype=np.float64):
            x, y, w, h = row[0] * factor[0], row[1] * factor[1], row[2] * factor[0], row[3] * factor[1]
            landmarks = (row[4:14].reshape(5, 2) * factor).astype(np.float32)
            faces.append(DetectedFace((float(x), float(y), float(w), float(h)), landmarks, float(row[14])))
        faces.sort(key=lambda face: face.box[2] * face.box[3], reverse=True)
        return faces


_detector_lock = threading.Lock()
_shared_detector: FaceDetector | None = None


def get_detector() -> FaceDetector:
    """The process-wide detector on the bundled model (built on first use)."""
    global _shared_detector
    with _detector_lock:
        if _shared_detector is None:
            _shared_detector = FaceDetector()
        return _shared_detector


def _forget_detector_after_fork() -> None:
    # A forked worker (e.g. a DataLoader worker) must not inherit a lock another parent thread may hold, nor share
    # OpenCV's network state: it builds its own detector on first use.
    global _detector_lock, _shared_detector
    _detector_lock = threading.Lock()
    _shared_detector = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_detector_after_fork)


