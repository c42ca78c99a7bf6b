"""What every evaluation measures first: the quality methods and the independent matcher, loaded once, and for
each file its embedding, quality scores and image measures (cached on disk by :mod:`attn_core.eval.cache`)."""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from attn_core.digests import file_digest
from attn_core.eval.cache import EvalCache, identity_key, matcher_key, score_key
from attn_core.eval.matcher import (
    Matcher,
    available_matchers,
    backbone_matcher,
    get_matcher,
)
from attn_core.faces import YUNET_FILENAME, extract_faces
from attn_core.scoring.model import FaceQualityModel, ScoreOptions

ProgressFn = Callable[[float, str], None]

RANDOM = "random"
# Image-measure baselines: (method label, cached array name). Face size = detector box area in photo pixels; a
# pre-aligned crop has no box and counts as the whole crop, so on pre-aligned data that baseline is constant.
BASELINES = (("sharpness (Laplacian var.)", "sharpness"), ("brightness", "brightness"), ("face size (box area)", "face_area"))
_MEASURES_KEY = identity_key("measures", 1, YUNET_FILENAME)

EXAMPLE_IDENTITIES = {
    "A": ("person_a_1.jpg", "person_a_2.jpg"),
    "B": ("person_b_1.jpg", "person_b_2.jpg"),
    "impostor_1": ("impostor_1.jpg",),
    "impostor_2": ("impostor_2.jpg",),
    "astronaut": ("astronaut.jpg",),
}



