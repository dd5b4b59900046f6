"""`watchlist tune --templates fused` on a real SQLite gallery of real photos (persons with 1, 2 and 3
photos), and the fused-list maths behind it: photo counts per person, planning, score meanings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.gallery import Gallery
from sightline.gallery.tuning import (
    TuningError,
    list_photo_counts,
    plan_photo_counts,
    score_meaning,
    tune_watchlist,
)
from sightline.vision.calibration import FusedCalibrations
from tests.conftest import GALLERY, PROBES
from tests.gallery.conftest import write_photo

runner = CliRunner()
FUSED = FusedCalibrations.builtin("dlib_resnet_v1")
MIX = {1: 1, 2: 3, 3: 1}  # alex 1 photo; biden, kit, rose 2; obama 3


def run(data_dir: Path, *args: str, code: int = 0) -> dict:
    res = runner.invoke(app, ["--data-dir", str(data_dir), *args, "--json"])
    assert res.exit_code == code, res.output + repr(res.exception)
    return json.loads(res.stdout) if code == 0 else {"output": res.output}


@pytest.fixture(scope="module")
def gallery_dir(tmp_path_factory, engine) -> Path:
    d = tmp_path_factory.mktemp("tune_fused")
    with Gallery.open(d, engine) as g:
        for person in sorted(p for p in GALLERY.iterdir() if p.is_dir()):
            photos = sorted(person.iterdir())
            if person.name == "obama":
                photos.append(PROBES / "obama1.jpg")
            rep = g.enroll_person(person.name, photos, watchlist="wanted", create=True)
            assert rep.templates_added == len(photos), rep
        g.create_watchlist("empty")
        assert list_photo_counts(g, "wanted") == MIX
    return d


def test_fused_tuning_counts_one_comparison_per_person_with_each_persons_k(gallery_dir):
    out = run(gallery_dir, "watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "10", "--templates", "fused")
    assert out["templates"] == "fused" and out["stored"] is True
    assert (out["list_size"], out["comparisons"]) == (5, 5)
    assert {int(k): v for k, v in out["photos_per_person"].items()} == MIX
    expected = FUSED.threshold_for_fpir(0.01, MIX)
    assert out["threshold"] == pytest.approx(expected, abs=1e-7)
    assert out["est_fpir"] <= 0.01 and out["est_fpir"] == pytest.approx(0.01, rel=1e-3)
    assert "fused" in out["method"]
    # stricter than the photo calibration would have it for a fused list (one comparison per person):
    # at that threshold the fused curves predict more false alerts than asked for
    photo_thr = FUSED.photo.threshold_for_fpir(0.01, 5)
    assert out["threshold"] > photo_thr + 1e-3
    assert FUSED.est_fpir(photo_thr, MIX) > 0.012
    shown = run(gallery_dir, "watchlist", "show", "wanted")
    assert shown["threshold"] == pytest.approx(expected) and shown["is_default_threshold"] is False


def test_per_photo_stays_the_default(gallery_dir):
    out = run(gallery_dir, "watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "10", "--dry-run")
    assert out["templates"] == "per-photo" and out["photos_per_person"] is None
    assert out["comparisons"] == 10  # every photo is a comparison
    assert out["threshold"] == pytest.approx(FUSED.photo.threshold_for_fpir(0.01, 10))


def test_planning_a_bigger_fused_list_keeps_the_mix_of_photo_counts(gallery_dir):
    out = run(
        gallery_dir,
        *("watchlist", "tune", "wanted", "--max-false-alerts-per-1000", "10"),
        *("--templates", "fused", "--list-size", "500", "--dry-run"),
    )
    assert {int(k): v for k, v in out["photos_per_person"].items()} == {1: 100, 2: 300, 3: 100}
    assert out["comparisons"] == 500 and out["stored"] is False
    assert out["threshold"] == pytest.approx(FUSED.threshold_for_fpir(0.01, {1: 100, 2: 300, 3: 100}), abs=1e-7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("wanted", "--templates", "mean"), "--templates must be one of per-photo, fused"),
        (("empty", "--templates", "fused"), "has no members"),
        (("wanted", "--templates", "fused", "--max-false-alerts-per-1000", "0.000001"), "0.001"),
        (
            ("wanted", "--templates", "fused", "--list-size", "100000000", "--max-false-alerts-per-1000", "0.01"),
            "resolve",
        ),
    ],
)
def test_fused_tuning_bad_input_fails_clearly(gallery_dir, args, message):
    extra = () if "--max-false-alerts-per-1000" in args else ("--max-false-alerts-per-1000", "10")
    res = runner.invoke(app, ["--data-dir", str(gallery_dir), "watchlist", "tune", *args, *extra, "--json"])
    assert res.exit_code != 0 and not isinstance(res.exception, (ValueError, KeyError, ZeroDivisionError))
    assert message in res.output


def test_a_model_without_fused_calibrations_cannot_be_tuned_fused(gallery, tmp_path):
    """The fake engine's model has no fused calibration: a clear error, nothing stored."""
    photos = [write_photo(tmp_path / f"p{v}.png", 3, v) for v in range(2)]
    gallery.enroll_person("ada", photos, watchlist="staff", create=True)
    with pytest.raises(TuningError, match="no fused-template calibration shipped for model 'fake_v1'"):
        tune_watchlist(gallery, "staff", 10, templates="fused")
    assert gallery.get_watchlist("staff").threshold is None
    with pytest.raises(TuningError, match="templates must be one of"):
        tune_watchlist(gallery, "staff", 10, templates="mean")  # type: ignore[arg-type]


