"""Score, per-head maps and patch map against an independent computation from raw weights (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import expected_from_logits, face_vit_logits, preprocess, timm_logits

from attn_core.scoring.capture import AttentionCapture
from attn_core.scoring.quality import score_faces
from attn_core.zoo.backbone import load_backbone

FACE_VITS = ["test-face-vit-p8", "test-face-vit-p9"]


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", FACE_VITS)
@pytest.mark.parametrize("block", [-1, 1])
def test_face_vit_matches_explicit_products(name: str, block: int, faces: np.ndarray) -> None:
    backbone = load_backbone(name, random_init=True, seed=3, device="cpu")
    spec = backbone.spec
    state = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    images = preprocess(faces, 112, spec.mean, spec.std)
    logits = face_vit_logits(state, images, spec.num_heads, block % spec.depth)
    score, head_scores, maps = expected_from_logits(logits, 0, spec.grid)

    results = score_faces(backbone, faces, block=block)
    for b, result in enumerate(results):
        assert result.block == block % spec.depth
        np.testing.assert_allclose(result.score, score[b], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.head_scores, head_scores[b], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.head_maps, maps[b], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.patch_map, maps[b].mean(axis=0), rtol=1e-4, atol=1e-5)
        # The map is an exact spatial decomposition of the score.
        assert result.map_is_exact
        np.testing.assert_allclose(result.patch_map.mean(), result.score, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("tokens", ["all", "patch"])
@pytest.mark.parametrize("block", [-1, 0])
def test_timm_with_prefix_tokens(fused: bool, tokens: str, block: int, faces: np.ndarray) -> None:
    backbone = load_backbone("timm:test_vit.r160_in1k", random_init=True, seed=5, device="cpu")
    spec = backbone.spec
    assert spec.num_prefix_tokens == 1
    for blk in backbone.model.blocks:
        blk.attn.fused_attn = fused
    images = preprocess(faces, spec.input_size, spec.mean, spec.std)
    logits = timm_logits(backbone.model, images, block % spec.depth)
    assert logits.shape[-1] == spec.num_tokens
    score, head_scores, maps = expected_from_logits(logits, spec.num_prefix_tokens, spec.grid, tokens)
    results = score_faces(backbone, faces, block=block, tokens=tokens)
    for b, result in enumerate(results):
        np.testing.assert_allclose(result.score, score[b], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(result.head_scores, head_scores[b], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(result.head_maps, maps[b], rtol=1e-4, atol=1e-5)
        if tokens == "patch":
            np.testing.assert_allclose(result.patch_map.mean(), result.score, rtol=1e-9, atol=1e-12)
        else:
            assert not result.map_is_exact
            assert result.prefix_attention.shape == (spec.num_heads, 1)


def test_registers_and_q_k_norm() -> None:
    """DINOv2 with 4 registers (5 prefix tokens), with q/k LayerNorm switched on: applied before the product."""
    import timm

    from attn_core.zoo.backbone import Backbone
    from attn_core.zoo.registry import get_spec

    spec = get_spec("vit_small_patch14_reg4_dinov2.lvd142m")
    torch.manual_seed(0)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, img_size=224, depth=2, qk_norm=True)
    with torch.no_grad():  # non-trivial q/k norm parameters, so a missing norm would show
        for blk in model.blocks:
            blk.attn.q_norm.weight.uniform_(0.5, 1.5)
            blk.attn.k_norm.bias.uniform_(-0.3, 0.3)
    from dataclasses import replace

    backbone = Backbone(replace(spec, depth=2), model, torch.device("cpu"), "test")
    faces = np.random.default_rng(1).integers(0, 256, size=(2, 112, 112, 3), dtype=np.uint8)
    images = preprocess(faces, 224, spec.mean, spec.std)
    logits = timm_logits(model, images, 1)
    score, head_scores, maps = expected_from_logits(logits, 5, spec.grid)
    results = score_faces(backbone, faces)
    for b, result in enumerate(results):
        np.testing.assert_allclose(result.score, score[b], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(result.head_maps, maps[b], rtol=1e-4, atol=1e-5)


def test_head_selection_and_aggregations(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, seed=1, device="cpu")
    result = score_faces(backbone, faces[:1])[0]
    per_head = result.head_scores
    subset = result.with_options(heads=[0, 2])
    assert subset.score == pytest.approx((per_head[0] + per_head[2]) / 2, rel=1e-12)
    np.testing.assert_allclose(subset.patch_map, (result.head_maps[0] + result.head_maps[2]) / 2)
    assert result.with_options(aggregation="median").score == pytest.approx(float(np.median(per_head)))
    assert result.with_options(aggregation="max").score == pytest.approx(float(per_head.max()))
    assert result.with_options(aggregation="inv_std").score == pytest.approx(1 / float(np.std(per_head)))
    assert result.with_options(heads=[3]).score == pytest.approx(per_head[3])
    with pytest.raises(ValueError, match="heads 0..3"):
        result.with_options(heads=[4])
    with pytest.raises(ValueError, match="choose one of"):
        result.with_options(aggregation="mode")
    with pytest.raises(ValueError, match="at least two heads"):
        result.with_options(heads=[1], aggregation="inv_std")


def test_bad_block_is_explained(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, device="cpu")
    with pytest.raises(ValueError, match="blocks 0..2"):
        score_faces(backbone, faces, block=3)


def test_capture_stops_at_block_and_hooks_are_removed(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, device="cpu")
    calls: list[str] = []
    later = [backbone.model.blocks[2].mlp, backbone.model.blocks[1].mlp, backbone.model.feature]
    handles = [m.register_forward_hook(lambda *_a, n=str(i): calls.append(n)) for i, m in enumerate(later)]
    score_faces(backbone, faces, block=1)
    # Block 1's MLP, block 2 and the embedding head are never computed when only the score is asked for.
    assert calls == []
    score_faces(backbone, faces, block=1, with_embedding=True)
    assert sorted(set(calls)) == ["0", "1", "2"]
    for handle in handles:
        handle.remove()
    for module in backbone.model.modules():
        assert not module._forward_hooks
    # Removed even when the forward raises.
    with pytest.raises(RuntimeError):
        with AttentionCapture(backbone.model.blocks, [0]):
            backbone.model(torch.zeros(1, 3, 50, 50))
    assert not backbone.model.blocks[0].attn.qkv._forward_hooks


def test_embedding_same_forward_is_l2_normalised(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p9", random_init=True, device="cpu")
    with_emb = score_faces(backbone, faces, with_embedding=True)
    without = score_faces(backbone, faces)
    for a, b in zip(with_emb, without):
        assert a.score == pytest.approx(b.score, rel=1e-6)
        assert np.linalg.norm(a.embedding) == pytest.approx(1.0, rel=1e-5)
    reference = torch.nn.functional.normalize(backbone.model(backbone.preprocess(faces)), dim=-1).detach().numpy()
    np.testing.assert_allclose(np.stack([r.embedding for r in with_emb]), reference, rtol=1e-4, atol=1e-5)


def test_full_logits_for_teaching(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, seed=2, device="cpu")
    from attn_core.scoring.capture import run_to_qkv

    with torch.inference_mode(), AttentionCapture(backbone.blocks, [2]) as capture:
        run_to_qkv(backbone, backbone.preprocess(faces), 2)
    logits = capture.query_key[2].pre_softmax_logits()
    state = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    expected = face_vit_logits(state, preprocess(faces, 112, (0.5,) * 3, (0.5,) * 3), 4, 2)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_scores_run_side_by_side_and_never_write_into_another_threads_capture(faces: np.ndarray) -> None:
    """The score alone takes no lock (the Live tab scores two frames of a stream at once), and a capture that one
    thread holds open (the lab's, the embedding's) records only that thread's forward passes."""
    import threading

    backbone = load_backbone("test-face-vit-p8", random_init=True, seed=5, device="cpu")
    expected = [r.score for r in score_faces(backbone, faces)]
    results: dict[str, list[float]] = {}

    def score_in_thread() -> None:
        results["other"] = [r.score for r in score_faces(backbone, faces)]

    with backbone.lock, AttentionCapture(backbone.blocks, [1, 2]) as capture:
        worker = threading.Thread(target=score_in_thread)
        worker.start()
        worker.join(60)
        assert not worker.is_alive()  # not blocked by the held lock
        assert capture.query_key == {}  # the other thread's pass went through blocks 1 and 2 unrecorded
        with torch.inference_mode():
            backbone.model(backbone.preprocess(faces[:1]))
        assert sorted(capture.query_key) == [1, 2]
    assert results["other"] == expected
