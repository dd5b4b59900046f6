"""LFW pairs parsing and the 10-fold verification protocol, on synthetic scores with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sightline.eval.lfw import (
    accuracy_at_threshold,
    best_threshold,
    evaluate_lfw,
    roc_auc,
    tar_at_far,
    tar_at_far_ci,
)
from sightline.eval.pairs import PairsFormatError, read_pairs
from tests.conftest import LFW_MINI, SHARED

T, F = True, False
MATCHED = ["Ann_A\t1\t2", "Ann_A\t2\t3", "Bob_B\t1\t3"]
MISMATCHED = ["Ann_A\t1\tBob_B\t2", "Bob_B\t4\tCid_C\t1"]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "pairs.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


# ---- read_pairs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "folds", "same"),
    [
        # fold count only: a new fold where a matched line follows a mismatched one (unequal folds)
        (
            ["2", *MATCHED, *MISMATCHED[:1], *MATCHED[:1], *MISMATCHED],
            [0, 0, 0, 0, 1, 1, 1],
            [T, T, T, F, T, F, F],
        ),
        # "K<TAB>N": the standard grouping, 2*N lines per fold
        (["2\t1", MATCHED[0], MISMATCHED[0], MATCHED[1], MISMATCHED[1]], [0, 0, 1, 1], [T, F, T, F]),
        (["2 1", MATCHED[0], MISMATCHED[0], MATCHED[1], MISMATCHED[1]], [0, 0, 1, 1], [T, F, T, F]),
        (["1", "Ann_A 1 2", "", "Ann_A 1   Bob_B 2", ""], [0, 0], [T, F]),  # spaces and blank lines
    ],
)
def test_read_pairs_folds(tmp_path, lines, folds, same):
    pairs = read_pairs(_write(tmp_path, lines))
    assert pairs.folds.tolist() == folds
    assert pairs.is_same.tolist() == same
    assert pairs.n_folds == max(folds) + 1


def test_read_pairs_paths(tmp_path):
    pairs = read_pairs(_write(tmp_path, ["1", MATCHED[2], MISMATCHED[1]]))
    assert pairs.path_pairs() == [
        ("Bob_B/Bob_B_0001.jpg", "Bob_B/Bob_B_0003.jpg"),
        ("Bob_B/Bob_B_0004.jpg", "Cid_C/Cid_C_0001.jpg"),
    ]
    assert pairs.image_paths() == sorted({p for pp in pairs.path_pairs() for p in pp})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        (["ten", *MATCHED], r"pairs.txt:1: the first line"),
        (["10 300 1", *MATCHED], r"pairs.txt:1: the first line"),
        (["1", "Ann_A\t1"], r"pairs.txt:2: expected 'Name i j'"),
        (["1", "Ann_A\t1\t2", "Ann_A\t1\tBob_B\tx"], r"pairs.txt:3: image numbers"),
        (["1", "Ann_A\t0\t2"], r"pairs.txt:2: image numbers"),
        (["2\t1", MATCHED[0], MISMATCHED[0]], "header promises 2 folds"),
        (["3", *MATCHED, *MISMATCHED], "header says 3 folds but the file has 1"),
    ],
)
def test_read_pairs_rejects_malformed(tmp_path, lines, message):
    with pytest.raises(PairsFormatError, match=message):
        read_pairs(_write(tmp_path, lines))


def test_read_pairs_fixture():
    pairs = read_pairs(LFW_MINI / "pairs.txt")
    assert (len(pairs), pairs.n_folds, int(pairs.is_same.sum())) == (24, 2, 12)
    assert np.bincount(pairs.folds).tolist() == [12, 12]
    assert all((LFW_MINI / p).is_file() for p in pairs.image_paths())


@pytest.mark.skipif(not (SHARED / "lfw" / "pairs.txt").is_file(), reason="shared LFW data not present")
def test_read_pairs_shared_split_matches_its_manifest():
    lfw = SHARED / "lfw"
    pairs = read_pairs(lfw / "pairs.txt")
    rows = [ln.split("\t") for ln in (lfw / "pairs_fold_counts.tsv").read_text().splitlines()[1:]]
    expected = [(int(m), int(mm)) for _, m, mm in rows]
    got = [
        (int((pairs.is_same & (pairs.folds == k)).sum()), int((~pairs.is_same & (pairs.folds == k)).sum()))
        for k in range(pairs.n_folds)
    ]
    assert got == expected
    assert len(pairs.image_paths()) == 5001


# ---- protocol -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "same", "threshold", "accuracy"),
    [
        ([0.1, 0.2, 0.3, 0.4], [F, F, T, T], 0.25, 1.0),
        ([0.1, 0.2, 0.3, 0.4], [F, T, F, T], 0.35, 0.75),  # tie between m=1 and m=3: middle -> first
        ([0.5, 0.6], [F, F], math.inf, 1.0),  # reject everything
        ([0.5, 0.6], [T, T], 0.5, 1.0),  # accept everything
        ([math.nan, 0.2, 0.8], [T, F, T], 0.5, 2 / 3),  # NaN is never accepted
        ([0.5, 0.5, 0.5], [T, F, T], 0.5, 2 / 3),  # equal scores cannot be split
    ],
)
def test_best_threshold(scores, same, threshold, accuracy):
    thr, acc = best_threshold(np.array(scores), np.array(same))
    assert thr == pytest.approx(threshold)
    assert acc == pytest.approx(accuracy)


def _separable(n_folds: int = 10, per_class: int = 5, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(per_class, bool), np.zeros(per_class, bool)], n_folds)
    scores = np.where(same, rng.uniform(0.6, 0.9, same.size), rng.uniform(-0.2, 0.3, same.size))
    folds = np.repeat(np.arange(n_folds), 2 * per_class)
    return scores, same, folds


def test_perfectly_separable_scores_are_perfect():
    scores, same, folds = _separable()
    r = evaluate_lfw(scores, same, folds)
    assert (r.accuracy_mean, r.accuracy_std, r.balanced_accuracy_mean, r.auc) == (1.0, 0.0, 1.0, 1.0)
    assert [t.tar for t in r.tar_at_far] == [1.0, 1.0]
    assert all(0.3 < t < 0.6 for t in r.fold_threshold)
    assert (r.n_folds, r.n_pairs, r.n_matched, r.n_mismatched) == (10, 100, 50, 50)


def test_known_threshold_two_folds():
    # fold 0 learns 0.575 from fold 1 and is perfect; fold 1 learns 0.4 from fold 0 and misses 0.15
    scores = np.array([0.6, 0.7, 0.1, 0.2, 0.8, 0.15, 0.3, 0.35])
    same = np.array([T, T, F, F, T, T, F, F])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    r = evaluate_lfw(scores, same, folds)
    assert r.fold_threshold == pytest.approx((0.575, 0.4))
    assert r.fold_accuracy == pytest.approx((1.0, 0.75))
    assert r.fold_balanced_accuracy == pytest.approx((1.0, 0.75))
    assert (r.accuracy_mean, r.accuracy_std, r.accuracy_se) == pytest.approx((0.875, 0.125, 0.125))


@pytest.mark.parametrize(
    ("missing_index", "missing_value", "fold0_accuracy", "matched_missing"),
    [
        (0, math.nan, 0.9, 1),  # a matched pair without a face is an error
        (0, -math.inf, 0.9, 1),  # -inf means the same
        (7, math.nan, 1.0, 0),  # a mismatched pair without a face is right
    ],
)
def test_missing_face_scored_as_different(missing_index, missing_value, fold0_accuracy, matched_missing):
    scores, same, folds = _separable()
    scores[missing_index] = missing_value
    r = evaluate_lfw(scores, same, folds, images_without_face=1)
    assert r.fold_accuracy[0] == pytest.approx(fold0_accuracy)
    assert r.fold_accuracy[1:] == pytest.approx((1.0,) * 9)
    counts = (r.n_pairs, r.n_pairs_missing_face, r.n_matched_missing_face, r.images_without_face)
    assert counts == (100, 1, matched_missing, 1)
    assert accuracy_at_threshold(scores, same, 0.45) == pytest.approx(1 - matched_missing / 100)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 30).astype(float) / 5  # many ties
    scores[rng.integers(0, 30, 3)] = np.nan
    same = rng.random(30) < 0.5
    v = np.where(np.isnan(scores), -np.inf, scores)
    pos, neg = v[same], v[~same]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(scores, same) == pytest.approx(brute)


@pytest.mark.parametrize(
    ("far", "tar", "threshold", "far_reached"), [(1e-3, 0.25, 0.998, 1e-3), (1e-2, 0.5, 0.989, 1e-2)]
)
def test_tar_at_far(far, tar, threshold, far_reached):
    imp = np.arange(1000) / 1000  # 0.000 .. 0.999
    gen = np.array([0.9985, 0.995, 0.5, np.nan])
    scores = np.r_[imp, gen]
    same = np.r_[np.zeros(1000, bool), np.ones(4, bool)]
    t = tar_at_far(scores, same, far)
    assert (t.tar, t.threshold, t.far) == pytest.approx((tar, threshold, far_reached))


def test_tar_at_far_interval_is_wide_when_one_impostor_sets_the_threshold():
    """With 1,000 impostors FAR 1e-3 lets exactly one through, so the threshold is the 2nd-highest
    impostor: a single outlying impostor moves TAR a lot and the bootstrap interval shows it; with
    100x the impostors the same score distributions give a much narrower interval."""
    rng = np.random.default_rng(0)

    def scores(n_imp: int) -> tuple[np.ndarray, np.ndarray]:
        imp, gen = rng.normal(0.0, 1.0, n_imp), rng.normal(4.0, 1.0, 2000)
        return np.r_[imp, gen], np.r_[np.zeros(n_imp, bool), np.ones(2000, bool)]

    s_small, y_small = scores(1000)
    t = tar_at_far(s_small, y_small, 1e-3)
    assert t.impostors_allowed == 1
    lo, hi = tar_at_far_ci(s_small, y_small, 1e-3, replicates=300)
    assert lo <= t.tar <= hi and hi - lo > 0.05
    assert tar_at_far_ci(s_small, y_small, 1e-3, replicates=300) == (lo, hi)  # seeded: reproducible
    s_big, y_big = scores(100_000)
    lo_b, hi_b = tar_at_far_ci(s_big, y_big, 1e-3, replicates=100)
    assert hi_b - lo_b < (hi - lo) / 2
    r = evaluate_lfw(s_small, y_small, np.arange(len(s_small)) % 10, bootstrap=200)
    assert r.tar_at_far[0].ci95 is not None and r.to_dict()["tar_at_far"]["0.001"]["impostors_allowed"] == 1
    assert evaluate_lfw(s_small, y_small, np.arange(len(s_small)) % 10, bootstrap=0).tar_at_far[0].ci95 is None
    with pytest.raises(ValueError, match="replicates must be >= 10"):
        tar_at_far_ci(s_small, y_small, 1e-3, replicates=5)


@pytest.mark.parametrize(
    ("scores", "same", "folds", "message"),
    [
        ([0.1, 0.2], [T, F], [0, 0], "at least 2 folds"),
        ([0.1, 0.2], [T, F], [0], "folds must be"),
        ([0.1, 0.2], [1, 0], [0, 1], "is_same must be a bool"),
        ([0.1, math.inf], [T, F], [0, 1], "finite"),
    ],
)
def test_evaluate_rejects_bad_input(scores, same, folds, message):
    with pytest.raises(ValueError, match=message):
        evaluate_lfw(np.array(scores), np.array(same), np.array(folds))
