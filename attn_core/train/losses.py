"""Margin-based softmax heads for face recognition: CosFace, ArcFace and AdaFace (logits for cross-entropy).

Each head holds one learnable unit-norm class centre per identity; ``forward(embeddings, labels)`` returns scaled
logits with the margin applied to the true class only, so ``F.cross_entropy(logits, labels)`` is the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("cosface", "arcface", "adaface")


class MarginHead(nn.Module):
    """Class centres plus one of the three margin rules.

    Args:
        loss: ``cosface`` (cos - m), ``arcface`` (cos(theta + m)) or ``adaface`` (angular and additive margins
            scaled by the batch-normalised feature norm, so low-norm, i.e. hard / low-quality, faces get a smaller
            margin; Kim et al. 2022).
        scale: logit scale s. margin: m. h: AdaFace's concentration of the norm statistic (0.333 in the paper).
    """

    def __init__(self, embed_dim: int, num_classes: int, loss: str = "cosface", scale: float = 64.0,
                 margin: float | None = None, h: float = 0.333, momentum: float = 0.01) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if num_classes < 2:
            raise ValueError(f"a margin loss needs at least 2 identities, got {num_classes}")
        self.loss, self.scale, self.h, self.momentum = loss, float(scale), float(h), float(momentum)
        self.margin = float(margin if margin is not None else {"cosface": 0.35, "arcface": 0.5, "adaface": 0.4}[loss])
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.normal_(self.weight, std=0.01)
        # AdaFace's running mean / std of the feature norm (buffers: saved in checkpoints, not trained).
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1)).clamp(-1 + 1e-7, 1 - 1e-7)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosines(embeddings)
        true = F.one_hot(labels, cosine.shape[1]).bool()
        if self.loss == "cosface":
            adjusted = torch.where(true, cosine - self.margin, cosine)
        elif self.loss == "arcface":
            theta = torch.acos(cosine)
            # Beyond pi - m, cos(theta + m) would stop decreasing; keep the CosFace-like tail there (insightface).
            with_margin = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin),
                                      cosine - self.margin * math.sin(self.margin))
            adjusted = torch.where(true, with_margin, cosine)
        else:
            adjusted = self._adaface(embeddings, cosine, true)
        return adjusted * self.scale

    def _adaface(self, embeddings: torch.Tensor, cosine: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        norms = embeddings.float().norm(dim=1).clamp(0.001, 100).detach()
        if self.training:
            with torch.no_grad():
                self.norm_mean.mul_(1 - self.momentum).add_(self.momentum * norms.mean())
                self.norm_std.mul_(1 - self.momentum).add_(self.momentum * norms.std(unbiased=len(norms) > 1).nan_to_num(0.0))
        quality = ((norms - self.norm_mean) / (self.norm_std + 1e-3) * self.h).clamp(-1, 1).unsqueeze(1)
        angular = -self.margin * quality  # g_angle
        additive = self.margin * quality + self.margin  # g_add
        theta = torch.acos(cosine)
        theta_m = (theta + torch.where(true, angular, torch.zeros_like(cosine))).clamp(1e-3, math.pi - 1e-3)
        return torch.cos(theta_m) - torch.where(true, additive, torch.zeros_like(cosine))
