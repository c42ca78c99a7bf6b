"""The dlib teacher of ``attn-fiqa train run --distill-weight`` (attn_core.train.teacher): the chip mapping and model lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attn_core.train import teacher as distill


def test_chip_mapping_is_deterministic_and_pads_the_crop() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    chip = distill.crop_to_chip(crop, pad=0.2)
    assert chip.shape == (150, 150, 3) and np.array_equal(chip, distill.crop_to_chip(crop, pad=0.2))
    assert chip[:10].max() == 0 and chip[-10:].max() == 0  # 22-px black margin at 112 -> ~21 px at 150
    assert np.array_equal(distill.crop_to_chip(crop, pad=0.0), distill.crop_to_chip(crop, pad=0.0))


def test_dlib_teacher_wrapper(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    with pytest.raises(FileNotFoundError):
        distill.find_teacher_model(tmp_path / "missing.dat")
    chip = distill.crop_to_chip(np.zeros((112, 112, 3), np.uint8), pad=0.2)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
