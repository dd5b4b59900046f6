"""Fused-template calibration: the builder against hand-computed and brute-force answers, the shipped
files, ``FusedCalibrations`` (mixed K per person) and the ``eval calibrate --fused-k`` command."""

from __future__ import annotations

import itertools
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.eval.calibration import FMRS, build_fused_calibration
from sightline.eval.embed import EmbeddedSet
from sightline.vision.calibration import (
    Calibration,
    FusedCalibrations,
    builtin_fused_ks,
    builtin_models,
    load_builtin,
    load_builtin_fused,
)

MODELS = ("dlib_resnet_v1", "fusion_dlib_faceres_v1")
runner = CliRunner()


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, np.float64)
    return a / np.linalg.norm(a)


def _identities(counts: list[int], dim: int, seed: int, shared: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Identity centres + noise, L2-normalised; identities interleaved in file order (not grouped).
    ``shared``: weight of a direction common to every face (as real face descriptors have): averaging
    photos cancels noise and keeps it, so strangers score higher against a mean template."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(counts), dim)) / math.sqrt(dim)
    centres = centres / np.linalg.norm(centres, axis=1, keepdims=True) + shared * _unit(*np.ones(dim))
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[rng.permutation(len(labels))]
    x = centres[labels] / np.linalg.norm(centres[labels], axis=1, keepdims=True)
    x = x + 0.8 * rng.standard_normal(x.shape) / math.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.array([f"id{i}" for i in labels])


# ---- the builder ------------------------------------------------------------------------------------


def test_a_hand_computed_case():
    """a: photos e1, e2, e3 (K=2 fuses e1, e2 -> (1, 1, 0)/sqrt2); b: e1 and a photo without a face;
    c: e3 alone. Impostors of a's template: b's e1 -> 1/sqrt2 and c's e3 -> 0; genuine: a's e3 -> 0."""
    emb = np.array([_unit(1, 0, 0), _unit(0, 1, 0), _unit(1, 0, 0), _unit(0, 0, 1), _unit(0, 0, 1)], np.float32)
    emb = np.vstack([emb, np.full((1, 3), np.nan, np.float32)])
    names = np.array(["a", "a", "b", "a", "c", "b"])
    doc = build_fused_calibration(emb, names, k=2, model="m", source="hand")
    assert (doc["template"], doc["fused_k"], doc["n_templates"]) == ("fused", 2, 1)
    assert (doc["n_images"], doc["n_identities"]) == (5, 3)
    assert (doc["n_impostor_pairs"], doc["n_genuine_pairs"]) == (2, 1)
    assert doc["impostor_max"] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    # FMR <= 1e-2 of 2 impostors: no impostor may pass -> just above the highest
    assert doc["threshold_at_fmr"]["1e-2"] > doc["impostor_max"]
    assert doc["fnmr_at_fmr"]["1e-2"] == 1.0  # the genuine score 0 is below it


def test_the_first_k_photos_in_file_order_are_fused():
    """Only the first two of a's three photos are averaged: swapping the third changes nothing, swapping
    the first changes the template."""
    a1, a2, a3, b = _unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1), _unit(1, 1, 1)
    names = np.array(["a", "b", "a", "a"])
    base = build_fused_calibration(np.array([a1, b, a2, a3], np.float32), names, k=2, model="m", source="s")
    assert base["impostor_max"] == pytest.approx(float(b @ _unit(1, 1, 0)), abs=1e-6)
    other = build_fused_calibration(np.array([a3, b, a2, a1], np.float32), names, k=2, model="m", source="s")
    assert other["impostor_max"] == pytest.approx(float(b @ _unit(0, 1, 1)), abs=1e-6)


