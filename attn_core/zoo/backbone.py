"""A built backbone: spec + module + weights, with the one preprocessing path and partial-forward helpers."""

from __future__ import annotations

import functools
import gc
import itertools
import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import cachetools
import numpy as np
import torch
from torch import nn

from attn_core.zoo.hub import HubError
from attn_core.zoo.registry import (
    BackboneNotAvailable,
    get_spec,
    how_to_get,
    local_weights,
)
from attn_core.zoo.specs import BackboneSpec
from attn_core.zoo.weights import (
    HF_SCHEME,
    CheckpointError,
    check_fits_memory,
    check_head_count,
    checkpoint_in_folder,
    head_count_from_config,
    infer_face_vit_config,
    load_strict,
    read_state_dict,
    resolve_hf,
)


class Backbone:
    """A ViT ready for attention capture: ``blocks[k].norm1`` and ``blocks[k].attn.qkv`` exist for every k."""

    def __init__(self, spec: BackboneSpec, model: nn.Module, device: torch.device, weights: str) -> None:
        self.spec = spec
        self.model = model.eval().to(device)
        self.device = device
        self.weights = weights  # where the weights came from, or "random (seed N)"
        self.lock = threading.Lock()  # one hooked capture (embedding, lab) at a time; the score alone takes none
        self._compiled: dict[int, object] = {}  # block -> torch.compile'd tokens_before, built on first use

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.blocks

    def block_index(self, block: int) -> int:
        """Normalise a block index (negative counts from the end) or fail with the valid range."""
        depth = len(self.blocks)
        if not -depth <= block < depth:
            raise ValueError(f"Block {block} does not exist: {self.spec.name} has blocks 0..{depth - 1} (or -1 for the last).")
        return block % depth

    def preprocess(self, aligned: np.ndarray) -> torch.Tensor:
        """Aligned RGB uint8 crops (B,112,112,3) or (112,112,3) -> normalised NCHW float tensor on the device."""
        faces = np.asarray(aligned)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
            raise ValueError(f"Expected aligned RGB uint8 faces of shape (B,H,W,3), got {faces.shape} {faces.dtype}.")
        if self.spec.color_order == "BGR":
            faces = faces[..., ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(faces)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        size = self.spec.input_size
        if tensor.shape[-2:] != (size, size):
            tensor = nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)
        return (tensor - mean) / std

    def tokens_before(self, images: torch.Tensor, block: int, *, compile: bool = False) -> torch.Tensor:
        """Token sequence entering ``block``: embedding plus every earlier block, nothing more.

        ``compile`` runs the same code through ``torch.compile`` (compiled once per block index and reused).
        """
        if compile:
            compiled = self._compiled.get(block)
            if compiled is None:
                compiled = self._compiled[block] = torch.compile(functools.partial(self._tokens_before, block=block))
            return compiled(images)
        return self._tokens_before(images, block)

    def _tokens_before(self, images: torch.Tensor, block: int) -> torch.Tensor:
        model = self.model
        if self.spec.family == "face_vit":
            tokens = model.embed_tokens(images)
        else:  # timm VisionTransformer.forward_features up to its blocks
            tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        for earlier in self.blocks[:block]:
            tokens = earlier(tokens)
        return tokens

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The family's own recognition embedding (full forward), L2-normalised."""
        if self.spec.family == "face_vit":
            features = self.model(images)
        else:  # timm: the face ViTs' 512-d head, or the pooled features of a general ViT (its head dropped)
            features = self.model(images)
        return nn.functional.normalize(features.float(), dim=-1)

    @functools.cached_property
    def weights_sha256(self) -> str:
        """Content hash of the weights file ("" for random weights), computed once per backbone."""
        from attn_core.digests import weights_identity

        identity = weights_identity(self.weights)
        return identity[len("sha256:"):] if identity.startswith("sha256:") else ""

    @functools.cached_property
    def weights_name(self) -> str:
        """The weights' file name, or "random (seed N)"."""
        return Path(self.weights).name if self.weights_sha256 else self.weights


