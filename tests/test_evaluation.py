"""EDC and the other evaluation helpers, checked against numbers worked out by hand in the comments."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from attn_core.eval.edc import (
    DEFAULT_DISCARD,
    EDCCurve,
    angular_distance,
    edc,
    edc_table_markdown,
    kendall,
    pair_quality,
    plot_edc,
    random_baseline,
    roc_auc,
    spearman,
    threshold_at_fmr,
)
from attn_core.eval.measure import brightness, sharpness_laplacian
from attn_core.eval.pairs import make_pairs_from_folders, read_pairs_csv

# 20 pairs listed in ascending pair quality (q = 1..20). G = genuine, I = impostor.
#   idx  q  kind dist      idx  q  kind dist
#    0   1   G   .45       10  11   G   .15
#    1   2   I   .31       11  12   I   .43
#    2   3   G   .40       12  13   G   .25
#    3   4   I   .35       13  14   I   .37
#    4   5   G   .36       14  15   G   .10
#    5   6   I   .33       15  16   I   .44
#    6   7   G   .20       16  17   G   .22
#    7   8   I   .38       17  18   I   .46
#    8   9   G   .32       18  19   G   .18
#    9  10   I   .41       19  20   I   .48
GENUINE = np.array([i % 2 == 0 for i in range(20)])
DISTANCE = np.array([.45, .31, .40, .35, .36, .33, .20, .38, .32, .41,
                     .15, .43, .25, .37, .10, .44, .22, .46, .18, .48])
QUALITY = np.arange(1.0, 21.0)
FMR = 0.1
# 0.125 * 20 = 2.5 pairs falls between pairs: floor -> 2 discarded.
GRID = [0.0, 0.125, 0.25, 0.4, 0.5]
LIMIT = 0.2  # between grid points 0.125 and 0.25: FNMR is interpolated there

# per_fraction (threshold re-set on the retained impostors, FMR closest to 0.1):
#  r=0     drop 0.  10 impostors, 0.1*10 = 1 -> k=1, t = .31. Genuine > .31: .45 .40 .36 .32 -> 4/10
#  r=0.125 drop 2 (idx 0,1).  9 impostors, .9 -> k=1, t = .33 (smallest of .33 .35 .37 ...).
#          genuine .40 .36 .20 .32 .15 .25 .10 .22 .18 ; > .33: .40 .36 -> 2/9
#  r=0.25  drop 5 (idx 0-4).  8 impostors, .8 -> k=1, t = .33. genuine .20 .32 .15 .25 .10 .22 .18 -> 0/7
#  r=0.4   drop 8.  impostors .41 .43 .37 .44 .46 .48, .6 -> k=1, t = .37. genuine .32 .15 .25 .10 .22 .18 -> 0/6
#  r=0.5   drop 10. impostors .43 .37 .44 .46 .48, 0.5 -> k=0 and k=1 equally close: the stricter k=0 wins,
#          t just below .37, achieved FMR 0. genuine .15 .25 .10 .22 .18 -> 0/5
PER_FRACTION_FNMR = [0.4, 2 / 9, 0.0, 0.0, 0.0]
# AUC (trapezoids): (2/5 + 2/9)/2 * 1/8 + (2/9 + 0)/2 * 1/8 = 7/180 + 1/72 = 19/360
PER_FRACTION_AUC = 19 / 360
# pAUC to 0.2: FNMR(0.2) = 2/9 * (1 - 0.075/0.125) = 0.8/9
#   7/180 + (2/9 + 0.8/9)/2 * 0.075 = 7/180 + 7/600 = 91/1800
PER_FRACTION_PAUC = 91 / 1800

# fixed (threshold .31 set once at r=0 on all impostors, kept):
#  r=0     4/10 (as above)
#  r=0.125 genuine > .31: .40 .36 .32 -> 3/9
#  r=0.25  .32 -> 1/7
#  r=0.4   .32 -> 1/6
#  r=0.5   none -> 0/5
FIXED_FNMR = [0.4, 1 / 3, 1 / 7, 1 / 6, 0.0]
# stepwise ("post") AUC: .4*.125 + 1/3*.125 + 1/7*.15 + 1/6*.1 = 0.05 + 0.041667 + 0.021429 + 0.016667
FIXED_AUC = 0.05 + 0.125 / 3 + 0.15 / 7 + 0.1 / 6
# stepwise pAUC to 0.2: .4*.125 + 1/3*(0.2-0.125) = 0.05 + 0.025
FIXED_PAUC = 0.075


def test_edc_per_fraction_matches_hand_computation() -> None:
    curve = edc(GENUINE, DISTANCE, QUALITY, fmr=FMR, discard=GRID, pauc_limit=LIMIT, method="toy")
    np.testing.assert_allclose(curve.fnmr, PER_FRACTION_FNMR, atol=1e-12)
    np.testing.assert_allclose(curve.thresholds[:4], [.31, .33, .33, .37])
    assert curve.thresholds[4] < .37 and curve.thresholds[4] == np.nextafter(.37, 0)
    np.testing.assert_allclose(curve.achieved_fmr, [1 / 10, 1 / 9, 1 / 8, 1 / 6, 0.0])
    assert curve.auc == pytest.approx(PER_FRACTION_AUC, abs=1e-12)
    assert curve.pauc == pytest.approx(PER_FRACTION_PAUC, abs=1e-12)
    assert curve.label == "toy (FMR=0.1, threshold re-set per fraction)"


def test_edc_fixed_threshold_integrates_stepwise() -> None:
    curve = edc(GENUINE, DISTANCE, QUALITY, fmr=FMR, threshold_mode="fixed", discard=GRID, pauc_limit=LIMIT)
    np.testing.assert_allclose(curve.fnmr, FIXED_FNMR, atol=1e-12)
    np.testing.assert_allclose(curve.thresholds, [.31] * 5)
    assert curve.auc == pytest.approx(FIXED_AUC, abs=1e-12)
    assert curve.pauc == pytest.approx(FIXED_PAUC, abs=1e-12)
    assert "threshold fixed at r=0" in curve.label


def test_edc_does_not_depend_on_input_order_without_ties() -> None:
    permutation = np.random.default_rng(3).permutation(20)
    shuffled = edc(GENUINE[permutation], DISTANCE[permutation], QUALITY[permutation], fmr=FMR, discard=GRID,
                   pauc_limit=LIMIT)
    np.testing.assert_allclose(shuffled.fnmr, PER_FRACTION_FNMR, atol=1e-12)


def test_edc_ties_in_quality_discard_in_input_order() -> None:
    # Pairs 0 and 1 tie at quality 0.5; discarding 1 of 4 pairs (r = 0.25) drops the earlier one.
    # One impostor (d=.6); FMR 0.5 is equally close to 0 and 1 -> stricter: t just below .6.
    #   order A: G .9, G .1, I .6, G .2 -> r=0: rejects .9 -> 1/3; r=.25 drops G .9 -> 0/2
    #   order B: G .1, G .9, I .6, G .2 -> r=0: 1/3;             r=.25 drops G .1 -> 1/2
    genuine = np.array([True, True, False, True])
    quality = np.array([0.5, 0.5, 0.9, 0.9])
    order_a = edc(genuine, np.array([.9, .1, .6, .2]), quality, fmr=0.5, discard=[0, 0.25], pauc_limit=0.25)
    order_b = edc(genuine, np.array([.1, .9, .6, .2]), quality, fmr=0.5, discard=[0, 0.25], pauc_limit=0.25)
    np.testing.assert_allclose(order_a.fnmr, [1 / 3, 0.0])
    np.testing.assert_allclose(order_b.fnmr, [1 / 3, 0.5])


def test_edc_discard_count_is_floor_with_float_tolerance() -> None:
    # 100 pairs: the 29 lowest-quality are failing genuine pairs (d=.9), then 21 good genuine pairs (d=.1),
    # then 50 impostors (d=.5...). 0.29 * 100 = 28.999999999999996 in floating point; it must count as 29,
    # leaving FNMR 0 (a plain floor would keep one failing pair: 1/22).
    genuine = np.array([True] * 50 + [False] * 50)
    distance = np.array([.9] * 29 + [.1] * 21 + list(np.linspace(.5, .99, 50)))
    curve = edc(genuine, distance, np.arange(100.0), fmr=0.02, discard=[0, 0.29], pauc_limit=0.29)
    assert 0.29 * 100 < 29
    np.testing.assert_allclose(curve.fnmr, [29 / 50, 0.0])


def test_edc_default_grid_and_pauc_limit() -> None:
    curve = edc(GENUINE, DISTANCE, QUALITY, fmr=FMR)
    np.testing.assert_allclose(curve.discard, np.arange(20) * 0.05)
    assert DEFAULT_DISCARD[-1] == 0.95 and curve.pauc_limit == 0.3
    # Default grid with n = 20: r = 0.05 k drops exactly k pairs. The pAUC limit 0.3 is a grid point.
    assert curve.pauc == pytest.approx(np.trapezoid(curve.fnmr[:7], curve.discard[:7]))
    np.testing.assert_allclose(curve.fnmr[:2], [0.4, 3 / 9])  # r=.05 drops idx 0 (G .45): .40 .36 .32 > .31
    # r = 0.95 keeps one pair (idx 19, an impostor): no genuine pair left -> FNMR and AUC are NaN.
    assert np.isnan(curve.fnmr[-1]) and np.isnan(curve.auc) and not np.isnan(curve.fnmr[-2])


def test_edc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="boolean"):
        edc(GENUINE.astype(int), DISTANCE, QUALITY)
    with pytest.raises(ValueError, match="equal length"):
        edc(GENUINE, DISTANCE[:5], QUALITY)
    with pytest.raises(ValueError, match="genuine and one impostor"):
        edc(np.ones(20, bool), DISTANCE, QUALITY)
    with pytest.raises(ValueError, match="increasing"):
        edc(GENUINE, DISTANCE, QUALITY, discard=[0, 0.5, 0.3])
    with pytest.raises(ValueError, match="pauc_limit"):
        edc(GENUINE, DISTANCE, QUALITY, discard=[0, 0.2], pauc_limit=0.3)
    with pytest.raises(ValueError, match="threshold_mode"):
        edc(GENUINE, DISTANCE, QUALITY, threshold_mode="iso")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        edc(GENUINE, np.where(GENUINE, np.nan, DISTANCE), QUALITY)


def test_threshold_at_fmr_picks_closest_achievable_fmr() -> None:
    impostors = np.array([.5, .2, .4, .3])  # achievable FMR 0, .25, .5, .75, 1
    assert threshold_at_fmr(impostors, 0.25) == .2
    assert threshold_at_fmr(impostors, 0.5) == .3
    assert threshold_at_fmr(impostors, 0.9) == .5  # 1.0 (gap .1) beats .75 (gap .15)
    below_smallest = np.nextafter(.2, 0)
    assert threshold_at_fmr(impostors, 0.1) == below_smallest  # 0 (gap .1) beats .25 (gap .15)
    assert threshold_at_fmr(impostors, 0.125) == below_smallest  # tie 0 vs .25: the stricter wins
    tied = np.array([.2, .2, .3, .4])  # achievable FMR 0, .5, .75, 1
    assert threshold_at_fmr(tied, 0.25) == np.nextafter(.2, 0)  # tie 0 vs .5 -> 0
    assert threshold_at_fmr(tied, 0.5) == .2
    with pytest.raises(ValueError):
        threshold_at_fmr(np.array([]), 1e-3)
    with pytest.raises(ValueError):
        threshold_at_fmr(impostors, 0.0)


def test_random_baseline_is_mean_of_seeded_random_curves() -> None:
    rng = np.random.default_rng(7)
    expected = np.mean([
        edc(GENUINE, DISTANCE, rng.random(20), fmr=FMR, discard=GRID, pauc_limit=LIMIT).fnmr for _ in range(5)
    ], axis=0)
    baseline = random_baseline(GENUINE, DISTANCE, fmr=FMR, discard=GRID, pauc_limit=LIMIT, n_repeats=5, seed=7)
    np.testing.assert_allclose(baseline.fnmr, expected)
    assert baseline.method == "random"
    assert baseline.auc == pytest.approx(
        sum((expected[i] + expected[i + 1]) / 2 * (GRID[i + 1] - GRID[i]) for i in range(4)))
    again = random_baseline(GENUINE, DISTANCE, fmr=FMR, discard=GRID, pauc_limit=LIMIT, n_repeats=5, seed=7)
    np.testing.assert_array_equal(again.fnmr, baseline.fnmr)


def test_pair_quality_and_distance() -> None:
    np.testing.assert_array_equal(pair_quality([1, 5, -2], [3, 2, -1]), [1, 2, -2])
    np.testing.assert_allclose(angular_distance([1.0, 0.0, -1.0, 0.5, 1.0000001]), [0, 0.5, 1, 1 / 3, 0])


def test_rank_correlations_and_roc_auc() -> None:
    # x = 1 2 3 4, y = 1 3 2 4: rank differences 0 1 1 0 -> rho = 1 - 6*2/(4*15) = 0.8;
    # 5 concordant, 1 discordant pair -> tau = 4/6.
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # positives score 1 and 3, negatives 2 and 4: positive < negative in 3 of 4 comparisons.
    scores, failures = np.array([1, 2, 3, 4.0]), np.array([True, False, True, False])
    assert roc_auc(scores, failures) == pytest.approx(0.75)
    assert roc_auc(scores, failures, low_score_flags=False) == pytest.approx(0.25)
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == pytest.approx(0.5)  # ties count half
    with pytest.raises(ValueError):
        roc_auc(scores, np.zeros(4, bool))


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_make_pairs_from_folders(tmp_path: Path) -> None:
    sizes = {"alice": 3, "bob": 2, "carol": 4, "dave": 1}
    for name, n in sizes.items():
        for i in range(n):
            _touch(tmp_path / name / f"{i}.JPG" if i == 0 else tmp_path / name / f"{i}.png")
    _touch(tmp_path / "alice" / "notes.txt")
    _touch(tmp_path / "alice" / ".hidden.jpg")
    _touch(tmp_path / "loose.jpg")
    n_genuine = sum(math.comb(n, 2) for n in sizes.values())  # 3 + 1 + 6 + 0 = 10
    n_cross = (10 ** 2 - sum(n * n for n in sizes.values())) // 2  # (100 - 30) / 2 = 35

    for ratio, n_impostor in [(0.5, 5), (2.0, 20), (10.0, n_cross)]:  # sparse, dense and capped requests
        pairs = make_pairs_from_folders(tmp_path, seed=1, impostors_per_genuine=ratio)
        genuine = [p for p in pairs if p[2]]
        impostor = [p for p in pairs if not p[2]]
        assert len(genuine) == n_genuine
        assert all(a.parent == b.parent for a, b, _ in genuine)
        assert len(impostor) == n_impostor
        assert all(a.parent != b.parent for a, b, _ in impostor)
        assert len({frozenset((a, b)) for a, b, _ in impostor}) == n_impostor
        assert all(p.suffix.lower() in {".jpg", ".png"} and not p.name.startswith(".")
                   for a, b, _ in pairs for p in (a, b))
        assert make_pairs_from_folders(tmp_path, seed=1, impostors_per_genuine=ratio) == pairs
    assert make_pairs_from_folders(tmp_path, seed=2, impostors_per_genuine=0.5) != \
        make_pairs_from_folders(tmp_path, seed=1, impostors_per_genuine=0.5)


def test_make_pairs_from_folders_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_pairs_from_folders(tmp_path / "nope")
    _touch(tmp_path / "only" / "a.jpg")
    with pytest.raises(ValueError, match="two identity"):
        make_pairs_from_folders(tmp_path)
    _touch(tmp_path / "other" / "b.jpg")
    with pytest.raises(ValueError, match="no genuine pairs"):
        make_pairs_from_folders(tmp_path)


def test_read_pairs_csv(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        _touch(tmp_path / name)
    absolute = tmp_path / "a.jpg"
    (tmp_path / "pairs.csv").write_text(
        f"path_a, path_b ,same_identity\na.jpg,b.jpg,1\nsub/c.jpg,{absolute},False\n\na.jpg,sub/c.jpg, Genuine\n"
    )
    assert read_pairs_csv(tmp_path / "pairs.csv") == [
        (tmp_path / "a.jpg", tmp_path / "b.jpg", True),
        (tmp_path / "sub" / "c.jpg", absolute, False),
        (tmp_path / "a.jpg", tmp_path / "sub" / "c.jpg", True),
    ]


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        ("a.jpg,b.jpg,1\n", ValueError, "header"),
        ("path_a,path_b\na.jpg,b.jpg\n", ValueError, "missing same_identity"),
        ("path_a,path_b,same_identity\na.jpg,b.jpg,1\na.jpg,b.jpg,maybe\n", ValueError, "line 3: same_identity"),
        ("path_a,path_b,same_identity\na.jpg,b.jpg,1,extra\n", ValueError, "line 2: more fields"),
        ("path_a,path_b,same_identity\n,b.jpg,1\n", ValueError, "line 2: empty path_a"),
        ("path_a,path_b,same_identity\n", ValueError, "no pairs"),
        ("path_a,path_b,same_identity\na.jpg,gone.jpg,0\n", FileNotFoundError, "gone.jpg"),
    ],
)
def test_read_pairs_csv_errors(tmp_path: Path, content: str, error: type, message: str) -> None:
    _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "b.jpg")
    (tmp_path / "pairs.csv").write_text(content)
    with pytest.raises(error, match=message):
        read_pairs_csv(tmp_path / "pairs.csv")


def test_plot_and_table(tmp_path: Path) -> None:
    curves = [
        edc(GENUINE, DISTANCE, QUALITY, fmr=FMR, discard=GRID, pauc_limit=LIMIT, method="toy"),
        edc(GENUINE, DISTANCE, QUALITY, fmr=FMR, threshold_mode="fixed", discard=GRID, pauc_limit=LIMIT,
            method="toy"),
    ]
    out = tmp_path / "plots" / "edc.png"
    plot_edc(curves, out, "Toy EDC")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    table = edc_table_markdown(curves)
    rows = table.strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("| Method")
    assert f"{1000 * PER_FRACTION_PAUC:.2f}" in rows[2] and "re-set per fraction" in rows[2]
    assert f"{1000 * FIXED_PAUC:.2f}" in rows[3] and "fixed at r=0" in rows[3]


def test_label_formats_powers_of_ten() -> None:
    curve = EDCCurve("attn-fiqa", 1e-3, "per_fraction", np.zeros(2), np.zeros(2), 0.0, 0.0, 0.3)
    assert curve.label == "attn-fiqa (FMR=1e-3, threshold re-set per fraction)"


def test_image_quality_baselines() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    assert sharpness_laplacian(sharp) > 10 * sharpness_laplacian(blurred)
    assert sharpness_laplacian(np.full((112, 112, 3), 77, np.uint8)) == 0.0
    assert brightness(np.full((112, 112, 3), 100, np.uint8)) == pytest.approx(100.0)
    assert brightness(np.zeros((112, 112, 3), np.uint8)) == 0.0
