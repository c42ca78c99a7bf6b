"""``attn-fiqa explain``: explain.json has exactly the documented keys and numbers that agree with numpy from q and
k taken by the test's own hooks; the figures are written; bad input is one sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_attention import own_qk

from attn_core.cli.main import main
from attn_core.scoring import FaceQualityModel
from attn_core.zoo import load_backbone

KEYS = ["block", "head", "query", "grid", "num_prefix_tokens", "row_logits", "row_softmax", "column_logits",
        "row_offsets", "block_scores", "head_stats", "qk_terms", "score"]


@pytest.fixture(scope="module")
def crop_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "crop.png"
    crop = np.random.default_rng(5).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    Image.fromarray(crop).save(path)
    return path, crop


@pytest.mark.parametrize("name,prefix", [("test-face-vit-p9", 0), ("timm:test_vit.r160_in1k", 1)])
def test_explain_json_matches_independent_numbers(tmp_path, crop_file, name, prefix):
    path, crop = crop_file
    out = tmp_path / "out"
    assert main(["explain", str(path), "--backbone", name, "--random-init", "--block", "1", "--head", "1",
                 "--query", "3,4", "--key", "5,6", "--out", str(out)]) == 0
    record = json.loads((out / "explain.json").read_text())
    assert list(record) == KEYS
    # The CLI's random weights are seeded like load_backbone's default: the same model, built independently here.
    backbone = load_backbone(name, random_init=True, device="cpu")
    q, k, scale = own_qk(backbone, crop)
    depth, heads, n, head_dim = q.shape
    rows, cols = backbone.spec.grid
    query, key = prefix + 3 * cols + 4, prefix + 5 * cols + 6
    logits = q[1] @ k[1].transpose(0, 2, 1) * scale
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert record["block"] == 1 and record["head"] == 1 and record["query"] == [3, 4]
    assert record["grid"] == [rows, cols] and record["num_prefix_tokens"] == prefix
    np.testing.assert_allclose(record["row_logits"], logits[:, query, :], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(record["row_softmax"], softmax[:, query, :], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sum(record["row_softmax"], axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(record["column_logits"], logits[:, :, query], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(record["row_offsets"], logits.mean(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(record["qk_terms"], q[1, 1, query] * k[1, 1, key] * scale, rtol=1e-5, atol=1e-7)
    assert len(record["qk_terms"]) == head_dim
    assert sum(record["qk_terms"]) == pytest.approx(logits[1, query, key], rel=1e-5, abs=1e-7)
    curve = [(q[b] @ k[b].transpose(0, 2, 1) * scale).mean() for b in range(depth)]
    np.testing.assert_allclose(record["block_scores"], curve, rtol=1e-5, atol=1e-7)
    assert record["score"] == record["block_scores"][-1]
    reference = FaceQualityModel(backbone, precision="fp32").score_faces(crop)[0].score
    assert record["score"] == pytest.approx(reference, rel=1e-5, abs=1e-7)
    assert len(record["head_stats"]) == depth and all(len(block) == heads for block in record["head_stats"])
    first = record["head_stats"][1][1]
    assert list(first) == ["entropy", "distance_px", "logit_mean", "logit_std"]
    assert first["logit_mean"] == pytest.approx(logits[1].mean(), rel=1e-5, abs=1e-7)
    assert first["logit_std"] == pytest.approx(logits[1].std(), rel=1e-5)
    entropy = -(softmax[1] * np.log(softmax[1])).sum(-1).mean()
    assert first["entropy"] == pytest.approx(entropy, rel=1e-6)
    for figure in ("face_grid", "row", "matrix", "offsets", "model_view", "block_scores", "head_stats", "qk_terms"):
        assert Image.open(out / f"{figure}.png").size[0] > 100


def test_defaults_mean_of_heads_centre_query_no_key(tmp_path, crop_file, capsys):
    path, _ = crop_file
    assert main(["explain", str(path), "--backbone", "test-face-vit-p8", "--random-init", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "explain.json").read_text())
    assert record["head"] is None and record["qk_terms"] is None
    assert record["query"] == [7, 7] and record["block"] == 2
    assert not (tmp_path / "qk_terms.png").exists()
    assert "1/N = 1/196" in capsys.readouterr().err
    assert np.mean(record["row_offsets"]) == pytest.approx(record["score"], rel=1e-9)


@pytest.mark.parametrize("extra,message", [
    (["--query", "12,0"], "outside the 12x12 patch grid"),
    (["--key", "1,1"], "give --head H together with --key"),
    (["--head", "4"], "heads 0..3"),
    (["--block", "3"], "blocks 0..2"),
])
def test_bad_input_is_one_sentence(tmp_path, crop_file, capsys, extra, message):
    path, _ = crop_file
    code = main(["explain", str(path), "--backbone", "test-face-vit-p9", "--random-init", "--out", str(tmp_path / "o"),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_image_and_bad_patch_syntax(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "none.png"), "--random-init", "--out", str(tmp_path)]) == 2
    assert "not an image file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", "x.png", "--query", "3", "--out", str(tmp_path)])
    assert "ROW,COL" in capsys.readouterr().err
