"""Evaluation cache: keys follow file content and model identity; a bad entry is dropped and recomputed."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_core.digests import file_digest, weights_identity
from attn_core.eval.cache import EvalCache, backbone_identity, matcher_key, score_key
from attn_core.scoring.model import ScoreOptions
from attn_core.zoo.backbone import load_backbone


def test_file_digest_is_sha256_of_bytes(tmp_path: Path) -> None:
    first, same, other = tmp_path / "a.jpg", tmp_path / "renamed.png", tmp_path / "b.jpg"
    first.write_bytes(b"face bytes")
    same.write_bytes(b"face bytes")
    other.write_bytes(b"face bytes!")
    assert file_digest(first) == hashlib.sha256(b"face bytes").hexdigest()
    assert file_digest(same) == file_digest(first)  # moving or renaming a file keeps its entries
    assert file_digest(other) != file_digest(first)
    with pytest.raises(OSError):
        file_digest(tmp_path / "missing.jpg")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two copies of one random test checkpoint and a third with one weight changed."""
    folder = tmp_path_factory.mktemp("ckpt")
    state = load_backbone("test-face-vit-p8", random_init=True, device="cpu").model.state_dict()
    torch.save(state, folder / "one.pt")
    shutil.copyfile(folder / "one.pt", folder / "copy_of_one.pt")  # torch.save embeds the file name: copy bytes
    changed = {k: v.clone() for k, v in state.items()}
    changed["norm.weight"][0] += 1.0
    torch.save(changed, folder / "two.pt")
    return folder / "one.pt", folder / "copy_of_one.pt", folder / "two.pt"


def test_model_keys_follow_weights_content_and_options(checkpoints) -> None:
    one, copy_of_one, two = checkpoints
    assert weights_identity(one) == weights_identity(copy_of_one) != weights_identity(two)
    assert weights_identity("random (seed 0)") == "random (seed 0)"
    model_one = load_backbone("test-face-vit-p8", weights=one, device="cpu")
    model_copy = load_backbone("test-face-vit-p8", weights=copy_of_one, device="cpu")
    model_two = load_backbone("test-face-vit-p8", weights=two, device="cpu")
    assert backbone_identity(model_one) == backbone_identity(model_copy) != backbone_identity(model_two)
    # Another architecture with the same (random) weights identity is another model.
    random_p8 = load_backbone("test-face-vit-p8", random_init=True, device="cpu")
    random_p9 = load_backbone("test-face-vit-p9", random_init=True, device="cpu")
    assert backbone_identity(random_p8) != backbone_identity(random_p9)

    base = score_key(model_one, ScoreOptions())
    assert score_key(model_copy, ScoreOptions()) == base
    assert score_key(model_two, ScoreOptions()) != base
    assert score_key(model_one, ScoreOptions(block=2)) == base  # depth 3: block -1 is block 2
    variants = [ScoreOptions(block=1), ScoreOptions(heads=(0, 2)), ScoreOptions(aggregation="median"),
                ScoreOptions(tokens="patch")]
    keys = {score_key(model_one, options) for options in variants}
    assert len(keys) == len(variants) and base not in keys
    assert score_key(model_one, ScoreOptions(heads=(2, 0))) == score_key(model_one, ScoreOptions(heads=(0, 2)))


def test_matcher_key_uses_identity_over_name() -> None:
    class Named:
        name = "sface"

    class WithIdentity:
        name = "sface"
        identity = "sface:sha256:abc"

    assert matcher_key(Named()) != matcher_key(WithIdentity())
    assert matcher_key(WithIdentity()) == matcher_key(WithIdentity())


def test_round_trip_and_corrupt_entries_are_dropped(tmp_path: Path) -> None:
    cache = EvalCache(tmp_path / "cache")
    assert cache.get("embedding", "m", "ab" * 32, ("embedding",)) is None
    assert cache.stats.misses == 1
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    cache.put("embedding", "m", "ab" * 32, embedding=vector)
    stored = cache.get("embedding", "m", "ab" * 32, ("embedding",))
    np.testing.assert_array_equal(stored["embedding"], vector)
    assert cache.stats.hits == 1
    assert cache.get("embedding", "other-model", "ab" * 32, ("embedding",)) is None

    path = cache.path("embedding", "m", "ab" * 32)
    corruptions = [
        path.read_bytes()[:40],  # torn write
        b"not an npz at all",
        None,  # right file format, wrong array name
        None,  # right name, non-finite value
    ]
    for index, corruption in enumerate(corruptions):
        if index == 2:
            cache.put("embedding", "m", "ab" * 32, something_else=vector)
        elif index == 3:
            cache.put("embedding", "m", "ab" * 32, embedding=np.array([np.nan, 1.0]))
        else:
            path.write_bytes(corruption)
        assert cache.get("embedding", "m", "ab" * 32, ("embedding",)) is None
        assert cache.stats.corrupt == index + 1
        assert not path.exists()  # dropped, so the recomputed value can take its place
    cache.put("embedding", "m", "ab" * 32, embedding=vector)
    np.testing.assert_array_equal(cache.get("embedding", "m", "ab" * 32, ("embedding",))["embedding"], vector)
    assert not list(path.parent.glob(".tmp-*"))  # no temporary files left behind


def test_unwritable_or_disabled_cache_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("the cache root cannot be a directory here")
    cache = EvalCache(blocker)
    cache.put("score", "m", "cd" * 32, score=np.float64(1.0))
    assert cache.stats.write_errors == 1
    assert cache.get("score", "m", "cd" * 32, ("score",)) is None

    disabled = EvalCache(tmp_path / "off", enabled=False)
    disabled.put("score", "m", "cd" * 32, score=np.float64(1.0))
    assert disabled.get("score", "m", "cd" * 32, ("score",)) is None
    assert not (tmp_path / "off").exists()
