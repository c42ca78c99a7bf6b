"""The attention lab's numbers (docs/DESIGN.md 1b): q and k of every block from one forward pass, and every
teaching view derived from them without running the model again.

Token order is the model's own: prefix tokens (CLS, registers) first, then the patch grid row by row. A *head*
argument is an int, a sequence of heads (their mean) or None (the mean of all heads). Logit views are linear in the
heads, so the mean of heads' logits is exact; the softmax of a head mean is the mean of the heads' softmax rows
(each head normalises its own row, as the model does), which still sums to 1.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from attn_core.faces import AlignedFace, ImageLike, extract_faces
from attn_core.scoring import AttentionCapture, FaceQualityModel, resolve_precision
from attn_core.scoring.capture import run_to_qkv
from attn_core.scoring.quality import LOW_PRECISION_DTYPES
from attn_core.zoo import Backbone

HeadChoice = int | Sequence[int] | None
MATRICES_KEPT = 2  # per lab: (N, N) float64 each, 0.3 MB for N = 196


@dataclass(frozen=True)
class HeadStats:
    """Per-block, per-head statistics of the attention, each (depth, H).

    entropy: mean over all query rows of -sum_j P log P (nats); entropy_fraction: that over ln N (1 = uniform).
    distance_px: mean over patch query rows of sum_j P[i, j] ||c_i - c_j|| over patch keys j, in pixels of the model
    input (for 112-px face ViTs: the aligned crop). Prefix tokens have no position: prefix query rows are left out of
    the mean and the probability a patch gives to prefix keys adds no distance. logit_mean / logit_std: over the
    head's whole N x N logit matrix (logit_mean is the head's score).
    """

    entropy: np.ndarray
    entropy_fraction: np.ndarray
    distance_px: np.ndarray
    logit_mean: np.ndarray
    logit_std: np.ndarray


@dataclass(frozen=True)
class AttentionLab:
    """q and k of every block of one face, (depth, H, N, head_dim) float32, and the views built from them."""

    queries: np.ndarray
    keys: np.ndarray
    scale: float
    num_prefix_tokens: int
    grid: tuple[int, int]
    patch_size: int
    input_size: int
    backbone: str
    weights: str
    precision: str
    face: AlignedFace | None = field(default=None, repr=False)
    # The last few (N, N) matrices asked for: a click redraws the matrix of the same block and head with a new row
    # and column outlined, and recomputing it is most of a click's arithmetic (H x N x N x head_dim products).
    _matrices: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _matrices_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    # -- shape and indexing -------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self.queries.shape[0]

    @property
    def num_heads(self) -> int:
        return self.queries.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.queries.shape[2]

    @property
    def head_dim(self) -> int:
        return self.queries.shape[3]

    @property
    def nbytes(self) -> int:
        return self.queries.nbytes + self.keys.nbytes + MATRICES_KEPT * self.num_tokens ** 2 * 8

    def block_index(self, block: int) -> int:
        if not -self.depth <= block < self.depth:
            raise ValueError(f"Block {block} does not exist: {self.backbone} has blocks 0..{self.depth - 1} "
                             "(or -1 for the last).")
        return block % self.depth

    def heads_of(self, head: HeadChoice) -> list[int]:
        chosen = list(range(self.num_heads)) if head is None else [int(head)] if np.ndim(head) == 0 else \
            [int(h) for h in head]
        bad = [h for h in chosen if not 0 <= h < self.num_heads]
        if bad or not chosen:
            raise ValueError(f"Head(s) {bad or '[]'} do not exist: this model has heads 0..{self.num_heads - 1}.")
        return chosen

    def token_of_patch(self, row: int, col: int) -> int:
        """Token index of patch (row, col) of the grid (0-based), after the prefix tokens."""
        rows, cols = self.grid
        if not (0 <= row < rows and 0 <= col < cols):
            raise ValueError(f"Patch ({row}, {col}) is outside the {rows}x{cols} patch grid (rows and columns "
                             f"0..{rows - 1} and 0..{cols - 1}).")
        return self.num_prefix_tokens + row * cols + col

    def patch_of_token(self, token: int) -> tuple[int, int] | None:
        """(row, col) of a patch token; None for a prefix token."""
        self._check_token(token)
        if token < self.num_prefix_tokens:
            return None
        return divmod(token - self.num_prefix_tokens, self.grid[1])

    def _check_token(self, token: int) -> int:
        if not 0 <= token < self.num_tokens:
            raise ValueError(f"Token {token} does not exist: this model has tokens 0..{self.num_tokens - 1}.")
        return int(token)

    @functools.cached_property
    def patch_centres(self) -> np.ndarray:
        """(num_patches, 2) (x, y) centre of each patch on the model input, in pixels; a 9-px grid of 12x12 covers
        the top-left 108x108 of 112, so its centres run from 4.5 to 103.5."""
        rows, cols = self.grid
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        return np.stack([(xs.ravel() + 0.5) * self.patch_size, (ys.ravel() + 0.5) * self.patch_size], axis=1)

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """The patch part of a per-token vector (..., N) reshaped to (..., rows, cols); prefix tokens dropped."""
        return np.asarray(values)[..., self.num_prefix_tokens:].reshape(*np.shape(values)[:-1], *self.grid)

    # -- views --------------------------------------------------------------------------------------------------
    def _qk(self, block: int, heads: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """q and k of ``block`` (only ``heads``, if given) in float64: the views' arithmetic is float64 on the
        captured float32 q and k; slicing first keeps a click from converting every head of every block."""
        index = self.block_index(block)
        q, k = self.queries[index], self.keys[index]
        if heads is not None:
            q, k = q[heads], k[heads]
        return q.astype(np.float64), k.astype(np.float64)

    def head_logits(self, block: int) -> np.ndarray:
        """(H, N, N) pre-softmax logits L[h] = Q_h K_h^T * scale of every head of ``block``."""
        q, k = self._qk(block)
        # A contiguous K^T keeps numpy's stacked matmul on BLAS (a transposed view falls back to a slow loop).
        return q @ np.ascontiguousarray(k.transpose(0, 2, 1)) * self.scale

    def matrix(self, block: int, head: HeadChoice = None) -> np.ndarray:
        """(N, N) logits of a head (or the mean of the chosen heads): rows are queries, columns keys."""
        key = (self.block_index(block), tuple(self.heads_of(head)))
        found = self._matrices.get(key)
        if found is None:
            q, k = self._qk(block, list(key[1]))
            found = (q @ np.ascontiguousarray(k.transpose(0, 2, 1))).mean(axis=0) * self.scale
            found.setflags(write=False)  # shared by later calls: nobody may change it in place
            with self._matrices_lock:  # views of one photo run in parallel requests
                while len(self._matrices) >= MATRICES_KEPT:
                    self._matrices.pop(next(iter(self._matrices)))
                self._matrices[key] = found
        return found

    def head_softmax(self, block: int) -> np.ndarray:
        """(H, N, N) softmax over keys of every head's logit rows: each row sums to 1."""
        return _softmax_rows(self.head_logits(block))

    def _head_rows(self, block: int, head: HeadChoice, query: int) -> np.ndarray:
        q, k = self._qk(block, self.heads_of(head))
        return np.einsum("hd,hnd->hn", q[:, self._check_token(query)], k) * self.scale

    def head_rows(self, block: int, query: int) -> np.ndarray:
        """(H, N) every head's logit row of ``query``."""
        return self._head_rows(block, None, query)

    def head_received(self, block: int) -> np.ndarray:
        """(H, N) every head's received map m[h, j] = mean_i L[h, i, j]."""
        q, k = self._qk(block)
        return np.einsum("hd,hnd->hn", q.mean(axis=1), k) * self.scale

    def row(self, block: int, head: HeadChoice, query: int) -> np.ndarray:
        """(N,) logits of query token ``query`` over every key, q_i . k_j * scale."""
        return self._head_rows(block, head, query).mean(axis=0)

    def row_softmax(self, block: int, head: HeadChoice, query: int) -> np.ndarray:
        """(N,) softmax of that row (for several heads: the mean of their softmax rows)."""
        logits = self._head_rows(block, head, query)
        probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (probabilities / probabilities.sum(axis=-1, keepdims=True)).mean(axis=0)

    def column(self, block: int, head: HeadChoice, key: int) -> np.ndarray:
        """(N,) logits that key token ``key`` receives from every query."""
        q, k = self._qk(block, self.heads_of(head))
        return np.einsum("hnd,hd->hn", q, k[:, self._check_token(key)]).mean(axis=0) * self.scale

    def row_offsets(self, block: int, head: HeadChoice = None) -> np.ndarray:
        """(N,) o[i] = mean_j L[i, j] = q_i . (mean_j k_j) * scale: what softmax discards from each row."""
        q, k = self._qk(block, self.heads_of(head))
        return np.einsum("hnd,hd->hn", q, k.mean(axis=1)).mean(axis=0) * self.scale

    def head_row_offsets(self, block: int) -> np.ndarray:
        """(H, N) the row offsets of every head."""
        q, k = self._qk(block)
        return np.einsum("hnd,hd->hn", q, k.mean(axis=1)) * self.scale

    def received(self, block: int, head: HeadChoice = None) -> np.ndarray:
        """(N,) m_j = mean_i L[i, j] = (mean_i q_i) . k_j * scale: the per-patch map (prefix keys first)."""
        q, k = self._qk(block, self.heads_of(head))
        return np.einsum("hd,hnd->hn", q.mean(axis=1), k).mean(axis=0) * self.scale

    def qk_terms(self, block: int, head: int, query: int, key: int) -> np.ndarray:
        """(head_dim,) t_d = q_i[d] k_j[d] * scale of one head; they sum to L[head, query, key]."""
        if head is None or np.ndim(head) != 0:
            raise ValueError("The q.k terms are those of one head: give a single head number.")
        q, k = self._qk(block, self.heads_of(head))
        return q[0, self._check_token(query)] * k[0, self._check_token(key)] * self.scale

    def head_scores(self, block: int) -> np.ndarray:
        """(H,) each head's score at ``block``: the mean of its logit matrix (= mean of its row offsets)."""
        return self.head_row_offsets(block).mean(axis=1)

    def score_at(self, block: int, head: HeadChoice = None) -> float:
        """The method's score at ``block`` (tokens='all', mean over the chosen heads)."""
        return float(self.head_scores(block)[self.heads_of(head)].mean())

    @functools.cached_property
    def block_scores(self) -> np.ndarray:
        """(depth,) the score at every block; the last value is the method's score."""
        return np.array([self.score_at(b) for b in range(self.depth)])

    @property
    def score(self) -> float:
        return float(self.block_scores[-1])

    @functools.cached_property
    def head_stats(self) -> HeadStats:
        prefix = self.num_prefix_tokens
        centres = self.patch_centres
        distances = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)  # (P, P)
        stats = {name: np.zeros((self.depth, self.num_heads)) for name in
                 ("entropy", "distance_px", "logit_mean", "logit_std")}
        for b in range(self.depth):
            logits = self.head_logits(b)
            shifted = logits - logits.max(axis=-1, keepdims=True)
            exponentials = np.exp(shifted)
            totals = exponentials.sum(axis=-1, keepdims=True)
            probabilities = exponentials / totals
            # -sum_j P log P with log P = shifted - log(total): one exp per entry, no log of tiny probabilities.
            stats["entropy"][b] = (np.log(totals[..., 0]) - np.einsum("hij,hij->hi", probabilities, shifted)).mean(-1)
            patch_rows = probabilities[:, prefix:, prefix:]
            stats["distance_px"][b] = np.einsum("hij,ij->hi", patch_rows, distances).mean(axis=-1)
            stats["logit_mean"][b] = logits.mean(axis=(1, 2))
            stats["logit_std"][b] = logits.std(axis=(1, 2))
        return HeadStats(stats["entropy"], stats["entropy"] / np.log(self.num_tokens), stats["distance_px"],
                         stats["logit_mean"], stats["logit_std"])


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def capture_lab(model: FaceQualityModel | Backbone, image: ImageLike | AlignedFace, *,
                precision: str | None = None) -> AttentionLab:
    """One forward pass on a photo (largest face, detected and aligned), an aligned 112x112 crop or an
    :class:`AlignedFace`: q and k of every block, captured from their qkv projections (``scoring.capture``) through
    the one preprocessing path. ``precision`` defaults to the model's own (fp32 for a bare Backbone)."""
    backbone = model.backbone if isinstance(model, FaceQualityModel) else model
    if precision is None:
        precision = model.precision if isinstance(model, FaceQualityModel) else "fp32"
    precision = resolve_precision(precision, backbone.device)
    face = image if isinstance(image, AlignedFace) else extract_faces(image)[0]
    images = backbone.preprocess(np.array(face.aligned))  # a writable copy (decoded images may be read-only)
    depth = len(backbone.blocks)
    # fp32 runs untouched, as the scoring path's reference does; bf16/fp16 as its autocast.
    autocast = contextlib.nullcontext() if precision == "fp32" else \
        torch.autocast(backbone.device.type, dtype=LOW_PRECISION_DTYPES[precision])
    with backbone.lock, torch.inference_mode(), AttentionCapture(backbone.blocks, range(depth)) as capture:
        with autocast:
            run_to_qkv(backbone, images, depth - 1)
        captured = [capture.query_key.pop(b) for b in range(depth)]
    spec = backbone.spec
    queries = torch.stack([c.q[0] for c in captured]).float().cpu().numpy()
    keys = torch.stack([c.k[0] for c in captured]).float().cpu().numpy()
    return AttentionLab(queries, keys, captured[-1].scale, spec.num_prefix_tokens, tuple(spec.grid), spec.patch_size,
                        spec.input_size, spec.name, backbone.weights_name, precision, face)


