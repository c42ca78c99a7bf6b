"""Independent reference computations for tests: plain tensor algebra from raw weights, no attn_core code."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def preprocess(faces: np.ndarray, size: int, mean, std) -> torch.Tensor:
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def face_vit_logits(state: dict, images: torch.Tensor, num_heads: int, block: int) -> torch.Tensor:
    """Pre-softmax logits (B, H, N, N) of ``block`` of a DESIGN 2.1 face ViT, by explicit matrix products."""
    dim = state["patch_embed.proj.weight"].shape[0]
    x = _patch_embed(state, images) + state["pos_embed"]
    head_dim = dim // num_heads
    for i in range(block + 1):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (dim,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-5)
        q, k, v = _heads(h @ state[p + "attn.qkv.weight"].T, num_heads)
        logits = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        if i == block:
            return logits
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + out @ state[p + "attn.proj.weight"].T + state[p + "attn.proj.bias"]
        h = F.layer_norm(x, (dim,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-5)
        h = torch.clamp(h @ state[p + "mlp.fc1.weight"].T + state[p + "mlp.fc1.bias"], 0, 6)
        x = x + h @ state[p + "mlp.fc2.weight"].T + state[p + "mlp.fc2.bias"]
    raise AssertionError("unreachable")


def timm_logits(model, images: torch.Tensor, block: int) -> torch.Tensor:
    """Logits of a timm ViT block: earlier blocks through timm itself, then norm1/qkv/q_norm/k_norm by hand."""
    with torch.no_grad():
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        for earlier in model.blocks[:block]:
            x = earlier(x)
        blk = model.blocks[block]
        h = F.layer_norm(x, blk.norm1.normalized_shape, blk.norm1.weight, blk.norm1.bias, eps=blk.norm1.eps)
        qkv = h @ blk.attn.qkv.weight.T
        if blk.attn.qkv.bias is not None:
            qkv = qkv + blk.attn.qkv.bias
        heads = blk.attn.num_heads
        dim = qkv.shape[-1] // 3
        q, k, _ = (t.reshape(t.shape[0], -1, heads, dim // heads).transpose(1, 2) for t in qkv.split(dim, dim=-1))
        q, k = blk.attn.q_norm(q), blk.attn.k_norm(k)
        return (q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5


def expected_from_logits(logits: torch.Tensor, prefix: int, grid: tuple[int, int], tokens: str = "all"):
    """score, per-head scores and maps (H, gh, gw) from full logits, by plain means."""
    if tokens == "patch":
        logits = logits[:, :, prefix:, prefix:]
        maps = logits.mean(dim=2)
    else:
        maps = logits.mean(dim=2)[:, :, prefix:]
    score = logits.mean(dim=(1, 2, 3))
    head_scores = logits.mean(dim=(2, 3))
    return score.double().numpy(), head_scores.double().numpy(), maps.reshape(maps.shape[0], maps.shape[1], *grid).double().numpy()


def dinov2_logits(state: dict, images: torch.Tensor, num_heads: int, block: int) -> torch.Tensor:
    """Pre-softmax logits (B, H, N, N) of ``block`` of a DINOv2 ViT (class token first, layer scale, GELU MLP,
    LayerNorm eps 1e-6, qkv with bias), by explicit matrix products from a state dict at the input's grid."""
    dim = state["patch_embed.proj.weight"].shape[0]
    x = _patch_embed(state, images)
    x = torch.cat([state["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + state["pos_embed"]
    head_dim = dim // num_heads
    for i in range(block + 1):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (dim,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        q, k, v = _heads(h @ state[p + "attn.qkv.weight"].T + state[p + "attn.qkv.bias"], num_heads)
        logits = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        if i == block:
            return logits
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + state[p + "ls1.gamma"] * (out @ state[p + "attn.proj.weight"].T + state[p + "attn.proj.bias"])
        h = F.layer_norm(x, (dim,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(h @ state[p + "mlp.fc1.weight"].T + state[p + "mlp.fc1.bias"])
        x = x + state[p + "ls2.gamma"] * (h @ state[p + "mlp.fc2.weight"].T + state[p + "mlp.fc2.bias"])
    raise ValueError(f"block {block} out of range")


def _patch_embed(state: dict, images: torch.Tensor) -> torch.Tensor:
    """The patch embedding as one matrix product over unfolded patches of the covered top-left grid: (B, g*g, dim)."""
    w = state["patch_embed.proj.weight"]
    dim, _, patch, _ = w.shape
    grid = images.shape[-1] // patch
    crop = images[:, :, : grid * patch, : grid * patch]
    patches = crop.unfold(2, patch, patch).unfold(3, patch, patch)  # B,3,g,g,p,p
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(images.shape[0], grid * grid, -1)
    return patches @ w.reshape(dim, -1).T + state["patch_embed.proj.bias"]


def _heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fused qkv projection (B, N, 3*dim) split into q, k, v of shape (B, H, N, dim/H)."""
    dim = qkv.shape[-1] // 3
    return tuple(t.reshape(t.shape[0], -1, num_heads, dim // num_heads).transpose(1, 2) for t in qkv.split(dim, -1))
