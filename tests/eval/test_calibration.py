"""Impostor calibration: the builder against brute force and a known distribution; the runtime class."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from sightline.eval.calibration import FMRS, build_calibration
from sightline.vision.calibration import Calibration, builtin_models, load_builtin


def _identities(n_ids: int, per_id: list[int], dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian identity centres + Gaussian noise, L2-normalised. Each image direction is uniform on the
    sphere and images of different identities are independent, so an impostor cosine follows the known
    law of the cosine between two random unit vectors: density proportional to (1 - t^2)^((dim - 3) / 2)."""
    rng = np.random.default_rng(seed)
    counts = np.resize(per_id, n_ids)
    centres = rng.standard_normal((n_ids, dim))
    x = np.repeat(centres, counts, axis=0)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) + noise * rng.standard_normal(x.shape) / math.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat([f"id{i}" for i in range(n_ids)], counts)


def _random_cosine_quantile(dim: int, fmr: float) -> float:
    t = np.linspace(-1, 1, 2_000_001)
    sf = np.cumsum(((1 - t**2) ** ((dim - 3) / 2))[::-1])[::-1]
    return float(t[np.argmax(sf / sf[0] <= fmr)])


@pytest.mark.parametrize(("tail_margin", "block"), [(None, 1024), (2, 7)])
def test_builder_matches_brute_force(tail_margin, block):
    emb, names = _identities(70, [1, 2, 4], dim=16, noise=1.0, seed=3)
    emb = np.vstack([emb, np.full((1, 16), np.nan, np.float32)])  # an image without a face: left out
    names = np.append(names, "id0")
    sims = emb[:-1] @ emb[:-1].T
    iu = np.triu_indices(len(sims), 1)
    same = (names[:-1, None] == names[None, :-1])[iu]
    imp, gen = sims[iu][~same].astype(np.float64), sims[iu][same].astype(np.float64)
    tail = None if tail_margin is None else math.ceil(max(FMRS) * len(imp)) + tail_margin

    doc = build_calibration(emb, names, model="m", source="synthetic", tail=tail, block=block)

    assert (doc["n_impostor_pairs"], doc["n_genuine_pairs"]) == (len(imp), len(gen))
    observed = np.unique(imp)
    ulp = 1e-6  # float32 BLAS results differ in the last bit with the block shape
    for key, t in doc["threshold_at_fmr"].items():
        f = float(key)
        assert np.mean(imp >= t + ulp) <= f  # meets the target ...
        lower = observed[observed < t - ulp]
        assert not len(lower) or np.mean(imp >= lower[-1]) > f  # ... and is the lowest such score
        assert np.mean(gen < t - ulp) <= doc["fnmr_at_fmr"][key] <= np.mean(gen < t + ulp)
    assert doc["default_threshold"] == doc["threshold_at_fmr"]["1e-3"]
    curve = np.array(doc["curve"])
    assert np.all(np.diff(curve[:, 0]) > 0) and np.all(np.diff(curve[:, 1]) < 0)
    assert curve[-1, 0] == pytest.approx(imp.max())
    assert 0.4 < curve[0, 1] <= 0.5
    counts = np.rint(curve[:, 1] * len(imp))
    for s, c in zip(curve[:, 0], counts, strict=True):
        assert np.sum(imp >= s + ulp) <= c <= np.sum(imp >= s - ulp)


def test_builder_on_a_known_distribution():
    dim = 128
    emb, names = _identities(1000, [2], dim=dim, noise=0.5, seed=0)
    doc = build_calibration(emb, names, model="m", source="synthetic")
    cal = Calibration.from_json(doc)
    for f in (1e-2, 1e-3, 1e-4):
        expected = _random_cosine_quantile(dim, f)
        assert doc["threshold_at_fmr"][f"{f:.0e}".replace("e-0", "e-")] == pytest.approx(expected, abs=0.005)
        assert cal.threshold_for_fmr(f) == pytest.approx(expected, abs=0.005)
        assert cal.est_fmr(expected) == pytest.approx(f, rel=0.2)
    # genuine pairs score ~1 / (1 + 0.5^2) = 0.8, far above every threshold
    assert doc["fnmr_at_fmr"] == {"1e-2": 0.0, "1e-3": 0.0, "1e-4": 0.0, "1e-5": 0.0}
    assert 100 <= len(doc["curve"]) <= 220


