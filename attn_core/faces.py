"""Photo in, aligned 112x112 RGB face crop out: image loading, YuNet detection and 5-point similarity alignment.

Every face ViT in this project was trained on crops aligned to the ArcFace 5-point template (docs/DESIGN.md 3), so the
quality score only means something on a crop made the same way. This module owns that step and keeps the mapping
between the crop and the original photo, so maps computed on the crop can be drawn back onto the photo.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from attn_core.specs import ASSETS_DIR

__all__ = [
    "ARCFACE_TEMPLATE",
    "DETECT_MAX_SIDE",
    "MAX_PIXELS",
    "DECODE_MAX_SIDE",
    "YUNET_FILENAME",
    "AlignedFace",
    "DetectedFace",
    "FaceDetector",
    "ImageLike",
    "ImageLoadError",
    "NoFaceError",
    "align_face",
    "extract_faces",
    "get_detector",
    "load_image",
    "similarity_transform",
]

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

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
# The one list of image file suffixes every folder scan uses (score, batch, eval, sweep, train, scale-out).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".pgm", ".ppm"})
MAX_PIXELS: int = 50_000_000  # read at call time, so tests and callers can lower it
DECODE_MAX_SIDE: int = 3000  # photos are reduced to this right at decoding (JPEG: in the DCT, via draft); plenty
# for a 112x112 crop of any face YuNet can find, and it bounds the memory and time every later step costs
DETECT_MAX_SIDE: int = 1280  # detection runs on a copy no larger than this; YuNet finds faces of ~10-300 px anyway
YUNET_FILENAME = "face_detection_yunet_2023mar_int8bq.onnx"


class ImageLoadError(ValueError):
    """The input could not be turned into an RGB image; the message names the input, the problem and the fix."""


class NoFaceError(ValueError):
    """The detector found no face in the photo."""


# --------------------------------------------------------------------------------------------------- loading


def _describe(source: object) -> str:
    """How messages name an input: the path as given, or the kind of in-memory object."""
    if isinstance(source, (str, os.PathLike)):
        return f"'{os.fspath(source)}'"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the given image bytes"
    if isinstance(source, Image.Image):
        return "the given PIL image"
    if isinstance(source, np.ndarray):
        return "the given array"
    return f"the given {type(source).__name__}"


def _check_pixel_count(width: int, height: int, name: str) -> None:
    limit = MAX_PIXELS
    if width * height > limit:
        raise ImageLoadError(
            f"Cannot load {name}: it is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the "
            f"{limit / 1e6:g}-megapixel limit. Downscale it first (a face needs only a few hundred pixels)."
        )


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an (H, W, 4) uint8 RGBA array over a white background (transparent areas become white, not black)."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    blended = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return blended.astype(np.uint8)


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """Map 0..65535 onto 0..255 with rounding (not a bit shift of the high byte, not a clip at 255)."""
    return ((values.astype(np.uint64) * 255 + 32767) // 65535).astype(np.uint8)


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    """Convert any PIL mode to (H, W, 3) uint8 RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.repeat(_scale_16bit(np.asarray(image))[..., None], 3, axis=2)
    if mode == "I":
        # 32-bit integer grayscale: what 16-bit PNGs open as in some Pillow versions. Values above 255 mean 16-bit.
        values = np.asarray(image).astype(np.int64)
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise ImageLoadError(f"Cannot load {name}: 32-bit integer pixels outside 0..65535; save it as 8 or 16 bit.")
        gray = values.astype(np.uint8) if values.max(initial=0) <= 255 else _scale_16bit(values)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        return _array_to_rgb(np.asarray(image), name)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if has_alpha:
        return _composite_on_white(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA array of uint8, uint16, bool or float in [0, 1] -> RGB."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or array.size == 0:
        raise ImageLoadError(
            f"Cannot load {name}: expected an (H, W), (H, W, 3) RGB or (H, W, 4) RGBA array, got shape {array.shape}."
        )
    _check_pixel_count(array.shape[1], array.shape[0], name)
    if array.dtype == np.uint8:
        values = array
    elif array.dtype == np.bool_:
        values = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        values = _scale_16bit(array)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageLoadError(f"Cannot load {name}: the float array contains NaN or infinite values.")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageLoadError(
                f"Cannot load {name}: float arrays must hold values in [0, 1], got [{low:g}, {high:g}]. "
                "Divide 0..255 data by 255, or pass it as uint8."
            )
        values = np.rint(array * 255.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageLoadError(
                f"Cannot load {name}: {array.dtype} pixels must lie in 0..255, got {low}..{high}. "
                "Pass uint8 (0..255), uint16 (0..65535) or float (0..1)."
            )
        values = array.astype(np.uint8)
    else:
        raise ImageLoadError(f"Cannot load {name}: unsupported array dtype {array.dtype}.")
    if values.ndim == 2:
        return np.repeat(values[..., None], 3, axis=2)
    if values.shape[2] == 4:
        return _composite_on_white(values)
    return np.array(values, dtype=np.uint8, copy=True, order="C")


def _open_encoded(stream: io.BytesIO | str, name: str) -> np.ndarray:
    """Decode an encoded image (file path or bytes) fully, honouring EXIF orientation."""
    try:
        with Image.open(stream) as image:
            _check_pixel_count(image.width, image.height, name)
            limit = DECODE_MAX_SIDE
            if max(image.size) > limit and image.format == "JPEG":
                # Decode-time reduction (1/2, 1/4, 1/8 in the DCT): a 45-megapixel JPEG never exists in full.
                image.draft("RGB", (max(1, image.width * limit // max(image.size)),
                                    max(1, image.height * limit // max(image.size))))
            image.load()  # decode now: truncated or corrupt data fails here, inside the try
            oriented = ImageOps.exif_transpose(image)
            if max(oriented.size) > limit:
                scale = limit / max(oriented.size)
                oriented = oriented.resize((max(1, round(oriented.width * scale)), max(1, round(oriented.height * scale))),
                                           Image.Resampling.BOX)
            return _pil_to_rgb(oriented, name)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"Cannot load {name}: too many pixels ({error}). Downscale it first.") from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"Cannot load {name}: not a readable image (corrupt, or not an image at all, e.g. a text file renamed "
            ".jpg). Use a JPEG, PNG, WebP, BMP or TIFF photo."
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(
            f"Cannot load {name}: the image data is truncated or corrupt ({error}). Re-export or re-download it."
        ) from error


def load_image(source: ImageLike) -> np.ndarray:
    """Load a photo as an (H, W, 3) uint8 RGB array, the one colour layout the rest of the library uses.

    Accepts a path, encoded bytes, a PIL image or an array. EXIF orientation is applied; grayscale, palette,
    16-bit and transparent images are converted (transparency is composited on white). Arrays are taken as RGB
    (never BGR): convert OpenCV ``imread`` results with ``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)`` first.

    Raises:
        ImageLoadError: missing, empty, corrupt, truncated, non-image or over-``MAX_PIXELS`` input.
    """
    name = _describe(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name)
    if isinstance(source, Image.Image):
        _check_pixel_count(source.width, source.height, name)
        try:
            return _pil_to_rgb(ImageOps.exif_transpose(source), name)
        except (OSError, ValueError) as error:
            if isinstance(error, ImageLoadError):
                raise
            raise ImageLoadError(f"Cannot load {name}: {error}.") from error
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageLoadError(f"Cannot load {name}: it is empty (0 bytes).")
        return _open_encoded(io.BytesIO(data), name)
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        if not path.exists():
            raise ImageLoadError(f"Cannot load {name}: file not found. Check the path.")
        if path.is_dir():
            raise ImageLoadError(f"Cannot load {name}: it is a directory, not an image file.")
        try:
            size = path.stat().st_size
            data = path.read_bytes() if size else b""
        except OSError as error:
            raise ImageLoadError(f"Cannot load {name}: cannot read the file ({error}).") from error
        if not data:
            raise ImageLoadError(f"Cannot load {name}: the file is empty (0 bytes).")
        return _open_encoded(io.BytesIO(data), name)
    raise ImageLoadError(
        f"Cannot load {name}: expected a file path, image bytes, a PIL image or a numpy array."
    )


# --------------------------------------------------------------------------------------------------- detection


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


# --------------------------------------------------------------------------------------------------- alignment


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


def extract_faces(
    image: ImageLike,
    *,
    detector: FaceDetector | None = None,
    on_no_face: Literal["error", "center_crop"] = "error",
    all_faces: bool = False,
    size: int = 112,
) -> list[AlignedFace]:
    """Photo -> aligned face crops: the single entry point from user input to model input.

    A ``size`` x ``size`` image is taken as already aligned and passed through untouched. Otherwise faces are
    detected and aligned: only the largest unless ``all_faces``. With no face, raise NoFaceError or, with
    ``on_no_face="center_crop"``, fall back to the centre square resized to ``size``.
    """
    if on_no_face not in ("error", "center_crop"):
        raise ValueError(f"on_no_face must be 'error' or 'center_crop', got {on_no_face!r}.")
    name = _describe(image)
    photo = load_image(image)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float64)
    # A pre-aligned crop is one face by construction (no detection runs on it).
    if photo.shape[:2] == (size, size):
        return [AlignedFace(photo, photo, None, None, identity, 1, "pre_aligned")]

    faces = (detector or get_detector()).detect(photo)
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
