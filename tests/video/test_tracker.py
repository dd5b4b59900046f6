"""IouTracker on tiny arrays: IoU, greedy assignment, track continuity, prediction, ageing, checks."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.types import Faces
from sightline.video.tracker import IouTracker, box_iou, greedy_assign


def faces(*boxes: tuple[float, float, float, float]) -> Faces:
    if not boxes:
        return Faces.empty()
    return Faces(np.array(boxes, np.float32), np.ones(len(boxes), np.float32))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap: 50 / (100 + 100 - 50)
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges (x2 exclusive)
        ((0, 0, 10, 10), (2, 2, 8, 8), 36 / 100),  # contained
        ((5, 5, 5, 5), (0, 0, 10, 10), 0.0),  # empty box
    ],
)
def test_box_iou(a, b, expected):
    got = box_iou([a], [b])
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected, abs=1e-6)
    assert box_iou([b], [a])[0, 0] == pytest.approx(expected, abs=1e-6)  # symmetric


def test_box_iou_shapes():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou([(0, 0, 1, 1)] * 2, [(0, 0, 1, 1)] * 3).shape == (2, 3)


@pytest.mark.parametrize(
    ("iou", "threshold", "expected"),
    [
        ([[0.9, 0.8], [0.85, 0.1]], 0.3, [(0, 0)]),  # row 1's only good column is taken by the better pair
        ([[0.9, 0.8], [0.85, 0.4]], 0.3, [(0, 0), (1, 1)]),
        ([[0.2]], 0.3, []),
        ([[0.3]], 0.3, [(0, 0)]),  # at the threshold counts
        ([[0.5, 0.5]], 0.3, [(0, 0)]),  # tie: lower column
        (np.zeros((0, 2)), 0.3, []),
    ],
)
def test_greedy_assign(iou, threshold, expected):
    assert greedy_assign(np.asarray(iou, np.float32), threshold) == expected


# Each case: frames as (ts, boxes); expected track ids per frame (in detection order) and the ids
# that ended at each frame.
CASES = {
    "static face keeps its id": (
        [(0.0, [(0, 0, 40, 40)]), (0.2, [(1, 1, 41, 41)]), (0.4, [(2, 0, 42, 40)])],
        [[1], [1], [1]],
        [[], [], []],
    ),
    "order in the detection array does not matter": (
        [(0.0, [(0, 0, 40, 40), (100, 0, 140, 40)]), (0.2, [(101, 0, 141, 40), (1, 0, 41, 40)])],
        [[1, 2], [2, 1]],
        [[], []],
    ),
    "a new face gets a new id": (
        [(0.0, [(0, 0, 40, 40)]), (0.2, [(0, 0, 40, 40), (200, 200, 240, 240)])],
        [[1], [1, 2]],
        [[], []],
    ),
    "unseen longer than max_age ends, then a new id": (
        [(0.0, [(0, 0, 40, 40)]), (0.5, []), (1.0, []), (1.2, [])],
        [[1], [], [], []],
        [[], [], [], [1]],  # 1.2 - 0.0 > 1.0
    ),
    "a gap within max_age keeps the id": (
        [(0.0, [(0, 0, 40, 40)]), (0.4, []), (0.9, [(0, 0, 40, 40)])],
        [[1], [], [1]],
        [[], [], []],
    ),
    "a face that comes back late is a new track": (
        [(0.0, [(0, 0, 40, 40)]), (2.0, [(0, 0, 40, 40)])],
        [[1], [2]],
        [[], [1]],
    ),
    "a fast face is followed by its predicted box": (
        # 30 px per 0.2 s with a 40 px box: consecutive boxes overlap IoU 0.14 < 0.3, but the
        # constant-velocity prediction lands on the next box
        [(0.0, [(0, 0, 40, 40)]), (0.2, [(15, 0, 55, 40)]), (0.4, [(45, 0, 85, 40)]), (0.6, [(75, 0, 115, 40)])],
        [[1], [1], [1], [1]],
        [[], [], [], []],
    ),
}


@pytest.mark.parametrize(("frames", "ids", "ended"), CASES.values(), ids=CASES.keys())
def test_tracking(frames, ids, ended):
    tracker = IouTracker(iou=0.3, max_age_s=1.0)
    for (ts, boxes), want_ids, want_ended in zip(frames, ids, ended, strict=True):
        states = tracker.update(faces(*boxes), ts)
        assert [s.track_id for s in states] == want_ids
        assert [s.det_index for s in states] == list(range(len(boxes)))
        assert [s.xyxy for s in states] == [tuple(map(float, b)) for b in boxes]
        assert [s.track_id for s in tracker.ended] == want_ended


def test_without_prediction_a_fast_face_breaks_into_new_tracks():
    tracker = IouTracker(iou=0.3, max_age_s=1.0, velocity_weight=0.0)
    ids = [
        tracker.update(faces(b), t)[0].track_id
        for t, b in [(0.0, (0, 0, 40, 40)), (0.2, (15, 0, 55, 40)), (0.4, (45, 0, 85, 40))]
    ]
    assert ids == [1, 1, 2]  # 15 px overlaps enough, 30 px does not


def test_track_state_counts_hits_and_times():
    tracker = IouTracker(iou=0.3, max_age_s=1.0)
    tracker.update(faces((0, 0, 40, 40)), 10.0)
    tracker.update(faces(), 10.2)
    (s,) = tracker.update(faces((0, 0, 40, 40)), 10.4)
    assert (s.track_id, s.start_ts, s.last_ts, s.hits) == (1, 10.0, 10.4, 2)
    (live,) = tracker.tracks
    assert live.det_index is None and live.hits == 2


def test_missed_counts_the_updates_before_a_detection():
    tracker = IouTracker(iou=0.3, max_age_s=1.0)
    assert tracker.update(faces((0, 0, 40, 40)), 0.0)[0].missed == 0  # new
    assert tracker.update(faces((0, 0, 40, 40)), 0.2)[0].missed == 0
    tracker.update(faces(), 0.4)
    tracker.update(faces(), 0.6)
    (s,) = tracker.update(faces((0, 0, 40, 40)), 0.8)
    assert (s.track_id, s.missed) == (1, 2)  # continued after a gap of two frames
    assert tracker.update(faces((0, 0, 40, 40)), 1.0)[0].missed == 0
    assert tracker.tracks[0].missed == 0


def test_split_ends_the_track_as_it_was_and_starts_a_new_one_from_the_detection():
    tracker = IouTracker(iou=0.3, max_age_s=1.0)
    tracker.update(faces((0, 0, 40, 40)), 0.0)
    tracker.update(faces((2, 0, 42, 40)), 0.2)
    tracker.update(faces(), 0.4)
    other, s = tracker.update(faces((100, 0, 140, 40), (3, 1, 43, 41)), 0.6)
    new = tracker.split(s)
    assert (new.track_id, new.det_index, new.xyxy, new.start_ts, new.hits) == (3, 1, s.xyxy, 0.6, 1)
    (ended,) = tracker.ended
    assert (ended.track_id, ended.xyxy, ended.last_ts, ended.hits, ended.det_index) == (1, (2, 0, 42, 40), 0.2, 2, None)
    assert sorted(t.track_id for t in tracker.tracks) == [2, 3]
    ids = [st.track_id for st in tracker.update(faces((100, 0, 140, 40), (3, 1, 43, 41)), 0.8)]
    assert ids == [2, 3]  # the new track goes on
    with pytest.raises(ValueError, match="track 1 was not continued by the latest update"):
        tracker.split(s)
    with pytest.raises(ValueError, match="track 2 was not continued by the latest update"):
        tracker.split(other)  # continued, but an update ago


def test_prediction_moves_the_coasting_box():
    tracker = IouTracker(iou=0.3, max_age_s=2.0, velocity_weight=1.0)
    tracker.update(faces((0, 0, 40, 40)), 0.0)
    tracker.update(faces((10, 0, 50, 40)), 1.0)  # 10 px/s to the right
    tracker.update(faces(), 2.0)
    (live,) = tracker.tracks
    assert live.xyxy == pytest.approx((20, 0, 60, 40))


def test_expire_and_flush_end_tracks_once():
    tracker = IouTracker(iou=0.3, max_age_s=1.0)
    tracker.update(faces((0, 0, 40, 40), (100, 0, 140, 40)), 0.0)
    tracker.update(faces((0, 0, 40, 40)), 0.8)
    assert tracker.expire(1.5) == tracker.ended and [s.track_id for s in tracker.ended] == [2]
    assert len(tracker) == 1
    assert [s.track_id for s in tracker.flush()] == [1]
    assert len(tracker) == 0 and tracker.flush() == [] and tracker.ended == []


def test_time_going_backwards_is_tolerated():
    tracker = IouTracker(iou=0.3, max_age_s=1.0)
    tracker.update(faces((0, 0, 40, 40)), 5.0)
    (s,) = tracker.update(faces((0, 0, 40, 40)), 4.9)  # e.g. a late frame after an idle expire()
    assert s.track_id == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou": 0.0}, r"iou must be in \(0, 1\).*got 0.0"),
        ({"iou": 1.0}, r"iou must be in \(0, 1\).*got 1.0"),
        ({"max_age_s": 0}, r"max_age_s must be > 0 seconds, got 0"),
        ({"max_age_s": -1.5}, r"max_age_s must be > 0 seconds, got -1.5"),
        ({"velocity_weight": 1.5}, r"velocity_weight must be in \[0, 1\], got 1.5"),
    ],
)
def test_constructor_checks_name_the_argument_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IouTracker(**kwargs)
