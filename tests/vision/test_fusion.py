"""Score fusion: the template maths, the shipped parameters, and the engine/gallery with model="fusion"."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.vision.embed import fusion
from tests.conftest import GALLERY, PROBES, rgb
from tests.vision.test_faceres import require_faceres

RNG = np.random.default_rng(3)


def _unit(n: int, d: int) -> np.ndarray:
    x = RNG.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _params(mu=(0.8, 0.4), sd=(0.04, 0.09)) -> fusion.FusionParams:
    return fusion.FusionParams(fusion.MODEL, fusion.PARTS, fusion.DIMS, mu, sd, 1000)


@pytest.mark.parametrize(
    ("mu", "sd"), [((0.8, 0.4), (0.04, 0.09)), ((0.0, 0.0), (1.0, 1.0)), ((0.5, -0.1), (0.2, 0.01))]
)
def test_template_cosine_is_an_increasing_affine_map_of_the_z_score_average(mu, sd):
    p = _params(mu, sd)
    a, b = _unit(20, 128), _unit(20, 1024)
    t = fusion.fuse(a, b, p)
    assert t.shape == (20, 1152) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-6)
    cos = (t @ t.T)[np.triu_indices(20, 1)]
    za = ((a @ a.T)[np.triu_indices(20, 1)] - mu[0]) / sd[0]
    zb = ((b @ b.T)[np.triu_indices(20, 1)] - mu[1]) / sd[1]
    z = (za + zb) / 2
    np.testing.assert_allclose(p.fused_from_cosine(cos), z, rtol=1e-4, atol=1e-4)
    # the same ranking
    assert (np.argsort(cos) == np.argsort(z)).mean() > 0.99


def test_weights_follow_the_spreads():
    wa, wb = _params(sd=(0.05, 0.1)).weights
    assert wa**2 + wb**2 == pytest.approx(1.0)
    assert wa**2 / wb**2 == pytest.approx(2.0)  # w^2 ~ 1 / (2 sd): half the spread, twice the weight


def test_fuse_normalises_parts_and_keeps_nan_rows():
    p = _params()
    a, b = _unit(3, 128), _unit(3, 1024)
    np.testing.assert_allclose(fusion.fuse(5 * a, 0.1 * b, p), fusion.fuse(a, b, p), atol=1e-6)
    a[1] = np.nan
    out = fusion.fuse(a, b, p)
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [((3, 64), (3, 1024), r"a must be \(N, 128\)"), ((3, 128), (2, 1024), "same rows"), ((3, 128), (3, 512), "b must")],
)
def test_fuse_checks_shapes(a, b, match):
    with pytest.raises(ValueError, match=match):
        fusion.fuse(np.ones(a), np.ones(b), _params())


def test_random_pair_stats_estimate_the_impostor_distribution():
    # 2-D unit vectors at uniform angles: cosine of a random pair has mean 0 and std 1/sqrt(2)
    ang = RNG.uniform(0, 2 * np.pi, 4000)
    e = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    mu, sd, n = fusion.random_pair_stats(e, 100_000)
    assert n == 100_000 and abs(mu) < 0.01 and sd == pytest.approx(1 / np.sqrt(2), abs=0.01)
    with pytest.raises(ValueError, match="at least 2"):
        fusion.random_pair_stats(np.full((3, 2), np.nan))


def test_fit_recovers_spreads_and_round_trips_json():
    a = _unit(500, 128)
    b = _unit(500, 1024)
    p = fusion.fit(a, b, n_pairs=20_000)
    # random unit vectors in D dims: cosine std ~ 1/sqrt(D)
    assert p.sd[0] == pytest.approx(1 / np.sqrt(128), rel=0.1) and p.sd[1] == pytest.approx(1 / np.sqrt(1024), rel=0.1)
    assert fusion.FusionParams.from_json(p.to_json()) == p


@pytest.mark.parametrize("bad", [{"sd": (0.0, 0.1)}, {"sd": (float("nan"), 0.1)}, {"mu": (2.0, 0.1)}])
def test_invalid_params_are_refused(bad):
    with pytest.raises(ValueError):
        _params(**{"mu": (0.8, 0.4), "sd": (0.04, 0.09), **bad})


def test_shipped_params_and_calibration_belong_to_the_fusion_model():
    from sightline.vision.calibration import load_builtin

    p = fusion.load_builtin()
    assert p.model == fusion.MODEL and p.parts == fusion.PARTS and p.dims == (128, 1024) and p.n_pairs >= 100_000
    cal = load_builtin(fusion.MODEL)
    assert cal.model == fusion.MODEL
    assert 0.0 < cal.default_threshold < 1.0


# ---- the engine and the gallery with model="fusion" ------------------------------------------------


@pytest.fixture(scope="module")
def fusion_engine():
    require_faceres()
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    return FaceEngine.from_config(EngineConfig(backend="onnx", model="fusion", threads=1))


def test_fusion_engine_facts_and_chip_only_embedding_is_refused(fusion_engine):
    assert fusion_engine.model == "fusion_dlib_faceres_v1" and fusion_engine.dim == 1152
    assert fusion_engine.needs_crops
    with pytest.raises(ValueError, match="model_crops"):
        fusion_engine.embed_chips(np.zeros((1, 150, 150, 3), np.uint8))


def test_fusion_engine_embeds_the_same_as_its_parts(fusion_engine):
    from sightline.vision import align

    img = rgb(GALLERY / "obama/obama.jpg")
    (rec,) = fusion_engine.analyze(img)
    assert rec.embedding is not None and rec.embedding.shape == (1152,)
    assert abs(float(np.linalg.norm(rec.embedding)) - 1) < 1e-5
    faces = fusion_engine.detect(img)
    chips = align.chips(img, faces)
    crops = fusion_engine.model_crops(img, faces.xyxy)
    a, b = fusion_engine.embed_parts(chips, crops)
    np.testing.assert_allclose(fusion.fuse(a, b, fusion_engine.fusion), rec.embedding[None], atol=1e-5)
    # the worker's path: chips and crops kept, embedded later
    np.testing.assert_allclose(fusion_engine.embed_chips(chips, crops=crops), rec.embedding[None], atol=1e-5)


def test_gallery_enrolls_and_searches_with_fusion(tmp_path, fusion_engine):
    from sightline.gallery import Gallery

    with Gallery.open(tmp_path, fusion_engine) as g:
        for person in ("obama", "biden", "kit_harington", "rose_leslie", "alex_lacamoire"):
            photos = sorted((GALLERY / person).iterdir())
            rep = g.enroll_person(person, photos, watchlist="vip", create=True)
            assert rep.templates_added == len(photos), rep
        cases = {"obama1.jpg": "obama", "alex_lacamoire1.jpg": "alex_lacamoire", "johnsnow_test1.jpg": "kit_harington"}
        for probe, who in cases.items():
            (res, *_) = g.search(PROBES / probe, watchlist="vip")
            best = res.candidates[0]
            assert best.name == who and best.is_match, (probe, res.candidates)
            assert res.candidates[1].similarity < res.threshold
        both = g.search(PROBES / "obama_and_biden.jpg", watchlist="vip")
        assert {r.candidates[0].name for r in both if r.candidates[0].is_match} == {"obama", "biden"}
        v = g.verify(GALLERY / "obama/obama.jpg", GALLERY / "biden/biden.jpg")
        assert not v.same_person


# ---- the CLI: embed (parts kept), fit, re-fuse, evaluate from the npz ------------------------------


def _cli(*args: str) -> dict:
    import json

    from typer.testing import CliRunner

    from sightline.cli.main import app

    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_cli_fusion_embed_fit_fuse_and_lfw_npz(tmp_path):
    require_faceres()
    from tests.conftest import LFW_MINI

    npz = tmp_path / "mini.npz"
    out = _cli("--threads", "1", "eval", "embed", str(LFW_MINI), "--out", str(npz), "--model", "fusion")
    assert out["model"] == fusion.MODEL and out["no_face"] == 0
    z = np.load(npz)
    assert z["embeddings"].shape == (22, 1152)
    assert z["part_dlib_resnet_v1"].shape == (22, 128) and z["part_faceres_hse_v1"].shape == (22, 1024)
    # the shipped parameters reproduce the embedded templates from the parts
    np.testing.assert_allclose(
        fusion.fuse(z["part_dlib_resnet_v1"], z["part_faceres_hse_v1"], fusion.load_builtin()),
        z["embeddings"],
        atol=1e-6,
    )
    params = _cli("models", "fit-fusion", str(npz), "--out", str(tmp_path / "p.json"), "--pairs", "5000")
    assert params["model"] == fusion.MODEL and all(s > 0 for s in params["sd"])
    fused = _cli(
        "models", "fuse", str(npz), "--out", str(tmp_path / "f.npz"), "--fusion-params", str(tmp_path / "p.json")
    )
    assert fused["images"] == 22
    pairs = str(LFW_MINI / "pairs.txt")
    for extra in ([], ["--part", "dlib_resnet_v1"], ["--part", "faceres_hse_v1"]):
        res = _cli("eval", "lfw-npz", str(tmp_path / "f.npz"), "--pairs", pairs, *extra)
        assert res["n_pairs"] > 0 and res["accuracy_mean"] >= 0.75, res
    from typer.testing import CliRunner

    from sightline.cli.main import app

    bad = CliRunner().invoke(app, ["eval", "lfw-npz", str(npz), "--pairs", pairs, "--part", "nope", "--json"])
    assert bad.exit_code == 2 and "no part" in bad.output
