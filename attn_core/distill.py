"""Train ATTN-FIQA's own face ViT by function-matching distillation from dlib's ResNet face recogniser (issue #5).

No pre-trained face-recognition ViT can be obtained offline, so the default backbone is a small FaceViT taught to
reproduce dlib's 128-d face descriptor (CC0 weights) on heavily augmented, project-aligned face crops. Function
matching: the teacher embeds exactly the image the student sees (after jitter, flips, colour, mixup and the app's
degradations), mapped deterministically from the 112x112 ArcFace crop to dlib's 150x150 chip geometry.

Data rule: portraits whose file name starts with P-Z are reserved for an independent check. They are filtered out
by NAME before any file I/O (:func:`training_file_names`), and nothing here ever opens them.

Sub-commands (``python -m attn_core.distill`` or ``attn-fiqa train-distill``):
  prepare   align the A-O portraits with attn_core.faces and split train/validation
  train     distil (resumable, ``--max-minutes`` limit, checkpoints every few minutes)
  validate  the acceptance gate on any checkpoint or weights file
  export    write the FaceViT state dict (no training extras) as safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attn_core.faces import IMAGE_SUFFIXES as _IMAGE_SUFFIXES
from attn_core.models.face_vit import FaceViT

# ----------------------------------------------------------------------------------------------------- constants

TRAIN_FIRST_LETTERS = frozenset("ABCDEFGHIJKLMNO")
RESERVED_FIRST_LETTERS = frozenset("PQRSTUVWXYZ")
IMAGE_SUFFIXES = tuple(sorted(_IMAGE_SUFFIXES))  # str.endswith takes a tuple
ARCFACE_SIZE = 112
CONTEXT_SIZE = 224  # training crops keep a margin around the 112 crop so jitter never warps in black borders
CONTEXT_OFFSET = (CONTEXT_SIZE - ARCFACE_SIZE) // 2
DLIB_CHIP_SIZE = 150
TEACHER_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@dataclass(frozen=True)
class StudentConfig:
    """The distilled FaceViT's architecture (patch 8 -> 14x14 grid on 112x112, no class token)."""

    img_size: int = 112
    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 6
    mlp_ratio: float = 3.0
    out_dim: int = 128

    def build(self) -> FaceViT:
        return FaceViT(
            img_size=self.img_size, patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth,
            num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, out_dim=self.out_dim,
        )


# -------------------------------------------------------------------------------------------- data selection


def first_letter(file_name: str) -> str:
    """Upper-case base letter of a file name ('Élcio' -> 'E'); '' when it does not start with a Latin letter."""
    decomposed = unicodedata.normalize("NFKD", file_name)
    letter = decomposed[:1].upper()
    return letter if "A" <= letter <= "Z" and letter.isascii() else ""


def is_reserved(file_name: str) -> bool:
    """True for names starting with P-Z: those portraits are kept for an independent check and never opened."""
    return first_letter(file_name) in RESERVED_FIRST_LETTERS


def training_file_names(data_dir: str | os.PathLike) -> list[str]:
    """Sorted names (not paths' contents) of the A-O portraits; decided from directory entries alone."""
    names = sorted(
        name for name in os.listdir(data_dir)
        if first_letter(name) in TRAIN_FIRST_LETTERS and name.lower().endswith(IMAGE_SUFFIXES)
    )
    assert not any(is_reserved(name) for name in names), "a reserved (P-Z) portrait slipped through the name filter"
    return names


