"""Distillation: the reserved-name rule, the loss, one training step, exact resume, the score, the dlib wrapper."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_core import distill
from attn_core.distill import StudentConfig, TrainConfig

TINY = StudentConfig(img_size=112, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, out_dim=16)


class FakeTeacher:
    """Deterministic stand-in for dlib: a fixed random projection of the 8x8-downsampled crop."""

    out_dim = 16

    def __init__(self) -> None:
        self.projection = np.random.default_rng(3).standard_normal((8 * 8 * 3, self.out_dim)).astype(np.float32)

    def embed(self, crops):
        small = np.stack([c.reshape(8, 14, 8, 14, 3).mean(axis=(1, 3)).reshape(-1) for c in crops]) / 255.0 - 0.5
        out = small.astype(np.float32) @ self.projection
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_reserved_names_are_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["Ana.jpg", "otto.jpg", "Élcio.jpg", "Pedro.jpg", "zeca.jpg", "Úrsula.jpg", "readme.txt"]:
        (tmp_path / name).write_bytes(b"not an image")
    opened: list[str] = []
    real_open, real_io_open = builtins.open, io.open

    def guarded_open(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file))
        assert not distill.is_reserved(Path(opened[-1]).name), f"reserved file opened: {file}"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    names = distill.training_file_names(tmp_path)
    assert names == sorted(["Ana.jpg", "otto.jpg", "Élcio.jpg"])
    assert not any(distill.is_reserved(n) for n in names)
    assert [distill.is_reserved(n) for n in ("Pedro.jpg", "zeca.jpg", "Úrsula.jpg", "Otto.jpg", "ana.jpg")] == [
        True, True, True, False, False]

    # prepare_faces must only ever load A-O paths: spy on the loader it uses.
    import attn_core.faces as faces

    loaded: list[str] = []

    def spy_load(path):
        loaded.append(Path(path).name)
        assert not distill.is_reserved(Path(path).name)
        raise ValueError("fake image")  # counted as skipped; we only care which files were touched

    monkeypatch.setattr(faces, "load_image", spy_load)
    with pytest.raises(ValueError):  # nothing aligned -> nothing to stack
        distill.prepare_faces(tmp_path, tmp_path / "out" / "faces.npz")
    assert sorted(loaded) == names
    assert all(not distill.is_reserved(Path(p).name) for p in opened)


def test_split_is_seeded_and_disjoint() -> None:
    names = [f"A{i:03d}.jpg" for i in range(100)]
    train, val = distill.split_train_val(names, 0.15, seed=0)
    assert len(val) == 15 and not set(train) & set(val) and sorted(train + val) == names
    assert distill.split_train_val(names, 0.15, seed=0) == (train, val)


def test_loss_is_cosine_distance() -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    expected = np.mean([1 - float(s @ t / (s.norm() * t.norm())) for s, t in zip(student, teacher)])
    assert distill.cosine_distillation_loss(student, teacher).item() == pytest.approx(expected, abs=1e-6)
    assert distill.cosine_distillation_loss(3 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_score_matches_independent_computation() -> None:
    torch.manual_seed(0)
    model = TINY.build().eval()
    crops = np.random.default_rng(0).integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    images = distill.images_to_tensor(crops)
    captured = {}
    last = model.blocks[-1]
    handle = last.attn.qkv.register_forward_hook(lambda module, inputs, output: captured.setdefault("qkv", output))
    with torch.no_grad():
        model(images)
    handle.remove()
    qkv = captured["qkv"].reshape(3, -1, 3, 2, 16)
    expected = torch.stack([
        torch.stack([(qkv[b, :, 0, h] @ qkv[b, :, 1, h].T).mean() / 4.0 for h in range(2)]).mean() for b in range(3)
    ])
    embeddings, scores = distill.student_embed(model, crops)
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-5)
    with torch.no_grad():
        reference = torch.nn.functional.normalize(model(images), dim=1).numpy()
    np.testing.assert_allclose(embeddings, reference, atol=1e-5)


def _faces_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    context = rng.integers(0, 255, size=(6, 224, 224, 3), dtype=np.uint8)
    path = tmp_path / "faces.npz"
    np.savez(path, names=np.array([f"A{i}.jpg" for i in range(6)]), split=np.array(["train"] * 4 + ["val"] * 2),
             aligned=context[:, 56:168, 56:168], context=context)
    return path


def _config(tmp_path: Path, out: str, stop_at: int = 0) -> TrainConfig:
    return TrainConfig(faces=str(_faces_file(tmp_path)), out_dir=str(tmp_path / out), steps=12, stop_at=stop_at, batch_size=8,
                       teacher_batch=4, replay=16, lr=3e-3, warmup=1, workers=0, threads=1, keep_every=0)


def test_training_decreases_loss_and_resume_is_exact(tmp_path: Path) -> None:
    augment = distill.AugmentConfig(degrade=0.0, mixup=0.0)  # keeps the fake batches cheap
    teacher = FakeTeacher()
    straight = distill.train(_config(tmp_path, "straight"), TINY, teacher, augment=augment, progress=False)
    losses = [eval(line)["loss"] for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])

    distill.train(_config(tmp_path, "resumed", stop_at=7), TINY, teacher, augment=augment, progress=False)
    resumed = distill.train(_config(tmp_path, "resumed"), TINY, teacher, resume=True, augment=augment,
                            progress=False)
    a, b = torch.load(straight, weights_only=False), torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_export_has_facevit_keys_only(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    model = distill.StudentConfig(**{**TINY.__dict__}).build()
    path = distill.export_weights(model, tmp_path / "w.safetensors")
    keys = set(load_file(str(path)))
    assert "pos_embed" in keys and "blocks.1.attn.qkv.weight" in keys and "feature.3.running_var" in keys
    assert not any(k.endswith("num_batches_tracked") or k == "mask_token" for k in keys)
    fresh = TINY.build()
    missing, unexpected = fresh.load_state_dict(load_file(str(path)), strict=False)
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing)


def test_dlib_teacher_wrapper(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    with pytest.raises(FileNotFoundError):
        distill.find_teacher_model(tmp_path / "missing.dat")
    chip = distill.crop_to_chip(np.zeros((112, 112, 3), np.uint8), pad=0.2)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8


def test_roc_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(1)
    positive, negative = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in positive for n in negative])
    assert distill.roc_auc(positive, negative) == pytest.approx(pairwise)
