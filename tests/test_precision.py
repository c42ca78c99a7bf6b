"""bf16 keeps the ranking the score is used for, and every result and row says which precision produced it.

The fp32 path is the reference (matched to the method's own code in test_quality.py); bf16 is the fast path for
batch work. What a user of a quality score needs from it is the same order: which faces to drop, which to keep.
So the test is rank agreement over realistic inputs (the example faces under every degradation at 6 strengths),
not a maximum difference.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from attn_core.faces.degradations import DEGRADATIONS, degrade
from attn_core.scoring.model import FaceQualityModel, extract_faces

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.*"))
STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """Every example face, clean and under every degradation at 5 non-zero strengths (408 crops)."""
    out = []
    for path in EXAMPLES:
        face = extract_faces(path)[0]
        out.append(face.aligned)
        out.extend(degrade(face.aligned, name, s, seed=0) for name in DEGRADATIONS for s in STRENGTHS if s > 0)
    return np.stack(out)


def _tail_agreement(reference: np.ndarray, other: np.ndarray, fraction: float, lowest: bool) -> tuple[float, float]:
    """Share of the reference's lowest (or highest) ``fraction`` that ``other`` also puts there, and the worst
    percentile ``other`` gives any of them (how far a disagreeing face moved)."""
    k = max(1, int(round(fraction * len(reference))))
    order_ref = np.argsort(reference if lowest else -reference)
    order_other = np.argsort(other if lowest else -other)
    rank_other = np.empty(len(other), int)
    rank_other[order_other] = np.arange(len(other))
    tail = order_ref[:k]
    share = len(set(tail) & set(order_other[:k])) / k
    return share, float(rank_other[tail].max() + 1) / len(other)


@pytest.mark.parametrize("name", ["attnfiqa-vit-t", "timm:test_vit.r160_in1k"])  # face ViT; timm ViT with a CLS
def test_bf16_preserves_the_ranking(name: str, crops: np.ndarray) -> None:
    reference = FaceQualityModel(name, random_init=True, device="cpu")
    fast = FaceQualityModel(reference.backbone, precision="bf16")
    fp32 = np.array([r.score for r in reference.score_faces(crops)])
    bf16_results = fast.score_faces(crops)
    bf16 = np.array([r.score for r in bf16_results])
    assert {r.precision for r in bf16_results} == {"bf16"}
    assert not np.array_equal(fp32, bf16), "bf16 had no effect"
    assert spearmanr(fp32, bf16)[0] >= 0.999
    for lowest in (True, False):
        share, worst = _tail_agreement(fp32, bf16, 0.10, lowest)
        # The 10% boundary falls between near-equal scores, so rounding may swap a face across it (measured: at
        # most 1 of 41 on these models and the ViT-S shape); a swapped face must stay next to the boundary.
        assert share >= 0.95, f"{'lowest' if lowest else 'highest'} 10%: only {share:.0%} agree"
        assert worst <= 0.15, f"a face of fp32's {'lowest' if lowest else 'highest'} 10% moved to percentile {worst:.0%}"


def _score_cli(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attn_core", "score", *map(str, EXAMPLES[:3]), "--backbone",
                           "test-face-vit-p8", "--random-init", "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True, timeout=300)


def test_rows_record_their_precision_and_resume_refuses_another(tmp_path: Path) -> None:
    bf16_csv = tmp_path / "bf16.csv"
    done = _score_cli(tmp_path, bf16_csv, "--precision", "bf16")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(bf16_csv.open()))
    assert len(rows) == 3 and {row["precision"] for row in rows} == {"bf16"}
    assert "bf16" in done.stderr  # the summary line names the precision
    again = _score_cli(tmp_path, bf16_csv, "--precision", "fp32", "--resume")
    assert again.returncode != 0
    assert "precision 'bf16' -> 'fp32'" in again.stderr
    fp32_json = tmp_path / "fp32.jsonl"
    assert _score_cli(tmp_path, fp32_json, "--precision", "fp32").returncode == 0
    fp32_rows = [json.loads(line) for line in fp32_json.read_text().splitlines()]
    assert {row["precision"] for row in fp32_rows} == {"fp32"}
    scores = {row["path"]: float(row["score"]) for row in rows}
    for row in fp32_rows:  # same faces, close scores
        assert abs(row["score"] - scores[row["path"]]) <= 0.05 * max(1.0, abs(row["score"]))


def test_cli_default_is_auto(tmp_path: Path) -> None:
    from attn_core.scoring.quality import auto_precision

    out = tmp_path / "auto.csv"
    done = _score_cli(tmp_path, out)
    assert done.returncode == 0, done.stderr
    assert {row["precision"] for row in csv.DictReader(out.open())} == {auto_precision("cpu")}


def test_eval_cache_keeps_precisions_apart() -> None:
    from attn_core.eval.cache import score_key
    from attn_core.scoring.model import ScoreOptions

    model = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu")
    assert score_key(model.backbone, ScoreOptions(), "bf16") != score_key(model.backbone, ScoreOptions(), "fp32")
    assert score_key(model.backbone, ScoreOptions()) == score_key(model.backbone, ScoreOptions(), "fp32")


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_score_does_not_depend_on_its_batch_neighbours(precision: str, crops: np.ndarray) -> None:
    """The same face alone, in batches of 15 and 32 among other faces, and across a batch boundary: the same bits."""
    model = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu", precision=precision)
    faces = crops[:64]
    alone = [model.score_faces(face[None])[0] for face in faces[:8]]
    in_15 = model.score_faces(np.concatenate([faces[40:43], faces[:8], faces[43:47]]))[3:11]
    in_32 = model.score_faces(np.concatenate([faces[:8][::-1], faces[8:32]]))[:8][::-1]
    split = model.score_faces(np.concatenate([faces[8:64], faces[:8]]), batch_size=60)[56:]  # 4 in each batch
    for name, batch in (("a batch of 15", in_15), ("a batch of 32", in_32), ("batches of 60 and 4", split)):
        assert [r.score for r in batch] == [r.score for r in alone], f"{precision}: scores alone vs in {name}"
        for got, want in zip(batch, alone):
            np.testing.assert_array_equal(got.head_maps, want.head_maps)


def test_fixed_chunks_drop_their_padding(crops: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accelerators run fixed chunks (the last one padded with blank images): the padding's rows never reach a
    result. Forced here on CPU with chunks of 4; values agree to float rounding (not bit for bit: on this CPU a
    row's place in the chunk changes MKL's rounding, which is why the CPU runs one image per forward)."""
    from attn_core.scoring import quality

    model = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu")
    faces = crops[:7]
    reference = model.score_faces(faces)
    monkeypatch.setattr(quality, "CPU_FORWARD_IMAGES", 4)
    assert quality.micro_batch_size(model.backbone) == 4
    for count in (1, 3, 5, 7):
        chunked = model.score_faces(faces[:count], with_embedding=True)
        assert len(chunked) == count and all(r.embedding is not None for r in chunked)
        np.testing.assert_allclose([r.score for r in chunked], [r.score for r in reference[:count]], rtol=1e-6)


def test_a_resumed_json_run_gives_the_uninterrupted_scores(tmp_path: Path) -> None:
    """bf16: a run cut after its first file and resumed scores every face as the uninterrupted run does (there the
    first file shares a batch of 14; in the cut run it is alone)."""
    import shutil

    from attn_core.batch.output import read_rows
    from attn_core.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for copy in range(2):
        for path in EXAMPLES:
            if path.name != "aligned_112.png":
                shutil.copy(path, photos / f"{copy}_{path.name}")
    files = sorted(str(path) for path in photos.iterdir())
    tiny = ["--backbone", "test-face-vit-p8", "--random-init", "--quiet", "--precision", "bf16", "--batch-size", "16"]
    whole, cut = tmp_path / "whole.json", tmp_path / "cut.json"
    assert main(["score", *files, *tiny, "--out", str(whole)]) == 0
    assert main(["score", files[0], *tiny, "--out", str(cut)]) == 0
    assert main(["score", *files, *tiny, "--out", str(cut), "--resume"]) == 0
    scores = {path: {row["path"]: row["score"] for row in read_rows(path)} for path in (whole, cut)}
    assert len(scores[whole]) == len(files) and scores[cut] == scores[whole]
