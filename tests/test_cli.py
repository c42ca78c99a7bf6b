"""`attn-fiqa score` over a folder of good and broken files: exit 0, a row per good face, each broken file named."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attn_core.cli.main import main, overlay_name
from attn_core.paths import ASSETS_DIR
from attn_core.scoring.model import FaceQualityModel

EXAMPLES = ASSETS_DIR / "examples"


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    shutil.copytree(EXAMPLES, folder / "good")
    (folder / "broken.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes((EXAMPLES / "person_a_2.jpg").read_bytes()[:2000])
    Image.fromarray(np.full((240, 320, 3), 127, np.uint8)).save(folder / "no_face.png")
    return folder


def test_score_folder_with_broken_files(mixed_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scores.csv"
    code = main(["score", str(mixed_folder), "--backbone", "test-face-vit-p8", "--random-init", "--precision", "fp32",
                 "--out", str(out), "--quiet", "--batch-size", "3"])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    good = sorted(p.name for p in (mixed_folder / "good").iterdir())
    assert sorted(Path(r["path"]).name for r in rows if not r["error"]) == good
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.jpg", "empty.png", "truncated.jpg", "no_face.png"}  # every bad file is a row
    assert all(r["score"] == "" for r in rows if r["error"])
    err = capsys.readouterr().err
    for broken in ("broken.jpg", "empty.png", "truncated.jpg", "no_face.png"):
        assert f"skipped {mixed_folder / broken}:" in err
    assert "skipped 4" in err
    # Scores in the file equal the API called directly on the same photo.
    model = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu")
    row = next(r for r in rows if r["path"].endswith("person_a_1.jpg"))
    assert float(row["score"]) == pytest.approx(model.score_image(EXAMPLES / "person_a_1.jpg")[0].score, abs=2e-6)
    assert row["faces_found"] == "1" and row["alignment"] == "detected"


def test_json_heads_block_and_overlays(tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    overlays = tmp_path / "maps"
    code = main(["score", str(EXAMPLES / "astronaut.jpg"), "--backbone", "test-face-vit-p9", "--random-init",
                 "--block", "1", "--heads", "0,2", "--out", str(out), "--save-overlays", str(overlays), "--quiet"])
    assert code == 0
    (row,) = json.loads(out.read_text())
    assert row["block"] == 1 and row["heads"] == "0 2"
    assert [p.name for p in overlays.iterdir()] == [overlay_name(EXAMPLES / "astronaut.jpg", 0)]


def test_missing_weights_is_one_clear_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ATTN_FIQA_HOME", str(tmp_path))
    code = main(["score", str(EXAMPLES / "astronaut.jpg"), "--backbone", "cvlface-vit-s-adaface"])
    assert code == 2
    err = capsys.readouterr().err
    assert "No trained weights for cvlface-vit-s-adaface" in err and "Traceback" not in err
    assert main(["score", str(EXAMPLES), "--backbone", "no-such-net"]) == 2
    assert "Unknown backbone 'no-such-net'" in capsys.readouterr().err


def test_backbones_lists_registry(capsys) -> None:
    assert main(["backbones"]) == 0
    listing = capsys.readouterr().out
    for name in ("insightface-vit-t", "cvlface-vit-s-adaface", "cvlface-vit-b-adaface", "transface-s",
                 "timm:vit_small_patch14_reg4_dinov2.lvd142m"):
        assert name in listing


def test_console_script_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "attn_core", "score", str(EXAMPLES / "aligned_112.png"),
                             "--backbone", "test-face-vit-p8", "--random-init", "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("path,face,score")
    assert "pre_aligned" in result.stdout


def test_random_init_without_a_backbone_uses_the_default_architecture(capsys) -> None:
    assert main(["score", str(ASSETS_DIR / "examples" / "aligned_112.png"), "--random-init", "--quiet"]) == 0
    assert "default architecture" in capsys.readouterr().err


def test_json_scores_are_numbers_with_weights_columns(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    assert main(["score", str(ASSETS_DIR / "examples" / "aligned_112.png"), "--backbone", "test-face-vit-p8",
                 "--random-init", "--out", str(out), "--quiet"]) == 0
    (row,) = json.loads(out.read_text())
    assert isinstance(row["score"], float) and row["weights"] == "random (seed 0)" and row["weights_sha256"] == ""


def test_same_names_in_two_folders_keep_both_overlays(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(EXAMPLES / "person_a_1.jpg", tmp_path / folder / "me.jpg")
    assert main(["score", str(tmp_path / "a"), str(tmp_path / "b"), "--backbone", "test-face-vit-p8", "--random-init",
                 "--save-overlays", str(tmp_path / "maps"), "--quiet", "--out", str(tmp_path / "s.csv")]) == 0
    assert len(list((tmp_path / "maps").iterdir())) == 2


def test_fifo_and_symlink_loop_are_reported_by_name(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(EXAMPLES / "aligned_112.png", folder / "good.png")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.png").symlink_to(folder / "absent.png")
    out = tmp_path / "s.csv"
    assert main(["score", str(folder), str(folder / "pipe.jpg"), "--backbone", "test-face-vit-p8", "--random-init",
                 "--out", str(out), "--quiet"]) == 0
    errors = [(Path(r["path"]).name, r["error"]) for r in csv.DictReader(out.open()) if r["error"]]
    assert ("pipe.jpg", f"{folder / 'pipe.jpg'} is a fifo (named pipe), not an image file") in errors
    assert ("loop.jpg", f"{folder / 'loop.jpg'} is a symlink loop") in errors
    assert ("dangling.png", f"{folder / 'dangling.png'} is a broken symlink (its target does not exist)") in errors
