"""Training data: identity folders -> held-out split by name -> aligned context crops cached once -> augmentation.

Every face is detected and aligned once with the project's own path (``attn_core.faces.extract_faces``: YuNet and the
ArcFace template) and cached as a ``CONTEXT`` x ``CONTEXT`` crop on the same template, shifted to its centre, so the
jitter of training never warps in black borders. The cache lives outside the repository (``--cache``).

Held-out rule: identities are assigned to "train" or "holdout" by NAME before any file is opened. In LFW folders
(a dataset folder whose name starts with "lfw"), names starting with S-Z are reserved for the project's independent
checks and are never listed at all, and the held-out letters apply; other datasets are held out only by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from attn_core.scoring.model import IMAGE_SUFFIXES

ALIGNED = 112
CONTEXT = 144  # 16-pixel margin around the 112 crop on every side
OFFSET = (CONTEXT - ALIGNED) // 2
RESERVED_FIRST_LETTERS = frozenset("STUVWXYZ")
DEFAULT_HOLDOUT_LETTERS = "QR"


def is_lfw(dataset: str) -> bool:
    return dataset.lower().startswith("lfw")


def identity_folders(root: str | os.PathLike) -> list[Path]:
    """Identity sub-folders of a dataset folder; in LFW, reserved names (S-Z) are left out without being opened."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    reserved = RESERVED_FIRST_LETTERS if is_lfw(root.name) else frozenset()
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1].upper() not in reserved)


def split_of(dataset: str, identity: str, holdout_letters: str, holdout_datasets: Sequence[str]) -> str:
    """'holdout' for identities kept for checks (by dataset name or by first letter), else 'train'."""
    if dataset in holdout_datasets or (is_lfw(dataset) and identity[:1].upper() in holdout_letters.upper()):
        return "holdout"
    return "train"