def split_train_val(names: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded identity-disjoint split (one portrait per person, so names are identities)."""
    order = np.random.default_rng(seed).permutation(len(names))
    num_val = int(round(len(names) * val_fraction))
    val = sorted(names[i] for i in order[:num_val])
    train = sorted(names[i] for i in order[num_val:])
    return train, val


def context_crop(face) -> np.ndarray:
    """(224, 224, 3) crop on the ArcFace template shifted to the centre: its central 112x112 equals face.aligned."""
    matrix = np.array(face.transform, dtype=np.float64).copy()
    matrix[:, 2] += CONTEXT_OFFSET
    return cv2.warpAffine(face.image, matrix, (CONTEXT_SIZE, CONTEXT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def prepare_faces(data_dir: str | os.PathLike, out_path: str | os.PathLike, val_fraction: float = 0.15,
                  seed: int = 0) -> dict[str, int]:
    """Detect and align every A-O portrait with attn_core.faces; save crops and the split to one .npz file."""
    from attn_core.faces import extract_faces, load_image

    names = training_file_names(data_dir)
    train_names, val_names = split_train_val(names, val_fraction, seed)
    split_of = {name: "train" for name in train_names} | {name: "val" for name in val_names}
    kept, aligned, contexts, splits, skipped = [], [], [], [], []
    for name in names:
        assert not is_reserved(name)
        try:
            faces = extract_faces(load_image(Path(data_dir) / name), on_no_face="error")
        except Exception as error:  # a portrait the detector cannot use is skipped, and counted
            skipped.append(f"{name}: {error}"[:200])
            continue
        face = max(faces, key=lambda f: (f.box[2] * f.box[3]) if f.box is not None else 0.0)
        context = context_crop(face)
        centre = context[CONTEXT_OFFSET:CONTEXT_OFFSET + ARCFACE_SIZE, CONTEXT_OFFSET:CONTEXT_OFFSET + ARCFACE_SIZE]
        # Same sampling grid shifted by whole pixels; OpenCV's fixed-point bilinear may differ by one grey level.
        assert np.abs(centre.astype(np.int16) - face.aligned).max() <= 2, "context crop disagrees with the aligned crop"
        kept.append(name)
        aligned.append(face.aligned)
        contexts.append(context)
        splits.append(split_of[name])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, names=np.array(kept), split=np.array(splits), aligned=np.stack(aligned),
             context=np.stack(contexts), seed=seed, val_fraction=val_fraction)
    counts = {"listed_a_to_o": len(names), "aligned": len(kept), "skipped": len(skipped),
              "train": splits.count("train"), "val": splits.count("val")}
    (out_path.with_suffix(".json")).write_text(json.dumps({"counts": counts, "skipped": skipped}, indent=1))
    return counts


@dataclass
class FaceSet:
    names: np.ndarray
    aligned: np.ndarray  # (N, 112, 112, 3) uint8
    context: np.ndarray  # (N, 224, 224, 3) uint8


def load_faces(path: str | os.PathLike, split: str) -> FaceSet:
    data = np.load(path)
    mask = data["split"] == split
    return FaceSet(data["names"][mask], data["aligned"][mask], data["context"][mask])


# ---------------------------------------------------------------------------------------------------- teacher


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


# ------------------------------------------------------------------------------------------------ augmentation


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 10.0
    scale: float = 0.10
    shift_px: float = 5.0
    flip: float = 0.5
    color: float = 0.25  # brightness / contrast / saturation jitter amplitude
    mixup: float = 0.2
    degrade: float = 0.7  # probability of one of the app's degradations at a uniform random strength
    second_degrade: float = 0.15


def augment_face(context: np.ndarray, partner: np.ndarray | None, rng: np.random.Generator,
                 config: AugmentConfig) -> np.ndarray:
    """One augmented (112, 112, 3) uint8 crop from a (224, 224, 3) context crop (partner: mixup context)."""
    from attn_core.degrade import DEGRADATIONS, degrade

    def warp(ctx: np.ndarray) -> np.ndarray:
        angle = rng.uniform(-config.rotate_deg, config.rotate_deg)
        scale = 1.0 + rng.uniform(-config.scale, config.scale)
        centre = (CONTEXT_SIZE / 2.0, CONTEXT_SIZE / 2.0)
        matrix = cv2.getRotationMatrix2D(centre, angle, scale)
        matrix[:, 2] += rng.uniform(-config.shift_px, config.shift_px, size=2) - CONTEXT_OFFSET
        out = cv2.warpAffine(ctx, matrix, (ARCFACE_SIZE, ARCFACE_SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out[:, ::-1] if rng.random() < config.flip else out

    image = warp(context).astype(np.float32)
    if partner is not None and rng.random() < config.mixup:
        weight = rng.uniform(0.5, 1.0)  # the main face dominates; the teacher sees the mixed image either way
        image = weight * image + (1.0 - weight) * warp(partner).astype(np.float32)
    if config.color > 0:
        gray = image.mean(axis=2, keepdims=True)
        image = gray + (image - gray) * (1.0 + rng.uniform(-config.color, config.color))  # saturation
        image = (image - image.mean()) * (1.0 + rng.uniform(-config.color, config.color)) + image.mean()  # contrast
        image = image * (1.0 + rng.uniform(-config.color, config.color)) * rng.uniform(0.9, 1.1, size=3)  # gain
    crop = np.ascontiguousarray(image.clip(0, 255).round().astype(np.uint8))
    names = list(DEGRADATIONS)
    if rng.random() < config.degrade:
        crop = degrade(crop, names[rng.integers(len(names))], float(rng.uniform(0, 1)), int(rng.integers(2**31)))
        if rng.random() < config.second_degrade:
            crop = degrade(crop, names[rng.integers(len(names))], float(rng.uniform(0, 1)), int(rng.integers(2**31)))
    return crop


class TeacherLabelledBatches(torch.utils.data.IterableDataset):
    """Endless batches (augmented crops uint8, teacher embeddings), batch k a pure function of (seed, k).

    Run in DataLoader workers so the teacher (the bottleneck) uses its own core while the student trains.
    """

    def __init__(self, contexts: np.ndarray, teacher: Teacher, batch_size: int, seed: int, start_batch: int,
                 augment: AugmentConfig) -> None:
        self.contexts = contexts
        self.teacher = teacher
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.augment = augment

    def make_batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        picks = rng.integers(len(self.contexts), size=self.batch_size)
        partners = rng.integers(len(self.contexts), size=self.batch_size)
        crops = [augment_face(self.contexts[i], self.contexts[j] if j != i else None, rng, self.augment)
                 for i, j in zip(picks, partners)]
        return np.stack(crops), self.teacher.embed(crops).astype(np.float32)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            torch.set_num_threads(1)
        index = self.start_batch + worker
        while True:  # DataLoader interleaves workers round-robin, so the global order is start, start+1, ...
            yield self.make_batch(index)
            index += workers


# ------------------------------------------------------------------------------------------------- training


def images_to_tensor(crops: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, 112, 112, 3) uint8 RGB -> (B, 3, 112, 112) float, normalised (x/255 - 0.5) / 0.5."""
    tensor = torch.as_tensor(np.ascontiguousarray(crops), device=device).permute(0, 3, 1, 2).float()
    return (tensor / 255.0 - 0.5) / 0.5


def cosine_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) on L2-normalised embeddings."""
    return (1.0 - (F.normalize(student.float(), dim=1) * F.normalize(teacher.float(), dim=1)).sum(dim=1)).mean()


def learning_rate(step: int, base_lr: float, warmup: int, total: int, min_ratio: float = 0.02) -> float:
    """Linear warmup then cosine decay to min_ratio x base_lr at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