@pytest.mark.parametrize(("k", "block"), [(2, 256), (3, 5), (4, 1)])
def test_builder_matches_brute_force(k, block):
    counts = [1, 2, 3, 4, 5, 6] * 8
    emb, names = _identities(counts, dim=12, seed=k)
    doc = build_fused_calibration(emb, names, k=k, model="m", source="synthetic", block=block)

    imp: list[float] = []
    gen: list[float] = []
    n_templates = 0
    for ident in np.unique(names):
        rows = np.flatnonzero(names == ident)  # file order
        if len(rows) < k:
            continue
        n_templates += 1
        t = emb[rows[:k]].astype(np.float64).sum(axis=0)
        t /= np.linalg.norm(t)
        imp += list(emb[names != ident] @ t)
        gen += list(emb[rows[k:]] @ t)
    imp_a, gen_a = np.array(imp), np.array(gen)
    assert doc["n_templates"] == n_templates
    assert (doc["n_impostor_pairs"], doc["n_genuine_pairs"]) == (len(imp_a), len(gen_a))
    ulp = 1e-6
    observed = np.unique(imp_a)
    for key, t in doc["threshold_at_fmr"].items():
        f = float(key)
        assert np.mean(imp_a >= t + ulp) <= f  # meets the target ...
        lower = observed[observed < t - ulp]
        assert not len(lower) or np.mean(imp_a >= lower[-1]) > f  # ... and is the lowest such score
        assert np.mean(gen_a < t - ulp) <= doc["fnmr_at_fmr"][key] <= np.mean(gen_a < t + ulp)
    assert doc["impostor_max"] == pytest.approx(imp_a.max(), abs=ulp)
    assert set(doc["threshold_at_fmr"]) == {f"{f:.0e}".replace("e-0", "e-") for f in FMRS}
    cal = Calibration.from_json(doc)
    assert (cal.template, cal.fused_k, cal.n_impostor_pairs) == ("fused", k, len(imp_a))
    assert cal.est_fmr(doc["threshold_at_fmr"]["1e-2"]) <= 1e-2 + 1e-12


def test_fused_impostors_score_higher_than_photo_impostors():
    """The reason for the files: on the same photos a stranger scores higher against a mean template."""
    from sightline.eval.calibration import build_calibration

    emb, names = _identities([4] * 60, dim=16, seed=1, shared=0.7)
    photo = build_calibration(emb, names, model="m", source="s")
    fused = build_fused_calibration(emb, names, k=4, model="m", source="s")
    assert fused["threshold_at_fmr"]["1e-2"] > photo["threshold_at_fmr"]["1e-2"]


@pytest.mark.parametrize(
    ("embeddings", "names", "k", "message"),
    [
        (np.eye(3, dtype=np.float32), ["a", "a", "b"], 1, "K >= 2"),
        (np.eye(3, dtype=np.float32), ["a", "a", "b"], 0, "K >= 2"),
        (np.zeros((0, 4), np.float32), [], 2, "no identity has >= 2 photos"),
        (np.eye(3, dtype=np.float32), ["a", "b", "c"], 2, "no identity has >= 2 photos"),
        (np.eye(3, dtype=np.float32), ["a", "a", "a"], 2, "at least 2 identities"),
        (2 * np.eye(3, dtype=np.float32), ["a", "a", "b"], 2, "L2-normalised"),
        (np.eye(3, dtype=np.float32), ["a", "a"], 2, "N names"),
    ],
)
def test_builder_rejects_bad_input(embeddings, names, k, message):
    with pytest.raises(ValueError, match=message):
        build_fused_calibration(embeddings, np.array(names, dtype=str), k=k, model="m", source="s")


# ---- the shipped files ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_shipped_fused_files_load_and_rise_with_k(model):
    assert builtin_fused_ks(model) == [2, 3, 4, 5]
    photo = load_builtin(model)
    prev = photo
    for k in builtin_fused_ks(model):
        cal = load_builtin_fused(model, k)
        assert (cal.model, cal.template, cal.fused_k) == (model, "fused", k)
        # monotone: FMR falls as the similarity rises, thresholds rise as the FMR falls
        sims = np.linspace(0.8, 1.0, 201)
        fmrs = [cal.est_fmr(s) for s in sims]
        assert all(a >= b for a, b in itertools.pairwise(fmrs))
        ts = [cal.threshold_for_fmr(f) for f in (1e-2, 1e-3, 1e-4)]
        assert ts == sorted(ts)
        # a stranger scores higher against a mean of more photos (FMR 1e-2 and 1e-3 on LFW)
        for f in (1e-2, 1e-3):
            assert cal.threshold_for_fmr(f) > prev.threshold_for_fmr(f), (k, f)
        prev = cal


