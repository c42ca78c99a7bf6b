"""The optimised scoring paths give the default path's scores: micro-batching, workers, compile, precision.

The default fp32 path itself is checked against explicit products in test_quality.py; here every speed option is
compared with it on the same seeded tiny models and faces.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attn_core.scoring import quality
from attn_core.scoring.model import FaceQualityModel, ScoreOptions
from attn_core.scoring.quality import micro_batch_size, score_faces
from attn_core.zoo.backbone import load_backbone

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.*"))
MODELS = ["test-face-vit-p8", "test-face-vit-p9", "timm:test_vit.r160_in1k"]


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, size=(5, 112, 112, 3), dtype=np.uint8)


def _assert_same(results, expected, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got.score, want.score, rtol=rtol, atol=atol)
        np.testing.assert_allclose(got.head_maps, want.head_maps, rtol=rtol * 10, atol=atol * 10)


@pytest.mark.parametrize("name", MODELS)
def test_cpu_micro_batches_match_one_forward(name: str, faces: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = load_backbone(name, random_init=True, seed=1, device="cpu")
    assert micro_batch_size(backbone, len(faces)) == 1  # one image per forward on CPU, whatever the batch
    one_by_one = score_faces(backbone, faces, tokens="patch")
    monkeypatch.setattr(quality, "CPU_FORWARD_IMAGES", len(faces))  # the whole batch in one forward
    _assert_same(one_by_one, score_faces(backbone, faces, tokens="patch"))


def test_images_per_forward_do_not_depend_on_the_batch() -> None:
    spec = load_backbone("test-face-vit-p8", random_init=True, device="cpu").spec
    on_gpu = SimpleNamespace(device=torch.device("cuda"), spec=spec)
    assert {micro_batch_size(on_gpu, n) for n in (1, 7, 64)} == {quality.ACCELERATOR_FORWARD_IMAGES}
    vit_s = load_backbone("cvlface-vit-s-adaface", random_init=True, device="meta")
    assert {micro_batch_size(SimpleNamespace(device=torch.device("cpu"), spec=vit_s.spec), n) for n in (1, 64)} == {1}


@pytest.mark.parametrize("name", MODELS)
def test_compile_off_and_fp32_are_the_default(name: str, faces: np.ndarray) -> None:
    backbone = load_backbone(name, random_init=True, seed=2, device="cpu")
    default = score_faces(backbone, faces)
    assert {r.precision for r in default} == {"fp32"}
    _assert_same(score_faces(backbone, faces, compile=False, precision="fp32"), default, rtol=0, atol=0)
    model = FaceQualityModel(backbone, compile=False)
    assert model.precision == "fp32"
    _assert_same(model.score_faces(faces), default, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_cpu_bf16_autocast_stays_close(name: str, faces: np.ndarray) -> None:
    """bf16 keeps 8 significant bits (one rounding: <= 0.4% relative). q and k pass through about two bf16 matmuls
    per block, so per-head scores move by ~0.1-1.5% of the typical logit magnitude (mean |key mean|) on these
    models and on the ViT-S and distilled shapes (benchmarks/RESULTS.md). We allow 5% of it: several times the
    observed error, and still far below the spread between heads or images that the score is used to rank."""
    backbone = load_backbone(name, random_init=True, seed=2, device="cpu")
    default = score_faces(backbone, faces)
    mixed = score_faces(backbone, faces, precision="bf16")
    assert {r.precision for r in mixed} == {"bf16"}
    for got, want in zip(mixed, default):
        magnitude = np.abs(want.head_maps).mean()
        np.testing.assert_allclose(got.head_scores, want.head_scores, rtol=0, atol=0.05 * magnitude)
        np.testing.assert_allclose(got.score, want.score, rtol=0, atol=0.05 * magnitude)
    assert any(got.score != want.score for got, want in zip(mixed, default)), "autocast had no effect"


def test_unknown_precision_is_refused(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, device="cpu")
    with pytest.raises(ValueError, match="Unknown precision 'int8'; choose one of auto, fp32, bf16, fp16"):
        score_faces(backbone, faces, precision="int8")
    with pytest.raises(ValueError, match="Unknown precision"):
        FaceQualityModel(backbone, precision="half")


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from attn_core.scoring.quality import auto_precision, resolve_precision

    monkeypatch.setattr(quality, "cpu_has_fast_bf16", lambda: True)
    assert auto_precision("cpu") == resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(quality, "cpu_has_fast_bf16", lambda: False)
    assert auto_precision("cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_precision("cuda") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_precision("cuda") == "bf16"
    assert resolve_precision(None, "cpu") == resolve_precision("", "cuda") == "fp32"


def test_face_vit_attention_product_stays_fp32_under_autocast() -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, seed=4, device="cpu")
    attn = backbone.blocks[0].attn
    seen: list[torch.dtype] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append(q.dtype)
        return original(q, k, v, *args, **kwargs)

    tokens = torch.randn(2, backbone.spec.num_tokens, backbone.spec.embed_dim)
    with pytest.MonkeyPatch.context() as patch, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        attn(tokens)
    assert seen == [torch.float32]


def test_score_files_workers_give_the_same_scores() -> None:
    model = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu")
    paths = EXAMPLES[:4]
    options = ScoreOptions(block=1)
    serial = list(model.score_files(paths, options, batch_size=3, workers=0, on_no_face="center_crop"))
    parallel = list(model.score_files(paths, options, batch_size=3, workers=2, on_no_face="center_crop"))
    assert [item.path for item in parallel] == [item.path for item in serial]
    assert all(item.ok for item in serial + parallel)
    for got, want in zip(parallel, serial):
        np.testing.assert_allclose(got.result.score, want.result.score, rtol=1e-6, atol=1e-7)
    direct = model.score_faces(np.stack([item.result.face.aligned for item in serial]), options)
    _assert_same([item.result for item in serial], direct)


@pytest.mark.skipif(not os.environ.get("ATTN_FIQA_SLOW_TESTS"), reason="torch.compile takes ~20 s on 2 CPU cores; "
                    "set ATTN_FIQA_SLOW_TESTS=1")
def test_compile_on_matches(faces: np.ndarray) -> None:
    backbone = load_backbone("test-face-vit-p8", random_init=True, seed=2, device="cpu")
    _assert_same(score_faces(backbone, faces, compile=True), score_faces(backbone, faces), rtol=1e-5, atol=1e-6)
