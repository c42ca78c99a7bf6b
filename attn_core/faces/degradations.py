"""Seeded image degradations of an aligned face crop, for the degradation explorer, sweeps and augmentation.

Every degradation maps ``(image, strength, rng) -> image`` on ``(H, W, 3)`` uint8 RGB, with ``strength`` in
``[0, 1]``: 0 leaves the image untouched and damage grows monotonically with strength. Parameters are defined
for a 112x112 ArcFace-aligned crop and scale with the image size, so a 224x224 crop gets twice the blur radius.
Randomness (noise field, motion direction, patch position) comes only from the generator, so a seed fixes it,
and it is drawn independently of strength: raising strength on one seed damages the same pixels more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from attn_core.faces.align import ARCFACE_TEMPLATE, TEMPLATE_SIZE

_REFERENCE_SIZE = float(TEMPLATE_SIZE)  # parameters are defined on the 112x112 ArcFace crop
_SUBPIXEL_BITS = 4  # cv2.fillConvexPoly fixed-point shift: polygon corners at 1/16 px


@dataclass(frozen=True)
class Degradation:
    """One named degradation; ``apply(image, strength, rng)`` expects validated input (use :func:`degrade`)."""

    name: str
    label: str
    apply: Callable[..., np.ndarray]
    description: str
    uses_landmarks: bool = False  # True: ``apply`` also takes ``landmarks=`` (5x2, image pixels)


def _scale(image: np.ndarray) -> float:
    """Image size relative to the 112 px reference crop (parameters are defined at 112 px)."""
    return min(image.shape[0], image.shape[1]) / _REFERENCE_SIZE


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus: Gaussian blur, sigma 0 -> 6 px at 112 px."""
    sigma = 6.0 * strength * _scale(image)
    if sigma <= 0:
        return image.copy()
    ksize = 2 * int(np.ceil(3.0 * sigma)) + 1
    return cv2.GaussianBlur(image, (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def motion_blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Camera shake: a straight line kernel, length 1 -> 21 px at 112 px, direction from the seed."""
    angle = rng.uniform(0.0, np.pi)  # drawn first and always, so the direction does not depend on strength
    length = 1.0 + 20.0 * strength * _scale(image)
    if length < 1.5:
        return image.copy()
    half = int(np.ceil(length / 2.0))
    size = 2 * half + 1
    # Supersample the line so short, oblique kernels still have the right length and direction.
    supersample = 8
    canvas = np.zeros((size * supersample, size * supersample), dtype=np.float32)
    centre = (size * supersample - 1) / 2.0
    dx, dy = np.cos(angle) * (length - 1) / 2.0 * supersample, np.sin(angle) * (length - 1) / 2.0 * supersample
    shift = 1 << _SUBPIXEL_BITS
    p0 = (int(round((centre - dx) * shift)), int(round((centre - dy) * shift)))
    p1 = (int(round((centre + dx) * shift)), int(round((centre + dy) * shift)))
    cv2.line(canvas, p0, p1, 1.0, thickness=supersample, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    kernel = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    kernel /= kernel.sum()
    blurred = cv2.filter2D(image.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return _to_uint8(blurred)


def gaussian_noise(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: additive Gaussian noise, sigma 0 -> 60 grey levels, independent per pixel and channel."""
    unit_noise = rng.standard_normal(image.shape)  # same field for every strength: damage grows monotonically
    return _to_uint8(image.astype(np.float64) + 60.0 * strength * unit_noise)


def jpeg(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Compression: JPEG round trip (4:2:0 chroma as libjpeg does by default), quality 95 -> 5."""
    quality = int(round(95 - 90 * strength))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # libjpeg's YCbCr conversion needs the right channel order
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - only with a broken OpenCV build
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def low_light(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure: scale brightness by 1 -> 0.1 and darken mid-tones with gamma 1 -> 1.5."""
    gain = 1.0 - 0.9 * strength
    gamma = 1.0 + 0.5 * strength
    normalised = image.astype(np.float64) / 255.0
    return _to_uint8(255.0 * gain * normalised**gamma)


def over_exposure(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Over-exposure: gain 1 -> 4 (two stops) plus a lift of 0 -> 64 grey levels, clipped at white."""
    return _to_uint8(image.astype(np.float64) * (1.0 + 3.0 * strength) + 64.0 * strength)


def downscale(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Low resolution: shrink by 1 -> 8x (area averaging) and enlarge back (bilinear)."""
    factor = 1.0 + 7.0 * strength
    height, width = image.shape[:2]
    small_size = (max(1, int(round(width / factor))), max(1, int(round(height / factor))))
    if small_size == (width, height):
        return image.copy()
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _template_landmarks(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return ARCFACE_TEMPLATE * np.array([width / _REFERENCE_SIZE, height / _REFERENCE_SIZE])


def _fill_bar(image: np.ndarray, start: np.ndarray, end: np.ndarray, overhang: float, thickness: float,
              colour: tuple[int, int, int]) -> np.ndarray:
    """Fill a rectangle along the segment start->end, extended by ``overhang`` at both ends."""
    axis = end - start
    axis_length = float(np.hypot(*axis))
    along = axis / axis_length if axis_length > 1e-6 else np.array([1.0, 0.0])
    across = np.array([-along[1], along[0]])
    a, b = start - overhang * along, end + overhang * along
    half = thickness / 2.0
    corners = np.array([a - half * across, b - half * across, b + half * across, a + half * across])
    occluded = image.copy()
    shift = 1 << _SUBPIXEL_BITS
    cv2.fillConvexPoly(occluded, np.rint(corners * shift).astype(np.int32), colour, cv2.LINE_8, _SUBPIXEL_BITS)
    return occluded


def _checked_landmarks(image: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    if landmarks is None:
        return _template_landmarks(image)
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2) in the ArcFace order, got {points.shape}")
    return points


def occlude_eyes(image: np.ndarray, strength: float, rng: np.random.Generator,
                 landmarks: np.ndarray | None = None) -> np.ndarray:
    """Sunglasses-like black bar through both eyes; thickness 4 -> 32 px and overhang 6 -> 20 px at 112 px."""
    points = _checked_landmarks(image, landmarks)
    scale = _scale(image)
    return _fill_bar(image, points[0], points[1], overhang=(6.0 + 14.0 * strength) * scale,
                     thickness=(4.0 + 28.0 * strength) * scale, colour=(0, 0, 0))


def occlude_mouth(image: np.ndarray, strength: float, rng: np.random.Generator,
                  landmarks: np.ndarray | None = None) -> np.ndarray:
    """Mask-like grey bar over the mouth corners; thickness 4 -> 36 px and overhang 6 -> 22 px at 112 px."""
    points = _checked_landmarks(image, landmarks)
    scale = _scale(image)
    return _fill_bar(image, points[3], points[4], overhang=(6.0 + 16.0 * strength) * scale,
                     thickness=(4.0 + 32.0 * strength) * scale, colour=(128, 128, 128))


def occlude_patch(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random grey square: centre from the seed (inner 60% of the crop), side 0 -> 60% of the crop."""
    height, width = image.shape[:2]
    centre_x = rng.uniform(0.2, 0.8) * width  # drawn before strength is used: nested patches across strengths
    centre_y = rng.uniform(0.2, 0.8) * height
    half_side = 0.3 * strength * min(height, width)
    x0, x1 = int(round(centre_x - half_side)), int(round(centre_x + half_side))
    y0, y1 = int(round(centre_y - half_side)), int(round(centre_y + half_side))
    occluded = image.copy()
    occluded[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 128
    return occluded


DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("gaussian_blur", "Gaussian blur", gaussian_blur, "Defocus blur, sigma up to 6 px at 112 px."),
        Degradation("motion_blur", "Motion blur", motion_blur,
                    "Linear camera-shake blur up to 21 px at 112 px; direction from the seed."),
        Degradation("noise", "Noise", gaussian_noise, "Additive Gaussian sensor noise, sigma up to 60 grey levels."),
        Degradation("jpeg", "JPEG compression", jpeg, "JPEG round trip, quality 95 down to 5."),
        Degradation("low_light", "Low light", low_light, "Brightness down to 10% with darker mid-tones."),
        Degradation("over_exposure", "Over-exposure", over_exposure,
                    "Gain up to 4x plus a lift, clipped at white."),
        Degradation("downscale", "Low resolution", downscale, "Shrunk up to 8x and enlarged back."),
        Degradation("occlude_eyes", "Eye occlusion", occlude_eyes,
                    "Black bar over both eyes (ArcFace template or given landmarks).", uses_landmarks=True),
        Degradation("occlude_mouth", "Mouth occlusion", occlude_mouth,
                    "Grey bar over the mouth (ArcFace template or given landmarks).", uses_landmarks=True),
        Degradation("occlude_patch", "Random occlusion", occlude_patch,
                    "Grey square at a seeded position, side up to 60% of the crop."),
    )
}


def degrade(image: np.ndarray, name: str, strength: float, seed: int = 0,
            landmarks: np.ndarray | None = None) -> np.ndarray:
    """Apply degradation ``name`` at ``strength`` in [0, 1]; strength 0 returns an identical copy.

    Args:
        image: (H, W, 3) uint8 RGB, typically a 112x112 ArcFace-aligned crop.
        landmarks: optional (5, 2) ArcFace-order points in image pixels for the eye and mouth occlusions;
            the ArcFace template scaled to the image is used when omitted. Ignored by other degradations.
    """
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; valid names: {', '.join(DEGRADATIONS)}")
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:  # also rejects NaN
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if strength == 0.0:
        return image.copy()
    degradation = DEGRADATIONS[name]
    rng = np.random.default_rng(seed)
    if degradation.uses_landmarks:
        degraded = degradation.apply(image, strength, rng, landmarks=landmarks)
    else:
        degraded = degradation.apply(image, strength, rng)
    return np.ascontiguousarray(degraded, dtype=np.uint8)
