"""The attention lab's views (attn_core/lab/attention.py) against numpy from q and k taken independently: by a hook
of the test's own on each block's qkv Linear (timm) or by explicit products from the raw weights (face ViT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import preprocess

from attn_core.lab import capture_lab
from attn_core.scoring import FaceQualityModel, ScoreOptions
from attn_core.zoo import load_backbone

FACE = "test-face-vit-p9"  # 9-px patches: a 12x12 grid covering 108 of 112 pixels
TIMM = "timm:test_vit.r160_in1k"  # CLS token (1 prefix token), input 160


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)


def own_qk(backbone, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(depth, H, N, d) q and k from the test's own hooks on every qkv Linear, run through the model's own forward."""
    spec, model = backbone.spec, backbone.model
    found: dict[int, torch.Tensor] = {}
    handles = [blk.attn.qkv.register_forward_hook(lambda m, i, o, b=b: found.__setitem__(b, o.detach().clone()))
               for b, blk in enumerate(model.blocks)]
    try:
        with torch.no_grad():
            model(preprocess(crop[None], spec.input_size, spec.mean, spec.std))
    finally:
        for handle in handles:
            handle.remove()
    qs, ks = [], []
    for b, blk in enumerate(model.blocks):
        qkv = found[b][0]
        heads = blk.attn.num_heads
        dim = qkv.shape[-1] // 3
        q, k = (qkv[:, i * dim:(i + 1) * dim].reshape(-1, heads, dim // heads).transpose(0, 1) for i in (0, 1))
        if hasattr(blk.attn, "q_norm"):
            q, k = blk.attn.q_norm(q), blk.attn.k_norm(k)
        qs.append(q.double().numpy())
        ks.append(k.double().numpy())
    return np.stack(qs), np.stack(ks), (dim // heads) ** -0.5


@pytest.fixture(scope="module", params=[FACE, TIMM])
def case(request, crop):
    backbone = load_backbone(request.param, random_init=True, seed=4, device="cpu")
    q, k, scale = own_qk(backbone, crop)
    return backbone, capture_lab(backbone, crop), q, k, scale


def test_face_vit_q_k_match_explicit_products_from_the_weights(crop):
    from reference import face_vit_logits

    backbone = load_backbone(FACE, random_init=True, seed=4, device="cpu")
    spec = backbone.spec
    state = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    lab = capture_lab(backbone, crop)
    images = preprocess(crop[None], 112, spec.mean, spec.std)
    for block in range(spec.depth):
        logits = face_vit_logits(state, images, spec.num_heads, block)[0].double().numpy()
        np.testing.assert_allclose(lab.head_logits(block), logits, rtol=1e-4, atol=1e-5)


def test_rows_columns_matrices_and_softmax(case):
    backbone, lab, q, k, scale = case
    depth, heads, n, _ = q.shape
    assert (lab.depth, lab.num_heads, lab.num_tokens) == (depth, heads, n)
    assert lab.num_prefix_tokens == backbone.spec.num_prefix_tokens
    rng = np.random.default_rng(0)
    for block in range(depth):
        logits = q[block] @ k[block].transpose(0, 2, 1) * scale  # (H, N, N)
        softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        for head in range(heads):
            np.testing.assert_allclose(lab.matrix(block, head), logits[head], rtol=1e-5, atol=1e-6)
            for token in rng.integers(0, n, size=3):
                np.testing.assert_allclose(lab.row(block, head, token), logits[head, token], rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(lab.column(block, head, token), logits[head, :, token], rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(lab.row_softmax(block, head, token), softmax[head, token], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(lab.matrix(block), logits.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lab.matrix(block, [0, heads - 1]), logits[[0, heads - 1]].mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lab.row_softmax(block, None, 0), softmax[:, 0].mean(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(lab.head_softmax(block).sum(-1), 1.0, rtol=1e-12)
        assert lab.head_softmax(block).mean() == pytest.approx(1 / n, rel=1e-12)
        np.testing.assert_allclose(lab.head_row_offsets(block), logits.mean(-1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lab.received(block), logits.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lab.head_received(block), logits.mean(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lab.head_rows(block, n - 1), logits[:, n - 1], rtol=1e-5, atol=1e-6)


def test_softmax_ignores_the_row_offset(case):
    _, lab, *_ = case
    row = lab.row(-1, 0, 0)
    shifted = row - lab.head_row_offsets(-1)[0, 0]
    np.testing.assert_allclose(np.exp(shifted) / np.exp(shifted).sum(), lab.row_softmax(-1, 0, 0), rtol=1e-9)
    assert shifted.mean() == pytest.approx(0.0, abs=1e-9)


def test_score_is_the_mean_row_offset_and_the_end_of_the_block_curve(case):
    backbone, lab, q, k, scale = case
    model = FaceQualityModel(backbone, precision="fp32")
    crop = lab.face.aligned
    for block in range(lab.depth):
        expected = (q[block] @ k[block].transpose(0, 2, 1) * scale).mean()
        reference = model.score_faces(crop, ScoreOptions(block=block, tokens="all"))[0].score
        assert lab.block_scores[block] == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert lab.block_scores[block] == pytest.approx(reference, rel=1e-5, abs=1e-7)
        assert lab.row_offsets(block).mean() == pytest.approx(lab.block_scores[block], rel=1e-9, abs=1e-12)
    assert lab.score == lab.block_scores[-1]
    assert lab.score == pytest.approx(model.score_faces(crop)[0].score, rel=1e-5, abs=1e-7)


def test_qk_terms_sum_to_the_logit(case):
    _, lab, q, k, scale = case
    for block, head, i, j in [(0, 0, 0, 1), (-1, lab.num_heads - 1, lab.num_tokens - 1, 3)]:
        terms = lab.qk_terms(block, head, i, j)
        assert terms.shape == (lab.head_dim,)
        np.testing.assert_allclose(terms, q[block, head, i] * k[block, head, j] * scale, rtol=1e-5, atol=1e-7)
        assert terms.sum() == pytest.approx(lab.matrix(block, head)[i, j], rel=1e-9, abs=1e-12)


def test_entropy_distance_and_logit_stats_by_direct_formula(case):
    _, lab, q, k, scale = case
    prefix, (_, cols), patch = lab.num_prefix_tokens, lab.grid, lab.patch_size
    n = lab.num_tokens
    stats = lab.head_stats
    for block in range(lab.depth):
        for head in range(lab.num_heads):
            logits = q[block, head] @ k[block, head].T * scale
            p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            entropy = np.mean([-sum(p[i, j] * np.log(p[i, j]) for j in range(n)) for i in range(n)])
            distance = []
            for i in range(prefix, n):
                ri, ci = divmod(i - prefix, cols)
                total = 0.0
                for j in range(prefix, n):
                    rj, cj = divmod(j - prefix, cols)
                    total += p[i, j] * patch * np.hypot(ri - rj, ci - cj)
                distance.append(total)
            assert stats.entropy[block, head] == pytest.approx(entropy, rel=1e-6)
            assert stats.entropy_fraction[block, head] == pytest.approx(entropy / np.log(n), rel=1e-6)
            assert stats.distance_px[block, head] == pytest.approx(np.mean(distance), rel=1e-6)
            assert stats.logit_mean[block, head] == pytest.approx(logits.mean(), rel=1e-5, abs=1e-7)
            assert stats.logit_std[block, head] == pytest.approx(logits.std(), rel=1e-5)
    assert np.all(stats.entropy_fraction <= 1 + 1e-12)


def test_patch_grid_indexing_and_centres():
    backbone = load_backbone(FACE, random_init=True, seed=4, device="cpu")
    lab = capture_lab(backbone, np.zeros((112, 112, 3), np.uint8))
    assert lab.grid == (12, 12) and lab.patch_size == 9
    # The 12x12 grid of 9-px patches covers the top-left 108x108 of the 112-px crop.
    assert lab.patch_centres[0].tolist() == [4.5, 4.5]
    assert lab.patch_centres[-1].tolist() == [103.5, 103.5]
    assert lab.patch_centres[lab.token_of_patch(2, 5)].tolist() == [49.5, 22.5]
    assert lab.patch_of_token(lab.token_of_patch(3, 7)) == (3, 7)
    timm_lab = capture_lab(load_backbone(TIMM, random_init=True, seed=4, device="cpu"), np.zeros((112, 112, 3), np.uint8))
    assert timm_lab.num_prefix_tokens == 1 and timm_lab.token_of_patch(0, 0) == 1
    assert timm_lab.patch_of_token(0) is None
    assert timm_lab.to_grid(timm_lab.received(-1)).shape == timm_lab.grid
    with pytest.raises(ValueError, match="outside the 12x12 patch grid"):
        lab.token_of_patch(12, 0)
    with pytest.raises(ValueError, match="heads 0..3"):
        lab.row(0, 4, 0)
    with pytest.raises(ValueError, match="blocks 0..2"):
        lab.matrix(3)


def test_one_forward_pass_for_every_view(monkeypatch, crop):
    backbone = load_backbone(FACE, random_init=True, seed=4, device="cpu")
    calls = []
    monkeypatch.setattr(backbone.model, "embed_tokens", lambda images, real=backbone.model.embed_tokens:
                        calls.append(1) or real(images))
    lab = capture_lab(backbone, crop)
    assert len(calls) == 1
    lab.head_stats, lab.block_scores, lab.row(1, 0, 5), lab.qk_terms(0, 1, 2, 3), lab.matrix(2)
    assert len(calls) == 1