class ReplayBuffer:
    """Recent teacher-labelled samples, so each slow teacher call feeds more than one student step."""

    def __init__(self, capacity: int, image_shape: tuple[int, ...], out_dim: int) -> None:
        self.images = np.zeros((capacity, *image_shape), dtype=np.uint8)
        self.targets = np.zeros((capacity, out_dim), dtype=np.float32)
        self.size = 0
        self.cursor = 0

    def add(self, images: np.ndarray, targets: np.ndarray) -> None:
        for image, target in zip(images, targets):
            self.images[self.cursor], self.targets[self.cursor] = image, target
            self.cursor = (self.cursor + 1) % len(self.images)
            self.size = min(self.size + 1, len(self.images))

    def sample(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        picks = rng.integers(self.size, size=count)
        return self.images[picks], self.targets[picks]

    def state(self) -> dict:
        return {"images": self.images[: self.size].copy(), "targets": self.targets[: self.size].copy(),
                "cursor": self.cursor}

    def load(self, state: dict) -> None:
        size = len(state["images"])
        self.images[:size], self.targets[:size] = state["images"], state["targets"]
        self.size, self.cursor = size, int(state["cursor"])


@dataclass
class TrainConfig:
    faces: str
    out_dir: str
    steps: int = 2000
    batch_size: int = 64
    teacher_batch: int = 32  # fresh teacher-labelled samples per step; the rest of the batch replays recent ones
    replay: int = 1536
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 150
    seed: int = 0
    workers: int = 1
    threads: int = 1
    device: str = "cpu"
    max_minutes: float = 0.0
    stop_at: int = 0  # stop (resumably) after this step without changing the schedule; 0 = run to ``steps``
    checkpoint_minutes: float = 5.0
    keep_every: int = 500  # also keep step_XXXXX.pt snapshots every so many steps
    teacher_pad: float = 0.0
    teacher_border: str = "constant"
    teacher_model: str = ""


def save_checkpoint(path: Path, model: FaceViT, optimizer: torch.optim.Optimizer, step: int, teacher_batches: int,
                    replay: ReplayBuffer, sample_rng: np.random.Generator, student: StudentConfig,
                    config: TrainConfig) -> None:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
        "teacher_batches": teacher_batches, "replay": replay.state(),
        "sample_rng": sample_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "student": asdict(student), "config": asdict(config),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a broken checkpoint


def train(config: TrainConfig, student: StudentConfig, teacher: Teacher, resume: bool = False,
          augment: AugmentConfig = AugmentConfig(), progress: bool = True) -> Path:
    """Distil ``teacher`` into a FaceViT; returns the path of the last checkpoint (``last.pt`` in out_dir)."""
    from tqdm import tqdm

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    train_faces = load_faces(config.faces, "train")
    torch.manual_seed(config.seed)
    model = student.build().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    replay = ReplayBuffer(config.replay, (ARCFACE_SIZE, ARCFACE_SIZE, 3), student.out_dim)
    sample_rng = np.random.default_rng([config.seed, 1])
    step, teacher_batches = 0, 0
    last_path = out_dir / "last.pt"
    if resume and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, teacher_batches = state["step"], state["teacher_batches"]
        replay.load(state["replay"])
        sample_rng.bit_generator.state = state["sample_rng"]
        torch.set_rng_state(state["torch_rng"])
    (out_dir / "config.json").write_text(json.dumps({"train": asdict(config), "student": asdict(student),
                                                     "augment": asdict(augment)}, indent=1))
    dataset = TeacherLabelledBatches(train_faces.context, teacher, config.teacher_batch, config.seed,
                                     teacher_batches, augment)
    loader = iter(torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=config.workers, prefetch_factor=4 if config.workers else None,
        persistent_workers=False,
    ))
    log = (out_dir / "log.jsonl").open("a")
    started = last_save = time.time()
    bar = tqdm(total=config.steps, initial=step, desc="distill", disable=not progress, dynamic_ncols=True)
    model.train()
    try:
        while step < config.steps:
            if config.max_minutes and time.time() - started > config.max_minutes * 60:
                break
            if config.stop_at and step >= config.stop_at:
                break
            fresh_images, fresh_targets = next(loader)
            fresh_images, fresh_targets = np.asarray(fresh_images), np.asarray(fresh_targets)
            teacher_batches += 1
            extra = config.batch_size - len(fresh_images)
            if extra > 0 and replay.size > 0:
                old_images, old_targets = replay.sample(extra, sample_rng)
                images = np.concatenate([fresh_images, old_images])
                targets = np.concatenate([fresh_targets, old_targets])
            else:
                images, targets = fresh_images, fresh_targets
            replay.add(fresh_images, fresh_targets)
            lr = learning_rate(step, config.lr, config.warmup, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            embeddings = model(images_to_tensor(images, device))
            loss = cosine_distillation_loss(embeddings, torch.as_tensor(targets, device=device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), 5.0))
            optimizer.step()
            step += 1
            fresh_cos = 1.0 - cosine_distillation_loss(embeddings[: len(fresh_images)].detach(),
                                                       torch.as_tensor(fresh_targets, device=device)).item()
            log.write(json.dumps({"step": step, "loss": round(loss.item(), 5), "fresh_cos": round(fresh_cos, 5),
                                  "lr": lr, "grad_norm": round(grad_norm, 3), "teacher_samples":
                                  teacher_batches * config.teacher_batch,
                                  "minutes": round((time.time() - started) / 60, 2)}) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", cos=f"{fresh_cos:.3f}")
            if time.time() - last_save > config.checkpoint_minutes * 60:
                save_checkpoint(last_path, model, optimizer, step, teacher_batches, replay, sample_rng, student, config)
                last_save = time.time()
            if config.keep_every and step % config.keep_every == 0:
                export_weights(model, out_dir / f"step_{step:05d}.safetensors")
    finally:
        bar.close()
        log.close()
        save_checkpoint(last_path, model, optimizer, step, teacher_batches, replay, sample_rng, student, config)
    return last_path


# ------------------------------------------------------------------------------------------- weights and score


def export_weights(model_or_state: FaceViT | dict, path: str | os.PathLike, half: bool = False) -> Path:
    """Save the FaceViT state dict (no prefix, no optimiser or mask_token extras) as safetensors."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {}
    for key, value in state.items():
        if key == "mask_token" or key.endswith("num_batches_tracked"):
            continue
        value = value.detach().cpu().contiguous()
        tensors[key] = value.half() if half and value.is_floating_point() else value.float()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", "architecture": "attn_core.models.face_vit.FaceViT"})
    return path


def load_student(path: str | os.PathLike, student: StudentConfig | None = None) -> tuple[FaceViT, StudentConfig]:
    """A FaceViT in eval mode from a training checkpoint (.pt) or exported weights (.safetensors)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(path)).items()}
        student = student or StudentConfig()
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        state = checkpoint["model"]
        student = StudentConfig(**checkpoint["student"])
    model = student.build()
    model.load_state_dict(state, strict=False)
    return model.eval(), student