def test_list_photo_counts_counts_the_members_templates_of_the_model(gallery, tmp_path):
    for seed, n in ((1, 1), (2, 2), (3, 3), (4, 2)):
        photos = [write_photo(tmp_path / f"{seed}_{v}.png", seed, v) for v in range(n)]
        gallery.enroll_person(f"s{seed}", photos, watchlist="staff" if seed < 4 else None, create=True)
    assert list_photo_counts(gallery, "staff") == {1: 1, 2: 1, 3: 1}
    assert list_photo_counts(gallery, None) == {1: 1, 2: 2, 3: 1}
    gallery.create_watchlist("none")
    assert list_photo_counts(gallery, "none") == {}


@pytest.mark.parametrize(
    ("mix", "n", "planned"),
    [
        ({1: 1, 2: 3, 3: 1}, 5, {1: 1, 2: 3, 3: 1}),
        ({1: 1, 2: 3, 3: 1}, 500, {1: 100, 2: 300, 3: 100}),
        ({1: 1, 2: 1}, 3, {1: 2, 2: 1}),  # largest remainders, ties to the smaller K
        ({2: 7}, 1, {2: 1}),
        ({}, 4, {1: 4}),  # an empty list: one photo each
    ],
)
def test_plan_photo_counts(mix, n, planned):
    got = plan_photo_counts(mix, n)
    assert got == planned and sum(got.values()) == n


def test_score_meaning_of_a_fused_list():
    s = 0.95
    m = score_meaning(FUSED.photo, s, 5, templates="fused", photos_per_person=MIX)
    assert m.templates == "fused" and m.list_size == 5
    assert m.est_fpir == pytest.approx(FUSED.est_fpir(s, MIX))
    assert m.est_fpir > score_meaning(FUSED.photo, s, 5).est_fpir  # the photo curve under-states it
    assert "against 5 fused templates" in m.text
    with pytest.raises(TuningError, match="photos per person"):
        score_meaning(FUSED, s, 5, templates="fused")
    with pytest.raises(TuningError, match="templates must be one of"):
        score_meaning(FUSED.photo, s, 5, templates="best")  # type: ignore[arg-type]


def test_a_list_remembers_the_template_mode_its_threshold_was_tuned_for(tmp_path, engine, caplog):
    """Schema 5: `watchlist tune --templates M` stores M with the threshold; an edit of the description keeps
    it, a threshold set by hand clears it; a live matcher in the other mode warns that the list's false-alert
    rate is not the one it was tuned for."""
    import logging

    from sightline.video.matcher import WatchlistMatcher

    with Gallery.open(tmp_path, engine) as g:
        g.enroll_person("obama", sorted((GALLERY / "obama").iterdir()), watchlist="wanted", create=True)
        assert g.get_watchlist("wanted").threshold_templates is None
        tune_watchlist(g, "wanted", 10, templates="fused")
        wl = g.get_watchlist("wanted")
        assert wl.threshold_templates == "fused" and wl.threshold is not None
        g.store.update_watchlist(wl.id, description="edited", threshold=wl.threshold)
        assert g.get_watchlist("wanted").threshold_templates == "fused"  # same threshold: still tuned for fused
        with caplog.at_level(logging.WARNING, logger="sightline.video.matcher"):
            WatchlistMatcher(g, templates="per-photo").refresh()
        assert "tuned for fused templates but is matched with per-photo" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sightline.video.matcher"):
            WatchlistMatcher(g, templates="fused").refresh()
        assert "tuned for" not in caplog.text
        g.store.update_watchlist(wl.id, description="edited", threshold=0.95)
        assert g.get_watchlist("wanted").threshold_templates is None  # set by hand
        tune_watchlist(g, "wanted", 10)
        assert g.get_watchlist("wanted").threshold_templates == "per-photo"
        tune_watchlist(g, "wanted", 10, dry_run=True, templates="fused")
        assert g.get_watchlist("wanted").threshold_templates == "per-photo"  # a dry run stores nothing
        with pytest.raises(Exception, match="threshold_templates"):
            g.store.update_watchlist(wl.id, description="", threshold=0.9, threshold_templates="mean")
    out = run(tmp_path, "watchlist", "show", "wanted")
    assert out["threshold_tuned_for"] == "per-photo"
