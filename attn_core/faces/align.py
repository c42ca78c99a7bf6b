"""Photo in, aligned 112x112 RGB face crop out: 5-point similarity alignment to the ArcFace template.

Every face ViT in this project was trained on crops aligned to the ArcFace 5-point template (docs/DESIGN.md 3), so the
quality score only means something on a crop made the same way. This module owns that step and keeps the mapping
between the crop and the original photo, so maps computed on the crop can be drawn back onto the photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from attn_core.faces.detect import (
    DETECT_MAX_SIDE,
    DetectedFace,
    FaceDetector,
    get_detector,
)
from attn_core.faces.images import ImageLike, _describe, load_image

__all__ = ["ARCFACE_TEMPLATE", "TEMPLATE_SIZE", "AlignedFace", "NoFaceError", "align_face", "extract_faces",
           "similarity_transform"]

# The ArcFace/insightface 112x112 template. Row order: image-left eye (the subject's right eye), image-right eye,
# nose tip, image-left mouth corner, image-right mouth corner.
ARCFACE_TEMPLATE: np.ndarray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_TEMPLATE.setflags(write=False)

TEMPLATE_SIZE = 112


class NoFaceError(ValueError):
    """The detector found no face in the photo."""





def _template_for(size: int) -> np.ndarray:
    """ARCFACE_TEMPLATE for a crop of `size` pixels (insightface's rule: scale multiples of 112, else 128 + 8 px)."""
    if size % TEMPLATE_SIZE == 0:
        return ARCFACE_TEMPLATE * (size / TEMPLATE_SIZE)
    ratio = size / 128.0
    return (ARCFACE_TEMPLATE + np.array([8.0, 0.0], dtype=np.float32)) * ratio


def similarity_transform(landmarks: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping landmarks onto template.

    Closed-form Umeyama fit over all points, which is what insightface's alignment (skimage SimilarityTransform)
    computes. Preferred over cv2.estimateAffinePartial2D's RANSAC/LMEDS: with only 5 points a robust estimator
    may fit a subset and is randomised; the plain fit is exact, deterministic and uses every landmark.

    Returns:
        (2, 3) float64 matrix M with template ~= M[:, :2] @ p + M[:, 2].
    """
    source = np.asarray(landmarks, dtype=np.float64)
    target = np.asarray(template, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or source.shape[0] < 2:
        raise ValueError(f"landmarks {source.shape} and template {target.shape} must be matching (N>=2, 2) arrays.")
    if not np.all(np.isfinite(source)):
        raise ValueError("landmarks contain NaN or infinite values.")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    source_var = (source_centered**2).sum() / len(source)
    if source_var < 1e-12:
        raise ValueError("landmarks are all at one point; cannot fit a similarity transform.")
    covariance = target_centered.T @ source_centered / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0  # forbid reflections: a mirrored face is not the same face
    rotation = u @ sign @ vt
    scale = float((singular * np.diag(sign)).sum() / source_var)
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - matrix[:, :2] @ source_mean
    return matrix


def align_face(image_rgb: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Warp a photo so its 5 landmarks sit on the ArcFace template; returns (crop (size, size, 3), 2x3 photo->crop).

    Pixels from outside the photo are filled with black (constant 0), as insightface's ``norm_crop`` does when the
    training sets were aligned: the models have seen black borders, whereas replicated edges would smear streaks
    across the crop that no training image had.
    """
    matrix = similarity_transform(landmarks, _template_for(size))
    aligned = cv2.warpAffine(
        image_rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return aligned, matrix


def _invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


@dataclass
class AlignedFace:
    """One face crop ready for a model, plus how it sits in the original photo."""

    aligned: np.ndarray  # (size, size, 3) uint8 RGB
    image: np.ndarray  # the original (oriented) RGB photo
    box: tuple[float, float, float, float] | None  # detector box in photo pixels; None unless method == "detected"
    landmarks: np.ndarray | None  # (5, 2) in photo pixels; None unless method == "detected"
    transform: np.ndarray  # (2, 3) photo -> crop (identity for pre-aligned)
    num_faces: int  # faces the detector found in the photo (0 for pre-aligned and center-crop)
    method: Literal["detected", "pre_aligned", "center_crop"]

    def crop_to_image(self, points_xy: np.ndarray) -> np.ndarray:
        """Map (N, 2) crop coordinates back to photo coordinates."""
        points = np.asarray(points_xy, dtype=np.float64)
        inverse = _invert(self.transform)
        return points @ inverse[:, :2].T + inverse[:, 2]

    def warp_to_image(self, crop_array: np.ndarray) -> np.ndarray:
        """Warp a (size, size) or (size, size, C) crop-space array onto the photo frame (for overlays).

        Float input stays float (float16 becomes float32) and photo pixels the crop does not cover are NaN;
        integer input keeps its dtype with 0 outside the crop.
        """
        array = np.asarray(crop_array)
        size = self.aligned.shape[:2]
        if array.shape[:2] != size or array.ndim not in (2, 3):
            raise ValueError(f"warp_to_image expects a {size} or {size} + (C,) array, got {array.shape}.")
        height, width = self.image.shape[:2]
        is_float = np.issubdtype(array.dtype, np.floating)
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        elif is_float and array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float32)
        # WARP_INVERSE_MAP: `transform` already maps each destination (photo) pixel to its source (crop) position.
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[2])]
        warped_channels = [
            cv2.warpAffine(
                np.ascontiguousarray(channel),
                self.transform,
                (width, height),
                flags=flags,
                borderMode=cv2.BORDER_REPLICATE,
            )
            for channel in channels
        ]
        warped = warped_channels[0] if array.ndim == 2 else np.stack(warped_channels, axis=-1)
        coverage = cv2.warpAffine(
            np.ones(size, dtype=np.uint8),
            self.transform,
            (width, height),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        ).astype(bool)
        outside = ~coverage if warped.ndim == 2 else ~coverage[..., None].repeat(warped.shape[2], axis=2)
        warped[outside] = np.nan if is_float else 0
        return warped


