"""Photos and their scores, cached: a control change re-summarises cached attention statistics and never
decodes, detects or runs the model again. The photo cache is bounded by memory and by count; it is keyed by the
photo's content, so the same bytes uploaded under another temporary name hit it."""

from __future__ import annotations

import functools
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import cachetools
from gradio.context import LocalContext
from gradio.route_utils import API_PREFIX
from gradio.utils import get_upload_folder

from app.errors import log
from app.models import load_model, serving_precision
from attn_core import QualityResult, ScoreOptions, extract_faces
from attn_core.digests import file_digest
from attn_core.faces import IMAGE_SUFFIXES, AlignedFace, NoFaceError
from attn_core.paths import ASSETS_DIR

EXAMPLES_DIR = ASSETS_DIR / "examples"
# Every face of up to PHOTO_CACHE_COUNT photos, and at most PHOTO_CACHE_BYTES of decoded pixels (a photo is kept
# at up to attn_core.faces.DECODE_MAX_SIDE on its long side: about 20 MB for a 3000x2250 photo).
PHOTO_CACHE_BYTES = 512 * 2**20
PHOTO_CACHE_COUNT = 32


@dataclass(frozen=True)
class Photo:
    """An uploaded photo, equal to another when the bytes are (the path is where this copy lies)."""

    digest: str
    path: str = field(compare=False)


