"""The onnx backend against dlib itself, on the real fixture faces; the model cache; providers."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest

from sightline.vision.backends import onnx_build, onnx_runtime
from sightline.vision.backends.models import MMOD, RESNET, SHAPE_5, model_path
from sightline.vision.detect import detectors
from sightline.vision.detect import mmod_onnx as mo
from sightline.vision.embed import embedders
from tests.conftest import LFW_MINI, PROBES, rgb

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every model built here goes to a fresh cache dir, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SIGHTLINE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def chips() -> list[np.ndarray]:
    """150x150 chips of the LFW fixture faces and a two-face probe, cut by dlib itself."""
    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(model_path(SHAPE_5)))
    out = []
    paths = [*sorted(LFW_MINI.glob("*/*.jpg"))[:16], PROBES / "kit_with_rose.jpg"]
    for p in paths:
        img = rgb(p)
        for rect in hog(img, 0):
            out.append(np.asarray(dlib.get_face_chip(img, sp(img, rect), size=150, padding=0.25)))
    assert len(out) >= 15
    return out


@pytest.fixture(scope="module")
def dlib_descriptors(chips: list[np.ndarray]) -> np.ndarray:
    net = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    return np.array([np.asarray(v) for v in net.compute_face_descriptor(chips)], np.float32)


@pytest.fixture(scope="module")
def embedder():
    return embedders.get("onnx")(threads=1, batch_size=32)


def test_descriptors_equal_dlibs(embedder, chips, dlib_descriptors) -> None:
    ours = embedder.embed(chips)
    assert ours.shape == (len(chips), 128) and ours.dtype == np.float32
    assert np.abs(ours - dlib_descriptors).max() <= 1e-4
    cos = (ours * dlib_descriptors).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(dlib_descriptors, axis=1)
    assert cos.min() >= 0.99999
    # raw descriptors, not normalised (dlib's are ~unit length but not exactly)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_batching_does_not_change_results(chips) -> None:
    small = embedders.get("onnx")(threads=1, batch_size=5)
    big = embedders.get("onnx")(threads=1, batch_size=64)
    np.testing.assert_allclose(small.embed(chips), big.embed(chips), atol=1e-5)


def test_embed_edge_cases(embedder) -> None:
    assert embedder.embed([]).shape == (0, 128)
    with pytest.raises(ValueError, match="150, 150, 3"):
        embedder.embed([np.zeros((112, 112, 3), np.uint8)])
    assert (embedder.name, embedder.dim, embedder.model) == ("onnx", 128, "dlib_resnet_v1")
    with pytest.raises(ValueError, match="batch_size"):
        embedders.get("onnx")(batch_size=0)


# ---------------------------------------------------------------------------------------------
# MMOD
# ---------------------------------------------------------------------------------------------


def _dlib_mmod(img: np.ndarray, upsample: int) -> np.ndarray:
    cnn = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))
    dets = cnn(img, upsample)
    return np.array(
        [[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, d.confidence] for d in dets]
    ).reshape(-1, 5)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _assert_same_detections(img: np.ndarray, upsample: int) -> None:
    ref = _dlib_mmod(img, upsample)
    faces = detectors.get("mmod-onnx")(upsample=upsample, threads=1).detect(img)
    assert len(faces) == len(ref) > 0
    assert faces.kps is None
    for box, score in zip(faces.xyxy, faces.score, strict=True):
        j = int(np.argmax([_iou(box, r) for r in ref]))
        assert _iou(box, ref[j]) >= 0.99
        assert abs(float(score) - ref[j, 4]) <= 1e-3


def test_mmod_equals_dlib_two_faces() -> None:
    _assert_same_detections(rgb(PROBES / "kit_with_rose.jpg"), upsample=0)


@pytest.mark.slow
@pytest.mark.parametrize(("photo", "upsample"), [("obama-240p.jpg", 1), ("obama_and_biden.jpg", 0)])
def test_mmod_equals_dlib(photo: str, upsample: int) -> None:
    img = rgb(PROBES / photo)
    if max(img.shape) > 1000:  # keep dlib's side of the test to a few seconds
        img = np.ascontiguousarray(img[::2, ::2])
    _assert_same_detections(img, upsample)


def test_mmod_nothing_in_a_flat_image() -> None:
    det = detectors.get("mmod-onnx")(threads=1)
    assert len(det.detect(np.full((120, 160, 3), 90, np.uint8))) == 0
    assert len(det.detect(np.zeros((3, 3, 3), np.uint8))) == 0  # smaller than a pyramid level
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((50, 50), np.uint8))


def test_mmod_adjust_threshold_finds_more() -> None:
    img = rgb(PROBES / "kit_with_rose.jpg")
    strict = detectors.get("mmod-onnx")(threads=1).detect(img)
    loose = detectors.get("mmod-onnx")(threads=1, adjust_threshold=-1.5).detect(img)
    assert len(loose) > len(strict) == 2
    assert loose.score.min() < 0
    for box in strict.xyxy:  # the confident faces survive the looser threshold's NMS
        assert any(np.array_equal(box, b) for b in loose.xyxy)


@pytest.mark.parametrize(("rows", "cols"), [(480, 640), (720, 1280), (240, 427), (250, 250), (5, 5), (1000, 80)])
def test_pyramid_layout(rows: int, cols: int) -> None:
    rects, cr, cc = mo.pyramid_layout(rows, cols)
    assert (rects[0].height, rects[0].width) == (rows, cols)
    assert cc == cols + 22
    for a, b in itertools.pairwise(rects):  # each level is floor(5/6) of the previous one
        assert (b.height, b.width) == (int(a.height * 5 / 6), int(a.width * 5 / 6))
    for i, a in enumerate(rects):
        assert a.left >= 0 and a.right < cc and a.top >= 0 and a.bottom < cr
        for b in rects[i + 1 :]:  # levels never overlap
            assert a.right < b.left or b.right < a.left or a.bottom < b.top or b.bottom < a.top


def test_pyramid_up_size() -> None:
    # dlib: (lround(2 * (rows - 1 + 0.75)) + 1, lround(2 * (cols - 1 + 1.25)) + 1)
    up = mo.pyramid_up(np.zeros((240, 427, 3), np.uint8))
    assert up.shape == (481, 856, 3)


@pytest.mark.parametrize(
    ("h", "w", "h2", "w2"),
    [(37, 53, 30, 44), (480, 640, 400, 533), (240, 427, 481, 856), (20, 20, 41, 41), (6, 9, 5, 7)],
)
def test_dlib_resize_is_bit_exact(h: int, w: int, h2: int, w2: int) -> None:
    rng = np.random.default_rng(h * w)
    f = rng.random((h, w), dtype=np.float32) - 0.5
    np.testing.assert_array_equal(mo.dlib_resize(f[None], h2, w2)[0], dlib.resize_image(f, h2, w2))
    u = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = mo.dlib_resize(np.ascontiguousarray(u.transpose(2, 0, 1)), h2, w2).transpose(1, 2, 0)
    np.testing.assert_array_equal(ours, dlib.resize_image(u, h2, w2))


def test_onnxruntime_resize_is_close_to_dlibs() -> None:
    det = detectors.get("mmod-onnx")(threads=1)
    src = np.random.default_rng(1).random((3, 480, 640), dtype=np.float32)
    out = np.empty((3, 400, 533), np.float32)
    det._resize(src, 400, 533, out)
    # dlib accumulates sample positions in float32 (up to ~1e-3 px off at the far edge)
    np.testing.assert_allclose(out, mo.dlib_resize(src, 400, 533), atol=2e-3)


@pytest.mark.parametrize(
    ("boxes", "scores", "kept"),
    [
        ([[0, 0, 79, 79], [10, 10, 89, 89]], [1.0, 2.0], [1]),  # strong overlap: the stronger stays
        # IoU 0.357 by the usual union, but 3364 / 102**2 = 0.323 by dlib's bounding-box "union": both stay
        ([[0, 0, 79, 79], [22, 22, 101, 101]], [1.0, 2.0], [1, 0]),
        ([[0, 0, 99, 99], [40, 40, 59, 59]], [2.0, 1.0], [0, 1]),  # contained: covered 1.0 is not > 1.0
        ([[0, 0, 9, 9], [10, 10, 19, 19]], [1.0, 1.0], [0, 1]),  # touching, no shared pixel; ties keep order
    ],
)
def test_nms(boxes, scores, kept) -> None:
    got = mo.nms(np.array(boxes), np.array(scores), iou=0.3383, covered=1.0)
    assert got.tolist() == kept


# ---------------------------------------------------------------------------------------------
# The model cache
# ---------------------------------------------------------------------------------------------


def _run_mmod(data: bytes) -> np.ndarray:
    sess = onnx_runtime.make_session(data, threads=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 80)).astype(np.float32) * 0.2
    return sess.run({"pyramid": x})[0]


def test_cache_builds_once_then_reuses(tmp_path: Path) -> None:
    first = onnx_build.load_or_build("mmod", cache_dir=tmp_path)
    assert first.built and first.path is not None and first.path.is_file()
    assert first.path.parent == tmp_path / "onnx" and first.source_sha256 in first.path.name
    assert first.source_sha256 == onnx_build.sha256_file(model_path(MMOD))
    again = onnx_build.load_or_build("mmod", cache_dir=tmp_path)
    assert not again.built and again.data == first.data
    assert sorted(p.name for p in first.path.parent.iterdir()) == sorted(
        [first.path.name, first.path.with_suffix(".json").name]
    )  # no temp files left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_sidecar", "bad_sidecar"])
def test_corrupt_cache_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    good = onnx_build.load_or_build("mmod", cache_dir=tmp_path)
    assert good.path is not None
    if damage == "truncate":
        good.path.write_bytes(good.data[: len(good.data) // 3])
    elif damage == "garbage":
        good.path.write_bytes(b"\x00" * len(good.data))
    elif damage == "no_sidecar":
        good.path.with_suffix(".json").unlink()
    else:
        good.path.with_suffix(".json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="sightline.vision.backends.onnx_build"):
        again = onnx_build.load_or_build("mmod", cache_dir=tmp_path)
    assert again.built and again.data == good.data
    assert good.path.read_bytes() == good.data
    assert any("rebuilding" in r.message for r in caplog.records)
    np.testing.assert_array_equal(_run_mmod(again.data), _run_mmod(good.data))


def test_truncated_resnet_cache_is_rebuilt_and_runs(tmp_path: Path, chips, dlib_descriptors) -> None:
    good = onnx_build.load_or_build("resnet", cache_dir=tmp_path)
    assert good.path is not None
    good.path.write_bytes(good.data[:1000])
    again = onnx_build.load_or_build("resnet", cache_dir=tmp_path)
    assert again.built and good.path.stat().st_size == len(good.data)
    sess = onnx_runtime.make_session(again.data, threads=1)
    out = sess.run({"chips": np.stack(chips[:3])})[0]
    assert np.abs(out - dlib_descriptors[:3]).max() <= 1e-4


def test_cache_key_is_the_source_hash(tmp_path: Path) -> None:
    copy = tmp_path / "copy.dat"
    copy.write_bytes(model_path(MMOD).read_bytes())
    a = onnx_build.load_or_build("mmod", source=copy, cache_dir=tmp_path)
    assert not onnx_build.load_or_build("mmod", source=copy, cache_dir=tmp_path).built
    data = bytearray(copy.read_bytes())
    data[-40] ^= 0x01  # a different weight: a different file, a different model
    copy.write_bytes(bytes(data))
    b = onnx_build.load_or_build("mmod", source=copy, cache_dir=tmp_path)
    assert b.built and b.path != a.path and b.data != a.data


def test_unwritable_cache_still_gives_a_model(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    got = onnx_build.load_or_build("mmod", cache_dir=blocker)
    assert got.built and got.path is None and len(got.data) > 100_000


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        onnx_build.load_or_build("vgg")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Providers and threads
# ---------------------------------------------------------------------------------------------


def test_provider_is_reported(embedder) -> None:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    assert embedder.provider in avail
    assert embedder.provider == embedder._session.session.get_providers()[0]
    det = detectors.get("mmod-onnx")(threads=1)
    assert det.provider == det._session.session.get_providers()[0]
    gpu = [p for p in onnx_runtime.GPU_PREFERENCE if p in avail]
    if not gpu:
        assert embedder.provider == onnx_runtime.CPU


def test_provider_candidates() -> None:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    auto = onnx_runtime.provider_candidates(None)
    assert auto[-1] == onnx_runtime.CPU
    assert auto[:-1] == [p for p in onnx_runtime.GPU_PREFERENCE if p in avail]
    assert onnx_runtime.provider_candidates([onnx_runtime.CPU]) == [onnx_runtime.CPU]
    assert onnx_runtime.provider_candidates([onnx_runtime.CPU, "CUDAExecutionProvider"]) == [onnx_runtime.CPU]


@pytest.mark.parametrize("asked", ["NoSuchExecutionProvider", "AzureExecutionProvider"])
def test_unusable_provider_falls_back_to_cpu(asked: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sightline.vision.backends.onnx_runtime"):
        emb = embedders.get("onnx")(threads=1, providers=[asked])
    assert emb.provider == onnx_runtime.CPU
    assert any(asked in r.message for r in caplog.records)


def test_threads() -> None:
    assert onnx_runtime.resolve_threads(0) == onnx_runtime.cpu_count() >= 1
    assert onnx_runtime.resolve_threads(3) == 3
    with pytest.raises(ValueError, match="threads"):
        onnx_runtime.resolve_threads(-1)
    emb = embedders.get("onnx")(threads=0)
    assert emb.threads == onnx_runtime.cpu_count()
    assert emb._session.session.get_session_options().intra_op_num_threads == emb.threads