def student_backbone(model: FaceViT):
    """The student as an attn_core Backbone, so validation scores it through the one scoring path."""
    from attn_core.backbone import Backbone, spec_from_checkpoint

    spec = spec_from_checkpoint(model.state_dict(), "distillation-student", model.blocks[0].attn.num_heads)
    return Backbone(spec, model, next(model.parameters()).device, "distillation student")


def student_embed(model: FaceViT, crops: np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised embeddings, ATTN-FIQA last-block scores) for uint8 crops, from one forward pass each."""
    from attn_core.quality import score_faces

    results = score_faces(student_backbone(model), crops, with_embedding=True, batch_size=batch)
    return np.stack([r.embedding for r in results]), np.array([r.score for r in results])


# ------------------------------------------------------------------------------------------------ validation


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(positive > negative) + 0.5 P(tie), via attn_core.evaluation.roc_auc (high values flag positives)."""
    from attn_core.evaluation import roc_auc as evaluation_auc

    values = np.concatenate([positive, negative])
    flags = np.concatenate([np.ones(len(positive), bool), np.zeros(len(negative), bool)])
    return evaluation_auc(values, flags, low_score_flags=False)


FIXTURE_PAIRS_GENUINE = (("person_a_1", "person_a_2"), ("person_b_1", "person_b_2"))