def face_vit_parameters(spec: BackboneSpec) -> int:
    """Parameters a face-ViT of ``spec`` would allocate, from its declared numbers alone (docs/DESIGN.md 2.1)."""
    dim, patches = spec.embed_dim, spec.grid[0] * spec.grid[1]
    hidden = int(round(dim * spec.mlp_ratio))
    block = 4 * dim + 3 * dim * dim + dim * dim + dim + 2 * dim * hidden + hidden + dim
    total = 3 * dim * spec.patch_size**2 + dim + patches * dim + spec.depth * block + 2 * dim
    total += patches * dim * dim + 4 * dim + dim * spec.out_dim + 4 * spec.out_dim
    if spec.gated:
        total += patches * dim * patches + patches * patches
    return total


def build_module(spec: BackboneSpec) -> nn.Module:
    if spec.family == "face_vit":
        from attn_core.zoo.face_vit import FaceViT

        return FaceViT(
            img_size=spec.input_size,
            patch_size=spec.patch_size,
            embed_dim=spec.embed_dim,
            depth=spec.depth,
            num_heads=spec.num_heads,
            mlp_ratio=spec.mlp_ratio,
            out_dim=spec.out_dim,
            gated=spec.gated,
        )
    import timm

    # General ViTs drop their classifier (num_classes=0); face ViTs keep their embedding head (timm_kwargs says so).
    return timm.create_model(spec.timm_name, pretrained=False, **{"num_classes": 0, **dict(spec.timm_kwargs)})


