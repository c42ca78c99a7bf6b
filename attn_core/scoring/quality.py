"""The method's score and maps (docs/DESIGN.md 1), from the captured queries and keys of one block.

score = mean over heads h, query rows i and key columns j of A[h] = Q_h K_h^T * d^-0.5. Because the mean over i
is linear, mean_i A[h, i, j] = (mean_i q_i) . k_j * d^-0.5: the per-key map costs O(N d) per head instead of
O(N^2 d), and equals the explicit mean up to float rounding (tests compare against the explicit product).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch

from attn_core.scoring.capture import AttentionCapture, QueryKey, run_to_qkv
from attn_core.zoo.backbone import Backbone

if TYPE_CHECKING:
    from attn_core.scoring.reference import Reference, Standing

Aggregation = Literal["mean", "median", "max", "inv_std"]
TokenMode = Literal["all", "patch"]
AGGREGATIONS: tuple[str, ...] = ("mean", "median", "max", "inv_std")
TOKEN_MODES: tuple[str, ...] = ("all", "patch")


@dataclass(frozen=True)
class AttentionStats:
    """Per-image reductions of the pre-softmax logits of one block, enough to re-summarise without a forward pass.

    key_means[mode][h, j] = mean over query rows i (all tokens, or patch tokens only) of A[h, i, j], for every key j.
    """

    key_means_all: np.ndarray  # (H, N) float64
    key_means_patch: np.ndarray  # (H, N) float64
    num_prefix_tokens: int
    grid: tuple[int, int]
    backbone: str
    block: int
    weights: str = ""  # the weights' file name, or "random (seed N)"
    weights_sha256: str = ""  # content hash of that file ("" for random weights)
    patch_size: int = 0  # pixels per patch on the model input (9-px grids cover 108 of 112): for rendering maps
    input_size: int = 112
    precision: str = "fp32"  # the blocks' arithmetic: fp32 (the reference), or bf16/fp16 autocast


@dataclass(frozen=True)
class QualityResult:
    """Score, per-head scores and maps of one face, with what produced them."""

    score: float
    head_scores: np.ndarray  # (H,) every head's own score, whatever the selection
    patch_map: np.ndarray  # (gh, gw): mean over the selected heads of the attention each patch receives
    head_maps: np.ndarray  # (H, gh, gw)
    prefix_attention: np.ndarray | None  # (H, P) attention received by prefix tokens (CLS, registers), if any
    heads: tuple[int, ...]
    aggregation: str
    tokens: str
    backbone: str
    block: int
    stats: AttentionStats = field(repr=False)
    face: object | None = field(default=None, repr=False)  # attn_core.faces.AlignedFace
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def weights(self) -> str:
        """The weights' file name (or "random (seed N)") that produced this result."""
        return self.stats.weights

    @property
    def weights_sha256(self) -> str:
        return self.stats.weights_sha256

    @property
    def precision(self) -> str:
        """The arithmetic of the blocks that produced this result: "fp32" (the reference), "bf16" or "fp16"."""
        return self.stats.precision

    @property
    def map_is_exact(self) -> bool:
        """Whether mean(patch_map) == score exactly (mean aggregation over patch-only or prefix-free tokens)."""
        return self.aggregation == "mean" and (self.tokens == "patch" or self.stats.num_prefix_tokens == 0)

    def with_options(self, heads: Sequence[int] | None = None, aggregation: str = "mean", tokens: str = "all") -> QualityResult:
        """Re-summarise with other heads / aggregation / token mode, from the cached statistics (no forward pass)."""
        result = summarize(self.stats, heads=heads, aggregation=aggregation, tokens=tokens)
        return replace(result, face=self.face, embedding=self.embedding)

    def standing(self, reference: Reference) -> Standing:
        """Where this score stands against a reference set (``attn_core.scoring.load_reference``): percentile,
        0-100 value and pass/fail. A reference of other weights or settings raises ``ReferenceError``."""
        return reference.standing(self)

    def percentile(self, reference: Reference) -> float:
        """0-100: the share of the reference's faces that score strictly lower than this one."""
        return reference.standing(self).percentile


