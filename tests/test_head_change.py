"""Issue 20, Degradation explorer: per-head difference maps (degraded minus clean) and per-head score changes,
against numpy from the explicit products of the face ViT's weights (tests/reference.py), and the figure."""

from __future__ import annotations

import numpy as np
import pytest
from reference import face_vit_logits, preprocess

from attn_core.faces import degrade
from attn_core.lab import head_change_figure, head_changes
from attn_core.scoring import FaceQualityModel, ScoreOptions

FACE = "test-face-vit-p9"  # 9-px patches: a 12x12 grid over 108 of 112 pixels, no prefix tokens


@pytest.fixture(scope="module")
def model() -> FaceQualityModel:
    return FaceQualityModel(FACE, random_init=True, device="cpu", precision="fp32")


def _numpy_heads(model: FaceQualityModel, crop: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, g, g) column means of each head's logits and (H,) each head's mean logit, by explicit products."""
    spec = model.spec
    state = {k: v.detach().clone() for k, v in model.backbone.model.state_dict().items()}
    logits = face_vit_logits(state, preprocess(crop[None], 112, spec.mean, spec.std), spec.num_heads, block)[0]
    logits = logits.double().numpy()  # (H, N, N)
    maps = logits.mean(axis=1).reshape(spec.num_heads, *spec.grid)
    return maps, logits.mean(axis=(1, 2))


def test_head_changes_equal_numpy(model) -> None:
    crop = np.random.default_rng(5).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    blurred = degrade(crop, "gaussian_blur", 0.8, 0)
    block = model.spec.depth - 1
    clean, damaged = model.score_faces(np.stack([crop, blurred]), ScoreOptions(block=block))
    change = head_changes(clean, damaged)
    clean_maps, clean_scores = _numpy_heads(model, crop, block)
    damaged_maps, damaged_scores = _numpy_heads(model, blurred, block)
    np.testing.assert_allclose(change.difference_maps, damaged_maps - clean_maps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(change.score_change, damaged_scores - clean_scores, rtol=1e-4, atol=1e-5)
    # Without prefix tokens each difference map's mean is that head's score change, and the heads' mean the score's.
    np.testing.assert_allclose(change.difference_maps.mean(axis=(1, 2)), change.score_change, atol=1e-9)
    assert change.score_change.mean() == pytest.approx(damaged.score - clean.score, abs=1e-6)
    assert change.limit == pytest.approx(np.abs(damaged_maps - clean_maps).max(), rel=1e-4)
    assert change.most_lost == int(np.argmin(damaged_scores - clean_scores))
    record = change.record()
    assert record["colour_range"] == [-change.limit, change.limit]
    assert np.asarray(record["difference_maps"]).shape == (model.spec.num_heads, *model.spec.grid)

    picture = head_change_figure(change, "blur")
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]
    # The colour bar is the symmetric diverging one: both its red (loss) and blue (gain) ends are drawn.
    reds = (picture[..., 0] > 150) & (picture[..., 2] < 90)
    blues = (picture[..., 2] > 150) & (picture[..., 0] < 90)
    assert reds.sum() > 50 and blues.sum() > 50


def test_unchanged_face_and_mismatched_results(model) -> None:
    crop = np.random.default_rng(6).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    (same,) = model.score_faces(crop, ScoreOptions())
    change = head_changes(same, same)
    assert change.limit == 0.0 and not change.score_change.any()
    assert head_change_figure(change).shape[2] == 3  # an all-zero change still draws, without dividing by zero
    (earlier,) = model.score_faces(crop, ScoreOptions(block=0))
    with pytest.raises(ValueError, match="same block"):
        head_changes(same, earlier)
    other = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu", precision="fp32")
    (elsewhere,) = other.score_faces(crop, ScoreOptions())
    with pytest.raises(ValueError, match="do not line up"):
        head_changes(same, elsewhere)
