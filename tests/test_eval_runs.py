"""`attn-fiqa eval` and `attn-fiqa sweep` end to end on the bundled photos with a tiny random backbone.

Expected counts are worked out by hand from the folder layout; per-row values are recomputed independently
(SFace, degrade, the quality model, scipy) rather than read back from the code under test.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

import attn_core.eval as evaluation
from attn_core.cli.main import main
from attn_core.eval import measure
from attn_core.eval.edc import edc
from attn_core.eval.matcher import SFaceMatcher, get_matcher
from attn_core.faces import extract_faces
from attn_core.faces.degradations import DEGRADATIONS, degrade
from attn_core.paths import ASSETS_DIR
from attn_core.scoring.model import FaceQualityModel

EXAMPLES = ASSETS_DIR / "examples"
TINY = ["--backbone", "test-face-vit-p8", "--random-init", "--precision", "fp32"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASELINE_LABELS = ("sharpness (Laplacian var.)", "brightness", "face size (box area)")


@pytest.fixture()
def identity_folder(tmp_path: Path) -> Path:
    """The demo layout plus a broken file in A and a face-less image in B."""
    root = evaluation.demo_identity_folder(tmp_path)
    (root / "A" / "broken.jpg").write_text("this is not an image")
    Image.fromarray(np.full((240, 320, 3), 127, np.uint8)).save(root / "B" / "no_face.png")
    return root


@pytest.fixture()
def counted(monkeypatch) -> dict[str, int]:
    """Count faces SFace embeds and photos eval aligns."""
    counts = {"embedded": 0, "aligned": 0}
    original_embed, original_extract = SFaceMatcher.embed, measure.extract_faces

    def embed(self, faces):
        result = original_embed(self, faces)
        counts["embedded"] += len(result)
        return result

    def extract(*args, **kwargs):
        counts["aligned"] += 1
        return original_extract(*args, **kwargs)

    monkeypatch.setattr(SFaceMatcher, "embed", embed)
    monkeypatch.setattr(measure, "extract_faces", extract)
    return counts


def test_demo_identity_folder_layout(tmp_path: Path) -> None:
    root = evaluation.demo_identity_folder(tmp_path)
    layout = {folder.name: sorted(p.name for p in folder.iterdir()) for folder in root.iterdir()}
    assert layout == {"A": ["person_a_1.jpg", "person_a_2.jpg"], "B": ["person_b_1.jpg", "person_b_2.jpg"],
                      "impostor_1": ["impostor_1.jpg"], "impostor_2": ["impostor_2.jpg"],
                      "astronaut": ["astronaut.jpg"]}
    assert (root / "A" / "person_a_1.jpg").read_bytes() == (EXAMPLES / "person_a_1.jpg").read_bytes()
    assert evaluation.demo_identity_folder(tmp_path) == root  # idempotent


def test_eval_end_to_end_then_from_cache(identity_folder: Path, tmp_path: Path, counted, capsys) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["eval", str(identity_folder), *TINY, "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    # 9 files: A = a1, a2, broken; B = b1, b2, no_face; three singletons. Genuine pairs C(3,2) + C(3,2) = 6;
    # cross-identity pairs C(9,2) - 6 = 30, fewer than the 60 asked for, so all of them: 36 pairs. Without the
    # two bad files: 7 files, 2 genuine + (C(7,2) - 2) = 19 impostor = 21 used, 15 dropped.
    summary = json.loads((out / "eval.json").read_text())
    assert summary["pairs"] == {"total": 36, "used": 21, "dropped": 15, "genuine": 2, "impostor": 19}
    assert sorted(Path(f["path"]).name for f in summary["failed_files"]) == ["broken.jpg", "no_face.png"]
    assert "Evaluated 21 of 36 pairs; 2 file(s) unusable, 15 pair(s) dropped" in err
    assert f"skipped {identity_folder / 'A' / 'broken.jpg'}:" in err and "No face found" in err
    assert counted["embedded"] == 7 and counted["aligned"] == 9

    assert set(summary) >= {"data", "matcher", "quality_models", "baselines", "protocol", "pairs", "failed_files",
                            "curves", "verdicts", "warnings", "plots", "cache", "timings_s"}
    assert summary["matcher"]["name"] == "sface" and summary["matcher"]["independent"] is True
    methods = ["test-face-vit-p8", *BASELINE_LABELS, "random"]
    curves = summary["curves"]
    assert len(curves) == len(methods) * 2 * 2  # methods x FMR {1e-3, 1e-4} x both threshold modes
    assert {(c["method"], c["fmr"], c["threshold_mode"]) for c in curves} == {
        (m, f, t) for m in methods for f in (1e-3, 1e-4) for t in ("per_fraction", "fixed")}
    for curve in curves:
        assert len(curve["discard"]) == len(curve["fnmr"]) == 20 and curve["discard"][0] == 0.0
        assert 0.0 <= curve["fnmr"][0] <= 1.0
        for key in ("auc", "pauc"):
            assert curve[key] is None or 0.0 <= curve[key] <= 1.0
        assert curve["pauc_limit"] == 0.3
        assert (curve["beats_random"] is None) if curve["method"] == "random" else curve["beats_random"] in (True, False, None)
    # Every method that does not beat random says so, in a sentence per FMR and threshold mode.
    losers = [c for c in curves if c["method"] != "random" and c["beats_random"] is not True]
    assert len(summary["verdicts"]) == len(losers)
    for curve in losers:
        words = "does not beat random discard" if curve["beats_random"] is False else "undetermined against random"
        assert any(v.startswith(curve["method"]) and words in v and f"FMR {curve['fmr']:.0e}".replace("e-0", "e-") in v
                   for v in summary["verdicts"])
    # Only 19 impostors: neither FMR is resolved, and the report says so.
    assert any("FMR 1e-3 is not resolved" in w for w in summary["warnings"])
    assert any("not trained for face recognition" in w for w in summary["warnings"])

    plots = sorted(p.name for p in out.glob("*.png"))
    assert plots == sorted(summary["plots"]) == ["edc_fmr1e-3_fixed.png", "edc_fmr1e-3_per_fraction.png",
                                                 "edc_fmr1e-4_fixed.png", "edc_fmr1e-4_per_fraction.png"]
    for name in plots:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000

    markdown = (out / "eval.md").read_text()
    for method in methods:
        rows = [line for line in markdown.splitlines() if line.startswith(f"| {method} |")]
        assert len(rows) == 4, method
        assert sum("re-set per fraction" in r for r in rows) == 2 and sum("fixed at r=0" in r for r in rows) == 2
    assert "## FMR 1e-3, threshold re-set per fraction" in markdown and "## FMR 1e-4, threshold fixed at r=0" in markdown
    assert "15 dropped because 2 file(s) could not be used" in markdown and "broken.jpg" in markdown
    for verdict in summary["verdicts"]:
        assert verdict in markdown

    # Second run: every embedding, score and measure comes from the cache; only the two bad files are re-tried.
    counted.update(embedded=0, aligned=0)
    assert main(argv) == 0
    again = json.loads((out / "eval.json").read_text())
    assert counted == {"embedded": 0, "aligned": 2}
    assert again["cache"]["embeddings_computed"] == 0 and again["cache"]["scores_computed"] == 0
    assert again["curves"] == curves

    # A corrupt entry is recomputed (that one file only), never a crash.
    entries = sorted((cache / "embedding").rglob("*.npz"))
    assert len(entries) == 7
    entries[0].write_bytes(b"garbage")
    counted.update(embedded=0, aligned=0)
    assert main(argv) == 0
    third = json.loads((out / "eval.json").read_text())
    assert counted == {"embedded": 1, "aligned": 3}
    assert third["cache"]["corrupt_recomputed"] == 1
    # SFace on a batch of one may differ from the batch of seven in the last float bits: compare with tolerance.
    for before, after in zip(curves, third["curves"]):
        for key, value in before.items():
            if isinstance(value, list):
                assert after[key] == pytest.approx(value, abs=1e-5), key
            else:
                assert after[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float) else value), key


def test_eval_from_pairs_csv_with_missing_file_and_progress(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "path_a,path_b,same_identity\n"
        f"{EXAMPLES / 'person_a_1.jpg'},{EXAMPLES / 'person_a_2.jpg'},1\n"
        f"{EXAMPLES / 'person_b_1.jpg'},{EXAMPLES / 'person_b_2.jpg'},genuine\n"
        f"{EXAMPLES / 'person_a_1.jpg'},{EXAMPLES / 'person_b_1.jpg'},0\n"
        f"{EXAMPLES / 'person_a_2.jpg'},{EXAMPLES / 'impostor_1.jpg'},0\n"
        f"{EXAMPLES / 'impostor_1.jpg'},{EXAMPLES / 'impostor_2.jpg'},impostor\n"
        f"gone.jpg,{EXAMPLES / 'impostor_2.jpg'},0\n")
    seen: list[tuple[float, str]] = []
    report = evaluation.run_eval(pairs, ["test-face-vit-p8"], "sface", tmp_path / "out", random_init=True,
                                    device="cpu", fmrs=[0.3], threshold_modes=["per_fraction"],
                                    cache_dir=tmp_path / "cache", progress=lambda f, m: seen.append((f, m)))
    assert [p.name for p, _ in report.failed_files] == ["gone.jpg"]
    assert (report.n_pairs, report.n_pairs_used) == (6, 5)
    assert [p.name for p in report.plot_paths] == ["edc_fmr0.3_per_fraction.png"]
    assert report.json_path.is_file() and report.markdown_path.is_file()
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # The same through the CLI (--pairs), fully from the cache the call above filled.
    assert main(["eval", "--pairs", str(pairs), *TINY, "--out", str(tmp_path / "cli"), "--cache-dir",
                 str(tmp_path / "cache"), "--fmr", "0.3", "--threshold-mode", "per-fraction", "--quiet"]) == 0
    from_cli = json.loads((tmp_path / "cli" / "eval.json").read_text())
    assert from_cli["pairs"]["used"] == 5 and from_cli["cache"]["embeddings_computed"] == 0
    assert from_cli["protocol"]["threshold_modes"] == ["per_fraction"]

    # The per-method curve equals evaluation.edc on independently computed inputs: SFace distances and
    # min-of-pair quality from scores of the same model.
    sface, model = get_matcher("sface"), FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu")
    used = [(EXAMPLES / a, EXAMPLES / b, g) for a, b, g in [
        ("person_a_1.jpg", "person_a_2.jpg", True), ("person_b_1.jpg", "person_b_2.jpg", True),
        ("person_a_1.jpg", "person_b_1.jpg", False), ("person_a_2.jpg", "impostor_1.jpg", False),
        ("impostor_1.jpg", "impostor_2.jpg", False)]]
    crops = {p: extract_faces(p)[0].aligned for a, b, _ in used for p in (a, b)}
    embedding = {p: sface.embed(c)[0] for p, c in crops.items()}
    quality = {p: model.score_faces(c)[0].score for p, c in crops.items()}
    cosines = np.array([float(np.dot(embedding[a], embedding[b])) for a, b, _ in used])
    distance = np.arccos(np.clip(cosines, -1, 1)) / math.pi
    pair_q = np.array([min(quality[a], quality[b]) for a, b, _ in used])
    expected = edc(np.array([g for _, _, g in used]), distance, pair_q, fmr=0.3)
    (curve,) = [c for c in report.curves if c.method == "test-face-vit-p8"]
    np.testing.assert_allclose(curve.fnmr, expected.fnmr, atol=1e-6, equal_nan=True)


def test_matcher_must_not_be_the_quality_model(tmp_path: Path, capsys) -> None:
    data = evaluation.demo_identity_folder(tmp_path)
    argv = ["eval", str(data), *TINY, "--matcher", "test-face-vit-p8", "--matcher-random-init",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--fmr", "0.1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attn-fiqa eval: the matcher (test-face-vit-p8) is the quality model itself")
    assert "\n" not in err and "Traceback" not in err

    assert main(argv + ["--allow-same-matcher"]) == 0
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert summary["matcher"] == {"name": "test-face-vit-p8", "independent": False, "distance": "arccos(cosine)/pi"}
    assert summary["warnings"][0].startswith("WARNING: the matcher (test-face-vit-p8) is the quality model itself")
    assert "**WARNING: the matcher" in (tmp_path / "out" / "eval.md").read_text()
    # Another backbone as the matcher is independent of the quality model.
    report = evaluation.run_eval(data, ["test-face-vit-p9"], "test-face-vit-p8", tmp_path / "out2",
                                    random_init=True, matcher_random_init=True, fmrs=[0.1],
                                    cache_dir=tmp_path / "cache", device="cpu")
    assert report.summary["matcher"]["independent"] is True
    with pytest.raises(ValueError, match="unknown matcher 'nope'"):
        evaluation.resolve_matcher("nope")


def test_sweep_end_to_end(tmp_path: Path, capsys) -> None:
    faces = tmp_path / "faces"
    faces.mkdir()
    shutil.copyfile(EXAMPLES / "aligned_112.png", faces / "a_aligned.png")
    shutil.copyfile(EXAMPLES / "person_b_1.jpg", faces / "b_person.jpg")
    (faces / "c_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "sweep"
    assert main(["sweep", str(faces), *TINY, "--out", str(out), "--strengths", "0,0.5,1", "--seed", "3",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Swept 2 face(s) x 10 degradations x 3 strengths; 1 file(s) skipped." in err
    assert f"skipped {faces / 'c_broken.jpg'}:" in err

    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 2 * len(DEGRADATIONS) * 3
    assert {r["degradation"] for r in rows} == set(DEGRADATIONS)
    assert all(float(r["utility"]) == pytest.approx(1.0, abs=1e-5) for r in rows if float(r["strength"]) == 0)

    # One row recomputed independently: the face's crop, degraded with seed + file index, SFace cosine to the
    # clean crop, the quality model's score, and the failure flag at SFace's threshold 0.363.
    row = next(r for r in rows if r["path"].endswith("b_person.jpg") and r["degradation"] == "occlude_eyes"
               and r["strength"] == "1.0")
    face = extract_faces(faces / "b_person.jpg")[0]
    crop_landmarks = face.landmarks @ face.transform[:, :2].T + face.transform[:, 2]
    damaged = degrade(face.aligned, "occlude_eyes", 1.0, seed=3 + 1, landmarks=crop_landmarks)
    sface = get_matcher("sface")
    utility = float(np.dot(sface.embed(face.aligned)[0], sface.embed(damaged)[0]))
    assert float(row["utility"]) == pytest.approx(utility, abs=1e-5)
    assert row["failure"] == str(utility < 0.363)
    model = FaceQualityModel("test-face-vit-p8", random_init=True, device="cpu")
    assert float(row["score:test-face-vit-p8"]) == pytest.approx(model.score_faces(damaged)[0].score, abs=1e-6)

    summary = json.loads((out / "sweep.json").read_text())
    assert summary["faces"] == 2 and summary["matcher"]["failure_threshold"] == pytest.approx(0.363)
    assert [Path(f["path"]).name for f in summary["failed_files"]] == ["c_broken.jpg"]
    result = summary["results"]["test-face-vit-p8"]
    for name, entry in result["per_degradation"].items():
        subset = [r for r in rows if r["degradation"] == name]
        scores = [float(r["score:test-face-vit-p8"]) for r in subset]
        expected = stats.spearmanr(scores, [float(r["strength"]) for r in subset]).statistic
        assert entry["spearman_score_strength"] == pytest.approx(expected)
        utilities = [float(r["utility"]) for r in subset]
        if len(set(utilities)) > 1 and len(set(scores)) > 1:
            assert entry["spearman_score_utility"] == pytest.approx(stats.spearmanr(scores, utilities).statistic)
        else:  # a constant column has no rank correlation
            assert entry["spearman_score_utility"] is None
        assert len(entry["mean_score_by_strength"]) == 3
    # Pooled statistics count each face's clean crop once: 2 faces x (1 + 10 x 2) crops.
    pooled = [r for r in rows if float(r["strength"]) > 0 or r["degradation"] == "gaussian_blur"]
    assert len(pooled) == 42
    flags = np.array([r["failure"] == "True" for r in pooled])
    assert result["failures_pooled"] == int(flags.sum())
    if 0 < flags.sum() < flags.size:  # low score flags failure: P(score_fail < score_ok) + ties / 2
        score = np.array([float(r["score:test-face-vit-p8"]) for r in pooled])
        wins = (score[flags][:, None] < score[~flags][None, :]).mean() + 0.5 * (score[flags][:, None] == score[~flags][None, :]).mean()
        assert result["failure_auc_pooled"] == pytest.approx(wins)
    else:  # all or none failed: the AUC is undefined, and reported as such
        assert result["failure_auc_pooled"] is None

    for name in ("sweep_strength_test-face-vit-p8.png", "sweep_utility_test-face-vit-p8.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC) and (out / name).stat().st_size > 5000
    markdown = (out / "sweep.md").read_text()
    for name in DEGRADATIONS:
        assert f"| {name} |" in markdown
    assert "c_broken.jpg" in markdown


def test_missing_weights_is_one_clear_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ATTN_FIQA_HOME", str(tmp_path))
    code = main(["sweep", str(EXAMPLES), "--backbone", "timm:vit_small_patch14_dinov2.lvd142m", "--out",
                 str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attn-fiqa sweep: No trained weights for timm:vit_small_patch14_dinov2.lvd142m")
    assert "\n" not in err and not (tmp_path / "out").exists()


def test_fixed_mode_pauc_ignores_undefined_fnmr_beyond_the_limit() -> None:
    # Pairs in ascending quality: G .2, G .6, I .5, I .7. FMR 0.5 over 2 impostors -> threshold .5 (one accepted).
    # r = 0: FNMR 1/2; r = .25 (p0 gone): 1/1; r >= .5: no genuine left, NaN. Stepwise pAUC up to .5:
    # .5 * .25 + 1 * .25 = .375, whatever happens beyond .5 (this was NaN before the fix in evaluation._integrate).
    curve = edc(np.array([True, True, False, False]), np.array([.2, .6, .5, .7]), np.array([1.0, 2.0, 3.0, 4.0]),
                fmr=0.5, threshold_mode="fixed", discard=[0.0, 0.25, 0.5, 0.75], pauc_limit=0.5)
    np.testing.assert_allclose(curve.fnmr, [0.5, 1.0, np.nan, np.nan])
    assert curve.pauc == pytest.approx(0.375)
    assert math.isnan(curve.auc)
