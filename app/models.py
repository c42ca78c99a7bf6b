"""The backbones this app serves: which are listed, which the default is, how each is loaded (only listed ones,
never random unless asked), and the sentences that say what its weights are and what its score can mean."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from app.errors import public_message, user_errors
from attn_core import FaceQualityModel, QualityResult
from attn_core.scoring import resolve_precision
from attn_core.zoo import (
    ONLINE_DEFAULT,
    BackboneNotAvailable,
    BackboneSpec,
    check_reachable,
    get_spec,
    how_to_get as zoo_how_to_get,
    installed_default,
    list_backbones,
    no_backbone_message,
    offline_reason,
    treat_as_offline,
    weights_available,
)

RANDOM_LABEL = "random weights (mechanics demo only)"
MEAN_VIEW = -1  # "map shown": the mean over the selected heads; 0..H-1 = that head alone
# The user's own checkpoints given at launch (``attn-fiqa app --weights FILE``): listed name -> loaded model.
_user_models: dict[str, FaceQualityModel] = {}
# Launch options every request follows (``attn-fiqa app --precision``, set by ui.launch: "auto" = bf16 where the
# hardware has it, measured to cut the ViT-S request p50 from 164 to 100 ms on this project's CPU, see
# benchmarks/RESULTS.md). fp32 until launch, for handlers called directly.
_launch: dict[str, str] = {"precision": "fp32"}


@dataclass(frozen=True)
class Startup:
    """What the app knows at launch: the default backbone and, when none is face-trained, why and what to do."""

    default_backbone: str
    default_random: bool
    missing_message: str | None


def use_weights(backbone: str, weights: str, num_heads: int | None = None) -> str:
    """Serve ``backbone`` (empty: read the architecture from the file) with the user's checkpoint ``weights``.

    The file is loaded once here, so a bad checkpoint stops the launch with its reason instead of failing later.
    Returns the backbone name the app lists it under.
    """
    model = FaceQualityModel(backbone, weights=weights, num_heads=num_heads, precision=_launch["precision"])
    name = backbone or model.spec.name
    _user_models[name] = model
    return name


def how_to_get(spec: BackboneSpec) -> str:
    """How to install ``spec``'s weights, naming the weights folder by its setting, not this server's path."""
    return public_message(zoo_how_to_get(spec))


def set_precision(precision: str) -> None:
    """The arithmetic of every model this app serves (``--precision``; "auto": bf16 where the hardware has it)."""
    import torch

    _launch["precision"] = resolve_precision(precision, "cuda" if torch.cuda.is_available() else "cpu")


def serving_precision() -> str:
    """The precision every model of this app runs at (set once at launch)."""
    return _launch["precision"]


def spec_of(backbone: str) -> BackboneSpec:
    """The spec of a listed backbone, including one served with the user's own checkpoint."""
    return _user_models[backbone].spec if backbone in _user_models else get_spec(backbone)


def has_weights(spec: BackboneSpec) -> bool:
    return spec.name in _user_models or weights_available(spec)


def downloadable(spec: BackboneSpec) -> bool:
    """Weights on the Hub that this server may download on first use (not in offline mode)."""
    return spec.weights.kind in ("hf", "timm") and bool(spec.weights.location) and offline_reason() is None


def startup_state() -> Startup:
    """The default backbone at launch, without blocking: installed weights first; else, if the Hub answers, the
    online default (downloaded on first use, with progress); else the banner with the exact reason."""
    if _user_models:
        return Startup(next(iter(_user_models)), False, None)
    installed = installed_default()
    if installed is not None:
        return Startup(installed, False, None)
    reason = check_reachable(get_spec(ONLINE_DEFAULT).weights.location)
    if reason is None:
        return Startup(ONLINE_DEFAULT, False, None)
    # Checked once: an unreachable Hub is offline for the rest of this run (labels say "not installed", requests
    # fail at once instead of after huggingface_hub's ~25 s of retries).
    if offline_reason() is None:  # (offline mode already says so itself)
        treat_as_offline(reason)
    # The picker shows what a connection would give (the online default), never an unshipped backbone.
    return Startup(ONLINE_DEFAULT, False,
                   public_message(no_backbone_message(f"Nothing can be downloaded now: {reason}.", random_hint=False)))


@functools.lru_cache(maxsize=1)
def backbone_specs() -> tuple[BackboneSpec, ...]:
    """Every registry entry (face ViTs, curated timm ViTs), plus the tiny random ones for the mechanics demo:
    two face ViTs (8- and 9-px patches) and timm's test ViT, which has a class token. The same list as
    ``attn-fiqa backbones --all`` (without ``--all`` the CLI names these three as hidden)."""
    return tuple(list_backbones(include_tests=True))


def backbone_choices() -> list[tuple[str, str]]:
    choices = []
    specs = list(backbone_specs()) + [m.spec for n, m in _user_models.items() if n not in {s.name for s in backbone_specs()}]
    for spec in specs:
        if spec.weights.kind == "none" and spec.name not in _user_models:
            status = "random weights only"
        elif has_weights(spec):
            status = "your weights" if spec.name in _user_models else "weights installed"
        else:
            status = "downloaded on first use" if downloadable(spec) else "weights not installed"
        kind = "face" if spec.face_trained else "not face-trained"
        choices.append((f"{spec.name}  ({kind}; {status})", spec.name))
    return choices