def _photo_bytes(results: tuple[QualityResult, ...]) -> int:
    """What a cached photo costs: its pixels (shared by its faces) and each face's crop and maps; at least a
    PHOTO_CACHE_COUNT-th of the budget, so the count bound holds too."""
    pixels = {id(r.face.image): r.face.image.nbytes for r in results if r.face is not None and r.face.image is not None}
    per_face = sum(r.face.aligned.nbytes + r.head_maps.nbytes + r.patch_map.nbytes for r in results if r.face is not None)
    return max(sum(pixels.values()) + per_face, PHOTO_CACHE_BYTES // PHOTO_CACHE_COUNT)


_photo_cache: cachetools.LRUCache = cachetools.LRUCache(maxsize=PHOTO_CACHE_BYTES, getsizeof=_photo_bytes)


def image_path(image: Any) -> str:
    """The file a request names (a path, or a FileData / ImageData payload's ``path`` or ``url``), checked.

    Inside a Gradio request (Gradio checks only payloads that carry ``"meta"``; a bare ``{"path": ...}`` reaches
    the handler as sent), only regular files in Gradio's upload cache or the bundled examples, at most
    MAX_FILE_BYTES, are served: anything else gets REFUSED, the same sentence whether the file exists, is missing,
    a folder or a device, so it says nothing about the server's files. Direct Python callers (scripts, tests) can
    read any file anyway and are trusted, as Gradio's own check does (``processing_utils._check_allowed``).
    """
    if isinstance(image, dict):  # gradio_client FileData / ImageData payloads
        image = image.get("path") or image.get("url")
    if not image:
        raise ValueError("Add a photo first: upload one, use the webcam, paste one, or click an example face.")
    blocks = LocalContext.blocks.get(None)
    return str(image) if blocks is None else _request_file(str(image), blocks)


REFUSED = "This file was not uploaded with this request: upload it (or click an example face) and try again."
MAX_FILE_BYTES = 200 * 2**20  # any one file: Gradio's upload limit (app.uploads.MAX_UPLOAD); stat-ed before reading


def _request_file(name: str, blocks: Any) -> str:
    """``name`` resolved (symlinks too) to a regular file inside an allowed folder, else ValueError(REFUSED)."""
    if name.startswith(("http://", "https://")):  # only our own /file= links, to a file allowed as a path
        _, marker, rest = name.partition(f"{API_PREFIX}/file=")
        if not marker:
            raise ValueError(REFUSED)
        name = unquote(rest.split("?", 1)[0])
    real = os.path.realpath(name)
    allowed = {os.path.realpath(folder) for folder in (getattr(blocks, "GRADIO_CACHE", None), get_upload_folder(),
                                                       EXAMPLES_DIR) if folder}
    if not any(real.startswith(folder.rstrip(os.sep) + os.sep) for folder in allowed):
        raise ValueError(REFUSED)
    try:
        status = os.stat(real)
    except OSError:
        raise ValueError(REFUSED) from None
    if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block or never end (/dev/zero)
        raise ValueError(REFUSED)
    if status.st_size > MAX_FILE_BYTES:
        raise ValueError(f"{os.path.basename(real)} is {status.st_size / 2**20:.0f} MiB; the limit is "
                         f"{MAX_FILE_BYTES / 2**20:.0f} MiB per file.")
    return real


CENTRE_CROP_LABEL = "If no face is found, score the centre square"  # the Inspect tab's checkbox
_LIBRARY_NO_FACE_HINT = "pass on_no_face='center_crop' (CLI: --no-face center-crop)"


def app_wording(message: str) -> str:
    """A library message in the app's words: the no-face hint names the Inspect tab's checkbox, not the API."""
    return message.replace(_LIBRARY_NO_FACE_HINT, f"tick '{CENTRE_CROP_LABEL}' (Inspect tab, under Attention)")


def score_photo(image: Any, backbone: str, random_weights: bool, block: int, centre_crop: bool) -> list[QualityResult]:
    """Every face of the photo scored at ``block`` (default options), cached: control changes re-summarise these."""
    path = image_path(image)
    model = load_model(backbone, random_weights)
    index = model.backbone.block_index(int(block))
    try:
        return list(_scored_photo(Photo(file_digest(path), path), backbone, bool(random_weights), index,
                                  bool(centre_crop), serving_precision()))
    except NoFaceError as error:
        raise NoFaceError(app_wording(str(error))) from None


@cachetools.cached(_photo_cache, lock=threading.Lock())
def _scored_photo(photo: Photo, backbone: str, random_weights: bool, block_index: int, centre_crop: bool,
                  precision: str) -> tuple[QualityResult, ...]:
    model = load_model(backbone, random_weights)
    on_no_face = "center_crop" if centre_crop else "error"
    return tuple(model.score_image(photo.path, ScoreOptions(block=block_index), all_faces=True, on_no_face=on_no_face))


@functools.lru_cache(maxsize=1)
def example_faces() -> tuple[tuple[str, AlignedFace], ...]:
    """The bundled example photos, detected and aligned once (largest face of each)."""
    faces = []
    for path in example_paths():
        try:
            faces.append((path.name, extract_faces(path)[0]))
        except ValueError:
            log.warning("example %s has no detectable face; left out of the score context", path)
    return tuple(faces)


def example_paths() -> list[Path]:
    return sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def example_results(backbone: str, random_weights: bool, block: int) -> list[tuple[str, QualityResult]]:
    """The example set scored once per (backbone as listed, weights, block); callers re-summarise for their options."""
    model = load_model(backbone, random_weights)
    return list(_example_results(backbone, bool(random_weights), model.backbone.block_index(int(block)),
                                 serving_precision()))


@functools.lru_cache(maxsize=16)
def _example_results(backbone: str, random_weights: bool, block_index: int, precision: str
                     ) -> tuple[tuple[str, QualityResult], ...]:
    model = load_model(backbone, random_weights)
    named = example_faces()
    results = model.score_aligned([face for _, face in named], ScoreOptions(block=block_index))
    return tuple((name, result) for (name, _), result in zip(named, results))


def _heads(heads: Sequence[int] | None) -> tuple[int, ...] | None:
    if not heads:
        return None
    return tuple(sorted(int(h) for h in heads))


def option_values(heads, aggregation: str, tokens: str) -> dict:
    return {"heads": _heads(heads), "aggregation": aggregation or "mean", "tokens": tokens or "all"}


def largest_face(image, backbone, random_weights, block, centre_crop, options) -> QualityResult:
    return score_photo(image, backbone, random_weights, block, centre_crop)[0].with_options(**options)
