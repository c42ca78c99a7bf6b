"""Hostile checkpoints (issue 19, item 13): each malformed file gets one sentence naming the key and what was wrong;
a model larger than the memory available is refused before any allocation; NaN or infinite weights are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_core.zoo.backbone import load_backbone
from attn_core.zoo.weights import CheckpointError


def _face(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def state():
    backbone = load_backbone("test-face-vit-p9", random_init=True, seed=4, device="cpu")
    return {k: v.detach().clone().contiguous() for k, v in backbone.model.state_dict().items()}


def _save(tmp: Path, state: dict, name: str = "m.pt", heads=None) -> Path:
    path = tmp / name
    torch.save(state, path)
    if heads is not None:
        (tmp / "config.json").write_text(json.dumps({"num_heads": heads}))
    return path


@pytest.mark.parametrize(("key", "value", "words"), [
    ("pos_embed", torch.zeros(144), "pos_embed has shape (144,)"),
    ("blocks.0.mlp.fc1.weight", torch.tensor(1.0), "blocks.0.mlp.fc1.weight has shape ()"),
    ("patch_embed.proj.weight", torch.zeros(32, 3, 9), "patch_embed.proj.weight has shape (32, 3, 9)"),
    ("pos_embed", torch.zeros(1, 143, 32), "pos_embed has shape (1, 143, 32)"),
])
def test_malformed_tensor_is_named(state, tmp_path: Path, key, value, words) -> None:
    path = _save(tmp_path, dict(state, **{key: value}), heads=4)
    with pytest.raises(CheckpointError) as error:
        load_backbone(weights=path, device="cpu")
    assert words in str(error.value)


@pytest.mark.parametrize("heads", [0, 1e11, 3, 5, -4, 2.5, "x"])
def test_bad_head_count_in_config(state, tmp_path: Path, heads) -> None:
    path = _save(tmp_path, state, heads=heads)
    with pytest.raises(CheckpointError, match="config|head count"):
        load_backbone(weights=path, device="cpu")


@pytest.mark.parametrize("heads", [0, 1_000_000, 3, 5, -4])
def test_bad_num_heads_option(state, tmp_path: Path, heads) -> None:
    path = _save(tmp_path, state)
    with pytest.raises(CheckpointError, match="--num-heads"):
        load_backbone(weights=path, device="cpu", num_heads=heads)
    with pytest.raises(CheckpointError, match="--num-heads"):
        load_backbone("test-face-vit-p9", weights=path, device="cpu", num_heads=heads)


def test_num_heads_option_on_cli_is_one_line(state, tmp_path: Path) -> None:
    path = _save(tmp_path, state)
    images = tmp_path / "images"
    images.mkdir()
    _face(images / "a.png")
    result = subprocess.run([sys.executable, "-m", "attn_core", "score", str(images), "--weights", str(path),
                             "--num-heads", "1000000", "--device", "cpu"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "--num-heads" in result.stderr


def test_model_larger_than_memory_is_refused_before_allocation(state, tmp_path: Path, monkeypatch) -> None:
    dim = 1 << 10  # a tiny file whose expanded views declare a 1024-wide model (~600 MB of parameters)
    huge = dict(state)
    huge["patch_embed.proj.weight"] = torch.zeros(1).expand(dim, 3, 9, 9)
    huge["pos_embed"] = torch.zeros(1).expand(1, 144, dim)
    huge["blocks.0.mlp.fc1.weight"] = torch.zeros(1).expand(2 * dim, dim)
    path = _save(tmp_path, huge, heads=4)
    assert path.stat().st_size < 1 << 20
    real_sysconf = os.sysconf
    monkeypatch.setattr(os, "sysconf",
                        lambda name: 64 * 2**20 // 4096 if name == "SC_AVPHYS_PAGES" else real_sysconf(name))
    built = []
    monkeypatch.setattr("attn_core.zoo.backbone.build_module", lambda spec: built.append(spec))
    with pytest.raises(CheckpointError, match=r"parameters .* more than the 0\.1 GiB of memory available"):
        load_backbone(weights=path, device="cpu")
    assert not built  # refused before anything was allocated


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(state, tmp_path: Path, bad) -> None:
    broken = dict(state)
    broken["blocks.1.attn.proj.weight"] = broken["blocks.1.attn.proj.weight"].clone()
    broken["blocks.1.attn.proj.weight"][3, 4] = bad
    path = _save(tmp_path, broken)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.proj\.weight contains NaN or infinite"):
        load_backbone("test-face-vit-p9", weights=path, device="cpu")
