"""The alert quality gate of WatchlistMatcher with the real engine on real photos (sharp and degraded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFilter
from pydantic import ValidationError

from sightline.config import WatchConfig
from sightline.gallery import Gallery
from sightline.types import FaceRecord
from sightline.video.matcher import WatchlistMatcher
from tests.conftest import GALLERY, PROBES


def _record(engine, img: PILImage.Image) -> FaceRecord:
    faces = engine.analyze(np.asarray(img.convert("RGB")), fallback=False)
    assert faces, "no face found"
    return faces[0]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, engine):
    with Gallery.open(tmp_path_factory.mktemp("gate"), engine) as g:
        g.enroll_person("obama", [GALLERY / "obama/obama2.jpg"], watchlist="wanted", create=True)
        g.enroll_person("biden", [GALLERY / "biden/biden.jpg"], watchlist="wanted", create=True)
        yield g


@pytest.fixture(scope="module")
def records(engine) -> tuple[FaceRecord, FaceRecord]:
    """obama1.jpg as is (sharp, frontal, large) and shrunk 4x then blurred (small and soft)."""
    with PILImage.open(PROBES / "obama1.jpg") as im:
        im = im.convert("RGB")
        sharp = _record(engine, im)
        w, h = im.size
        poor = _record(engine, im.resize((w // 4, h // 4)).filter(ImageFilter.GaussianBlur(1.2)))
    assert sharp.quality.score > poor.quality.score + 0.2, (sharp.quality, poor.quality)
    return sharp, poor


def test_without_qualities_nothing_is_gated(gallery, records):
    m = WatchlistMatcher(gallery, min_alert_quality=0.99)
    out = m.match(np.stack([r.embedding for r in records]))
    assert out[0] is not None and out[0].name == "obama"
    assert m.gated == 0


@pytest.mark.parametrize(
    ("gate", "sharp_passes", "poor_passes"),
    [
        (0.0, True, None),  # no gate: the poor face is decided by its similarity alone
        ("between", True, False),  # the gate lies between the two faces' qualities
        (1.0, False, False),  # nothing is good enough
    ],
)
def test_a_face_below_the_gate_never_matches(gallery, records, gate, sharp_passes, poor_passes):
    sharp, poor = records
    if gate == "between":
        gate = (sharp.quality.score + poor.quality.score) / 2
    embs = np.stack([sharp.embedding, poor.embedding])
    ungated = WatchlistMatcher(gallery).match(embs)
    m = WatchlistMatcher(gallery, min_alert_quality=gate)
    got = m.match(embs, [sharp.quality.score, poor.quality.score])
    assert (got[0] is not None) == sharp_passes
    if sharp_passes:
        assert got[0].name == "obama" and got[0].similarity == pytest.approx(ungated[0].similarity)
    if poor_passes is None:  # same answer as without the gate
        assert (got[1] is None) == (ungated[1] is None)
    else:
        assert (got[1] is not None) == poor_passes
    assert m.gated == (not sharp_passes) + (poor_passes is False)


def test_gated_counts_accumulate_and_nan_quality_is_gated(gallery, records):
    sharp, _ = records
    m = WatchlistMatcher(gallery, min_alert_quality=0.1)
    assert m.match(sharp.embedding[None], [math.nan]) == [None]
    assert m.match(sharp.embedding[None], [0.05]) == [None]
    assert m.match(sharp.embedding[None], [sharp.quality.score])[0] is not None
    assert m.gated == 2


def test_bad_qualities_and_gates_are_refused(gallery, records):
    sharp, _ = records
    with pytest.raises(ValueError, match="qualities must have shape"):
        WatchlistMatcher(gallery).match(np.stack([sharp.embedding] * 2), [0.5])
    with pytest.raises(ValueError, match="min_alert_quality"):
        WatchlistMatcher(gallery, min_alert_quality=1.5)
    assert WatchlistMatcher(gallery).match(np.zeros((0, sharp.embedding.shape[0]), np.float32), []) == []


def test_watch_config_carries_the_gate_with_bounds():
    assert 0.0 <= WatchConfig().min_alert_quality <= 1.0
    assert WatchConfig(min_alert_quality=0.3).min_alert_quality == 0.3
    for bad in (-0.1, 1.5):
        with pytest.raises(ValidationError):
            WatchConfig(min_alert_quality=bad)


def test_fused_templates_score_against_the_mean_direction(tmp_path, engine, records):
    """A person with two photos: per-photo takes the better template, fused the renormalised mean."""
    sharp, _ = records
    with Gallery.open(tmp_path, engine) as g:
        g.enroll_person(
            "obama", [GALLERY / "obama/obama.jpg", GALLERY / "obama/obama2.jpg"], watchlist="w", create=True
        )
        g.create_watchlist("loose", threshold=-1.0)
        g.add_member("loose", "obama")
        _, _, mat = g.store.load_descriptors(engine.model)
        assert mat.shape[0] == 2
        mean = mat.astype(np.float64).sum(axis=0)
        mean /= np.linalg.norm(mean)
        per = WatchlistMatcher(g, ["loose"]).match(sharp.embedding[None])[0]
        fused_m = WatchlistMatcher(g, ["loose"], templates="fused")
        fused = fused_m.match(sharp.embedding[None])[0]
        assert per.similarity == pytest.approx(float((mat @ sharp.embedding).max()), abs=1e-5)
        assert fused.similarity == pytest.approx(float(mean @ sharp.embedding), abs=1e-5)
        assert fused_m.size() == (1, 1)
    with pytest.raises(ValueError, match="templates must be"):
        WatchlistMatcher(g, templates="median")  # type: ignore[arg-type]