def _check_options(num_heads: int, heads: Sequence[int] | None, aggregation: str, tokens: str, prefix: int) -> tuple[int, ...]:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}.")
    if tokens not in TOKEN_MODES:
        raise ValueError(f"Unknown token mode {tokens!r}; choose 'all' (the paper's definition) or 'patch'.")
    selected = tuple(range(num_heads)) if heads is None or len(heads) == 0 else tuple(int(h) for h in heads)
    bad = [h for h in selected if not 0 <= h < num_heads]
    if bad:
        raise ValueError(f"Head(s) {bad} do not exist: this block has heads 0..{num_heads - 1}.")
    if len(set(selected)) != len(selected):
        raise ValueError(f"Heads {list(selected)} contain duplicates.")
    if aggregation == "inv_std" and len(selected) < 2:
        raise ValueError("Aggregation 'inv_std' (1 / std of the head scores) needs at least two heads.")
    return selected


def summarize(
    stats: AttentionStats,
    heads: Sequence[int] | None = None,
    aggregation: str = "mean",
    tokens: str = "all",
) -> QualityResult:
    """Score and maps from cached statistics.

    The score aggregates per-head scores over the selected heads: mean (the paper's default), median, max, or
    inv_std = 1 / std over heads (the paper's ablation options). The patch map is always the mean over the
    selected heads, so with the mean aggregation it is an exact decomposition of the score.
    """
    prefix = stats.num_prefix_tokens
    num_heads = stats.key_means_all.shape[0]
    selected = _check_options(num_heads, heads, aggregation, tokens, prefix)
    if tokens == "all":
        key_means = stats.key_means_all
        head_scores = key_means.mean(axis=1)  # mean over every key column j of mean over every query row i
    else:
        key_means = stats.key_means_patch
        head_scores = key_means[:, prefix:].mean(axis=1)
    chosen = head_scores[list(selected)]
    if aggregation == "mean":
        score = chosen.mean()
    elif aggregation == "median":
        score = np.median(chosen)
    elif aggregation == "max":
        score = chosen.max()
    else:
        score = 1.0 / max(chosen.std(), 1e-12)
    head_maps = key_means[:, prefix:].reshape(num_heads, *stats.grid)
    return QualityResult(
        score=float(score),
        head_scores=head_scores,
        patch_map=head_maps[list(selected)].mean(axis=0),
        head_maps=head_maps,
        prefix_attention=key_means[:, :prefix] if prefix else None,
        heads=selected,
        aggregation=aggregation,
        tokens=tokens,
        backbone=stats.backbone,
        block=stats.block,
        stats=stats,
    )


def key_means(query_key: QueryKey, num_prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """mean_i A[h, i, j] for all query rows and for patch query rows only: two (B, H, N) tensors.

    The product runs image by image, each on contiguous (H, 2, d) x (H, d, N) operands: one batched matmul over B
    images picks its kernel by B, which moved key means by ~1.5e-7 between a face alone and in a batch.
    """
    q, k = query_key.q, query_key.k
    mean_q_all = q.mean(dim=2, keepdim=True)
    mean_q_patch = q[:, :, num_prefix_tokens:].mean(dim=2, keepdim=True) if num_prefix_tokens else mean_q_all
    both_q = torch.cat([mean_q_all, mean_q_patch], dim=2)  # (B, H, 2, d)
    both = torch.stack([both_q[b].contiguous() @ k[b].transpose(-2, -1).contiguous() for b in range(q.shape[0])])
    both = both * query_key.scale  # (B, H, 2, N)
    return both[:, :, 0], both[:, :, 1]


# Every forward runs the same number of images, whatever the batch, so that the same kernels see every face and a
# face's score does not depend on which faces share its batch (GEMM kernels pick their blocking, and so their
# rounding, by the row count; at bf16 that moved scores by up to 1.8e-4). On CPU one image per forward: it costs
# little (benchmarks/RESULTS.md) and never computes padding. On accelerators a fixed chunk, the last one padded with
# blank images whose results are dropped.
CPU_FORWARD_IMAGES = 1
ACCELERATOR_FORWARD_IMAGES = 32
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
PRECISION_CHOICES: tuple[str, ...] = ("auto", *PRECISIONS)  # what --precision accepts
LOW_PRECISION_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def micro_batch_size(backbone: Backbone, batch: int | None = None) -> int:
    """Images per forward: a fixed number per device type, the same for every batch (``batch`` is not used)."""
    return CPU_FORWARD_IMAGES if backbone.device.type == "cpu" else ACCELERATOR_FORWARD_IMAGES


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles or AVX512-BF16), per torch's own probe."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def auto_precision(device: torch.device | str) -> str:
    """The fast precision that keeps the ranking (Spearman(bf16, fp32) >= 0.999, tests/test_precision.py): bf16 on
    CPUs with bf16 matrix units and on GPUs that support it, fp16 on older GPUs, else fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def resolve_precision(precision: str | None, device: torch.device | str) -> str:
    """``precision`` as one of PRECISIONS: None/"" -> fp32 (the reference), "auto" -> :func:`auto_precision`."""
    if precision in (None, ""):
        return "fp32"
    if precision == "auto":
        return auto_precision(device)
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}.")
    return precision


def _autocast(backbone: Backbone, precision: str):
    """The blocks under bf16/fp16 autocast; fp32 runs untouched (the reference path)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(backbone.device.type, dtype=LOW_PRECISION_DTYPES[precision])


