"""One frozen description per backbone: everything else (preprocessing, capture, rendering, UI) reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Family = Literal["face_vit", "timm"]
WeightsKind = Literal["bundled", "hf", "manual", "timm", "package", "none"]  # package: a file inside a pip package


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's trained weights come from and how a user gets them."""

    kind: WeightsKind
    location: str = ""  # asset file name, "owner/repo" on the HF Hub, a URL, or a timm pretrained tag
    filename: str = ""  # file inside an HF repo
    how_to_get: str = ""  # plain sentence shown when the weights are missing
    licence: str = ""
    size_mb: float = 0.0  # download size, shown before a first download (0: unknown)
    fallback_filename: str = ""  # second file of the repo to try when ``filename`` is not there


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture, preprocessing and provenance of one registered backbone."""

    name: str
    family: Family
    patch_size: int
    grid: tuple[int, int]
    embed_dim: int
    depth: int
    num_heads: int
    input_size: int = 112
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    color_order: Literal["RGB", "BGR"] = "RGB"
    num_prefix_tokens: int = 0
    mlp_ratio: float = 4.0
    out_dim: int = 512
    gated: bool = False  # TransFace: SE-style gate over the flattened patch features
    timm_name: str = ""  # the timm architecture, for family == "timm"
    timm_kwargs: tuple[tuple[str, object], ...] = ()  # overrides passed to timm.create_model
    weights: WeightsSource = field(default_factory=lambda: WeightsSource("none"))
    training_data: str = ""
    description: str = ""
    face_trained: bool = False  # trained for face recognition: only then does the score mean face quality

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.num_patches

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def covered_size(self) -> tuple[int, int]:
        """Pixels of the model input the patch grid covers (108x108 for 9-pixel patches on 112)."""
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size

    def card(self) -> dict[str, str]:
        """Human-readable facts for the UI and ``attn-fiqa backbones``."""
        return {
            "name": self.name,
            "family": self.family,
            "input": f"{self.input_size}x{self.input_size} {self.color_order}",
            "patch grid": f"{self.grid[0]}x{self.grid[1]} of {self.patch_size}px"
            + (f" (covers {self.covered_size[0]}x{self.covered_size[1]})" if self.covered_size[0] != self.input_size else ""),
            "prefix tokens": str(self.num_prefix_tokens),
            "depth / heads / dim": f"{self.depth} / {self.num_heads} / {self.embed_dim}",
            "face-trained": "yes" if self.face_trained else "no (general ViT: the score is not a face-quality measure)",
            "training data": self.training_data or "n/a",
            "weights": self.weights.location or self.weights.kind,
            "licence": self.weights.licence or "n/a",
            "description": self.description,
        }