def fixture_crops(fixtures_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    from attn_core.faces import extract_faces, load_image

    crops = {}
    for path in sorted(Path(fixtures_dir).glob("*.jpg")):
        faces = extract_faces(load_image(path), on_no_face="center_crop")
        crops[path.stem] = max(faces, key=lambda f: (f.box[2] * f.box[3]) if f.box is not None else 0.0).aligned
    return crops


def identity_of(fixture: str) -> str:
    return fixture.rsplit("_", 1)[0] if fixture.startswith("person_") else fixture


def separation(embeddings: dict[str, np.ndarray], extra_impostors: np.ndarray | None = None) -> dict[str, float]:
    """Genuine vs impostor cosines on the fixtures (+ cross-identity held-out faces as extra impostors)."""
    names = sorted(embeddings)
    genuine, impostor = [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            cos = float(embeddings[a] @ embeddings[b])
            (genuine if identity_of(a) == identity_of(b) else impostor).append(cos)
    result = {"genuine_cos": genuine, "fixture_impostor_cos_mean": float(np.mean(impostor)),
              "fixture_impostor_cos_max": float(np.max(impostor))}
    if extra_impostors is not None and len(extra_impostors) > 1:
        sims = extra_impostors @ extra_impostors.T
        cross = sims[np.triu_indices(len(sims), 1)]
        impostor = impostor + cross.tolist()
        result["heldout_impostor_cos_mean"] = float(cross.mean())
        result["heldout_impostor_cos_p99"] = float(np.quantile(cross, 0.99))
    result["auc_genuine_vs_impostor"] = roc_auc(np.array(genuine), np.array(impostor))
    result["d_prime"] = float((np.mean(genuine) - np.mean(impostor)) /
                              math.sqrt(0.5 * (np.var(genuine) + np.var(impostor)) + 1e-12))
    return result


GATE_NEGATIVE_DEGRADATIONS = ("gaussian_blur", "motion_blur", "noise", "low_light", "occlude_eyes", "occlude_mouth",
                              "occlude_patch")


def quality_sweep(model: FaceViT, crops: np.ndarray, levels: int = 6, seed: int = 0) -> dict:
    """Degrade each held-out crop at ``levels`` strengths per degradation; student score vs SFace utility."""
    from scipy.stats import spearmanr

    from attn_core.degrade import DEGRADATIONS, degrade
    from attn_core.matcher import get_matcher

    matcher = get_matcher("sface")
    clean_sface = matcher.embed(list(crops))
    strengths = np.linspace(0.0, 1.0, levels)
    rows = []  # (face, degradation, strength, score, utility)
    for d_index, name in enumerate(DEGRADATIONS):
        for s_index, strength in enumerate(strengths):
            # Seed per face, shared by every degradation and strength: the convention of `attn-fiqa sweep`.
            degraded = np.stack([degrade(crop, name, float(strength), seed=seed + f) for f, crop in enumerate(crops)])
            _, scores = student_embed(model, degraded)
            utility = (matcher.embed(list(degraded)) * clean_sface).sum(axis=1)
            for f in range(len(crops)):
                rows.append((f, d_index, s_index, float(scores[f]), float(utility[f])))
    table = np.array(rows)
    face, kind, level, score, utility = table.T
    # Pool every degraded sample once, plus each clean face once (strength 0 is identical for every degradation).
    pooled = (level > 0) | (kind == 0)
    failure = utility < matcher.threshold
    result = {
        "faces": int(len(crops)), "levels": strengths.round(3).tolist(), "samples_pooled": int(pooled.sum()),
        "spearman_score_utility_pooled": float(spearmanr(score[pooled], utility[pooled])[0]),
        "failures": int((failure & pooled).sum()),
        "auc_low_score_flags_failure": roc_auc(-score[pooled & failure], -score[pooled & ~failure])
        if (failure & pooled).any() and (~failure & pooled).any() else float("nan"),
        "clean_score_mean": float(score[(level == 0) & (kind == 0)].mean()),
        # Diagnostic only, never a shipped score: does the student's attention carry quality with the opposite sign?
        "diagnostic_negated_score": {
            "spearman_utility_pooled": float(spearmanr(-score[pooled], utility[pooled])[0]),
            "auc_failure": roc_auc(score[pooled & failure], score[pooled & ~failure])
            if (failure & pooled).any() and (~failure & pooled).any() else float("nan"),
        },
        "per_degradation": {},
    }
    for d_index, name in enumerate(DEGRADATIONS):
        mask = kind == d_index
        per_face = [spearmanr(level[mask & (face == f)], score[mask & (face == f)])[0] for f in range(len(crops))]
        result["per_degradation"][name] = {
            "spearman_score_strength_pooled": float(spearmanr(level[mask], score[mask])[0]),
            "spearman_score_strength_per_face_median": float(np.nanmedian(per_face)),
            "spearman_score_utility": float(spearmanr(score[mask], utility[mask])[0]),
            "mean_score_by_level": [float(score[mask & (level == i)].mean()) for i in range(levels)],
            "mean_utility_by_level": [float(utility[mask & (level == i)].mean()) for i in range(levels)],
        }
    gate = {
        "spearman_score_utility>=0.5": result["spearman_score_utility_pooled"] >= 0.5,
        "auc_failure>=0.80": result["auc_low_score_flags_failure"] >= 0.80,
    }
    for name in GATE_NEGATIVE_DEGRADATIONS:
        gate[f"{name}_spearman<0"] = result["per_degradation"][name]["spearman_score_strength_pooled"] < 0
    result["gate"] = gate
    result["passed"] = bool(all(gate.values()))
    return result


def validate(weights: str | os.PathLike, faces: str | os.PathLike, fixtures_dir: str | os.PathLike | None = None,
             teacher: Teacher | None = None, levels: int = 6, seed: int = 0, max_faces: int = 0) -> dict:
    """The acceptance gate for a checkpoint or weights file, on the held-out A-O faces."""
    model, student = load_student(weights)
    val = load_faces(faces, "val")
    if max_faces:
        val = FaceSet(val.names[:max_faces], val.aligned[:max_faces], val.context[:max_faces])
    embeddings, clean_scores = student_embed(model, val.aligned)
    report: dict = {"weights": str(weights), "student": asdict(student), "heldout_faces": int(len(val.aligned))}
    if teacher is not None:
        teacher_embeddings = teacher.embed(list(val.aligned))
        cos = (embeddings * teacher_embeddings).sum(axis=1)
        report["student_teacher_cos_clean"] = {"mean": float(cos.mean()), "median": float(np.median(cos)),
                                               "min": float(cos.min())}
    if fixtures_dir is not None and Path(fixtures_dir).is_dir():
        crops = fixture_crops(fixtures_dir)
        names = sorted(crops)
        student_fixture = dict(zip(names, student_embed(model, np.stack([crops[n] for n in names]))[0]))
        report["separation_student"] = separation(student_fixture, embeddings)
        if teacher is not None:
            teacher_fixture = dict(zip(names, teacher.embed([crops[n] for n in names])))
            report["separation_teacher"] = separation(teacher_fixture, teacher_embeddings)
    report["quality_sweep"] = quality_sweep(model, val.aligned, levels=levels, seed=seed)
    report["passed"] = report["quality_sweep"]["passed"]
    return report


def measure_teacher_mapping(faces: str | os.PathLike, fixtures_dir: str | os.PathLike, teacher_model: str | os.PathLike,
                            mappings: Sequence[tuple[float, str]] = ((0.0, "constant"), (0.1, "constant"),
                                                                     (0.2, "constant"), (0.1, "replicate")),
                            split: str = "train", max_faces: int = 100) -> list[dict]:
    """Teacher separation for each crop->chip mapping: fixture genuine pairs vs fixture + A-O impostors.

    Reports raw and mean-centred descriptors, and the cosine to dlib's own chip (its detector, 5-point predictor
    and get_face_chip) of the same photo. Centre from other training faces than the ones scored.
    """
    faceset = load_faces(faces, split)
    scored, centre_set = faceset.aligned[:max_faces], faceset.aligned[max_faces:2 * max_faces]
    crops = fixture_crops(fixtures_dir)
    names = sorted(crops)
    native = _native_dlib_descriptors(faceset.context[:max_faces], Path(teacher_model))
    found = [i for i, d in enumerate(native) if d is not None]

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    results = []
    for pad, border in mappings:
        teacher = DlibTeacher(teacher_model, pad, border)
        raw_fixture = teacher.raw_descriptors([crops[n] for n in names])
        raw_scored = teacher.raw_descriptors(list(scored))
        centre = teacher.raw_descriptors(list(centre_set)).mean(axis=0)
        row: dict = {"pad": pad, "border": border, "native_chips_found": len(found)}
        row["cos_to_native_dlib_chip_mean"] = float(np.mean([unit(raw_scored[i]) @ native[i] for i in found]))
        row["raw"] = separation(dict(zip(names, unit(raw_fixture))), unit(raw_scored))
        row["centred"] = separation(dict(zip(names, unit(raw_fixture - centre))), unit(raw_scored - centre))
        row["euclid_genuine"] = [float(np.linalg.norm(raw_fixture[names.index(a)] - raw_fixture[names.index(b)]))
                                 for a, b in FIXTURE_PAIRS_GENUINE]
        results.append(row)
    return results


def _native_dlib_descriptors(contexts: np.ndarray, teacher_model: Path) -> list[np.ndarray | None]:
    """dlib's own pipeline (HOG detector, 5-point predictor, get_face_chip 150/0.25) on each context crop."""
    import dlib

    predictor_path = teacher_model.parent / "shape_predictor_5_face_landmarks.dat"
    if not predictor_path.is_file():
        return [None] * len(contexts)
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path))
    net = dlib.face_recognition_model_v1(str(teacher_model))
    out: list[np.ndarray | None] = []
    for context in contexts:
        boxes = detector(context, 1)
        if len(boxes) == 0:
            out.append(None)
            continue
        chip = dlib.get_face_chip(context, predictor(context, boxes[0]), size=DLIB_CHIP_SIZE, padding=0.25)
        descriptor = np.asarray(net.compute_face_descriptor(chip), dtype=np.float32)
        out.append(descriptor / np.linalg.norm(descriptor))
    return out


