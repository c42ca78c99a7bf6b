"""The README's library example runs as written: its code block is read from README.md and executed in a fresh
interpreter, in a temporary folder that holds the files it names, with seeded random weights standing in for the
trained checkpoints (the default backbone's file in a temporary ATTN_FIQA_HOME, vits_wf4m_adaface.pt beside it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from attn_core.paths import ASSETS_DIR
from attn_core.zoo import DEFAULT_BACKBONE, load_backbone

README = Path(__file__).resolve().parent.parent / "README.md"


def library_example() -> str:
    text = README.read_text()
    section = text[text.index("\n## Library\n"):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README's Library section has no python block"
    return match.group(1)


def test_readme_library_example_runs_as_written(tmp_path):
    code = library_example()
    # The names the block promises are the public face.
    for name in ("attn_core.create_model", "attn_core.show_map_on_image", "attn_core.FaceQualityModel.from_module",
                 "attn_core.list_backbones"):
        assert name in code
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    default = load_backbone(DEFAULT_BACKBONE, random_init=True, device="cpu")
    save_file({k: v.contiguous() for k, v in default.model.state_dict().items()},
              str(home / "weights" / f"{DEFAULT_BACKBONE}.safetensors"))
    vit_s = load_backbone("cvlface-vit-s-adaface", random_init=True, device="cpu")
    torch.save(vit_s.model.state_dict(), tmp_path / "vits_wf4m_adaface.pt")
    shutil.copyfile(ASSETS_DIR / "examples" / "person_a_1.jpg", tmp_path / "photo.jpg")
    shutil.copyfile(ASSETS_DIR / "examples" / "astronaut.jpg", tmp_path / "group.jpg")
    checks = """
assert isinstance(result.score, float) and result.patch_map.shape == tuple(model.spec.grid)
assert np.isclose(result.patch_map.mean(), result.score, atol=1e-4)   # the map decomposes the score
assert overlay.dtype == np.uint8 and overlay.ndim == 3
assert len(everyone) >= 1 and fast.precision == "bf16"
assert len(model.score_faces(crops)) == 4 and yours.spec.depth == 12
print("README example ok", model.spec.name, default_name)
"""
    script = code + "\ndefault_name = attn_core.create_model().spec.name\n" + checks
    env = dict(os.environ, ATTN_FIQA_HOME=str(home), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"README example ok cvlface-vit-s-adaface {DEFAULT_BACKBONE}" in run.stdout