def _center_crop(image_rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    height, width = image_rgb.shape[:2]
    side = min(height, width)
    left, top = (width - side) / 2.0, (height - side) / 2.0
    scale = size / side
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]], dtype=np.float64)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    x0, y0 = int(round(left)), int(round(top))
    square = image_rgb[y0 : y0 + side, x0 : x0 + side]
    crop = cv2.resize(square, (size, size), interpolation=interpolation)
    return crop, matrix, (float(left), float(top), float(side), float(side))


def _detect(photo: np.ndarray, detector: FaceDetector, max_side: int) -> list[DetectedFace]:
    """``detector.detect`` on a copy of ``photo`` at most ``max_side`` long, boxes and landmarks in ``photo``'s pixels
    (any object with ``detect(image_rgb)`` works; the detector may reduce the copy further itself)."""
    height, width = photo.shape[:2]
    if max(height, width) <= max_side:
        return detector.detect(photo)
    scale = max_side / max(height, width)
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(photo, small_size, interpolation=cv2.INTER_AREA)
    factor = np.array([width / small_size[0], height / small_size[1]])  # exact per axis, whatever the rounding
    return [DetectedFace(tuple(float(v) for v in np.asarray(face.box) * np.tile(factor, 2)),
                         (face.landmarks * factor).astype(np.float32), face.confidence)
            for face in detector.detect(small)]


def extract_faces(
    image: ImageLike,
    *,
    detector: FaceDetector | None = None,
    on_no_face: Literal["error", "center_crop"] = "error",
    all_faces: bool = False,
    size: int = 112,
    detect_max_side: int = DETECT_MAX_SIDE,
) -> list[AlignedFace]:
    """Photo -> aligned face crops: the single entry point from user input to model input.

    A ``size`` x ``size`` image is taken as already aligned and passed through untouched. Otherwise faces are
    detected and aligned: only the largest unless ``all_faces``. With no face, raise NoFaceError or, with
    ``on_no_face="center_crop"``, fall back to the centre square resized to ``size``. Detection runs on a copy at
    most ``detect_max_side`` long (smaller for live video frames); the crops are cut from the full-size photo.
    """
    if on_no_face not in ("error", "center_crop"):
        raise ValueError(f"on_no_face must be 'error' or 'center_crop', got {on_no_face!r}.")
    name = _describe(image)
    photo = load_image(image)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float64)
    # A pre-aligned crop is one face by construction (no detection runs on it).
    if photo.shape[:2] == (size, size):
        return [AlignedFace(photo, photo, None, None, identity, 1, "pre_aligned")]

    faces = _detect(photo, detector or get_detector(), detect_max_side)
    if not faces:
        if on_no_face == "error":
            height, width = photo.shape[:2]
            raise NoFaceError(
                f"No face found in {name} ({width}x{height}): the face detector found nothing it is confident about. "
                "Use a photo with a clearly visible, roughly frontal face; or, if this already is a face crop, "
                f"resize it to {size}x{size} (treated as pre-aligned) or pass on_no_face='center_crop' "
                "(CLI: --no-face center-crop) to score the centre square."
            )
        crop, matrix, _ = _center_crop(photo, size)
        return [AlignedFace(crop, photo, None, None, matrix, 0, "center_crop")]

    chosen = faces if all_faces else faces[:1]
    results = []
    for face in chosen:
        crop, matrix = align_face(photo, face.landmarks, size)
        results.append(AlignedFace(crop, photo, face.box, face.landmarks.copy(), matrix, len(faces), "detected"))
    return results