def test_fused_files_are_not_listed_as_models_and_missing_ones_fail_clearly():
    assert builtin_models() == sorted(MODELS)
    with pytest.raises(FileNotFoundError, match=r"K = 7 \(shipped: K = 2, 3, 4, 5\)"):
        load_builtin_fused("dlib_resnet_v1", 7)
    with pytest.raises(FileNotFoundError, match="shipped: none"):
        load_builtin_fused("nosuch_v1", 2)
    with pytest.raises(ValueError, match="K >= 2"):
        load_builtin_fused("dlib_resnet_v1", 1)
    with pytest.raises(FileNotFoundError, match="no fused-template calibration shipped for model 'nosuch_v1'"):
        FusedCalibrations.builtin("nosuch_v1")


def test_from_json_checks_the_template_fields():
    doc = json.loads(
        (resources.files("sightline.vision.embed") / "dlib_resnet_v1.fused_k2.calibration.json").read_text()
    )
    with pytest.raises(ValueError, match="fused_k >= 2"):
        Calibration.from_json({**doc, "fused_k": 1})
    with pytest.raises(ValueError, match="template must be"):
        Calibration.from_json({**doc, "template": "mean"})
    plain = {k: v for k, v in doc.items() if k not in ("template", "fused_k")}
    assert Calibration.from_json(plain).template == "per-photo"


# ---- mixed K per person -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fused() -> FusedCalibrations:
    return FusedCalibrations.builtin("dlib_resnet_v1")


def test_for_k_uses_the_photo_curve_for_one_photo_and_the_largest_k_beyond(fused):
    assert fused.for_k(1) is fused.photo
    assert fused.for_k(3).fused_k == 3
    assert fused.for_k(12).fused_k == fused.k_max == 5
    with pytest.raises(ValueError, match=">= 1 photo"):
        fused.for_k(0)


@pytest.mark.parametrize("fpir", [0.1, 0.01, 0.001])
def test_threshold_for_fpir_with_one_k_matches_the_closed_form(fused, fpir):
    one = fused.by_k[2]
    t = fused.threshold_for_fpir(fpir, {2: 300})
    assert t == pytest.approx(one.threshold_for_fpir(fpir, 300), abs=2e-6)
    assert fused.est_fpir(t, {2: 300}) == pytest.approx(one.est_fpir(t, 300))


def test_mixed_k_threshold_meets_the_target_and_sits_between_the_pure_lists(fused):
    mix = {1: 50, 2: 100, 3: 40, 8: 10}
    t = fused.threshold_for_fpir(0.01, mix)
    assert fused.est_fpir(t, mix) <= 0.01
    assert fused.est_fpir(t - 1e-4, mix) > 0.01  # the lowest such threshold (to the bisection's tolerance)
    n = sum(mix.values())
    assert fused.threshold_for_fpir(0.01, {1: n}) < t < fused.threshold_for_fpir(0.01, {5: n})
    # against the photo calibration with one comparison per person, it is stricter
    assert t > fused.photo.threshold_for_fpir(0.01, n)
    assert "against 200 fused templates" in fused.describe_for_list(t, mix)


@pytest.mark.parametrize(
    ("fpir", "mix", "message"),
    [
        (1e-9, {2: 1000}, "below what the fused calibrations"),
        (0.0, {2: 10}, r"fpir must be in \(0, 1\)"),
        (0.01, {}, "at least one person"),
        (0.01, {0: 3}, "photos per person"),
        (0.01, {2: -1}, "photos per person"),
    ],
)
def test_threshold_for_fpir_rejects_what_it_cannot_answer(fused, fpir, mix, message):
    with pytest.raises(ValueError, match=message):
        fused.threshold_for_fpir(fpir, mix)


# ---- the command --------------------------------------------------------------------------------------


def _npz(path: Path, emb: np.ndarray, names: np.ndarray) -> Path:
    EmbeddedSet(names, np.array([f"{n}/{i}.jpg" for i, n in enumerate(names)]), emb, 0.0).save(path)
    return path


