"""Any image input to an (H, W, 3) uint8 RGB array: files, bytes, PIL images and arrays, with EXIF rotation,
alpha over white, 16-bit scaling, a hard pixel cap and reduction at decode time (JPEG: in the DCT, via draft)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DECODE_MAX_SIDE", "IMAGE_SUFFIXES", "MAX_PIXELS", "ImageLike", "ImageLoadError", "load_image"]

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

# The one list of image file suffixes every folder scan uses (score, batch, eval, sweep, train, scale-out).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".pgm", ".ppm"})
MAX_PIXELS: int = 50_000_000  # read at call time, so tests and callers can lower it
DECODE_MAX_SIDE: int = 3000  # photos are reduced to this right at decoding (JPEG: in the DCT, via draft); plenty
# for a 112x112 crop of any face YuNet can find, and it bounds the memory and time every later step costs


class ImageLoadError(ValueError):
    """The input could not be turned into an RGB image; the message names the input, the problem and the fix."""



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


