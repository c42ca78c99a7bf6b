"""Checkpoints in every layout load strictly and give identical scores; bad ones fail with the keys named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from attn_core.scoring.quality import score_faces
from attn_core.zoo.backbone import load_backbone
from attn_core.zoo.registry import (
    BackboneNotAvailable,
    get_spec,
    local_weights,
    weights_available,
)
from attn_core.zoo.weights import (
    CheckpointError,
    infer_face_vit_config,
    read_state_dict,
)

FACES = np.random.default_rng(11).integers(0, 256, size=(2, 112, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference():
    backbone = load_backbone("test-face-vit-p9", random_init=True, seed=4, device="cpu")
    state = {k: v.detach().clone().contiguous() for k, v in backbone.model.state_dict().items()}
    scores = [r.score for r in score_faces(backbone, FACES)]
    return state, scores


def _layouts(state: dict, tmp: Path) -> dict[str, Path]:
    with_mask = dict(state, mask_token=torch.zeros(1, 1, 32))  # training-only parameter some checkpoints carry
    paths = {
        "plain.pt": tmp / "plain.pt",
        "wrapped_state_dict.pth": tmp / "wrapped_state_dict.pth",
        "wrapped_model.pt": tmp / "wrapped_model.pt",
        "ddp.pt": tmp / "ddp.pt",
        "cvlface.safetensors": tmp / "cvlface.safetensors",
        "plain.safetensors": tmp / "plain.safetensors",
    }
    torch.save(with_mask, paths["plain.pt"])
    torch.save({"state_dict": state, "epoch": 3}, paths["wrapped_state_dict.pth"])
    torch.save({"model": state, "optimizer": {}}, paths["wrapped_model.pt"])
    torch.save({f"module.{k}": v for k, v in state.items()}, paths["ddp.pt"])
    save_file({f"model.net.{k}": v for k, v in state.items()}, paths["cvlface.safetensors"])
    save_file(state, paths["plain.safetensors"])
    hf_folder = tmp / "hf_layout"
    hf_folder.mkdir()
    save_file({f"net.{k}": v for k, v in state.items()}, hf_folder / "model.safetensors")
    (hf_folder / "config.json").write_text(json.dumps({"model": {"num_heads": 4}}))
    paths["hf_folder"] = hf_folder
    return paths


def test_every_layout_loads_and_scores_identically(reference, tmp_path: Path) -> None:
    state, scores = reference
    for label, path in _layouts(state, tmp_path).items():
        backbone = load_backbone("test-face-vit-p9", weights=path, device="cpu")
        got = [r.score for r in score_faces(backbone, FACES)]
        assert got == pytest.approx(scores, rel=1e-6), label


def test_architecture_inferred_from_file_alone(reference, tmp_path: Path) -> None:
    state, scores = reference
    config = infer_face_vit_config(state)
    assert config == {"embed_dim": 32, "patch_size": 9, "grid": (12, 12), "depth": 3, "mlp_ratio": 2.0,
                      "out_dim": 16, "gated": False, "mask_token": False}
    path = tmp_path / "mine.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match="head count is not stored"):
        load_backbone(weights=path, device="cpu")
    backbone = load_backbone(weights=path, device="cpu", num_heads=4)
    assert backbone.spec.grid == (12, 12) and backbone.spec.num_heads == 4
    assert [r.score for r in score_faces(backbone, FACES)] == pytest.approx(scores, rel=1e-6)
    (tmp_path / "mine.json").write_text(json.dumps({"num_heads": 4}))
    backbone = load_backbone(weights=path, device="cpu")  # head count from the config beside the file
    assert [r.score for r in score_faces(backbone, FACES)] == pytest.approx(scores, rel=1e-6)


def test_wrong_keys_and_shapes_are_listed(reference, tmp_path: Path) -> None:
    state, _ = reference
    broken = dict(state)
    broken.pop("blocks.1.attn.qkv.weight")
    broken["blocks.0.attn.extra"] = torch.zeros(3)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as error:
        load_backbone("test-face-vit-p9", weights=path, device="cpu")
    assert "blocks.1.attn.qkv.weight" in str(error.value) and "blocks.0.attn.extra" in str(error.value)

    reshaped = dict(state)
    reshaped["blocks.0.norm1.weight"] = torch.ones(5)
    torch.save(reshaped, path)
    with pytest.raises(CheckpointError, match=r"blocks.0.norm1.weight \(5,\) != model \(32,\)"):
        load_backbone("test-face-vit-p9", weights=path, device="cpu")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "hook": Evil()}, path)
    with pytest.raises(CheckpointError, match="refuse"):
        read_state_dict(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone("test-face-vit-p9", weights=tmp_path / "missing.pt", device="cpu")


def test_no_silent_random_weights(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTN_FIQA_HOME", str(tmp_path))
    spec = get_spec("insightface-vit-t")
    assert not weights_available(spec)
    with pytest.raises(BackboneNotAvailable, match="arcface_torch"):
        load_backbone("insightface-vit-t", device="cpu")
    with pytest.raises(BackboneNotAvailable, match="random_init"):
        load_backbone("test-face-vit-p8", device="cpu")
    # A file dropped into the weights home makes it available.
    monkeypatch.setattr("attn_core.zoo.registry.weights_home", lambda: tmp_path)
    (tmp_path / "insightface-vit-t.pt").write_bytes(b"x")
    assert local_weights(spec) == tmp_path / "insightface-vit-t.pt"


def _fake_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay out a Hugging Face Hub cache exactly as huggingface_hub writes it (refs/main -> snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


def test_hf_hub_offline_from_local_cache(reference, tmp_path: Path, monkeypatch) -> None:
    state, scores = reference
    save_file({f"net.{k}": v for k, v in state.items()}, tmp_path / "model.safetensors")
    repo = "minchul/cvlface_adaface_vit_base_webface4m"
    _fake_hf_cache(tmp_path / "hub", repo, {
        "model.safetensors": (tmp_path / "model.safetensors").read_bytes(),
        "config.json": json.dumps({"num_heads": 4}).encode(),
    })
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    backbone = load_backbone("test-face-vit-p9", weights=f"hf://{repo}", device="cpu")
    assert [r.score for r in score_faces(backbone, FACES)] == pytest.approx(scores, rel=1e-6)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        load_backbone("test-face-vit-p9", weights="hf://someone/absent-repo", device="cpu")


def test_transface_gated_checkpoint_from_file_alone(tmp_path: Path) -> None:
    """TransFace's SE gate (senet.0/senet.2) is recognised from the keys; the embedding applies it per patch."""
    from attn_core.zoo.face_vit import FaceViT

    torch.manual_seed(9)
    model = FaceViT(patch_size=9, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, out_dim=16, gated=True,
                    mask_token=True).eval()
    state = model.state_dict()
    assert {"senet.0.weight", "senet.2.weight", "mask_token"} <= set(state)
    path = tmp_path / "transface_tiny.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    backbone = load_backbone(weights=path, num_heads=4, device="cpu")
    assert backbone.spec.gated and backbone.spec.grid == (12, 12)
    result = score_faces(backbone, FACES, with_embedding=True)
    images = backbone.preprocess(FACES)
    with torch.no_grad():  # gate by hand: sigmoid weights from the flattened normed tokens scale each patch
        tokens = model.patch_embed(images) + model.pos_embed
        for block in model.blocks:
            tokens = block(tokens)
        normed = model.norm(tokens)
        flat = normed.reshape(len(FACES), -1)
        gate = torch.sigmoid(torch.relu(flat @ state["senet.0.weight"].T) @ state["senet.2.weight"].T)
        expected = torch.nn.functional.normalize(model.feature((normed * gate.unsqueeze(-1)).reshape(len(FACES), -1)), dim=-1)
    np.testing.assert_allclose(np.stack([r.embedding for r in result]), expected.numpy(), rtol=1e-4, atol=1e-5)
