"""WatchConfig.templates = "fused" reaches the live matcher (through the supervisor and the server's camera
supervisor), and the fused matcher reads thresholds and false-match rates from the fused-template
calibrations. Real engine, real photos, real SQLite gallery."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sightline.config import CameraConfig, WatchConfig
from sightline.events import EventBus, EventStores
from sightline.gallery import Gallery
from sightline.server.services import CameraSupervisor
from sightline.video.matcher import WatchlistMatcher
from sightline.video.supervisor import Supervisor
from sightline.vision.calibration import FusedCalibrations
from tests.conftest import GALLERY, PROBES
from tests.gallery.conftest import FakeEngine, write_photo

FUSED = FusedCalibrations.builtin("dlib_resnet_v1")
CAM = CameraConfig(id="c", url="f.mp4")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, engine):
    with Gallery.open(tmp_path_factory.mktemp("fused"), engine) as g:
        for name in ("obama", "biden"):
            g.enroll_person(name, sorted((GALLERY / name).iterdir()), watchlist="wanted", create=True)
        g.enroll_person("alex", [GALLERY / "alex_lacamoire/img1.jpg"], watchlist="wanted", create=True)
        yield g


@pytest.fixture(scope="module")
def probe(engine) -> np.ndarray:
    from tests.conftest import rgb

    faces = engine.analyze(rgb(PROBES / "obama1.jpg"))
    assert faces
    return faces[0].embedding


def _fused_template(g: Gallery, name: str) -> np.ndarray:
    pid = g.store.find_persons(name=name)[0].id
    d = np.stack([t.descriptor for t in g.store.templates_of(pid, with_descriptors=True)]).astype(np.float64)
    m = d.sum(axis=0)
    return m / np.linalg.norm(m)


def test_the_supervisor_builds_a_fused_matcher_from_the_watch_config(gallery, engine):
    sup = Supervisor([CAM], lambda: engine, gallery, None, WatchConfig(templates="fused"))
    assert sup.matcher.templates == "fused" and sup.matcher.fused is not None
    assert sup.matcher.size() == (3, 3)  # one template per person
    assert sup.matcher.photo_counts() == {1: 1, 2: 2}
    default = Supervisor([CAM], lambda: engine, gallery, None, WatchConfig())
    assert default.matcher.templates == "per-photo" and default.matcher.size() == (3, 5)


def test_the_server_camera_supervisor_passes_the_template_mode(gallery, engine):
    cams = CameraSupervisor(
        gallery, EventBus(), EventStores(gallery.store), lambda: engine, WatchConfig(templates="fused")
    )
    assert cams.matcher.templates == "fused" and cams.matcher.size() == (3, 3)


def test_a_fused_match_uses_the_mean_template_and_the_fused_calibration(gallery, engine, probe):
    m = WatchlistMatcher(gallery, templates="fused")
    (got,) = m.match(probe[None, :])
    assert got is not None and got.name == "obama"
    assert got.similarity == pytest.approx(float(probe @ _fused_template(gallery, "obama")), abs=1e-5)
    # the list has no threshold of its own: the default FMR on the curve of obama's K = 2 photos
    assert got.threshold == pytest.approx(FUSED.for_k(2).default_threshold)
    assert got.threshold > FUSED.photo.default_threshold
    assert got.est_fmr == pytest.approx(FUSED.est_fmr(got.similarity, 2))
    meaning = m.score_meaning(got.similarity)
    assert meaning.templates == "fused" and meaning.list_size == 3
    assert meaning.est_fpir == pytest.approx(FUSED.est_fpir(got.similarity, {1: 1, 2: 2}))
    assert "fused templates" in meaning.text
    # per-photo: the best photo, the photo calibration
    (best,) = WatchlistMatcher(gallery).match(probe[None, :])
    assert best is not None and best.threshold == pytest.approx(FUSED.photo.default_threshold)
    assert best.est_fmr == pytest.approx(FUSED.photo.est_fmr(best.similarity))


def test_a_listed_threshold_applies_to_every_fused_person(gallery, probe):
    wl = gallery.get_watchlist("wanted")
    try:
        gallery.store.update_watchlist(wl.id, description=wl.description, threshold=0.5)
        (got,) = WatchlistMatcher(gallery, templates="fused").match(probe[None, :])
        assert got is not None and got.threshold == 0.5
    finally:
        gallery.store.update_watchlist(wl.id, description=wl.description, threshold=None)


def test_bad_template_modes_fail_clearly(tmp_path):
    with pytest.raises(ValidationError, match="templates"):
        WatchConfig(templates="mean")
    with Gallery.open(tmp_path / "fake", FakeEngine()) as g:
        g.enroll_person("ada", [write_photo(tmp_path / "a.png", 1)], watchlist="staff", create=True)
        with pytest.raises(ValueError, match=r"templates='fused' needs fused-template calibrations.*'fake_v1'"):
            Supervisor([CAM], FakeEngine, g, None, WatchConfig(templates="fused"))
        with pytest.raises(ValueError, match="templates must be"):
            WatchlistMatcher(g, templates="mean")  # type: ignore[arg-type]
