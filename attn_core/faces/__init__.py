"""Faces: from any photo to aligned 112x112 crops, and the degradations that take a crop's quality away.

``images``: decoding any input to RGB (limits, EXIF, alpha, 16-bit). ``detect``: YuNet detection.
``align``: the ArcFace 5-point similarity alignment and :class:`AlignedFace`. ``degradations``: blur, noise, JPEG,
light, resolution and occlusions at a strength in [0, 1].
"""

from attn_core.faces.align import (
    ARCFACE_TEMPLATE,
    TEMPLATE_SIZE,
    AlignedFace,
    NoFaceError,
    align_face,
    extract_faces,
    similarity_transform,
)
from attn_core.faces.degradations import DEGRADATIONS, degrade
from attn_core.faces.detect import (
    DETECT_MAX_SIDE,
    YUNET_FILENAME,
    DetectedFace,
    FaceDetector,
    get_detector,
)
from attn_core.faces.images import (
    DECODE_MAX_SIDE,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageLike,
    ImageLoadError,
    load_image,
)

__all__ = [
    "ARCFACE_TEMPLATE",
    "DECODE_MAX_SIDE",
    "DEGRADATIONS",
    "DETECT_MAX_SIDE",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "TEMPLATE_SIZE",
    "YUNET_FILENAME",
    "AlignedFace",
    "DetectedFace",
    "FaceDetector",
    "ImageLike",
    "ImageLoadError",
    "NoFaceError",
    "align_face",
    "degrade",
    "extract_faces",
    "get_detector",
    "load_image",
    "similarity_transform",
]
