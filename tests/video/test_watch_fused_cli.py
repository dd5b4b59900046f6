"""`sightline watch --templates fused` as a subprocess on a clip encoded by ffmpeg from a committed photo:
the alert line states the fused template mode and a meaning computed with the fused-template
calibrations (real engine, real SQLite gallery)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sightline.eval.clips import Clip, make_face_clip
from sightline.gallery import Gallery
from sightline.vision.calibration import FusedCalibrations
from tests.conftest import GALLERY, PROBES
from tests.video.servers import OBAMA

FUSED = FusedCalibrations.builtin("dlib_resnet_v1")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """3 s, 640x360 @ 25 fps: 1 s grey, 2 s obama.jpg (not one of the enrolled photos)."""
    return make_face_clip(tmp_path_factory.mktemp("fusedclip") / "c.mp4", [(None, 1.0), (OBAMA, 2.0)])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, engine) -> Path:
    """obama with 2 photos (obama2.jpg, obama1.jpg), biden with 2, alex with 1, all on 'wanted'."""
    d = tmp_path_factory.mktemp("fusedwatch")
    with Gallery.open(d, engine) as g:
        g.enroll_person("obama", [GALLERY / "obama/obama2.jpg", PROBES / "obama1.jpg"], watchlist="wanted", create=True)
        g.enroll_person("biden", sorted((GALLERY / "biden").iterdir()), watchlist="wanted", create=True)
        g.enroll_person("alex", [GALLERY / "alex_lacamoire/img1.jpg"], watchlist="wanted", create=True)
    return d


def sightline(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIGHTLINE_DATA_DIR": str(data)}
    cmd = [sys.executable, "-m", "sightline.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=80, env=env, check=False)


@pytest.mark.timeout(90)
def test_watch_fused_alert_states_the_fused_meaning(clip: Clip, data_dir: Path) -> None:
    out = sightline(data_dir, "watch", str(clip.path), "--templates", "fused", "--json", "--duration", "30")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, out.stdout
    a = lines[0]
    assert (a["person"], a["watchlist"], a["templates"]) == ("obama", "wanted", "fused")
    # no list threshold: the default FMR on the curve of obama's 2 photos, not the photo default
    # (the line rounds similarity and threshold to 4 decimals)
    assert a["threshold"] == pytest.approx(FUSED.for_k(2).default_threshold, abs=6e-5)
    lo, hi = a["similarity"] - 5e-5, a["similarity"] + 5e-5
    assert FUSED.est_fmr(hi, 2) <= a["est_fmr"] <= FUSED.est_fmr(lo, 2)
    mix = {1: 1, 2: 2}
    assert FUSED.est_fpir(hi, mix) <= a["est_stranger_alert_rate"] <= FUSED.est_fpir(lo, mix)
    assert not FUSED.photo.est_fmr(hi) <= a["est_fmr"] <= FUSED.photo.est_fmr(lo)  # not the photo curve
    assert "against 3 fused templates" in a["meaning"]


def test_watch_rejects_an_unknown_template_mode(clip: Clip, data_dir: Path) -> None:
    out = sightline(data_dir, "watch", str(clip.path), "--templates", "mean", "--json", "--duration", "1")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "--templates must be one of per-photo, fused" in out.stdout + out.stderr


@pytest.mark.timeout(60)
def test_watchlist_show_states_the_threshold_for_the_template_mode(data_dir: Path) -> None:
    """`watchlist show --templates fused`: a list without its own threshold is matched per person at the
    default FMR of their photo count's curve; the JSON names those thresholds and the list's alert rate."""
    per_photo = json.loads(sightline(data_dir, "watchlist", "show", "wanted", "--json").stdout)
    fused = json.loads(sightline(data_dir, "watchlist", "show", "wanted", "--templates", "fused", "--json").stdout)
    assert (per_photo["templates"], fused["templates"]) == ("per-photo", "fused")
    assert per_photo["list_templates"] == fused["list_templates"] == 5  # 2 + 2 + 1 photos
    assert "default_threshold_by_photos" not in per_photo
    assert fused["default_threshold_by_photos"] == pytest.approx(
        {"1": FUSED.for_k(1).default_threshold, "2": FUSED.for_k(2).default_threshold}
    )
    fmr = FUSED.photo.default_fmr
    assert fused["est_stranger_alert_rate"] == pytest.approx(1 - (1 - fmr) ** 3)  # 3 persons, one template each
    assert per_photo["est_stranger_alert_rate"] == pytest.approx(FUSED.photo.est_fpir(per_photo["threshold"], 5))
    bad = sightline(data_dir, "watchlist", "show", "wanted", "--templates", "mean", "--json")
    assert bad.returncode == 2 and "--templates" in json.loads(bad.stdout)["error"]
