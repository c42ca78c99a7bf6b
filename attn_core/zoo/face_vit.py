"""The face-recognition ViT of insightface arcface_torch / CVLFace / TransFace (docs/DESIGN.md 2.1), written from its definition.

State-dict keys match the public checkpoints, so their weights load strictly into this module.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # A 9-pixel patch on 112 pixels gives a 12x12 grid; the conv silently drops the last 4 rows/columns.
        return self.proj(images).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU6(inplace=True)  # in place: one fewer (tokens x hidden) buffer per block
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(tokens)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        # Same names as timm's Attention, so one capture path serves both families.
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, num_tokens, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # insightface computes the product in fp32, also under mixed precision: autocast would lower SDPA to
        # fp16/bf16, so it is switched off here. SDPA in fp32 equals the explicit softmax(QK^T)V and is faster.
        with torch.autocast(tokens.device.type, enabled=False):
            out = nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(tokens.dtype)
        return self.proj(out.transpose(1, 2).reshape(batch, num_tokens, dim))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attn(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


def se_gate(num_patches: int, embed_dim: int) -> nn.Sequential:
    """TransFace's squeeze-excitation gate: one sigmoid weight per patch from the flattened normed tokens.

    Keys ``senet.0.weight`` and ``senet.2.weight`` as in TransFace checkpoints.
    """
    return nn.Sequential(
        nn.Linear(embed_dim * num_patches, num_patches, bias=False),
        nn.ReLU(),
        nn.Linear(num_patches, num_patches, bias=False),
        nn.Sigmoid(),
    )


class FaceViT(nn.Module):
    """Pre-LN ViT with no class token and a flatten-all-tokens embedding head (docs/DESIGN.md 2.1)."""

    num_prefix_tokens = 0

    def __init__(
        self,
        img_size: int = 112,
        patch_size: int = 9,
        embed_dim: int = 512,
        depth: int = 12,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        out_dim: int = 512,
        gated: bool = False,
        mask_token: bool = False,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))  # training-only patch dropping
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.senet = se_gate(num_patches, embed_dim) if gated else None
        self.feature = nn.Sequential(
            nn.Linear(num_patches * embed_dim, embed_dim, bias=False),
            nn.BatchNorm1d(embed_dim, eps=2e-5),
            nn.Linear(embed_dim, out_dim, bias=False),
            nn.BatchNorm1d(out_dim, eps=2e-5),
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def embed_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with position embedding: the input of block 0."""
        return self.patch_embed(images) + self.pos_embed

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final norm, optional gate, flatten, embedding MLP (the recognition feature, not yet L2-normalised)."""
        tokens = self.norm(tokens)
        flat = tokens.reshape(tokens.shape[0], -1)
        if self.senet is not None:
            flat = (self.senet(flat).unsqueeze(-1) * tokens).reshape(tokens.shape[0], -1)
        return self.feature(flat)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.embed_tokens(images)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(tokens)
