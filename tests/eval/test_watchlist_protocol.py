"""The open-set protocol (split, templates, evaluation) on tiny synthetic identity sets with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sightline.eval.watchlist import Split, evaluate, fuse_templates, make_split, person_scores
from sightline.vision.calibration import load_builtin

NAMES = ["A"] * 3 + ["B"] * 3 + ["C"] * 2 + ["D"] * 2 + ["E", "F"]


def _unit(*v: float) -> np.ndarray:
    a = np.array(v, np.float32)
    return a / np.linalg.norm(a)


@pytest.mark.parametrize(
    ("k", "set_aside", "eligible", "enrolled", "mated_per_person"),
    [
        (1, None, 4, 2, {"A": 2, "B": 2, "C": 1, "D": 1}),  # >= 2 photos: A, B, C, D
        (2, None, 2, 1, {"A": 1, "B": 1}),  # >= 3 photos: A, B
        (1, 2, 2, 1, {"A": 1, "B": 1}),  # K=1 searched on K=2's probes
    ],
)
def test_split_counts_and_partition(k, set_aside, eligible, enrolled, mated_per_person):
    names = np.array(NAMES)
    sp = make_split(names, np.ones(len(names), bool), enroll_per_person=k, set_aside=set_aside, seed=3)
    assert sp.n_identities == 6 and sp.n_eligible == eligible and len(sp.enrolled) == enrolled
    assert len(sp.enroll_idx) == k * enrolled
    # enrolled rows belong to their column's person; mated rows too; non-mated rows to nobody listed
    assert all(names[i] == sp.enrolled[c] for i, c in zip(sp.enroll_idx, sp.enroll_col, strict=True))
    assert all(names[i] == sp.enrolled[c] for i, c in zip(sp.mated_idx, sp.mated_col, strict=True))
    assert not set(names[sp.nonmated_idx]) & set(sp.enrolled)
    for person in sp.enrolled:
        assert int((names[sp.mated_idx] == person).sum()) == mated_per_person[person]
    used = np.concatenate([sp.enroll_idx, sp.mated_idx, sp.nonmated_idx])
    assert len(set(used.tolist())) == len(used)  # no photo is used twice
    aside = k if set_aside is None else set_aside
    assert len(used) == len(names) - (aside - k) * enrolled  # set-aside photos are neither enrolled nor probed
    assert sp.describe()["seed"] == 3 and "seed 3" in str(sp.describe()["rule"])


def test_split_is_deterministic_per_seed_and_varies_across_seeds():
    names = np.array(NAMES)
    face = np.ones(len(names), bool)
    a, b = make_split(names, face, seed=7), make_split(names, face, seed=7)
    assert a.enrolled == b.enrolled and np.array_equal(a.enroll_idx, b.enroll_idx)
    assert len({make_split(names, face, seed=s).enrolled for s in range(20)}) > 1


def test_set_aside_gives_k1_and_k2_the_same_persons_and_probes():
    names = np.array(NAMES * 3)  # more identities: suffix copies stay the same names, so counts x3
    names = np.array([f"{n}{i // len(NAMES)}" for i, n in enumerate(names)])
    face = np.ones(len(names), bool)
    k1 = make_split(names, face, enroll_per_person=1, set_aside=2, seed=1)
    k2 = make_split(names, face, enroll_per_person=2, seed=1)
    assert k1.enrolled == k2.enrolled
    assert np.array_equal(k1.mated_idx, k2.mated_idx) and np.array_equal(k1.nonmated_idx, k2.nonmated_idx)
    assert set(k1.enroll_idx.tolist()) < set(k2.enroll_idx.tolist())  # K=2 adds a photo to K=1's


def test_photos_without_a_face_are_never_enrolled_but_stay_probes():
    names = np.array(NAMES)
    face = np.ones(len(names), bool)
    face[[0, 1]] = False  # two of A's three photos: A still has one with a face
    face[[6, 7]] = False  # both of C's: C cannot be enrolled
    sp = make_split(names, face, seed=0)
    assert "C" not in sp.enrolled and sp.n_eligible == 3
    assert face[sp.enroll_idx].all()
    if "A" in sp.enrolled:
        assert {0, 1} <= set(sp.mated_idx.tolist())


@pytest.mark.parametrize(
    ("names", "kwargs", "message"),
    [
        (["A", "A", "B"], {}, "at least 2 identities"),
        (NAMES, {"enroll_per_person": 0}, "enroll_per_person"),
        (NAMES, {"enroll_per_person": 2, "set_aside": 1}, "set_aside"),
        (NAMES, {"min_photos": 1}, "min_photos"),
    ],
)
def test_split_refuses_what_cannot_be_evaluated(names, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_split(np.array(names), np.ones(len(names), bool), **kwargs)


def _hand_split() -> tuple[np.ndarray, Split]:
    """Persons A (template e0) and B (template e1) enrolled; mated probes a1 (A, 0.8, rank 1) and
    b1 (B, 0.436, beaten by A's 0.9: rank 2); strangers s1 (top 0), s2 (top 0.5), s3 (no face)."""
    nan = np.full(4, np.nan, np.float32)
    emb = np.stack(
        [
            _unit(1, 0, 0, 0),  # 0: A enrolled
            _unit(0, 1, 0, 0),  # 1: B enrolled
            _unit(0.8, 0.6, 0, 0),  # 2: a1
            _unit(0.9, 0.43589, 0, 0),  # 3: b1
            _unit(0, 0, 1, 0),  # 4: s1
            _unit(0.5, 0, 0.8660254, 0),  # 5: s2
            nan,  # 6: s3
        ]
    )
    i64 = np.int64
    sp = Split(
        seed=0,
        enroll_per_person=1,
        set_aside=1,
        min_photos=2,
        n_identities=5,
        n_eligible=2,
        enrolled=("A", "B"),
        enroll_idx=np.array([0, 1], i64),
        enroll_col=np.array([0, 1], i64),
        mated_idx=np.array([2, 3], i64),
        mated_col=np.array([0, 1], i64),
        nonmated_idx=np.array([4, 5, 6], i64),
    )
    return emb, sp


@pytest.mark.parametrize(
    ("fpir_target", "fnir", "fpir_reached", "threshold_just_above"),
    [
        (0.1, 0.5, 0.0, 0.5),  # no stranger may alert: threshold above s2; a1 passes, b1 is at rank 2
        (0.34, 0.5, 1 / 3, 0.0),  # one may: s2 alerts; b1 still rank 2
    ],
)
def test_evaluate_known_answers(fpir_target, fnir, fpir_reached, threshold_just_above):
    emb, sp = _hand_split()
    r = evaluate(emb, sp, fpirs=(fpir_target,), ranks=(1, 2))
    op = r.operating_points[0]
    assert op.fnir == pytest.approx(fnir) and op.fpir == pytest.approx(fpir_reached)
    assert op.threshold == pytest.approx(np.nextafter(np.float32(threshold_just_above), np.inf), abs=1e-6)
    assert r.rank == {1: pytest.approx(0.5), 2: pytest.approx(1.0)}
    assert r.nonmated_no_face == 1 and r.mated_no_face == 0
    d = r.to_dict()
    assert d["split"]["enrolled_persons"] == 2 and d["template"] == "per-photo"


def test_evaluate_checks_the_calibration_estimate_against_measured_fpir():
    emb, sp = _hand_split()
    cal = load_builtin("dlib_resnet_v1")
    rows = evaluate(emb, sp, calibration=cal).calibration_check
    assert rows and all({"fpir_measured", "fpir_predicted", "threshold"} <= set(r) for r in rows)
    for r in rows:
        assert r["fpir_predicted"] == pytest.approx(cal.est_fpir(r["threshold"], 2))


def test_per_photo_takes_the_best_template_and_fused_the_mean_direction():
    templates = np.stack([_unit(1, 0, 0, 0), _unit(0, 0, 0, 1), _unit(0, 1, 0, 0)])
    owner = np.array([0, 0, 1])
    probe = _unit(0.6, 0, 0, 0.8)[None]
    per = person_scores(probe, templates, owner, 2, "per-photo")
    fused = person_scores(probe, templates, owner, 2, "fused")
    np.testing.assert_allclose(per, [[0.8, 0.0]], atol=1e-6)
    np.testing.assert_allclose(fused, [[(0.6 + 0.8) / math.sqrt(2), 0.0]], atol=1e-6)
    f = fuse_templates(templates, owner, 2)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="no template"):
        fuse_templates(templates, owner, 3)
    with pytest.raises(ValueError, match="grouped"):
        person_scores(probe, templates, np.array([0, 1, 0]), 2, "per-photo")
    with pytest.raises(ValueError, match="template must be"):
        person_scores(probe, templates, owner, 2, "median")  # type: ignore[arg-type]


def test_fused_and_per_photo_agree_with_one_photo_each():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = np.repeat(np.arange(10), 4).astype(str)
    sp = make_split(names, np.ones(40, bool), seed=0)
    a = evaluate(emb, sp, template="per-photo").to_dict()
    b = evaluate(emb, sp, template="fused").to_dict()
    assert a["fnir_at_fpir"] == b["fnir_at_fpir"] and a["rank"] == b["rank"]