# ------------------------------------------------------------------------------------------------------ CLI


def _build_teacher(args: argparse.Namespace) -> Teacher:
    teacher = DlibTeacher(find_teacher_model(args.teacher_model or None), args.teacher_pad, args.teacher_border)
    if not args.no_center:  # the centre is estimated on clean TRAINING crops only
        cache = args.teacher_center or Path(args.faces).with_name("teacher_center.npz")
        teacher.center = teacher_center(teacher, load_faces(args.faces, "train").aligned, cache)
    return teacher


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", default="distill_out/faces.npz", help="output of the prepare step")
    parser.add_argument("--teacher-model", default="", help=f"path to {TEACHER_MODEL_FILE}")
    parser.add_argument("--teacher-pad", type=float, default=0.2,
                        help="crop->chip padding, fraction of 112 per side (0.2: best separation in teacher-mapping)")
    parser.add_argument("--teacher-border", choices=("constant", "replicate"), default="constant")
    parser.add_argument("--teacher-center", default="",
                        help="cache of the mean dlib descriptor of clean training crops (computed when missing; "
                        "default: teacher_center.npz beside --faces)")
    parser.add_argument("--no-center", action="store_true", help="use raw dlib descriptors (not recommended)")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m attn_core.distill", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="distill_command", required=True)

    prepare = commands.add_parser("prepare", help="align A-O portraits (never opens P-Z) and split train/val")
    prepare.add_argument("--data-dir", required=True)
    prepare.add_argument("--out", default="distill_out/faces.npz")
    prepare.add_argument("--val-fraction", type=float, default=0.15)
    prepare.add_argument("--seed", type=int, default=0)

    train_cmd = commands.add_parser("train", help="distil dlib's ResNet into a FaceViT")
    _add_common(train_cmd)
    defaults, arch = TrainConfig(faces="", out_dir=""), StudentConfig()
    train_cmd.add_argument("--out-dir", default="distill_out/run")
    for name in ("steps", "stop_at", "batch_size", "teacher_batch", "replay", "warmup", "seed", "workers", "threads",
                 "keep_every"):
        train_cmd.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "weight_decay", "max_minutes", "checkpoint_minutes"):
        train_cmd.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    train_cmd.add_argument("--device", default="cpu", help="cpu or cuda")
    for name in ("embed_dim", "depth", "num_heads", "out_dim"):
        train_cmd.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(arch, name))
    train_cmd.add_argument("--mlp-ratio", type=float, default=arch.mlp_ratio)
    train_cmd.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    train_cmd.add_argument("--no-progress", action="store_true")

    val_cmd = commands.add_parser("validate", help="acceptance gate on a checkpoint (.pt) or weights (.safetensors)")
    _add_common(val_cmd)
    val_cmd.add_argument("weights")
    val_cmd.add_argument("--fixtures", default="")
    val_cmd.add_argument("--levels", type=int, default=6)
    val_cmd.add_argument("--no-teacher", action="store_true")
    val_cmd.add_argument("--max-faces", type=int, default=0, help="only the first N held-out faces (smoke runs)")
    val_cmd.add_argument("--out", default="", help="write the report as JSON here")

    mapping = commands.add_parser("teacher-mapping", help="measure the teacher's separation per crop->chip mapping")
    _add_common(mapping)
    mapping.add_argument("--fixtures", required=True)

    export = commands.add_parser("export", help="checkpoint -> FaceViT safetensors (no training extras)")
    export.add_argument("checkpoint")
    export.add_argument("out")
    export.add_argument("--half", action="store_true", help="store float16 (halves the file; loads as float32)")
    return parser