def pad_chunk(chunk: torch.Tensor, size: int) -> torch.Tensor:
    """``chunk`` padded with blank images to ``size`` images, so that every forward has the same shape."""
    if chunk.shape[0] == size:
        return chunk
    return torch.cat([chunk, chunk.new_zeros((size - chunk.shape[0], *chunk.shape[1:]))])


def attention_stats(
    backbone: Backbone,
    images: torch.Tensor,
    block: int = -1,
    with_embedding: bool = False,
    *,
    precision: str = "fp32",
    compile: bool = False,
) -> tuple[list[AttentionStats], np.ndarray | None]:
    """One forward pass over a batch: stop after ``block``'s q/k unless the embedding is also wanted.

    ``precision`` "bf16"/"fp16" runs the blocks under autocast; the captured q/k (outputs of a low-precision matmul)
    are cast to fp32, and their means and the product that makes the score are fp32. "auto": :func:`auto_precision`.
    ``compile`` runs the blocks before ``block`` through ``torch.compile``. Every forward holds
    :func:`micro_batch_size` images (the last chunk padded), so a face's statistics are the same bits alone or in
    any batch, with any neighbours.
    """
    index = backbone.block_index(block)
    spec = backbone.spec
    precision = resolve_precision(precision, backbone.device)
    step = micro_batch_size(backbone)
    means_all, means_patch, embeddings = [], [], []
    # The score alone needs no hook (run_to_qkv returns q and k), so it takes no lock: frames of a live stream are
    # scored side by side. The embedding is a full forward with q/k captured on the way, one capture at a time.
    hooked = AttentionCapture(backbone.blocks, [index]) if with_embedding else None
    with backbone.lock if hooked else contextlib.nullcontext(), torch.inference_mode(), \
            hooked or contextlib.nullcontext():
        for start in range(0, images.shape[0], step):
            chunk = pad_chunk(images[start : start + step], step)
            with _autocast(backbone, precision):
                if hooked:
                    embeddings.append(backbone.embedding(chunk))
                    query_key = hooked.query_key.pop(index)
                else:
                    query_key = run_to_qkv(backbone, chunk, index, compile=compile)
            chunk_all, chunk_patch = key_means(query_key, spec.num_prefix_tokens)
            means_all.append(chunk_all)
            means_patch.append(chunk_patch)
    count = images.shape[0]  # the padding's rows are dropped here
    means_all_np = torch.cat(means_all)[:count].double().cpu().numpy()
    means_patch_np = torch.cat(means_patch)[:count].double().cpu().numpy()
    stats = [
        AttentionStats(means_all_np[b], means_patch_np[b], spec.num_prefix_tokens, spec.grid, spec.name, index,
                       backbone.weights_name, backbone.weights_sha256, spec.patch_size, spec.input_size,
                       precision)
        for b in range(images.shape[0])
    ]
    return stats, torch.cat(embeddings)[:count].float().cpu().numpy() if with_embedding else None


def score_faces(
    backbone: Backbone,
    aligned: np.ndarray | Sequence[np.ndarray],
    *,
    block: int = -1,
    heads: Sequence[int] | None = None,
    aggregation: str = "mean",
    tokens: str = "all",
    with_embedding: bool = False,
    batch_size: int = 64,
    precision: str = "fp32",
    compile: bool = False,
) -> list[QualityResult]:
    """Score aligned RGB uint8 crops (the one scoring path used by the API, CLI and app)."""
    faces = np.stack(list(aligned)) if not isinstance(aligned, np.ndarray) else aligned
    if faces.ndim == 3:
        faces = faces[None]
    results: list[QualityResult] = []
    for start in range(0, len(faces), batch_size):
        batch = backbone.preprocess(faces[start : start + batch_size])
        stats, embeddings = attention_stats(backbone, batch, block, with_embedding, precision=precision,
                                            compile=compile)
        for offset, image_stats in enumerate(stats):
            result = summarize(image_stats, heads=heads, aggregation=aggregation, tokens=tokens)
            if embeddings is not None:
                result = replace(result, embedding=embeddings[offset])
            results.append(result)
    return results