def test_eval_calibrate_fused_k_writes_a_loadable_file(tmp_path):
    emb, names = _identities([1, 2, 3, 4] * 10, dim=8, seed=5)
    npz = _npz(tmp_path / "set.npz", emb, names)
    out = tmp_path / "m.fused_k3.calibration.json"
    res = runner.invoke(
        app, ["eval", "calibrate", str(npz), "--fused-k", "3", "--model", "m", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["template"], summary["fused_k"], summary["n_templates"]) == ("fused", 3, 20)
    cal = Calibration.load(out)
    assert (cal.model, cal.template, cal.fused_k) == ("m", "fused", 3)
    assert cal.default_threshold == pytest.approx(
        build_fused_calibration(emb, names, k=3, model="m", source="x")["default_threshold"]
    )


@pytest.mark.parametrize(
    ("k", "content", "message"),
    [
        ("1", "good", "--fused-k must be >= 2"),
        ("6", "good", "no identity has >= 6 photos"),
        ("2", "empty", "no identity has >= 2 photos"),
        ("2", "missing", "No such file"),
    ],
)
def test_eval_calibrate_fused_k_bad_input_fails_clearly(tmp_path, k, content, message):
    npz = tmp_path / "set.npz"
    if content == "good":
        _npz(npz, *_identities([1, 2, 3], dim=8, seed=2))
    elif content == "empty":
        _npz(npz, np.zeros((0, 8), np.float32), np.zeros(0, dtype="<U8"))
    out = tmp_path / "out.json"
    res = runner.invoke(app, ["eval", "calibrate", str(npz), "--fused-k", k, "--out", str(out), "--json"])
    assert res.exit_code != 0 and not isinstance(res.exception, (ValueError, KeyError, IndexError))
    assert message in res.output
    assert not out.exists()


# ---- the predicted-vs-measured checks -----------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_set() -> tuple[np.ndarray, np.ndarray, FusedCalibrations]:
    """300 identities with 1-6 photos, and calibrations (photo, fused K = 2..5) built on them."""
    from sightline.eval.calibration import build_calibration

    emb, names = _identities([1, 2, 3, 4, 5, 6] * 50, dim=16, seed=11, shared=0.7)
    photo = Calibration.from_json(build_calibration(emb, names, model="syn", source="s"))
    by_k = {
        k: Calibration.from_json(build_fused_calibration(emb, names, k=k, model="syn", source="s"))
        for k in (2, 3, 4, 5)
    }
    return emb, names, FusedCalibrations(photo, by_k)


def test_fused_watchlist_check_reports_both_predictions(synthetic_set):
    from sightline.eval.calibration import fused_watchlist_check

    emb, names, fc = synthetic_set
    r = fused_watchlist_check(emb, names, photo=fc.photo, fused=fc, targets=(0.1,))
    assert (r["model"], r["fused_k"]) == ("syn", 2)
    listed = r["split"]["enrolled_persons"]
    pt = r["at_measured_operating_points"]["0.1"]
    assert pt["fpir_measured"] <= 0.1
    assert pt["fpir_predicted_fused_cal"] == pytest.approx(fc.est_fpir(pt["threshold"], {2: listed}))
    assert pt["fpir_predicted_photo_cal"] == pytest.approx(fc.photo.est_fpir(pt["threshold"], listed))
    # strangers score higher against means: the photo curve predicts fewer alerts than the fused one
    assert pt["fpir_predicted_photo_cal"] < pt["fpir_predicted_fused_cal"]
    tuned = r["tuned_for_target"]["0.1"]
    assert tuned["fused_cal"]["threshold"] == pytest.approx(fc.threshold_for_fpir(0.1, {2: listed}))
    assert tuned["fused_cal"]["threshold"] > tuned["photo_cal_n_persons"]["threshold"]


def test_mixed_k_check_lists_every_photo_count_and_tunes_near_the_target(synthetic_set):
    from sightline.eval.calibration import mixed_k_watchlist_check

    emb, names, fc = synthetic_set
    r = mixed_k_watchlist_check(emb, names, photo=fc.photo, fused=fc, max_photos=4, targets=(0.2,))
    mix = {int(k): v for k, v in r["photos_per_person"].items()}
    assert set(mix) == {1, 2, 3, 4} and sum(mix.values()) == r["listed_persons"] == 125  # half of 250 eligible
    p = r["points"]["0.2"]
    assert p["tuned_fused_cal"]["threshold"] == pytest.approx(fc.threshold_for_fpir(0.2, mix))
    # independent synthetic strangers: the independence estimate holds, the photo curve under-states
    assert 0.1 <= p["tuned_fused_cal"]["fpir_measured"] <= 0.3
    assert p["tuned_photo_cal_n_persons"]["fpir_measured"] > p["tuned_fused_cal"]["fpir_measured"]
    with pytest.raises(ValueError, match="at least 2 identities"):
        mixed_k_watchlist_check(emb[:3], np.array(["a", "b", "c"]), photo=fc.photo, fused=fc)
