"""The bundled demo set (issue 22 item 10): London Set crops, one of each pair degraded by a seeded plan; EDC tables
and plots that say why a value is undefined instead of printing nan."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attn_core.eval import (
    edc,
    edc_table_markdown,
    fmr_resolution_note,
    undefined_reason,
)
from attn_core.eval.demo import (
    DEMO_STRENGTH_RANGE,
    demo_manifest,
    demo_plan,
    demo_set_dir,
    demo_set_folder,
)
from attn_core.faces.degradations import DEGRADATIONS

ROOT = Path(__file__).resolve().parent.parent
LONDON = next((p for p in (ROOT.parent / "shared/data/london-set", ROOT.parent.parent / "shared/data/london-set")
               if p.is_dir()), None)


def test_manifest_matches_the_seeded_plan_and_the_files() -> None:
    rows = demo_manifest()
    identities = sorted({row["identity"] for row in rows})
    assert len(rows) == 204 and len(identities) == 102
    plans = {plan.identity: plan for plan in demo_plan(identities)}
    for identity in identities:
        pair = sorted((row for row in rows if row["identity"] == identity), key=lambda row: row["source"])
        assert len(pair) == 2
        plan = plans[identity]
        degraded, clean = pair[plan.degraded_index], pair[1 - plan.degraded_index]
        assert clean["degradation"] == "none" and clean["file"] == Path(clean["source"]).stem + ".webp"
        assert degraded["degradation"] == plan.degradation in DEGRADATIONS
        assert float(degraded["strength"]) == plan.strength
        assert DEMO_STRENGTH_RANGE[0] <= plan.strength <= DEMO_STRENGTH_RANGE[1]
        assert degraded["file"] == f"{Path(degraded['source']).stem}_{plan.degradation}_{plan.strength:.2f}.webp"
    files = {p.name for p in demo_set_dir().glob("*.webp")}
    assert files == {row["file"] for row in rows}
    assert sum((demo_set_dir() / name).stat().st_size for name in files) < 4_000_000  # a few MB at most
    with Image.open(demo_set_dir() / rows[0]["file"]) as image:
        assert image.size == (112, 112)  # pre-aligned: no detection at evaluation time
    kinds = {row["degradation"] for row in rows} - {"none"}
    assert len(kinds) >= 8  # the seeded draw covers most kinds
    text = (demo_set_dir() / "CREDITS.md").read_text()
    assert "CC BY 4.0" in text and "10.6084/m9.figshare.5047666.v5" in text and "Changes made" in text


def test_demo_set_folder_lays_out_identity_folders(tmp_path: Path) -> None:
    root = demo_set_folder(tmp_path)
    folders = sorted(p.name for p in root.iterdir())
    assert len(folders) == 102 and folders[0] == "001"
    assert all(len(list((root / name).iterdir())) == 2 for name in folders)
    first = min((root / "001").iterdir())
    assert first.read_bytes() == (demo_set_dir() / first.name).read_bytes()
    assert demo_set_folder(tmp_path) == root  # idempotent


@pytest.mark.skipif(LONDON is None, reason="the London set (../shared/data/london-set) is not on this machine")
def test_the_script_rebuilds_the_same_crops() -> None:
    spec = importlib.util.spec_from_file_location("make_demo_set", ROOT / "scripts" / "make_demo_set.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = {row["file"]: row for row in demo_manifest()}
    plans = {plan.identity: plan for plan in demo_plan(sorted({row["identity"] for row in rows.values()}))}
    for name in sorted(rows)[:4]:  # identity 001 and 002: one clean and one degraded crop each
        row = rows[name]
        kind = "" if row["degradation"] == "none" else row["degradation"]
        crop = script.make_crop(LONDON / row["identity"] / row["source"], kind, float(row["strength"]),
                                plans[row["identity"]].seed)
        with Image.open(demo_set_dir() / name) as stored:  # lossless WebP: the pixels themselves
            np.testing.assert_array_equal(np.asarray(stored.convert("RGB")), crop)


def test_undefined_values_say_why() -> None:
    # Genuine pairs have the lowest quality: discarding 40 % of 10 pairs removes all 3 genuine pairs.
    genuine = np.array([True, True, True] + [False] * 7)
    distance = np.array([0.2, 0.3, 0.6] + [0.5, 0.55, 0.7, 0.8, 0.4, 0.65, 0.9])
    quality = np.arange(10, dtype=float)
    curve = edc(genuine, distance, quality, fmr=0.1, discard=[0.0, 0.2, 0.4, 0.6], pauc_limit=0.2)
    # By hand: r=0 keeps all; threshold at 1 of 7 impostors accepted = 0.4; genuine rejected: 0.6 -> 1/3.
    assert curve.fnmr[0] == pytest.approx(1 / 3)
    assert np.isnan(curve.fnmr[2]) and math.isnan(curve.auc) and not math.isnan(curve.pauc)
    assert undefined_reason(curve) == "no genuine pair left from r = 0.4"
    row = edc_table_markdown([curve]).splitlines()[2]
    assert "nan" not in row.lower() and "undefined (no genuine pair left from r = 0.4)" in row
    assert f"{1000 * curve.pauc:.2f}" in row  # a defined pAUC is still printed
    assert undefined_reason(edc(genuine, distance, -quality, fmr=0.1, discard=[0.0, 0.2], pauc_limit=0.2)) is None
    assert fmr_resolution_note(9999, 1e-4) == ("FMR 1e-4 is not resolved: only 9999 impostor pairs (needs at least "
                                               "10000); the threshold there accepts no impostor")
    assert fmr_resolution_note(10000, 1e-4) is None


def test_cli_demo_evaluation_shows_discarding_removes_failures(tmp_path: Path, capsys) -> None:
    """`attn-fiqa eval --demo`: 102 genuine and 10,200 impostor pairs; the sharpness baseline (blur, low resolution
    and noise change it) lowers the FNMR by discarding, beats random discard, and nothing reads nan."""
    from attn_core.cli.main import main

    out = tmp_path / "eval"
    argv = ["eval", "--demo", "--backbone", "test-face-vit-p8", "--random-init", "--precision", "fp32", "--quiet",
            "--fmr", "1e-3", "1e-5", "--threshold-mode", "per_fraction", "--out", str(out), "--cache-dir",
            str(tmp_path / "cache")]
    assert main(argv) == 0
    summary = json.loads((out / "eval.json").read_text())
    assert summary["pairs"]["genuine"] == 102 and summary["pairs"]["impostor"] == 10200
    assert summary["data"].startswith("the London demo set")
    sharp = next(c for c in summary["curves"] if c["method"].startswith("sharpness") and c["fmr"] == 1e-3)
    chance = next(c for c in summary["curves"] if c["method"] == "random" and c["fmr"] == 1e-3)
    assert sharp["fnmr"][6] < sharp["fnmr"][0] and sharp["pauc"] < chance["pauc"]
    markdown = (out / "eval.md").read_text()
    assert "nan" not in markdown.lower()
    assert "FMR 1e-5 is not resolved: only 10200 impostor pairs (needs at least 100000)" in markdown
    assert {c["method"] for c in summary["curves"]} == {"test-face-vit-p8", "sharpness (Laplacian var.)",
                                                         "brightness", "random"}
    with (out / "eval_files.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 204
    assert (out / "edc_fmr1e-5_per_fraction.png").is_file()
    assert "Usage" not in capsys.readouterr().err