def load_model(backbone: str, random_weights: bool) -> FaceQualityModel:
    """The cached model; never random unless the user ticked the box."""
    if not backbone:
        raise ValueError("Choose a backbone first.")
    if backbone in _user_models and not random_weights:
        return _user_models[backbone]
    if backbone not in {spec.name for spec in backbone_specs()}:
        # Only what the picker lists: any other timm name would let a remote user load arbitrary (huge) models.
        raise ValueError(f"Unknown backbone {backbone!r}: this app serves only the backbones its picker lists.")
    spec = spec_of(backbone)
    # Hub weights not yet cached are downloaded by FaceQualityModel on first use (huggingface_hub's progress bars,
    # which the calling handler's gr.Progress(track_tqdm=True) shows), then cached for every later run.
    if not random_weights and not weights_available(spec) and not downloadable(spec):
        raise BackboneNotAvailable(f"{missing_weights_sentence(spec)} Or tick '{RANDOM_LABEL}' at the top to see the "
                                   f"mechanics (that score means nothing about face quality).")
    return FaceQualityModel(backbone, random_init=bool(random_weights), precision=_launch["precision"])


def missing_weights_sentence(spec: BackboneSpec) -> str:
    """What is wrong first (no weights here, and why none can be downloaded), then how to get them."""
    if spec.weights.kind == "none":
        return f"{spec.name} has no trained weights."
    reason = offline_reason()
    why = f", and none can be downloaded now: {reason}" if reason and spec.weights.kind in ("hf", "timm") else ""
    return f"No trained weights for {spec.name} on this machine{why}. {how_to_get(spec)}"


def backbone_status(backbone: str, random_weights: bool) -> str:
    """The sentence shown under the backbone picker: what the weights are and what the score can mean."""
    if backbone in _user_models and not random_weights:
        model = _user_models[backbone]
        return f"Your weights for **{model.spec.name}**: `{model.backbone.weights_name}` (sha256 " \
               f"{model.backbone.weights_sha256[:12]}...)."
    spec = spec_of(backbone)
    lines = []
    if random_weights:
        lines.append(f"**Random weights**: {spec.name} runs with seeded random weights. This shows the mechanics only; "
                     "the score says nothing about face quality.")
    elif spec.weights.kind == "none":
        lines.append(f"**{spec.name} has no trained weights.** Tick '{RANDOM_LABEL}' to run it.")
    elif not weights_available(spec) and downloadable(spec):
        size = f"about {spec.weights.size_mb:.0f} MB" if spec.weights.size_mb else "size unknown"
        lines.append(f"**{spec.name}**: face-trained weights from the Hugging Face Hub ({spec.weights.location}, "
                     f"{size}), downloaded on first use with a progress bar, then cached. Licence: {spec.weights.licence}.")
    elif not weights_available(spec):
        lines.append(f"**Weights not installed.** {missing_weights_sentence(spec)} Or tick '{RANDOM_LABEL}'.")
    else:
        lines.append(f"Trained weights installed for **{spec.name}**.")
    if not spec.face_trained:
        lines.append("Not trained for face recognition: its score is not a face-quality measure.")
    return " ".join(lines)


@user_errors
def after_score(backbone: str, random_weights: bool = False):
    """After a request that may have downloaded weights: the status line, and the picker's labels (which said
    "downloaded on first use" until now). The picker's value is kept; only user input re-runs anything."""
    return backbone_status(backbone, random_weights), gr.update(choices=backbone_choices(), value=backbone)


@user_errors
def backbone_info(backbone: str, random_weights: bool = False):
    """On a backbone change: its status line, block range, heads, token options and card (no forward pass)."""
    spec = spec_of(backbone)
    heads = [(f"head {h}", h) for h in range(spec.num_heads)]
    views = [("mean of selected heads", MEAN_VIEW)] + heads
    has_prefix = spec.num_prefix_tokens > 0
    return (
        backbone_status(backbone, random_weights),
        gr.update(minimum=0, maximum=spec.depth - 1, value=spec.depth - 1, step=1),
        gr.update(choices=heads, value=[]),
        gr.update(choices=views, value=MEAN_VIEW),
        gr.update(value="all", interactive=has_prefix,
                  info=f"{spec.num_prefix_tokens} prefix token(s) (CLS/registers)" if has_prefix
                  else "this model has no prefix tokens: all = patch only"),
        backbone_card(backbone),
    )


def weights_text(result: QualityResult) -> str:
    """The weights by file name and hash (never the server's own path), and the precision when it is not fp32."""
    text = f"{result.weights}, sha256 {result.weights_sha256[:12]}" if result.weights_sha256 else result.weights
    return text if result.precision == "fp32" else f"{text}, {result.precision}"


def weights_warning(model: FaceQualityModel, random_weights: bool) -> str:
    if random_weights:
        return ("\n\n> **Random weights: mechanics demo only.** This number is not a face-quality score; install a "
                "face-trained backbone for that.")
    if not model.spec.face_trained:
        return ("\n\n> **Not a face-recognition model.** On a general ViT this number is not face quality; use it "
                "to compare and teach only.")
    return ""


def backbone_card(backbone: str) -> str:
    spec = spec_of(backbone)
    rows = "\n".join(f"| {key} | {_cell(value)} |" for key, value in spec.card().items())
    available = "installed" if has_weights(spec) else (
        "downloaded on first use" if downloadable(spec) else f"not installed. {how_to_get(spec)}")
    return (f"### Backbone card: {spec.name}\n\n| field | value |\n|---|---|\n{rows}\n| trained weights | "
            f"{_cell(available)} |\n")


def _cell(value: object) -> str:
    """A Markdown table cell: a ``|`` (as in ``train prepare|run|export``) would end the cell, so it is escaped."""
    return str(value).replace("|", "\\|").replace("\n", " ")
