"""The face engine on real photos: detection, landmarks, quality, same/different decisions."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.types import Faces
from sightline.vision import quality
from sightline.vision.engine import pick_subject
from tests.conftest import GALLERY, PROBES, rgb


@pytest.mark.parametrize(
    ("photo", "n_faces"),
    [
        (GALLERY / "obama/obama.jpg", 1),
        (GALLERY / "biden/biden.jpg", 1),
        (PROBES / "kit_with_rose.jpg", 2),
        (PROBES / "alex_lacamoire1.jpg", 1),
    ],
)
def test_detects_real_faces(dlib_engine, photo, n_faces):
    faces = dlib_engine.analyze(rgb(photo), embed=False)
    assert len(faces) == n_faces
    for f in faces:
        x1, y1, x2, y2 = f.xyxy
        assert x2 > x1 + 40 and y2 > y1 + 40
        # the 5 landmarks lie inside (or at the edge of) the face box
        assert np.all(f.kps[:, 0] > x1 - 0.2 * (x2 - x1)) and np.all(f.kps[:, 0] < x2 + 0.2 * (x2 - x1))
        assert 0.0 <= f.quality.score <= 1.0
        assert f.chip is not None and f.chip.shape == (150, 150, 3)


def test_faces_sorted_largest_first(dlib_engine):
    faces = dlib_engine.analyze(rgb(PROBES / "obama_and_biden.jpg"), embed=False)
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_no_face_in_a_plain_image(dlib_engine):
    assert dlib_engine.analyze(np.full((300, 300, 3), 127, np.uint8)) == []


def test_embeddings_are_unit_length(dlib_engine):
    f = dlib_engine.analyze(rgb(GALLERY / "obama/obama.jpg"))[0]
    assert f.embedding is not None and f.embedding.shape == (128,) and f.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-5


def _emb(engine, path):
    return engine.analyze(rgb(path))[0].embedding


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (GALLERY / "obama/obama.jpg", GALLERY / "obama/obama2.jpg", True),
        (GALLERY / "biden/biden.jpg", GALLERY / "biden/biden2.jpg", True),
        (GALLERY / "kit_harington/john1.jpeg", GALLERY / "kit_harington/john2.jpeg", True),
        (GALLERY / "obama/obama.jpg", GALLERY / "biden/biden.jpg", False),
        (GALLERY / "rose_leslie/img1.jpg", GALLERY / "alex_lacamoire/img1.jpg", False),
        (GALLERY / "kit_harington/john1.jpeg", GALLERY / "obama/obama2.jpg", False),
    ],
)
def test_same_and_different_people(dlib_engine, a, b, same):
    sim = float(_emb(dlib_engine, a) @ _emb(dlib_engine, b))
    thr = dlib_engine.calibration.default_threshold
    assert (sim >= thr) is same, f"similarity {sim:.3f} vs threshold {thr:.3f}"


def test_flip_average_changes_descriptor_but_not_identity(dlib_engine):
    chip = dlib_engine.analyze(rgb(GALLERY / "obama/obama.jpg"), embed=False)[0].chip
    raw = dlib_engine.embedder.embed([chip, np.ascontiguousarray(chip[:, ::-1])])
    raw = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    avg = dlib_engine.embed_chips(chip[None])[0]
    assert float(raw[0] @ raw[1]) < 0.9999  # the mirror image really is a different input
    assert float(avg @ raw[0]) > 0.97


def test_batch_embedding_matches_single(dlib_engine):
    chips = [f.chip for f in dlib_engine.analyze(rgb(PROBES / "obama_and_biden.jpg"), embed=False)]
    batch = dlib_engine.embed_chips(np.stack(chips))
    single = np.stack([dlib_engine.embed_chips(c[None])[0] for c in chips])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    assert dlib_engine.embed_chips(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_small_faces_need_upsampling():
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    img = rgb(PROBES / "obama-240p.jpg")
    small = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(img).resize((213, 120)))
    eng0 = FaceEngine.from_config(EngineConfig(backend="dlib", upsample=0, fallback_detector="none", min_face_px=8))
    eng2 = FaceEngine.from_config(EngineConfig(backend="dlib", upsample=2, fallback_detector="none", min_face_px=8))
    assert len(eng0.detect(small)) == 0
    assert len(eng2.detect(small)) == 1


def test_min_face_px_filters_small_boxes():
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    img = rgb(PROBES / "obama-240p.jpg")
    big = FaceEngine.from_config(EngineConfig(backend="dlib", min_face_px=400, fallback_detector="none"))
    assert len(big.detect(img)) == 0


def test_quality_ranks_blurred_and_turned_faces_lower(dlib_engine):
    from PIL import Image, ImageFilter

    img = rgb(GALLERY / "obama/obama.jpg")
    sharp = dlib_engine.analyze(img, embed=False)[0]
    blurred_img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(6)))
    blurred = dlib_engine.analyze(blurred_img, embed=False)
    assert blurred, "a blurred face is still detected"
    assert blurred[0].quality.sharpness < sharp.quality.sharpness - 0.2
    turned = sharp.kps.copy()
    turned[4, 0] += 0.3 * np.linalg.norm(turned[0] - turned[2])  # nose pushed sideways: yaw
    assert quality.frontal(turned) < quality.frontal(sharp.kps) - 0.3


@pytest.mark.parametrize("rule", ["largest", "central"])
def test_pick_subject(dlib_engine, rule):
    img = rgb(PROBES / "obama_and_biden.jpg")
    faces = dlib_engine.analyze(img, embed=False)
    s = pick_subject(faces, img.shape, rule)
    assert s is not None
    if rule == "largest":
        assert s.area == max(f.area for f in faces)
    assert pick_subject([], img.shape, rule) is None


@pytest.mark.parametrize(
    ("xyxy", "score", "kps", "msg"),
    [
        (np.zeros((2, 3)), np.zeros(2), None, "xyxy"),
        (np.zeros((2, 4)), np.zeros(3), None, "score"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros((1, 5, 2)), "kps"),
    ],
)
def test_faces_validates_shapes(xyxy, score, kps, msg):
    with pytest.raises(ValueError, match=msg):
        Faces(xyxy, score, kps)


def test_unknown_backend_lists_valid_names():
    from sightline.registry import UnknownBackendError
    from sightline.vision.detect import detectors

    with pytest.raises(UnknownBackendError, match=r"valid names: .*hog"):
        detectors.get("nope")