def report_progress(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def finite(value: float) -> float | None:
    """JSON has no NaN: undefined values (no genuine pair retained, etc.) become null."""
    return float(value) if value is not None and math.isfinite(value) else None


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def demo_identity_folder(tmp_dir: str | Path) -> Path:
    """Lay out the bundled example photos as ``<tmp_dir>/demo_identities/<identity>/<photo>`` and return it.

    A and B have two photos each (the genuine pairs); impostor_1, impostor_2 and astronaut are singletons. The
    photos are copied from assets/examples, so the demo needs no image files of its own.
    """
    from attn_core.paths import ASSETS_DIR

    root = Path(tmp_dir) / "demo_identities"
    for identity, names in EXAMPLE_IDENTITIES.items():
        folder = root / identity
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            target = folder / name
            if not target.is_file():
                shutil.copyfile(ASSETS_DIR / "examples" / name, target)
    return root



# ---------------------------------------------------------------------------------------------- models, matcher


@dataclass(frozen=True)
class QualityMethod:
    """A quality backbone taking part in an evaluation, with the label its curve and columns carry."""

    label: str
    model: FaceQualityModel
    options: ScoreOptions


def _options_suffix(options: ScoreOptions) -> str:
    parts = []
    if options.block != -1:
        parts.append(f"block {options.block}")
    if options.heads:
        parts.append("heads " + ",".join(map(str, options.heads)))
    if options.aggregation != "mean":
        parts.append(options.aggregation)
    if options.tokens != "all":
        parts.append(f"{options.tokens} tokens")
    return f" [{', '.join(parts)}]" if parts else ""


def load_quality_methods(
    backbones: Sequence[str | FaceQualityModel],
    *,
    weights: Sequence[str | None] | None = None,
    device: str | None = None,
    random_init: bool = False,
    num_heads: int | None = None,
    options: ScoreOptions = ScoreOptions(),
    precision: str = "fp32",
) -> list[QualityMethod]:
    """Build every quality backbone first, so a missing checkpoint fails before any work (one clear error).

    ``weights`` is empty, or one entry per backbone in the same order (None = that backbone's default weights).
    """
    backbones = list(backbones) or [""]
    weights = list(weights or [])
    if weights and len(weights) != len(backbones):
        raise ValueError(f"give --weights once per --backbone, in the same order ({len(backbones)} backbone(s), "
                         f"{len(weights)} weights)")
    methods: list[QualityMethod] = []
    for index, backbone in enumerate(backbones):
        model = backbone if isinstance(backbone, FaceQualityModel) else FaceQualityModel(
            backbone, weights=weights[index] if weights else None, device=device, random_init=random_init,
            num_heads=num_heads, precision=precision)
        model.backbone.block_index(options.block)  # a bad --block fails here, not mid-run
        methods.append(QualityMethod(model.spec.name + _options_suffix(options), model, options))
    labels = [m.label for m in methods]
    for index, method in enumerate(methods):
        if labels.count(method.label) > 1:  # same architecture, other checkpoints: name them by file
            weights_name = Path(str(method.model.backbone.weights)).name or str(index)
            methods[index] = QualityMethod(f"{method.label} @ {weights_name}", method.model, method.options)
    if len({m.label for m in methods}) != len(methods):
        raise ValueError(f"the same backbone and weights were given twice: {', '.join(labels)}")
    return methods


def resolve_matcher(name: str = "sface", *, weights: str | None = None, device: str | None = None,
                    random_init: bool = False, num_heads: int | None = None) -> Matcher:
    """A registered matcher (``sface``) or, for a backbone name, that backbone's embedding head."""
    if name in available_matchers() and weights is None and not random_init:
        return get_matcher(name)
    from attn_core.zoo.registry import get_spec

    try:
        get_spec(name)
    except KeyError:
        raise ValueError(f"unknown matcher {name!r}: neither a registered matcher ({', '.join(available_matchers())}) "
                         f"nor a backbone name (see `attn-fiqa backbones`)") from None
    return backbone_matcher(name, weights=weights, device=device, random_init=random_init, num_heads=num_heads)


def same_model_warnings(matcher: Matcher, methods: Sequence[QualityMethod], allow: bool) -> list[str]:
    """DESIGN 4: the matcher must not be the quality model. Refuse, or with ``allow`` warn loudly."""
    backbone = getattr(matcher, "backbone", None)
    if backbone is None:
        return []
    from attn_core.eval.cache import backbone_identity

    same = [m.label for m in methods if backbone_identity(m.model.backbone) == backbone_identity(backbone)]
    if not same:
        return []
    message = (f"WARNING: the matcher ({matcher.name}) is the quality model itself ({', '.join(same)}): the "
               f"protocol needs an independent recogniser, and a model judging its own embeddings flatters itself")
    if not allow:
        raise ValueError(message.removeprefix("WARNING: ") + "; use another --matcher (default sface), or pass "
                         "--allow-same-matcher to run anyway with this warning in the report")
    return [message]


RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS: mechanics only, says nothing about face quality"


def is_random(method: QualityMethod) -> bool:
    return str(method.model.backbone.weights).startswith("random")


def random_weights_warnings(methods: Sequence[QualityMethod]) -> list[str]:
    """First in every report made with ``--random-init``: as loud as the app's warnings."""
    return [f"RANDOM WEIGHTS: {m.label} ran on seeded random weights ({m.model.backbone.weights}); its scores, curves "
            f"and plots show the mechanics only and say nothing about face quality" for m in methods if is_random(m)]


def not_face_trained(methods: Sequence[QualityMethod]) -> list[str]:
    return [f"{m.label} is not trained for face recognition: its score is not a face-quality measure"
            for m in methods if not m.model.spec.face_trained]


# ---------------------------------------------------------------------------------------- per-file measurements


@dataclass
class FileMeasures:
    """What one image contributes: the matcher embedding and one quality value per method, or why it cannot."""

    path: Path
    digest: str = ""
    embedding: np.ndarray | None = None
    quality: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class MeasureCounts:
    embedded: int = 0  # matcher embeddings computed (not from the cache)
    scored: int = 0  # quality-score computations (faces x backbones)
    aligned: int = 0  # images decoded and aligned


def measure_files(files: Sequence[Path], matcher: Matcher, methods: Sequence[QualityMethod], cache: EvalCache,
                   batch_size: int, counts: MeasureCounts, progress: ProgressFn | None, span: tuple[float, float]
                   ) -> dict[Path, FileMeasures]:
    """Embedding, quality scores and image measures of each file, from the cache where present."""
    embed_key = matcher_key(matcher)
    method_keys = {m.label: score_key(m.model.backbone, m.options, m.model.precision) for m in methods}
    records: dict[Path, FileMeasures] = {}
    start, stop = span
    for chunk_start in range(0, len(files), batch_size):
        chunk = files[chunk_start : chunk_start + batch_size]
        pending: list[FileMeasures] = []
        for path in chunk:
            record = records.setdefault(path, FileMeasures(path))
            try:
                record.digest = file_digest(path)
            except OSError as error:
                record.error = f"cannot read the file: {error.strerror or error}"
                continue
            stored = cache.get("embedding", embed_key, record.digest, ("embedding",))
            if stored is not None and stored["embedding"].ndim == 1:
                record.embedding = stored["embedding"].astype(np.float32)
            for label, key in method_keys.items():
                stored = cache.get("score", key, record.digest, ("score",))
                if stored is not None and stored["score"].shape == ():
                    record.quality[label] = float(stored["score"])
            stored = cache.get("measures", _MEASURES_KEY, record.digest, tuple(name for _, name in BASELINES))
            if stored is not None:
                record.quality.update({label: float(stored[name]) for label, name in BASELINES})
            if record.embedding is None or len(record.quality) < len(method_keys) + len(BASELINES):
                pending.append(record)
        faces = {}
        for record in pending:
            try:
                faces[record.path] = extract_faces(record.path)[0]  # the largest face, as `attn-fiqa score`
                counts.aligned += 1
            except ValueError as error:  # unreadable image, no face: reported, the file's pairs are dropped
                record.error = str(error)
            except Exception as error:  # never let one file stop the run
                record.error = f"{type(error).__name__}: {error}"
        ready = [r for r in pending if r.error is None]
        need_embedding = [r for r in ready if r.embedding is None]
        if need_embedding:
            embeddings = matcher.embed([faces[r.path].aligned for r in need_embedding])
            counts.embedded += len(need_embedding)
            for record, embedding in zip(need_embedding, embeddings):
                record.embedding = np.asarray(embedding, dtype=np.float32)
                cache.put("embedding", embed_key, record.digest, embedding=record.embedding)
        for method in methods:
            need_score = [r for r in ready if method.label not in r.quality]
            if not need_score:
                continue
            results = method.model.score_faces(np.stack([faces[r.path].aligned for r in need_score]), method.options)
            counts.scored += len(need_score)
            for record, result in zip(need_score, results):
                record.quality[method.label] = result.score
                cache.put("score", method_keys[method.label], record.digest, score=np.float64(result.score))
        for record in ready:
            if BASELINES[0][0] in record.quality:
                continue
            face = faces[record.path]
            box_area = face.box[2] * face.box[3] if face.box is not None else float(face.aligned.shape[0] * face.aligned.shape[1])
            values = {"sharpness": sharpness_laplacian(face.aligned), "brightness": brightness(face.aligned),
                      "face_area": float(box_area)}
            record.quality.update({label: values[name] for label, name in BASELINES})
            cache.put("measures", _MEASURES_KEY, record.digest, **{k: np.float64(v) for k, v in values.items()})
        done = min(chunk_start + batch_size, len(files))
        report_progress(progress, start + (stop - start) * done / max(len(files), 1), f"measured {done}/{len(files)} images")
    return records


def sharpness_laplacian(aligned_rgb: np.ndarray) -> float:
    """Image-quality baseline: variance of the Laplacian of the grey image (higher = sharper)."""
    grey = cv2.cvtColor(np.asarray(aligned_rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def brightness(aligned_rgb: np.ndarray) -> float:
    """Image-quality baseline: mean grey level (ITU-R BT.601 luma), 0..255."""
    return float(cv2.cvtColor(np.asarray(aligned_rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY).mean())