def context_crop(face) -> np.ndarray:
    """The ArcFace-template crop with a margin: its central 112x112 is ``face.aligned`` (same transform, shifted)."""
    matrix = np.array(face.transform, dtype=np.float64).copy()
    matrix[:, 2] += OFFSET
    return cv2.warpAffine(face.image, matrix, (CONTEXT, CONTEXT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def prepare(datasets: Sequence[str | os.PathLike], out: str | os.PathLike, *, holdout_letters: str = DEFAULT_HOLDOUT_LETTERS,
            holdout_datasets: Sequence[str] = ("london-set",), progress: bool = True) -> dict:
    """Align every face of every identity folder once; write ``out`` (.npz) and a ``.json`` manifest beside it.

    Identities of the held-out split get only their aligned crops stored (for checks); a face the detector cannot
    find is skipped and listed in the manifest with its reason.
    """
    from tqdm import tqdm

    from attn_core.faces import extract_faces

    items: list[tuple[str, str, Path]] = []
    for root in datasets:
        dataset = Path(root).name
        for folder in identity_folders(root):
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            items.extend((dataset, folder.name, path) for path in files)
    if not items:
        raise ValueError(f"no images found in identity folders of {', '.join(map(str, datasets))}")
    records: dict[str, list] = {"path": [], "identity": [], "split": [], "context": []}
    skipped: list[str] = []
    for dataset, identity, path in tqdm(items, desc="aligning", unit="img", disable=not progress):
        try:
            faces = extract_faces(path, on_no_face="error")
        except Exception as error:  # unreadable or faceless files are skipped and counted, never fatal
            skipped.append(f"{path}: {error}"[:240])
            continue
        records["path"].append(str(path))
        records["identity"].append(f"{dataset}/{identity}")
        records["split"].append(split_of(dataset, identity, holdout_letters, holdout_datasets))
        records["context"].append(context_crop(faces[0]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, path=np.array(records["path"]), identity=np.array(records["identity"]),
             split=np.array(records["split"]), context=np.stack(records["context"]))
    splits = np.array(records["split"])
    identities = np.array(records["identity"])
    manifest = {
        "datasets": [str(d) for d in datasets], "holdout_letters": holdout_letters,
        "holdout_datasets": list(holdout_datasets),
        "images": {s: int((splits == s).sum()) for s in ("train", "holdout")},
        "identities": {s: int(len(set(identities[splits == s]))) for s in ("train", "holdout")},
        "skipped": len(skipped), "skipped_files": skipped,
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    return manifest


@dataclass
class FaceCache:
    """One split of a prepared cache: context crops, integer labels and the identity name of each label."""

    context: np.ndarray  # (N, CONTEXT, CONTEXT, 3) uint8
    labels: np.ndarray  # (N,) int64
    identities: list[str]
    paths: list[str]

    @property
    def aligned(self) -> np.ndarray:
        return self.context[:, OFFSET:OFFSET + ALIGNED, OFFSET:OFFSET + ALIGNED]


def load_cache(path: str | os.PathLike, split: str = "train") -> FaceCache:
    data = np.load(path)
    mask = data["split"] == split
    if not mask.any():
        raise ValueError(f"{path} holds no faces in split {split!r}")
    names = data["identity"][mask]
    identities = sorted(set(names.tolist()))
    index = {name: i for i, name in enumerate(identities)}
    labels = np.array([index[n] for n in names.tolist()], dtype=np.int64)
    return FaceCache(data["context"][mask], labels, identities, data["path"][mask].tolist())


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of one training face. Degradations come from ``attn_core.faces.degradations`` (the app's own)."""

    max_shift: float = 6.0  # pixels on the 112 crop
    scale: tuple[float, float] = (0.9, 1.1)
    max_rotation: float = 10.0  # degrees
    flip: float = 0.5
    grey: float = 0.1  # some training faces (ORL, old news photos) are greyscale
    colour: float = 0.25  # brightness / contrast jitter amplitude
    degrade: float = 0.35  # probability of one project degradation
    max_strength: float = 0.8


def augment(context: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One 112x112 training crop from a context crop: similarity jitter, flip, colour, grey, one degradation."""
    from attn_core.faces.degradations import DEGRADATIONS, degrade

    scale = rng.uniform(*config.scale)
    angle = rng.uniform(-config.max_rotation, config.max_rotation)
    matrix = cv2.getRotationMatrix2D((CONTEXT / 2, CONTEXT / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-config.max_shift, config.max_shift, size=2) - OFFSET
    face = cv2.warpAffine(context, matrix, (ALIGNED, ALIGNED), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < config.flip:
        face = face[:, ::-1]
    values = face.astype(np.float32)
    if config.colour > 0:
        contrast = 1 + rng.uniform(-config.colour, config.colour)
        brightness = 255 * rng.uniform(-config.colour, config.colour) / 2
        values = (values - values.mean()) * contrast + values.mean() + brightness
    if rng.random() < config.grey:
        values = np.repeat(values.mean(axis=2, keepdims=True), 3, axis=2)
    face = np.clip(values, 0, 255).astype(np.uint8)
    if rng.random() < config.degrade:
        name = list(DEGRADATIONS)[rng.integers(len(DEGRADATIONS))]
        face = degrade(np.ascontiguousarray(face), name, float(rng.uniform(0.05, config.max_strength)),
                       seed=int(rng.integers(2**31)))
    return np.ascontiguousarray(face)


class AugmentedBatches(torch.utils.data.IterableDataset):
    """Batch k is a pure function of (seed, k): a resumed run sees exactly the batches it would have seen."""

    def __init__(self, cache: FaceCache, batch_size: int, seed: int, start: int, config: AugmentConfig) -> None:
        self.cache, self.batch_size, self.seed, self.start, self.config = cache, batch_size, seed, start, config

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(augmented faces, identity labels, indices of the cached faces they came from)."""
        rng = np.random.default_rng([self.seed, index])
        epoch, position = divmod(index * self.batch_size, len(self.cache.labels))
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.cache.labels))
        chosen = np.take(order, np.arange(position, position + self.batch_size), mode="wrap")
        faces = np.stack([augment(self.cache.context[i], rng, self.config) for i in chosen])
        return torch.from_numpy(faces), torch.from_numpy(self.cache.labels[chosen]), torch.from_numpy(chosen)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        index = self.start + worker
        while True:
            yield self.batch(index)
            index += workers
