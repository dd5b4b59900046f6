"""`sightline watchlist tune` on a real SQLite gallery of real photos, and the threshold maths behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.gallery.tuning import TuningError, choose_threshold
from sightline.vision.calibration import load_builtin
from tests.conftest import GALLERY, PROBES

runner = CliRunner()
CAL = load_builtin("dlib_resnet_v1")


def run(data_dir: Path, *args: str, code: int = 0) -> dict | list:
    res = runner.invoke(app, ["--data-dir", str(data_dir), *args, "--json"])
    assert res.exit_code == code, res.output + repr(res.exception)
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def gallery_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tune")
    out = run(d, "enroll", "--reason", "test", "--watchlist", "wanted", str(GALLERY))
    assert out["persons_enrolled"] == 5
    run(d, "watchlist", "create", "empty")
    return d


def test_tune_stores_the_threshold_for_the_list_size(gallery_dir):
    out = run(gallery_dir, "watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "10")
    # 5 persons, 9 photos: a stranger is compared with every photo, so N = 9
    assert out["list_size"] == 5 and out["comparisons"] == 9 and out["stored"] is True
    expected = CAL.threshold_for_fpir(0.01, 9)
    assert out["threshold"] == pytest.approx(expected)
    assert out["est_fpir"] == pytest.approx(0.01, rel=1e-6)
    assert out["fmr_per_comparison"] == pytest.approx(1 - 0.99 ** (1 / 9), rel=1e-3)
    # stored in the database: every reader of the gallery sees it
    shown = run(gallery_dir, "watchlist", "show", "wanted")
    assert shown["threshold"] == pytest.approx(expected) and shown["is_default_threshold"] is False
    assert shown["est_stranger_alert_rate"] == pytest.approx(0.01, rel=1e-6)
    listed = {w["name"]: w for w in run(gallery_dir, "watchlist", "list")}
    assert listed["wanted"]["threshold"] == pytest.approx(expected)
    # and search decides with it and says what a score means against this list
    res = run(gallery_dir, "search", "--reason", "test", "--watchlist", "wanted", str(PROBES / "obama1.jpg"))
    best = res["faces"][0]["candidates"][0]
    assert best["name"] == "obama" and best["threshold"] == pytest.approx(expected, abs=1e-4)
    assert (res["list_persons"], res["list_templates"]) == (5, 9)
    assert best["est_stranger_alert_rate"] == pytest.approx(CAL.est_fpir(best["similarity"], 9), rel=1e-2)
    assert "against 9 enrolled photos" in best["meaning_for_list"]


def test_a_bigger_list_or_a_stricter_target_raises_the_threshold(gallery_dir):
    loose = run(gallery_dir, "watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "10", "--dry-run")
    big = run(
        gallery_dir,
        "watchlist",
        "tune",
        "wanted",
        "--max-false-alerts-per-1000",
        "10",
        "--list-size",
        "500",
        "--dry-run",
    )
    strict = run(gallery_dir, "watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "1", "--dry-run")
    assert loose["threshold"] < big["threshold"] and loose["threshold"] < strict["threshold"]
    assert big["list_size"] == 500 and big["comparisons"] == 900 and big["stored"] is False  # 1.8 photos each


def test_dry_run_changes_nothing(gallery_dir):
    before = run(gallery_dir, "watchlist", "show", "wanted")["threshold"]
    out = run(gallery_dir, "watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "0.5", "--dry-run")
    assert out["stored"] is False and out["threshold"] != pytest.approx(before)
    assert run(gallery_dir, "watchlist", "show", "wanted")["threshold"] == pytest.approx(before)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "--max-false-alerts-per-1000", "10"), "no watchlist 'nope'"),
        (("empty", "--max-false-alerts-per-1000", "10"), "no members"),
        (("wanted", "--max-false-alerts-per-1000", "0.001", "--list-size", "100000"), "below what the calibration"),
    ],
)
def test_tune_refuses_with_a_clear_error(gallery_dir, args, message):
    out = run(gallery_dir, "watchlist", "tune", *args, code=2)
    assert message in out["error"]


def test_an_empty_list_can_be_planned_for_a_size(gallery_dir):
    out = run(gallery_dir, "watchlist", "tune", "empty", "--max-false-alerts-per-1000", "10", "--list-size", "50")
    assert out["list_size"] == 50 and out["comparisons"] == 50
    assert out["threshold"] == pytest.approx(CAL.threshold_for_fpir(0.01, 50))


@pytest.mark.parametrize(("n", "target"), [(1, 1.0), (10, 10.0), (300, 10.0), (3000, 5.0)])
def test_choose_threshold_inverts_the_estimate(n, target):
    thr, fmr = choose_threshold(CAL, target, n)
    assert CAL.est_fpir(thr, n) == pytest.approx(target / 1000, rel=1e-3)
    assert fmr == pytest.approx(CAL.est_fmr(thr))


@pytest.mark.parametrize(("target", "n"), [(0, 10), (1000, 10), (10, 0)])
def test_choose_threshold_checks_its_arguments(target, n):
    with pytest.raises(TuningError):
        choose_threshold(CAL, target, n)


@pytest.mark.parametrize("sim", [0.90, 0.93, 0.95, 0.97])
def test_est_fpir_is_fmr_for_one_photo_and_grows_with_the_list(sim):
    fmr = CAL.est_fmr(sim)
    assert CAL.est_fpir(sim, 1) == pytest.approx(fmr, rel=1e-9)
    assert CAL.est_fpir(sim, 100) == pytest.approx(1 - (1 - fmr) ** 100, rel=1e-9)
    assert CAL.est_fpir(sim, 1) <= CAL.est_fpir(sim, 10) <= CAL.est_fpir(sim, 1000) < 1
    assert "against 1,000 enrolled photos" in CAL.describe_for_list(sim, 1000)
    with pytest.raises(ValueError, match="list_size"):
        CAL.est_fpir(sim, 0)
