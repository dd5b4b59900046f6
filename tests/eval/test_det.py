"""FPIR / FNIR / rank / DET maths on hand-made score arrays (answers worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sightline.eval.det import OpenSetScores, plot_det

NAN = float("nan")

# 4 mated searches: mate scores and ranks; 5 non-mated top scores
MATED = [0.9, 0.8, 0.7, NAN]
RANK = [1, 1, 2, 1]  # the third mate is beaten by someone else; the fourth had no face
NONMATED = [0.85, 0.6, 0.5, 0.4, NAN]


@pytest.fixture
def sc() -> OpenSetScores:
    return OpenSetScores(np.array(MATED), np.array(RANK), np.array(NONMATED))


@pytest.mark.parametrize(
    ("threshold", "fpir", "fnir"),
    [
        (0.95, 0 / 5, 4 / 4),  # nothing passes
        (0.9, 0 / 5, 3 / 4),  # >= is inclusive: the 0.9 mate passes
        (0.85, 1 / 5, 3 / 4),  # the 0.85 stranger alerts
        (0.8, 1 / 5, 2 / 4),
        (0.6, 2 / 5, 2 / 4),  # the 0.7 mate is at rank 2: never a hit; the NaN mate: never a hit
        (0.0, 4 / 5, 2 / 4),  # the stranger without a face never alerts
    ],
)
def test_fpir_and_fnir_at_thresholds(sc, threshold, fpir, fnir):
    assert sc.fpir(threshold) == pytest.approx(fpir)
    assert sc.fnir(threshold) == pytest.approx(fnir)


@pytest.mark.parametrize(("k", "rate"), [(1, 2 / 4), (2, 3 / 4), (5, 3 / 4)])
def test_rank_k_counts_missing_faces_as_misses(sc, k, rate):
    assert sc.rank_k(k) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("target", "threshold_above", "reached"),
    [
        (0.1, 0.85, 0.0),  # floor(0.1 * 5) = 0 strangers may pass: just above the highest
        (0.2, 0.6, 0.2),  # 1 may pass: just above the second highest
        (0.5, 0.5, 0.4),  # 2 may pass
        (0.99, 0.4, 0.8),  # 4 may pass: every stranger with a face; the threshold is the lowest score
    ],
)
def test_threshold_at_fpir_is_the_lowest_meeting_the_target(sc, target, threshold_above, reached):
    t = sc.threshold_at_fpir(target)
    if target == 0.99:
        assert t == threshold_above
    else:
        assert t == np.nextafter(threshold_above, np.inf)
    op = sc.fnir_at_fpir(target)
    assert op.fpir == pytest.approx(reached) and op.fpir <= target
    assert op.threshold == t and op.fnir == pytest.approx(sc.fnir(t))


def test_det_curve_matches_pointwise_rates(sc):
    det = sc.det()
    assert list(det.threshold) == [0.85, 0.6, 0.5, 0.4]
    assert np.all(np.diff(det.fpir) > 0) and np.all(np.diff(det.fnir) <= 0)
    for t, fp, fn in zip(det.threshold, det.fpir, det.fnir, strict=True):
        assert fp == pytest.approx(sc.fpir(t)) and fn == pytest.approx(sc.fnir(t))


def test_from_matrix_derives_mated_score_rank_and_nonmated_top():
    sims = np.array(
        [
            [0.9, 0.2, 0.3],  # mate 0, rank 1
            [0.95, 0.7, 0.1],  # mate 1, beaten by person 0: rank 2
            [0.5, 0.5, 0.1],  # mate 1, tie with person 0: rank 1 (ties go to the mate)
            [NAN, NAN, NAN],  # mate 2, no face
            [0.1, 0.8, 0.3],  # stranger: top 0.8
            [NAN, NAN, NAN],  # stranger, no face
        ]
    )
    mate = np.array([0, 1, 1, 2, -1, -1])
    sc = OpenSetScores.from_matrix(sims, mate)
    np.testing.assert_allclose(sc.mated_score[:3], [0.9, 0.7, 0.5])
    assert math.isnan(sc.mated_score[3])
    assert list(sc.mated_rank[:3]) == [1, 2, 1]
    assert sc.nonmated_top[0] == pytest.approx(0.8) and math.isnan(sc.nonmated_top[1])
    assert sc.rank_k(1) == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mated_score": np.zeros((2, 2)), "mated_rank": np.ones(2, int), "nonmated_top": np.zeros(1)}, "shape"),
        ({"mated_score": np.zeros(2), "mated_rank": np.ones(3, int), "nonmated_top": np.zeros(1)}, "mated_rank"),
        ({"mated_score": np.zeros(2), "mated_rank": np.zeros(2, int), "nonmated_top": np.zeros(1)}, "1-based"),
        ({"mated_score": np.array([np.inf]), "mated_rank": np.ones(1, int), "nonmated_top": np.zeros(1)}, "finite"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OpenSetScores(**kwargs)


def test_rates_are_nan_without_searches_and_targets_are_checked(sc):
    empty = OpenSetScores(np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
    assert math.isnan(empty.fpir(0.5)) and math.isnan(empty.fnir(0.5)) and math.isnan(empty.rank_k(1))
    assert math.isnan(empty.fnir_at_fpir(0.01).fnir)
    with pytest.raises(ValueError, match="fpir"):
        sc.threshold_at_fpir(0.0)
    with pytest.raises(ValueError, match="k must"):
        sc.rank_k(0)


def test_plot_det_writes_a_png(sc, tmp_path):
    out = tmp_path / "det.png"
    plot_det({"a": sc.det(), "b": sc.det()}, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_det_draws_perfect_data(tmp_path):
    """No error at any threshold (FNIR 0 everywhere) still draws: zeros go on the axis floor."""
    perfect = OpenSetScores(np.array([0.9, 0.95]), np.array([1, 1]), np.array([0.1, 0.2, 0.3]))
    assert (perfect.det().fnir == 0).all()
    out = tmp_path / "perfect.png"
    plot_det({"perfect": perfect.det()}, str(out))
    assert out.stat().st_size > 1000
