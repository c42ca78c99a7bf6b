"""The registry: every DESIGN 2.1 variant with its exact numbers, timm names, the default's resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from attn_core.zoo.registry import (
    BackboneNotAvailable,
    get_spec,
    list_backbones,
    resolve_default,
)

# name: (patch, grid, dim, depth, heads, mlp_ratio) straight from docs/DESIGN.md 2.1
TABLE = {
    "insightface-vit-t": (9, 12, 256, 12, 8, 4.0),
    "insightface-vit-s": (9, 12, 512, 12, 8, 4.0),
    "insightface-vit-b": (9, 12, 512, 24, 8, 4.0),
    "insightface-vit-l": (9, 12, 768, 24, 8, 4.0),
    "cvlface-vit-s-adaface": (8, 14, 512, 12, 8, 5.0),
    "cvlface-vit-s-arcface": (8, 14, 512, 12, 8, 5.0),
    "cvlface-vit-b-adaface": (8, 14, 512, 24, 16, 3.0),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_face_vit_table(name: str) -> None:
    spec = get_spec(name)
    patch, grid, dim, depth, heads, mlp = TABLE[name]
    assert (spec.patch_size, spec.grid, spec.embed_dim, spec.depth, spec.num_heads, spec.mlp_ratio) == (
        patch, (grid, grid), dim, depth, heads, mlp)
    assert spec.family == "face_vit" and spec.num_prefix_tokens == 0 and spec.input_size == 112
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5) and spec.color_order == "RGB"
    assert spec.covered_size == ((108, 108) if patch == 9 else (112, 112))


def test_transface_is_gated() -> None:
    assert get_spec("transface-s").gated and not get_spec("insightface-vit-s").gated


def test_hf_source_of_cvlface_base() -> None:
    source = get_spec("cvlface-vit-b-adaface").weights
    assert source.kind == "hf" and source.location == "minchul/cvlface_adaface_vit_base_webface4m"


def test_timm_names_and_prefix_tokens() -> None:
    reg = get_spec("timm:vit_small_patch14_reg4_dinov2.lvd142m")
    assert reg.num_prefix_tokens == 5 and reg.grid == (16, 16) and reg.input_size == 224
    deit = get_spec("deit_small_patch16_224")
    assert deit.num_prefix_tokens == 1 and deit.num_heads == 6 and not deit.face_trained
    with pytest.raises(KeyError, match="Unknown backbone"):
        get_spec("no_such_model_anywhere")
    with pytest.raises(ValueError, match="not a VisionTransformer"):
        get_spec("resnet18")


def test_list_has_every_family() -> None:
    names = {s.name for s in list_backbones()}
    assert set(TABLE) <= names and "transface-l" in names
    assert any(n.startswith("timm:") for n in names)
    assert not any(n.startswith("test-") for n in names)
    assert {s.name for s in list_backbones("cvlface-*")} == {n for n in TABLE if n.startswith("cvlface")}


def test_default_without_face_weights_says_how_to_add_one(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("attn_core.zoo.registry.ASSETS_DIR", tmp_path)
    monkeypatch.setenv("ATTN_FIQA_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BackboneNotAvailable, match="No face-trained backbone is installed"):
        resolve_default()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "insightface-vit-s.pt").write_bytes(b"x")
    assert resolve_default() == "insightface-vit-s"


def test_plain_patterns_match_as_substrings() -> None:
    assert {s.name for s in list_backbones("cvlface")} == {s.name for s in list_backbones("cvlface-*")}
    assert {s.name for s in list_backbones("TIMM-FACE")} == {f"timm-face-vit-ti-{loss}" for loss in
                                                            ("arcface", "cosface", "adaface")} | {"timm-face-vit-s-cosface"}