def spec_of_timm_model(spec: BackboneSpec, model: nn.Module) -> BackboneSpec:
    """``spec`` with the numbers a built timm model actually has (a Hub repo's config.json may differ from the
    registry's description, e.g. a later revision): the model, not the description, decides how it is read."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return replace(
        spec,
        patch_size=int(model.patch_embed.patch_size[0]),
        grid=tuple(int(g) for g in model.patch_embed.grid_size),
        embed_dim=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(model.blocks[0].attn.num_heads),
        input_size=int(model.patch_embed.img_size[0]),
        mean=tuple(float(m) for m in cfg.get("mean", spec.mean)),
        std=tuple(float(v) for v in cfg.get("std", spec.std)),
        num_prefix_tokens=int(model.num_prefix_tokens),
        out_dim=int(getattr(model, "num_classes", 0) or model.num_features),
    )


def spec_of_module(model: nn.Module, *, name: str, mean=None, std=None, face_trained: bool = True) -> BackboneSpec:
    """A spec read off a user's ViT module (timm VisionTransformer, or the face-ViT family's layout)."""
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        base = BackboneSpec(name=name, family="timm", patch_size=1, grid=(1, 1), embed_dim=1, depth=1, num_heads=1,
                            face_trained=face_trained, description="user module (timm VisionTransformer)")
        spec = spec_of_timm_model(base, model)
    else:
        needed = ("patch_embed", "pos_embed", "blocks", "embed_tokens")
        missing = [attr for attr in needed if not hasattr(model, attr)]
        if missing or not all(hasattr(b, "norm1") and hasattr(getattr(b, "attn", None), "qkv") for b in model.blocks):
            raise ValueError(f"{type(model).__name__} is neither a timm VisionTransformer nor a face ViT of the "
                             f"insightface / CVLFace layout (missing: {', '.join(missing) or 'blocks[i].norm1 / attn.qkv'}).")
        patch = int(model.patch_embed.proj.kernel_size[0])
        grid = int(round(model.pos_embed.shape[1] ** 0.5))
        spec = BackboneSpec(name=name, family="face_vit", patch_size=patch, grid=(grid, grid),
                            embed_dim=int(model.pos_embed.shape[-1]), depth=len(model.blocks),
                            num_heads=int(model.blocks[0].attn.num_heads), input_size=112,
                            mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.pos_embed.shape[-1],
                            face_trained=face_trained, description="user module (face ViT)")
    return replace(spec, mean=tuple(mean) if mean is not None else spec.mean,
                   std=tuple(std) if std is not None else spec.std)


def _load_timm_hub(spec: BackboneSpec, folder: Path) -> nn.Module:
    """A timm model from a Hub repo folder (the cached snapshot, or a copy with config.json + weights) through timm's
    own ``local-dir:`` loader, so the repo's config.json defines the architecture. The files were fetched by
    ``registry.fetch_weights`` (the same two files timm's ``hf-hub:`` loader would fetch); no request here."""
    import timm

    kwargs = {} if spec.face_trained else {**dict(spec.timm_kwargs), "num_classes": 0}  # e.g. DINOv2 at 224 px
    try:
        return timm.create_model(f"local-dir:{folder}", pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as error:
        text = str(error)
        if any(marker in text for marker in ("size mismatch", "Missing key", "Unexpected key")):
            raise CheckpointError(f"{folder} does not fit {spec.name}: {text[:600]}") from None
        raise CheckpointError(f"timm could not load {folder}: {type(error).__name__}: {text[:300]}") from None


def spec_from_checkpoint(state_dict: dict[str, torch.Tensor], name: str, num_heads: int) -> BackboneSpec:
    """A face-ViT spec read off a checkpoint's tensor shapes, for files that match no registered entry."""
    config = infer_face_vit_config(state_dict)
    return BackboneSpec(
        name=name,
        family="face_vit",
        patch_size=config["patch_size"],
        grid=config["grid"],
        embed_dim=config["embed_dim"],
        depth=config["depth"],
        num_heads=num_heads,
        mlp_ratio=config["mlp_ratio"],
        out_dim=config["out_dim"],
        gated=config["gated"],
        face_trained=True,
        description="Face ViT read from a user checkpoint (architecture inferred from tensor shapes).",
    )


_RANDOM_HINT = (" To see the mechanics without trained weights: random_init=True (CLI: --random-init); that score "
                "means nothing about face quality.")


def _resolve_path(spec: BackboneSpec, weights: str | Path | None) -> Path:
    if weights is None:
        found = local_weights(spec)
        if found is None and spec.weights.kind in ("hf", "timm") and spec.weights.location:
            from attn_core.zoo.hub import offline_reason
            from attn_core.zoo.registry import fetch_weights

            if offline_reason():
                raise BackboneNotAvailable(f"No trained weights for {spec.name} on this machine, and "
                                           f"{offline_reason()}. {how_to_get(spec)}{_RANDOM_HINT}")
            try:  # first use: download (progress bar on stderr), cached for every later run
                return fetch_weights(spec.name)
            except HubError as error:
                raise BackboneNotAvailable(f"{spec.name}: {error} {how_to_get(spec)}{_RANDOM_HINT}") from None
        if found is None:
            raise BackboneNotAvailable(f"No trained weights for {spec.name} on this machine. {how_to_get(spec)}"
                                       f"{_RANDOM_HINT}")
        return found
    text = str(weights)
    if text.startswith(HF_SCHEME):
        return resolve_hf(text)
    path = Path(weights).expanduser()
    if not path.exists():
        raise CheckpointError(f"Weights file {path} does not exist.")
    return path


def _fit_face_vit_spec(spec: BackboneSpec, state_dict: dict, path: Path, num_heads: int | None) -> BackboneSpec:
    """Check a face-ViT checkpoint against the spec; on a generic or mismatching name, adopt its own shapes."""
    config = infer_face_vit_config(state_dict)
    heads = num_heads if num_heads is not None else head_count_from_config(path)
    if heads is not None:
        check_head_count(heads, config["embed_dim"], "--num-heads (num_heads)" if num_heads is not None
                         else f"The head count in the config beside {path.name}")
    shape_keys = ("embed_dim", "patch_size", "depth", "out_dim", "gated")
    matches = all(config[k] == getattr(spec, k) for k in shape_keys) and abs(config["mlp_ratio"] - spec.mlp_ratio) < 1e-6
    if matches:
        return replace(spec, num_heads=heads or spec.num_heads)
    if heads is None:
        raise CheckpointError(
            f"{path} does not match {spec.name} (file: dim {config['embed_dim']}, patch {config['patch_size']}, depth "
            f"{config['depth']}, mlp ratio {config['mlp_ratio']:.2f}, out {config['out_dim']}; {spec.name}: dim "
            f"{spec.embed_dim}, patch {spec.patch_size}, depth {spec.depth}, mlp ratio {spec.mlp_ratio:.2f}, out "
            f"{spec.out_dim}). The head count is not stored in weights: pass --num-heads N (or num_heads=N), or put "
            f'{{"num_heads": N}} in a config.json beside the file, or choose the matching --backbone.'
        )
    return spec_from_checkpoint(state_dict, f"{spec.name}@{path.name}", heads)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(
    name: str = "",
    *,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    random_init: bool = False,
    seed: int = 0,
    num_heads: int | None = None,
) -> Backbone:
    """Build a backbone with its trained weights (never silently random).

    Args:
        name: registry name, ``timm:NAME`` or a timm name; empty means the default backbone, or for a face-ViT
            checkpoint file, "face-vit" lets the file define the architecture.
        weights: a checkpoint file, an HF-style folder, or ``hf://owner/repo[/file]``; default: the known location.
        random_init: explicit opt-in to seeded random weights (tests, teaching the mechanics).
        num_heads: head count for checkpoints whose architecture differs from the named spec.
    """
    from attn_core.zoo.registry import resolve_default

    device = torch.device(device) if device is not None else _default_device()
    if random_init and not name and weights is None:
        from attn_core.zoo.registry import DEFAULT_BACKBONE

        name = DEFAULT_BACKBONE  # random weights need no download: the default architecture (small and fast)
    timm_folder = _timm_folder_architecture(weights) if not name and weights is not None else None
    if timm_folder:
        spec = _generic_timm(Path(weights).expanduser(), timm_folder)
    else:
        if not name and weights is not None:
            name = "face-vit"
        spec = _generic_face_vit() if name == "face-vit" else get_spec(name or resolve_default(download=True))
    if random_init:
        if weights is not None:
            raise ValueError("Pass either weights or random_init=True, not both.")
        if num_heads is not None:
            spec = replace(spec, num_heads=check_head_count(num_heads, spec.embed_dim, "--num-heads (num_heads)"))
        if spec.family == "face_vit":
            check_fits_memory(face_vit_parameters(spec), f"Backbone {spec.name}")
        # Seeded, the caller's global RNG kept; builds take turns (they draw from torch's one global generator).
        with _SEEDED_BUILDS, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build_module(spec)
        return Backbone(spec, module, device, f"random (seed {seed})")
    path = _resolve_path(spec, weights)
    if spec.family == "timm" and (path.is_dir() or path.parent.joinpath("config.json").is_file()) and (
            weights is None or path.is_dir()):
        # A Hub repo (cached snapshot or a copied folder): timm's own loader reads its config.json and weights.
        folder = path if path.is_dir() else path.parent
        model = _load_timm_hub(spec, folder)
        weights_file = path if path.is_file() else checkpoint_in_folder(folder)
        return Backbone(spec_of_timm_model(spec, model), model, device, str(weights_file))
    state_dict = read_state_dict(path)
    if spec.family == "face_vit":
        spec = _fit_face_vit_spec(spec, state_dict, path, num_heads)
        state_dict.pop("mask_token", None)  # training-only patch dropping
        check_head_count(spec.num_heads, spec.embed_dim, f"The head count of {spec.name}")
        check_fits_memory(face_vit_parameters(spec), f"Checkpoint {path}")
    model = build_module(spec)
    if spec.family == "timm":
        from timm.models.vision_transformer import checkpoint_filter_fn

        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        if "pos_embed" in state_dict and state_dict["pos_embed"].shape != model.pos_embed.shape:
            state_dict = checkpoint_filter_fn(state_dict, model)  # another grid: resampled as timm's loader does
    load_strict(model, state_dict, source=f"Checkpoint {path}")
    return Backbone(spec, model, device, str(path))


def _timm_folder_architecture(weights: str | Path) -> str | None:
    """The timm architecture named by ``weights/config.json`` (a folder written by timm's save_for_hf, e.g. by
    ``attn-fiqa train export`` of a timm_vit run, or a downloaded timm Hub repo), else None."""
    text = str(weights)
    if text.startswith(HF_SCHEME):
        return None
    config = Path(text).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        architecture = json.loads(config.read_text()).get("architecture")
    except (OSError, ValueError, AttributeError):
        return None
    return architecture if isinstance(architecture, str) else None


def _generic_timm(folder: Path, architecture: str) -> BackboneSpec:
    # The numbers are read off the built model (spec_of_timm_model); face_trained: a user's recognition checkpoint.
    return BackboneSpec(name=f"timm-vit:{folder.name}", family="timm", patch_size=1, grid=(1, 1), embed_dim=1,
                        depth=1, num_heads=1, timm_name=architecture, face_trained=True,
                        description=f"your timm ViT ({architecture}, from {folder.name}/config.json)")


def _generic_face_vit() -> BackboneSpec:
    # Placeholder architecture that never matches a real file: forces inference from the checkpoint's shapes.
    return BackboneSpec(name="face-vit", family="face_vit", patch_size=1, grid=(1, 1), embed_dim=1, depth=0, num_heads=1)


MODEL_CACHE_COUNT = 8  # built backbones kept at most ...
MODEL_CACHE_MB = int(os.environ.get("ATTN_FIQA_MODEL_CACHE_MB", "1024"))  # ... and at most this many MiB of weights


def _cache_cost(backbone: Backbone) -> int:
    """A cached backbone's weight bytes, counted as at least a MODEL_CACHE_COUNT-th of the budget, so one bound
    (bytes) keeps both: at most MODEL_CACHE_COUNT models and at most MODEL_CACHE_MB MiB of them."""
    tensors = itertools.chain(backbone.model.parameters(), backbone.model.buffers())
    weight_bytes = sum(t.numel() * t.element_size() for t in tensors)
    # A model larger than the whole budget counts as the whole budget: it is kept, alone, rather than rebuilt on
    # every call (so the cache holds at most max(budget, the largest model)).
    budget = MODEL_CACHE_MB * 2**20
    return min(max(weight_bytes, budget // MODEL_CACHE_COUNT), budget)


class _ModelCache(cachetools.LRUCache):
    """Least recently used first out. After an eviction the evicted model's memory is handed back at once: a garbage
    collection (modules can sit in reference cycles, and the collector counts Python objects, not the bytes they
    hold), then the C heap is trimmed. Measured with benchmarks/bench_memory.py (every listed backbone in turn,
    2048 MiB bound): server RSS 4.5 GB without the trim, 3.0-3.3 GB with it (1.05 GB at start)."""

    evicted = False

    def popitem(self):
        self.evicted = True
        return super().popitem()


_backbones = _ModelCache(maxsize=MODEL_CACHE_MB * 2**20, getsizeof=_cache_cost)
_backbones_lock = threading.Lock()
_SEEDED_BUILDS = threading.Lock()  # two seeded builds at once would interleave their random draws


@cachetools.cached(_backbones, lock=_backbones_lock)
def _cached_backbone(name: str, weights: str | None, device: str | None, random_init: bool,
                     num_heads: int | None) -> Backbone:
    return load_backbone(name, weights=weights, device=device, random_init=random_init, num_heads=num_heads)


def cached_backbone(name: str, weights: str | None = None, device: str | None = None, random_init: bool = False,
                    num_heads: int | None = None) -> Backbone:
    """Model loads are cached: the app and the CLI reuse one built backbone per (name, weights, device), bounded by
    count and memory (``ATTN_FIQA_MODEL_CACHE_MB``, default 1024; a larger model is kept alone)."""
    backbone = _cached_backbone(name, weights, device, random_init, num_heads)
    with _backbones_lock:
        evicted, _backbones.evicted = _backbones.evicted, False
    if evicted:
        gc.collect()
        return_freed_memory()
    return backbone


def return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim``; a no-op elsewhere). glibc keeps freed blocks
    below its mmap threshold in the heap, where a model's freed weights would stay resident; no library exposes this
    call, hence ctypes."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