def add_distill_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train-distill`` (with its prepare/train/validate/export steps) on a CLI's sub-parsers."""
    parser = subparsers.add_parser("train-distill", help="train the default face ViT by distillation from dlib",
                                   description=__doc__.split("\n")[0])
    build_parser(parser)
    parser.set_defaults(func=lambda args: run(args))
    return parser


def run(args: argparse.Namespace) -> int:
    if args.distill_command == "prepare":
        print(json.dumps(prepare_faces(args.data_dir, args.out, args.val_fraction, args.seed)))
    elif args.distill_command == "train":
        config = TrainConfig(
            faces=args.faces, out_dir=args.out_dir, steps=args.steps, batch_size=args.batch_size,
            teacher_batch=args.teacher_batch, replay=args.replay, lr=args.lr, weight_decay=args.weight_decay,
            warmup=args.warmup, seed=args.seed, workers=args.workers, threads=args.threads, device=args.device,
            max_minutes=args.max_minutes, stop_at=args.stop_at, checkpoint_minutes=args.checkpoint_minutes, keep_every=args.keep_every,
            teacher_pad=args.teacher_pad, teacher_border=args.teacher_border, teacher_model=args.teacher_model,
        )
        student = StudentConfig(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads,
                                mlp_ratio=args.mlp_ratio, out_dim=args.out_dim)
        print(train(config, student, _build_teacher(args), resume=args.resume, progress=not args.no_progress))
    elif args.distill_command == "validate":
        teacher = None if args.no_teacher else _build_teacher(args)
        report = validate(args.weights, args.faces, args.fixtures or None, teacher, levels=args.levels,
                          max_faces=args.max_faces)
        text = json.dumps(report, indent=1)
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return 0 if report["passed"] else 1
    elif args.distill_command == "teacher-mapping":
        results = measure_teacher_mapping(args.faces, args.fixtures, find_teacher_model(args.teacher_model or None))
        print(json.dumps(results, indent=1))
    elif args.distill_command == "export":
        model, _ = load_student(args.checkpoint)
        print(export_weights(model, args.out, half=args.half))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