def softmax_lesson(lab: AttentionLab, block: int = -1, head: HeadChoice = None) -> str:
    """The softmax lesson with this face's numbers: softmax drops each row's offset, and the score is their mean."""
    offsets = lab.row_offsets(block, head)
    softmax = lab.head_softmax(block)[lab.heads_of(head)]
    return (f"Softmax ignores a constant added to a row, so it discards each query's row offset (the mean of its "
            f"logits; here from {offsets.min():+.4f} to {offsets.max():+.4f}), and every softmax row sums to 1, so "
            f"the mean of the softmax matrix is 1/N = 1/{lab.num_tokens} = {softmax.mean():.6f} for every image. "
            f"The {'score' if head is None else f'score of head {head}'} at block {lab.block_index(block)}, {offsets.mean():+.4f}, is the mean of those row offsets: "
            f"exactly what softmax throws away.")


def explain_record(lab: AttentionLab, block: int, head: int | None, query: tuple[int, int],
                   key: tuple[int, int] | None = None) -> dict:
    """The numbers of ``attn-fiqa explain`` (its explain.json), for patch ``query`` (and ``key``) of the grid.

    Per-head lists are over all heads, in the model's token order (prefix tokens first)."""
    index = lab.block_index(block)
    if head is not None:
        lab.heads_of(head)
    if key is not None and head is None:
        raise ValueError("The q.k terms are those of one head: give --head H together with --key ROW,COL.")
    query_token = lab.token_of_patch(*query)
    key_token = None if key is None else lab.token_of_patch(*key)
    logits = lab.head_logits(index)
    softmax = lab.head_softmax(index)
    stats = lab.head_stats
    return {
        "block": index,
        "head": head,
        "query": [int(query[0]), int(query[1])],
        "grid": [int(lab.grid[0]), int(lab.grid[1])],
        "num_prefix_tokens": lab.num_prefix_tokens,
        "row_logits": logits[:, query_token, :].tolist(),
        "row_softmax": softmax[:, query_token, :].tolist(),
        "column_logits": logits[:, :, query_token].tolist(),
        "row_offsets": lab.head_row_offsets(index).tolist(),
        "block_scores": lab.block_scores.tolist(),
        "head_stats": [[{"entropy": float(stats.entropy[b, h]), "distance_px": float(stats.distance_px[b, h]),
                         "logit_mean": float(stats.logit_mean[b, h]), "logit_std": float(stats.logit_std[b, h])}
                        for h in range(lab.num_heads)] for b in range(lab.depth)],
        "qk_terms": None if key_token is None else lab.qk_terms(index, head, query_token, key_token).tolist(),
        "score": lab.score,
    }