@pytest.mark.parametrize(
    ("names", "embeddings", "message"),
    [
        (["a", "a"], np.eye(2, dtype=np.float32), "at least 2 identities"),
        (["a", "b"], 2 * np.eye(2, dtype=np.float32), "L2-normalised"),
        (["a"], np.eye(2, dtype=np.float32), "N names"),
    ],
)
def test_builder_rejects_bad_input(names, embeddings, message):
    with pytest.raises(ValueError, match=message):
        build_calibration(embeddings, np.array(names), model="m", source="s")


# ---- the runtime class --------------------------------------------------------------------------

DOC = {
    "model": "toy",
    "n_impostor_pairs": 40_000_000,
    "default_fmr": 1e-3,
    "default_threshold": 0.5,
    "curve": [[0.0, 0.5], [0.5, 1e-3], [0.9, 1e-6], [0.95, 2.5e-8]],
}


@pytest.mark.parametrize(
    ("similarity", "fmr", "bound", "words"),
    [
        (-1.0, 1.0, False, "more than half of strangers score this high"),
        (0.0, 0.5, False, "about 1 in 2 strangers score this high"),
        (0.5, 1e-3, False, "about 1 in 1,000 strangers score this high"),
        (0.7, 10**-4.5, False, "about 1 in 32,000 strangers score this high"),
        (0.95, 2.5e-8, False, "about 1 in 40 million strangers score this high"),
        (0.99, 2.5e-8, True, "fewer than 1 in 40 million strangers score this high"),
    ],
)
def test_est_fmr_and_describe(similarity, fmr, bound, words):
    cal = Calibration.from_json(DOC)
    assert cal.est_fmr(similarity) == pytest.approx(fmr, rel=1e-9)
    assert cal.is_bound(similarity) is bound
    assert cal.describe(similarity).startswith(words)


@pytest.mark.parametrize("fmr", [0.9, 0.5, 1e-2, 10**-4.5, 1e-7, 2.5e-8])
def test_threshold_for_fmr_inverts_est_fmr(fmr):
    cal = Calibration.from_json(DOC)
    assert cal.est_fmr(cal.threshold_for_fmr(fmr)) == pytest.approx(fmr, rel=1e-9)


def test_est_fmr_is_monotone():
    cal = Calibration.from_json(DOC)
    est = [cal.est_fmr(s) for s in np.linspace(-1, 1, 401)]
    assert all(a >= b for a, b in itertools.pairwise(est))


@pytest.mark.parametrize("fmr", [1e-8, 0.0, 1.0, -1e-3])
def test_threshold_for_fmr_rejects_unmeasurable_rates(fmr):
    with pytest.raises(ValueError, match="40,000,000 impostor pairs"):
        Calibration.from_json(DOC).threshold_for_fmr(fmr)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": None}, "missing the field 'model'"),
        ({"curve": [[0.0, 0.5], [0.5, 0.6]]}, "strictly decreasing"),
        ({"curve": [[0.5, 0.5], [0.0, 1e-3]]}, "strictly increasing"),
        ({"curve": [[0.5, 0.5]]}, ">= 2"),
        ({"curve": [0.5, 0.5]}, "list of \\[similarity, fmr\\] pairs"),
        ({"default_fmr": 0}, "default_fmr"),
    ],
)
def test_from_json_rejects_malformed(change, message):
    doc = {k: v for k, v in {**DOC, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        Calibration.from_json(doc)


def test_load_round_trip(tmp_path):
    path = tmp_path / "toy.calibration.json"
    path.write_text(json.dumps({**DOC, "source": "test", "threshold_at_fmr": {"1e-3": 0.5}}))
    cal = Calibration.load(path)
    assert (cal.model, cal.default_threshold, cal.n_impostor_pairs) == ("toy", 0.5, 40_000_000)
    assert cal.curve_sim.tolist() == [p[0] for p in DOC["curve"]]


def test_load_builtin_unknown_model_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="no calibration shipped for model 'no_such_model'"):
        load_builtin("no_such_model")


@pytest.mark.parametrize("model", builtin_models())
def test_builtin_calibrations_load(model):
    cal = load_builtin(model)
    assert cal.model == model
    assert cal.est_fmr(cal.default_threshold) == pytest.approx(cal.default_fmr, rel=0.1)
