"""Region-of-interest detection: the block/region arithmetic on tiny arrays, and the real HOG detector on
frames built from the fixture photos -- what each frame scans, and that ROI finds what a full scan finds."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from PIL import Image as PILImage

from sightline.config import CameraConfig, WatchConfig
from sightline.events import EventBus
from sightline.types import Faces, Frame
from sightline.video.roi import RoiDetector, block_rects, changed_blocks, dedupe, track_region
from sightline.video.tracker import box_iou
from sightline.video.worker import CameraWorker
from sightline.vision.detect.hog import HogDetector
from tests.conftest import GALLERY

W, H = 1280, 720


# ---- pure helpers ----------------------------------------------------------------------------------


def test_changed_blocks_marks_only_blocks_over_the_threshold() -> None:
    last = np.zeros((30, 40), np.int16)
    thumb = last.copy()
    thumb[0:10, 10:20] = 10  # block (0, 1): mean change 10
    thumb[20:30, 30:40] = 3  # block (2, 3): mean change 3
    thumb[25, 5] = 255  # one sample in block (2, 0): mean change 2.55
    mask = changed_blocks(thumb, last, motion=6.0)
    assert mask.shape == (3, 4)
    assert np.argwhere(mask).tolist() == [[0, 1]]


def test_changed_blocks_partial_edge_blocks_average_their_own_samples() -> None:
    last = np.zeros((15, 15), np.int16)
    thumb = last.copy()
    thumb[10:15, 10:15] = 8  # the bottom-right partial block (5x5 samples), all changed by 8
    assert np.argwhere(changed_blocks(thumb, last, motion=6.0)).tolist() == [[1, 1]]


@pytest.mark.parametrize(
    ("cells", "shape", "rects"),
    [
        ([], (9, 16), []),
        ([(4, 8)], (9, 16), [(7, 3, 10, 6)]),  # one block grown by one on every side
        ([(0, 0)], (9, 16), [(0, 0, 2, 2)]),  # clipped at the frame edge
        ([(4, 4), (4, 6)], (9, 16), [(3, 3, 8, 6)]),  # grown blocks touch: one component
        ([(1, 1), (7, 14)], (9, 16), [(0, 0, 3, 3), (13, 6, 16, 9)]),  # far apart: two
    ],
)
def test_block_rects(cells: list[tuple[int, int]], shape: tuple[int, int], rects: list[tuple[int, ...]]) -> None:
    mask = np.zeros(shape, bool)
    for y, x in cells:
        mask[y, x] = True
    assert sorted(block_rects(mask)) == sorted(rects)


def test_track_region_pads_by_face_sides_and_scales_the_face_to_the_target() -> None:
    r = track_region([(100.0, 100.0, 200.0, 200.0)], (W, H), margin=0.5, face_px=80, gain=1)
    assert r.xyxy == (50, 50, 250, 250) and r.scale == pytest.approx(0.8) and r.kind == "track"
    # the union of the last and the predicted box, clipped to the frame; HOG's upsample counts as gain
    r = track_region([(0.0, 10.0, 100.0, 110.0), (40.0, 10.0, 140.0, 110.0)], (W, H), margin=0.5, face_px=80, gain=2)
    assert r.xyxy == (0, 0, 190, 160) and r.scale == pytest.approx(0.4)


def test_dedupe_keeps_the_higher_score_of_overlapping_boxes() -> None:
    faces = Faces(
        np.array([[0, 0, 100, 100], [5, 5, 105, 105], [300, 300, 400, 400]], np.float32),
        np.array([0.5, 1.5, 0.2], np.float32),
    )
    out = dedupe(faces)
    assert out.xyxy.tolist() == [[5, 5, 105, 105], [300, 300, 400, 400]]


def test_roi_detector_checks_its_arguments() -> None:
    det = HogDetector(upsample=1)
    with pytest.raises(ValueError, match="motion"):
        RoiDetector(det, motion=0, full_every_s=1)
    with pytest.raises(ValueError, match="full_every_s"):
        RoiDetector(det, motion=6, full_every_s=0)
    with pytest.raises(ValueError, match="full_share"):
        RoiDetector(det, motion=6, full_every_s=1, full_share=1.5)


# ---- with the real detector -------------------------------------------------------------------------


@functools.cache
def face_patch(name: str, height: int) -> np.ndarray:
    with PILImage.open(GALLERY / name) as im:
        im = im.convert("RGB")
        return np.asarray(im.resize((round(im.width * height / im.height), height), PILImage.BILINEAR))


def scene(*people: tuple[str, int, int, int], seed: int = 0) -> np.ndarray:
    """A grey 1280x720 frame with each (photo, x, y, height) pasted at its top-left corner, scaled to
    ``height`` pixels, plus +-2 levels of noise (sensor/compression)."""
    out = np.full((H, W, 3), 100, np.uint8)
    for name, x, y, height in people:
        a = face_patch(name, height)
        out[y : y + a.shape[0], x : x + a.shape[1]] = a[: H - y, : W - x]
    noise = np.random.default_rng(seed).integers(-2, 3, out.shape)
    out = np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


# photo heights giving faces of ~100 px, above the detector's floor at detect_width 640 (~75 px)
OBAMA, BIDEN, ROSE = ("obama/obama.jpg", 420), ("biden/biden.jpg", 600), ("rose_leslie/img1.jpg", 300)


def test_a_still_scene_scans_only_the_track_windows_and_a_newcomer_is_found_where_it_moved() -> None:
    roi = RoiDetector(HogDetector(upsample=1), motion=6.0, full_every_s=2.0)
    scale = 640 / W  # detect_width 640
    obama = (OBAMA[0], 100, 200, OBAMA[1])

    faces, full = roi.detect(scene(obama, seed=1), 0.0, [], scale)
    assert full and len(faces) == 1 and [r.kind for r in roi.last_regions] == ["full"]
    box = tuple(float(v) for v in faces.xyxy[0])
    # the same scene 0.2 s later: only the window around the tracked face is scanned, and it finds it
    faces, full = roi.detect(scene(obama, seed=2), 0.2, [(box, box)], scale)
    assert not full and [r.kind for r in roi.last_regions] == ["track"]
    x1, y1, x2, y2 = roi.last_regions[0].xyxy
    assert x1 <= box[0] and y1 <= box[1] and x2 >= box[2] and y2 >= box[3]
    assert (x2 - x1) * (y2 - y1) < 0.1 * W * H
    assert len(faces) == 1 and box_iou(faces.xyxy, [box])[0, 0] > 0.7
    # biden appears on the right: the changed blocks are scanned (at the full-pass scale) and find him
    faces, full = roi.detect(scene(obama, (BIDEN[0], 800, 60, BIDEN[1]), seed=3), 0.4, [(box, box)], scale)
    assert not full and sorted(r.kind for r in roi.last_regions) == ["motion", "track"]
    motion = next(r for r in roi.last_regions if r.kind == "motion")
    assert motion.xyxy[0] <= 800 and motion.xyxy[2] >= 1000 and motion.scale == pytest.approx(1.0)
    assert len(faces) == 2 and max(float(x) for x in faces.xyxy[:, 0]) > 800
    # biden leaves: the blocks he left are scanned (nobody there now) and obama's window
    faces, full = roi.detect(scene(obama, seed=4), 0.6, [(box, box)], scale)
    assert not full and sorted(r.kind for r in roi.last_regions) == ["motion", "track"] and len(faces) == 1
    faces, full = roi.detect(scene(obama, seed=5), 0.8, [(box, box)], scale)
    assert not full and [r.kind for r in roi.last_regions] == ["track"] and len(faces) == 1
    # the full pass is due 2 s after the last one, whatever else happens
    faces, full = roi.detect(scene(obama, seed=6), 2.0, [(box, box)], scale)
    assert full and [r.kind for r in roi.last_regions] == ["full"] and len(faces) == 1
    assert (roi.stats.full, roi.stats.roi) == (2, 4)


def test_an_empty_still_scene_costs_nothing_between_full_passes() -> None:
    roi = RoiDetector(HogDetector(upsample=1), motion=6.0, full_every_s=1.0)
    kinds = []
    for i in range(8):  # 0.2 s apart
        faces, _ = roi.detect(scene(seed=i), 0.2 * i, [], 0.5)
        assert len(faces) == 0
        kinds.append([r.kind for r in roi.last_regions])
    assert kinds == [["full"], [], [], [], [], ["full"], [], []]


class _NoMatch:
    def match(self, embeddings: np.ndarray, qualities=None) -> list[None]:
        return [None] * len(embeddings)


def run_faces(engine, mode: str, images: list[np.ndarray]) -> tuple[list[Faces], CameraWorker]:
    """The faces a worker tracks in each frame (what its tracker was given)."""
    cam = CameraConfig(id="cam", url="x.mp4", detect_mode=mode)
    worker = CameraWorker(cam, engine, _NoMatch(), EventBus(), WatchConfig())
    seen: list[Faces] = []
    update = worker.tracker.update

    def recording_update(faces: Faces, ts: float):  # instrumentation: keep each frame's detections
        seen.append(faces)
        return update(faces, ts)

    worker.tracker.update = recording_update  # type: ignore[method-assign]
    for i, im in enumerate(images):
        worker.process(Frame("cam", i, 1000.0 + 0.2 * i, 0.2 * i, im))
    worker.flush()
    return seen, worker


@pytest.mark.timeout(120)
def test_roi_finds_the_faces_a_full_scan_finds_while_people_walk(engine) -> None:
    """Obama walks right 40 px per analysed frame (200 px/s), Biden stands still from the 4th frame, Rose
    Leslie walks in from the left at the 8th, then everyone leaves: ROI mode reports the same faces as a
    full scan of every frame, while scanning many frames only in parts."""
    images = []
    for i in range(16):
        people = []
        if i < 13:
            people.append((OBAMA[0], 60 + 40 * i, 20, OBAMA[1]))
        if 3 <= i < 13:
            people.append((BIDEN[0], 1000, 100, BIDEN[1]))
        if 7 <= i < 13:
            people.append((ROSE[0], 30 * (i - 7), 420, ROSE[1]))
        images.append(scene(*people, seed=i))
    full, _ = run_faces(engine, "full", images)
    roi, worker = run_faces(engine, "roi", images)
    st = worker.stats()
    assert [len(f) for f in full] == [len(f) for f in roi]
    assert sum(len(f) for f in full) == 13 + 10 + 6  # the detector itself finds everyone
    for f, r in zip(full, roi, strict=True):
        if len(f):
            assert (box_iou(f.xyxy, r.xyxy).max(axis=1) >= 0.5).all()
    assert st.detections_full + st.detections_roi == 16
    assert st.detections_roi >= 5  # scanned in parts (two people moving: their blocks are much of the frame)


@pytest.mark.parametrize(
    ("busy_stride", "kinds"), [(False, ["full", "full", "full"]), (True, ["full", "track", "full"])]
)
def test_busy_frames_are_scanned_whole_or_with_the_busy_stride_every_other_frame(busy_stride, kinds) -> None:
    """Every block changes (a lighting change, a crowd): a full pass, or with ``busy_stride`` a full pass
    every other analysed frame and only the tracks' windows between."""
    roi = RoiDetector(HogDetector(upsample=1), motion=6.0, full_every_s=10.0, busy_stride=busy_stride)
    track = ((600.0, 300.0, 700.0, 400.0), (600.0, 300.0, 700.0, 400.0))
    got = []
    for i, level in enumerate((60, 120, 180)):  # the whole picture brightens by 60 levels each frame
        roi.detect(np.full((H, W, 3), level, np.uint8), 0.2 * i, [track], 0.5)
        got.append(roi.last_regions[0].kind if roi.last_regions else None)
    assert got == kinds
