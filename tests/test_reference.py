"""Reference sets (issue 23): percentile and 0-100 value against a direct numpy computation, references of other
weights or settings refused, thresholds from a goal against EDC points computed here by hand, a saved threshold
giving the pass column it implies in every output format, and bad input (an empty or face-less folder, a hand-edited
JSON) as one line with nothing written."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attn_core.batch.output import read_rows
from attn_core.cli.main import main
from attn_core.eval import demo_identity_folder
from attn_core.eval.threshold import threshold_for_goal
from attn_core.scoring import (
    ReferenceError,
    ScoreOptions,
    build_reference,
    create_model,
    load_reference,
    save_reference,
)
from attn_core.scoring.reference import new_reference, reference_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
TINY = ["--backbone", "test-face-vit-p8", "--random-init", "--quiet", "--precision", "fp32"]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch) -> Path:
    """Every test has its own home folder, so references never leak between tests."""
    folder = tmp_path / "home"
    monkeypatch.setenv("ATTN_FIQA_HOME", str(folder))
    return folder


@pytest.fixture(scope="module")
def model():
    return create_model("test-face-vit-p8", random_init=True)


def _by_hand(reference_scores: np.ndarray, score: float) -> tuple[float, float]:
    n = reference_scores.size
    lower, equal = np.sum(reference_scores < score), np.sum(reference_scores == score)
    return 100.0 * lower / n, float(np.clip(100.0 * (lower + 0.5 * equal) / n, 0, 100))


def _settings(**changes) -> dict:
    settings = {"backbone": "test-face-vit-p8", "weights": "random (seed 0)", "weights_sha256": "", "block": 2,
                "heads": "all", "aggregation": "mean", "tokens": "all", "precision": "fp32"}
    return {**settings, **changes}


def test_percentile_and_0_100_value_match_numpy_ties_included():
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(0.2, 0.05, 200), [0.25] * 7])  # seven ties at 0.25
    reference = new_reference("typical", _settings(), scores)
    probes = np.concatenate([rng.normal(0.2, 0.08, 50), [0.25, scores.min(), scores.max(), -5.0, 5.0]])
    for probe in probes:
        percentile, quality = _by_hand(scores, probe)
        standing = reference.standing_of(float(probe))
        assert standing.percentile == pytest.approx(percentile, abs=1e-12)
        assert standing.quality_0_100 == pytest.approx(quality, abs=1e-12)
    assert reference.standing_of(-5.0).quality_0_100 == 0 and reference.standing_of(5.0).quality_0_100 == 100
    assert reference.standing_of(0.25).percentile < reference.standing_of(0.25).quality_0_100  # ties: half counted


def test_quality_result_percentile_against_a_built_reference(model):
    reference, skipped = build_reference(model, [EXAMPLES], "examples")
    assert skipped == [] and reference.faces == 8 and reference.settings == _settings()
    crops = np.stack([np.asarray(Image.open(EXAMPLES / "aligned_112.png").convert("RGB"))])
    (result,) = model.score_faces(crops)
    percentile, quality = _by_hand(reference.scores, result.score)
    assert result.percentile(reference) == pytest.approx(percentile)
    assert result.standing(reference).quality_0_100 == pytest.approx(quality)
    assert result.standing(reference).passed is None  # no threshold yet
    # The crop is one of the reference's faces: its stored score is this one (to float rounding across batches).
    assert np.min(np.abs(reference.scores - result.score)) < 1e-6


@pytest.mark.parametrize("change", [
    {"block": 0}, {"heads": [0, 1]}, {"aggregation": "median"}, {"precision": "bf16"},
    {"backbone": "test-face-vit-p9"}, {"weights_sha256": "a" * 64, "weights": "other.pt"},
])
def test_a_reference_of_other_weights_or_settings_is_refused(change):
    reference = new_reference("typical", _settings(**change), [0.1, 0.2, 0.3])
    with pytest.raises(ReferenceError, match="does not apply") as caught:
        reference.check(_settings())
    assert "\n" not in str(caught.value)


def test_results_of_other_settings_are_refused(model):
    reference, _ = build_reference(model, [EXAMPLES / "person_a_1.jpg", EXAMPLES / "person_b_1.jpg"], "two")
    (result,) = model.score_image(EXAMPLES / "person_a_2.jpg")
    result.standing(reference)  # same settings: fine
    for other in (result.with_options(aggregation="max"), result.with_options(heads=[0])):
        with pytest.raises(ReferenceError, match="does not apply"):
            other.percentile(reference)
    (deeper,) = model.score_image(EXAMPLES / "person_a_2.jpg", ScoreOptions(block=0))
    with pytest.raises(ReferenceError, match="block 2 here, 0 there"):
        deeper.standing(reference)


# ------------------------------------------------------------------------------------------ thresholds from the EDC


def _threshold_by_hand(impostor: np.ndarray, fmr: float) -> float:
    """The FMR-closest accepting distance on these impostors (ties: the stricter one), written out independently."""
    ordered = np.sort(impostor)
    candidates = [(abs(k - fmr * ordered.size), k) for k in range(ordered.size + 1)]
    best_k = min(candidates)[1]
    return np.nextafter(ordered[0], -np.inf) if best_k == 0 else ordered[best_k - 1]


def _edc_points_by_hand(genuine, distance, pair_q, fmr, mode):
    """(threshold t, fraction of pairs with quality < t, FNMR of the pairs kept) for every distinct pair quality."""
    points = []
    fixed = _threshold_by_hand(distance[~genuine], fmr)
    for t in np.unique(pair_q):
        kept = pair_q >= t
        if np.mean(~kept) > 0.95 + 1e-12:
            break
        kept_genuine = distance[kept & genuine]
        kept_impostor = distance[kept & ~genuine]
        if not kept_genuine.size or (mode == "per_fraction" and not kept_impostor.size):
            points.append((t, np.mean(~kept), np.nan))
            continue
        accept = fixed if mode == "fixed" else _threshold_by_hand(kept_impostor, fmr)
        points.append((t, np.mean(~kept), np.mean(kept_genuine > accept)))
    return points


def _midway(points, t) -> float:
    """The convention: midway between the kept pair quality t and the distinct pair quality below it (for the first
    point, t minus half the gap to the next one)."""
    values = [p[0] for p in points]
    i = values.index(t)
    return (values[i - 1] + t) / 2 if i > 0 else t - (values[1] - values[0]) / 2


def _synthetic_eval(seed: int = 0):
    """60 images of 12 people, pairs with quality = min of the two faces (so pairs tie), lower quality = more error."""
    rng = np.random.default_rng(seed)
    quality = {f"p{i // 5}/{i % 5}.jpg": float(np.round(rng.normal(0, 1), 2)) for i in range(60)}
    names = list(quality)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if a.split("/")[0] == b.split("/")[0]]
    pairs += [tuple(rng.choice(names, 2, replace=False)) for _ in range(400)]
    genuine = np.array([a.split("/")[0] == b.split("/")[0] for a, b in pairs])
    pair_q = np.array([min(quality[a], quality[b]) for a, b in pairs])
    noise = rng.normal(0, 0.05, len(pairs)) + 0.08 * np.clip(-pair_q, 0, None)
    distance = np.clip(np.where(genuine, 0.30, 0.45) + noise, 0, 1)
    return genuine, distance, pair_q, quality


@pytest.mark.parametrize("mode", ["per_fraction", "fixed"])
@pytest.mark.parametrize("target", [0.0, 0.1, 0.25])
def test_target_fnmr_threshold_is_the_least_discarding_edc_point_meeting_it(mode, target):
    genuine, distance, pair_q, quality = _synthetic_eval()
    points = _edc_points_by_hand(genuine, distance, pair_q, 0.05, mode)
    meeting = [p for p in points if not np.isnan(p[2]) and p[2] <= target + 1e-12]
    result = threshold_for_goal(genuine, distance, pair_q, quality, fmr=0.05, threshold_mode=mode, target_fnmr=target)
    if not meeting:
        assert not result.reached and result.threshold is None and "cannot reach" in result.message
        lowest = min(p[2] for p in points if not np.isnan(p[2]))
        assert f"{lowest:.2%}" in result.message
        return
    t, fraction, fnmr = meeting[0]
    assert result.reached and result.threshold == pytest.approx(_midway(points, t))
    assert result.fraction_discarded == pytest.approx(fraction) and result.fnmr == pytest.approx(fnmr)
    assert result.images_below == [n for _, n in sorted((q, n) for n, q in quality.items() if q < result.threshold)]
    # Every face of a kept pair passes, and the lowest face of each discarded pair fails.
    assert all(q >= result.threshold for q in pair_q[pair_q >= t]) and all(q < result.threshold for q in pair_q[pair_q < t])


def test_the_synthetic_curve_needs_discarding_and_an_unreachable_goal_says_so():
    genuine, distance, pair_q, quality = _synthetic_eval()
    points = _edc_points_by_hand(genuine, distance, pair_q, 0.05, "per_fraction")
    start, best = points[0][2], np.nanmin([p[2] for p in points])
    goal = (start + best) / 2  # a goal between: some faces must go
    result = threshold_for_goal(genuine, distance, pair_q, quality, fmr=0.05, target_fnmr=goal)
    assert result.reached and result.fraction_discarded > 0 and result.images_below
    if best > 0:
        impossible = threshold_for_goal(genuine, distance, pair_q, quality, fmr=0.05, target_fnmr=best / 2)
        assert not impossible.reached and "cannot reach" in impossible.message


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.33, 0.9])
def test_discard_goal_discards_at_most_that_fraction(fraction):
    genuine, distance, pair_q, quality = _synthetic_eval(1)
    points = _edc_points_by_hand(genuine, distance, pair_q, 0.05, "per_fraction")
    t, discarded, fnmr = [p for p in points if p[1] <= fraction + 1e-12][-1]
    result = threshold_for_goal(genuine, distance, pair_q, quality, fmr=0.05, discard=fraction)
    assert result.threshold == pytest.approx(_midway(points, t)) and result.fraction_discarded == pytest.approx(discarded)
    assert (result.fnmr is None and np.isnan(fnmr)) or result.fnmr == pytest.approx(fnmr)


# ------------------------------------------------------------------------------------------------- the command line


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_threshold_saved_then_used_by_score_gives_the_pass_column_it_implies(tmp_path, capsys, home):
    assert main(["reference", "build", str(EXAMPLES), "--name", "typical", *TINY]) == 0
    data = demo_identity_folder(tmp_path)
    out = tmp_path / "eval"
    assert main(["eval", str(data), *TINY, "--out", str(out), "--fmr", "1e-3", "--discard", "0.3",
                 "--save-threshold-to", "typical"]) == 0
    (goal,) = json.loads((out / "threshold.json").read_text())
    saved = json.loads(reference_path("typical").read_text())
    assert goal["reached"] and saved["threshold"]["value"] == goal["threshold"]
    assert saved["threshold"]["fraction_discarded"] <= 0.3 and goal["images_below"]
    sha = hashlib.sha256(reference_path("typical").read_bytes()).hexdigest()
    capsys.readouterr()
    scores = np.array(saved["scores"])
    for suffix in (".csv", ".jsonl", ".json"):
        rows_file = tmp_path / f"scores{suffix}"
        assert main(["score", str(data), *TINY, "--reference", "typical", "--out", str(rows_file)]) == 0
        rows = read_rows(rows_file)
        assert len(rows) == 7
        for row in rows:
            score = float(row["score"])
            percentile, quality = _by_hand(scores, score)
            assert float(row["percentile"]) == pytest.approx(percentile)
            assert float(row["quality_0_100"]) == pytest.approx(quality)
            assert row["reference"] == "typical" and row["reference_sha256"] == sha
            passed = row["pass"] if suffix != ".csv" else row["pass"] == "True"
            assert passed == (score >= goal["threshold"])
        below = {Path(name).name for name in goal["images_below"]}
        assert {Path(r["path"]).name for r in rows if float(r["score"]) < goal["threshold"]} == below
    capsys.readouterr()
    # A resumed run must use the same reference (name and JSON), or it is refused.
    assert main(["score", str(data), *TINY, "--out", str(rows_file), "--resume"]) == 2
    assert "reference 'typical' -> 'none'" in _one_line(capsys.readouterr().err)


def test_other_settings_are_one_line_and_no_rows(tmp_path, capsys):
    assert main(["reference", "build", str(EXAMPLES / "person_a_1.jpg"), "--name", "one", *TINY]) == 0
    capsys.readouterr()
    out = tmp_path / "scores.csv"
    assert main(["score", str(EXAMPLES), *TINY, "--block", "0", "--reference", "one", "--out", str(out)]) == 2
    assert "does not apply" in _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_empty_and_faceless_folders_are_one_line_and_nothing_is_written(tmp_path, capsys, home):
    empty = tmp_path / "empty"
    empty.mkdir()
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    Image.fromarray(np.full((200, 160, 3), 128, np.uint8)).save(faceless / "wall.png")
    (faceless / "broken.jpg").write_bytes(b"not an image")
    for folder, words in ((empty, "No image files"), (faceless, "No face was found")):
        assert main(["reference", "build", str(folder), "--name", "nothing", *TINY]) == 2
        line = _one_line(capsys.readouterr().err)
        assert words in line and "nothing was written" in line
    assert not (home / "references").exists() or not list((home / "references").iterdir())


def test_bad_files_are_reported_and_skipped(tmp_path, capsys):
    folder = tmp_path / "faces"
    shutil.copytree(EXAMPLES, folder)
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert main(["reference", "build", str(folder), "--name", "mixed", *TINY]) == 0
    assert "skipped" in capsys.readouterr().err
    reference = load_reference("mixed")
    assert reference.faces == 8 and reference.skipped == 1


@pytest.mark.parametrize("edit", [
    lambda d: "{not json",
    lambda d: json.dumps([1, 2, 3]),
    lambda d: json.dumps({**d, "scores": [0.1, "high", 0.3], "faces": 3}),
    lambda d: json.dumps({**d, "scores": [], "faces": 0}),
    lambda d: json.dumps({**d, "faces": 99}),
    lambda d: json.dumps({**d, "scores": [0.3, 0.1]}),
    lambda d: json.dumps({**d, "settings": {**d["settings"], "aggregation": "vibes"}}),
    lambda d: json.dumps({**d, "settings": {**d["settings"], "block": -1}}),
    lambda d: json.dumps({**d, "settings": {**d["settings"], "heads": [3, 3]}}),
    lambda d: json.dumps({**d, "threshold": {"value": "NaN"}}),
    lambda d: json.dumps({**d, "version": 7}),
])
def test_a_hand_edited_reference_is_one_line_and_no_rows(tmp_path, capsys, edit):
    save_reference(new_reference("edited", _settings(), [0.1, 0.3]))
    path = reference_path("edited")
    path.write_text(edit(json.loads(path.read_text())))
    out = tmp_path / "scores.csv"
    assert main(["score", str(EXAMPLES / "person_a_1.jpg"), *TINY, "--reference", "edited", "--out", str(out)]) == 2
    assert "not a valid reference file" in _one_line(capsys.readouterr().err)
    assert not out.exists()
    assert main(["reference", "show", "edited"]) == 2
    assert "not a valid reference file" in _one_line(capsys.readouterr().err)
    assert main(["reference", "list"]) == 0
    assert "unusable" in capsys.readouterr().out


def test_list_show_remove(capsys):
    save_reference(new_reference("kept", _settings(), [0.1, 0.2, 0.4]))
    assert main(["reference", "list"]) == 0
    assert "kept" in capsys.readouterr().out
    assert main(["reference", "show", "kept"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["faces"] == 3 and shown["score_quantiles"]["p50"] == pytest.approx(0.2)
    assert main(["reference", "build", str(EXAMPLES), "--name", "kept", *TINY]) == 2
    assert "exists already" in _one_line(capsys.readouterr().err)
    assert main(["reference", "remove", "kept"]) == 0 and not reference_path("kept").exists()
    capsys.readouterr()
    assert main(["reference", "show", "kept"]) == 2
    assert "No reference named 'kept'" in _one_line(capsys.readouterr().err)
    assert main(["reference", "build", str(EXAMPLES), "--name", "../escape", *TINY]) == 2
    assert "not a usable reference name" in _one_line(capsys.readouterr().err)


def test_an_unreachable_goal_saves_nothing(tmp_path, capsys):
    assert main(["reference", "build", str(EXAMPLES), "--name", "typical", *TINY]) == 0
    before = reference_path("typical").read_bytes()
    rows = [["path_a", "path_b", "same_identity"]]
    rows += [[str(EXAMPLES / a), str(EXAMPLES / b), "1"] for a, b in (("person_a_1.jpg", "person_b_2.jpg"),)]
    rows += [[str(EXAMPLES / a), str(EXAMPLES / b), "0"] for a, b in (("person_a_1.jpg", "person_a_2.jpg"),
                                                                       ("impostor_1.jpg", "impostor_2.jpg"))]
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    capsys.readouterr()
    # Genuine pair of two people (the matcher rejects it), two impostors of the same person: no discard fixes that.
    code = main(["eval", "--pairs", str(pairs), *TINY, "--out", str(tmp_path / "eval"), "--fmr", "0.5",
                 "--threshold-mode", "fixed", "--target-fnmr", "0", "--save-threshold-to", "typical"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach" in err and "Nothing was saved" in err
    assert reference_path("typical").read_bytes() == before
