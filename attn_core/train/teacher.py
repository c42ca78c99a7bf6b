"""dlib's ResNet face recogniser as a distillation teacher for ``attn-fiqa train run --distill-weight W``.

The first recipe for our own face ViT distilled dlib's 128-d descriptor (CC0 weights) into a small FaceViT as a
trainer of its own (``attn-fiqa train-distill``, documented with its failed gate in
docs/MODEL_CARD_attnfiqa_vit_distilled.md; its code is in the git history up to commit b6edd0f). Distillation is now
an option of the one trainer (``attn_core.train``): this module keeps only the teacher, the 112x112 ArcFace crop ->
dlib's 150x150 chip mapping and the location of dlib's model file. Needs the distill extra
(``pip install -e ".[distill]"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

DLIB_CHIP_SIZE = 150
TEACHER_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class Teacher(Protocol):
    """Anything that embeds a list of (112, 112, 3) uint8 RGB ArcFace crops into L2-normalised rows."""

    out_dim: int

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


def crop_to_chip(crop: np.ndarray, pad: float, border: str = "constant") -> np.ndarray:
    """Map a 112x112 ArcFace crop to dlib's 150x150 chip: pad each side by ``pad`` x 112 pixels, then resize.

    dlib's chips (get_face_chip_details, padding 0.25) frame the face more loosely than the ArcFace template;
    padding shrinks the face inside the chip towards dlib's framing. Deterministic, so the teacher's input is a
    pure function of the student's input.
    """
    margin = int(round(pad * crop.shape[0]))
    if margin > 0:
        mode = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
        crop = cv2.copyMakeBorder(crop, margin, margin, margin, margin, mode, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if crop.shape[0] > DLIB_CHIP_SIZE else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE), interpolation=interpolation))


def find_teacher_model(path: str | os.PathLike | None = None) -> Path:
    """dlib's ResNet weights: an explicit path, $ATTN_FIQA_DLIB_MODEL, or the face_recognition_models package."""
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"teacher model {path} does not exist.")
        return Path(path)
    candidates = [os.environ.get("ATTN_FIQA_DLIB_MODEL")]
    # Found without importing the package: its __init__ needs pkg_resources, which setuptools >= 81 no longer has.
    from importlib.util import find_spec

    spec = find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(folder) / "models" / TEACHER_MODEL_FILE)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        f"{TEACHER_MODEL_FILE} not found: pip install face-recognition-models, set ATTN_FIQA_DLIB_MODEL, "
        "or pass --teacher-model PATH."
    )


class DlibTeacher:
    """dlib's ResNet face recogniser (CC0) on the chip mapped from the student's crop; built lazily per process."""

    out_dim = 128

    def __init__(self, model_path: str | os.PathLike, pad: float, border: str = "constant",
                 center: np.ndarray | None = None) -> None:
        import dlib  # noqa: F401  (fail early, in the caller's process, when dlib is missing)

        self.model_path = str(model_path)
        self.pad = pad
        self.border = border
        # dlib's descriptors share a large common component (unrelated faces have cosine ~0.93); subtracting the
        # mean descriptor keeps dlib's Euclidean geometry and makes cosine targets identity-specific.
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        self._net = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_net": None}

    def raw_descriptors(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if self._net is None:
            import dlib

            self._net = dlib.face_recognition_model_v1(self.model_path)
        chips = [crop_to_chip(np.ascontiguousarray(c, dtype=np.uint8), self.pad, self.border) for c in crops]
        return np.asarray([np.asarray(d) for d in self._net.compute_face_descriptor(chips)], dtype=np.float32)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        descriptors = self.raw_descriptors(crops)
        if self.center is not None:
            descriptors = descriptors - self.center
        return descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True).clip(1e-12)


def teacher_center(teacher: DlibTeacher, crops: np.ndarray, path: str | os.PathLike | None = None) -> np.ndarray:
    """Mean raw dlib descriptor of clean training crops (cached in ``path``, keyed by the chip mapping)."""
    if path is not None and Path(path).is_file():
        cached = np.load(path)
        if float(cached["pad"]) == teacher.pad and str(cached["border"]) == teacher.border:
            return cached["center"]
    center = teacher.raw_descriptors(list(crops)).mean(axis=0)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, center=center, pad=teacher.pad, border=teacher.border, count=len(crops))
    return center
