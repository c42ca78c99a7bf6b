"""The public face: ``import attn_core`` gives the factory, the model class, results, capture, faces, degradations
and the overlay helper; a user's own nn.Module ViT scores through the same path as a registered checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import attn_core

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
PHOTO = str(EXAMPLES / "person_a_1.jpg")


def test_public_names_resolve_and_import_is_lazy() -> None:
    for name in ("create_model", "list_backbones", "FaceQualityModel", "ScoreOptions", "QualityResult",
                 "AttentionCapture", "extract_faces", "degrade", "show_map_on_image"):
        assert name in attn_core.__all__ and getattr(attn_core, name) is not None
    with pytest.raises(AttributeError):
        attn_core.no_such_name  # noqa: B018
    loaded = subprocess.run([sys.executable, "-c", "import sys, attn_core; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"  # nothing heavy until a name is used


def test_from_module_face_vit_equals_the_checkpoint_path(tmp_path: Path) -> None:
    from attn_core.zoo.face_vit import FaceViT

    torch.manual_seed(1)
    model = FaceViT(patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, out_dim=16).eval()
    mine = attn_core.FaceQualityModel.from_module(model, name="mine", device="cpu")
    assert (mine.spec.grid, mine.spec.num_heads, mine.spec.depth, mine.spec.patch_size) == ((14, 14), 4, 2, 8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "mine.safetensors")
    loaded = attn_core.create_model(weights=tmp_path / "mine.safetensors", num_heads=4, device="cpu")
    assert mine.score_image(PHOTO)[0].score == pytest.approx(loaded.score_image(PHOTO)[0].score, rel=1e-6)


def test_from_module_timm_against_hand_computation() -> None:
    import timm

    torch.manual_seed(2)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=112, patch_size=8,
                              depth=2).eval()
    mine = attn_core.FaceQualityModel.from_module(model, name="timm-mine", mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu")
    (result,) = mine.score_image(PHOTO)
    images = (torch.from_numpy(result.face.aligned).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(images)))
        tokens = model.blocks[0](tokens)
        block = model.blocks[1]
        qkv = block.attn.qkv(block.norm1(tokens)).reshape(1, tokens.shape[1], 3, 3, 64).permute(2, 0, 3, 1, 4)
        logits = (qkv[0] @ qkv[1].transpose(-1, -2)) * 64**-0.5  # (1, H, N, N) with the class token
    assert result.score == pytest.approx(float(logits.mean()), rel=1e-4)
    assert mine.spec.num_prefix_tokens == 1


def test_from_module_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="neither a timm VisionTransformer nor a face ViT"):
        attn_core.FaceQualityModel.from_module(torch.nn.Linear(3, 3))


def test_show_map_on_image_takes_everything_from_the_result() -> None:
    from attn_core.viz import crop_overlay, photo_overlay
    from attn_core.zoo.registry import get_spec

    model = attn_core.create_model("test-face-vit-p9", random_init=True, device="cpu")  # 9-px: 108 of 112 covered
    (result,) = model.score_image(PHOTO)
    spec = get_spec("test-face-vit-p9")
    assert np.array_equal(attn_core.show_map_on_image(result), crop_overlay(result.face.aligned, result.patch_map, spec))
    assert np.array_equal(attn_core.show_map_on_image(result, on="photo", head=1, cmap="viridis"),
                          photo_overlay(result.face, result.head_maps[1], spec, cmap="viridis"))
    bare = model.score_faces(result.face.aligned[None])[0]
    with pytest.raises(ValueError, match="carries no face"):
        attn_core.show_map_on_image(bare)
