"""A small IoU face tracker with constant-velocity prediction.

    tracker = IouTracker(iou=0.3, max_age_s=1.5)
    for frame in frames:
        tracks = tracker.update(faces, frame.ts)   # one TrackState per detection, in order
        for t in tracker.ended: ...                 # tracks that ended at this update
        new = tracker.split(tracks[i])              # not the same face after all: end, start anew

Each live track predicts its box at the new frame's time from its last box and a smoothed
velocity (pixels per second per coordinate); detections are then assigned to the predictions
greedily by highest IoU, at or above ``iou``. A detection left over starts a new track; a track
unseen for more than ``max_age_s`` ends.

Why our own tracker rather than norfair: faces at 5 analysis frames per second need nothing but box
overlap plus a little motion, so ~150 lines of numpy with no new dependency (norfair pulls in
scipy and rich) keeps the behaviour easy to read and to test on tiny arrays. Its shape follows
norfair's: ``update(detections) -> tracks`` and constructor checks that name the argument.

Trade-offs: greedy assignment (not Hungarian) is exact when faces do not overlap, which is the
common case for faces; when two faces cross, identities may swap — the track then keeps the best
shot of whichever face was better, and a new embedding follows only a clearly better shot.
Appearance is not used, so a face that leaves and re-enters after ``max_age_s`` gets a new track,
and a different face that appears where a track was within ``max_age_s`` continues it. The tracker
says when that may have happened (``TrackState.missed`` > 0: continued after a gap) and the caller,
who has descriptors, decides: ``split`` ends the track and starts a new one from the detection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sightline.types import F32, Faces

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackState:
    """One track at one update.

    track_id:  1, 2, ... per tracker, never reused.
    xyxy:      the detected box (``det_index`` set) or the predicted one (coasting), pixels.
    det_index: the row of this update's ``Faces`` the track was assigned, or None when it was
               not detected in this frame (only in ``tracks`` and ``ended``).
    start_ts:  time of the first detection, epoch s; last_ts: time of the latest detection.
    hits:      frames the track was detected in.
    missed:    updates (frames) the track went undetected just before this detection; 0 when it
               was detected in the previous update or is new. > 0 means "continued after a gap":
               by box overlap alone, possibly another face at the same spot.
    """

    track_id: int
    xyxy: Box
    det_index: int | None
    start_ts: float
    last_ts: float
    hits: int
    missed: int = 0


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> F32:
    """Intersection over union of every pair: (A, 4) and (B, 4) xyxy boxes -> (A, B) float32 in [0, 1].

    Degenerate (empty) boxes have IoU 0 with everything.
    """
    aa = np.asarray(a, np.float32).reshape(-1, 4)
    bb = np.asarray(b, np.float32).reshape(-1, 4)
    ix1 = np.maximum(aa[:, None, 0], bb[None, :, 0])
    iy1 = np.maximum(aa[:, None, 1], bb[None, :, 1])
    ix2 = np.minimum(aa[:, None, 2], bb[None, :, 2])
    iy2 = np.minimum(aa[:, None, 3], bb[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(aa[:, 2] - aa[:, 0], 0, None) * np.clip(aa[:, 3] - aa[:, 1], 0, None)
    area_b = np.clip(bb[:, 2] - bb[:, 0], 0, None) * np.clip(bb[:, 3] - bb[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def greedy_assign(iou: F32, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs of an (R, C) IoU matrix, highest IoU first, each row and column used once,
    only pairs with IoU >= threshold. Ties go to the lower row, then the lower column."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= threshold)
    if len(rows) == 0:
        return []
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


class _Track:
    """Mutable state of one live track (internal)."""

    __slots__ = ("before", "box", "hits", "id", "last_ts", "last_update", "missed", "start_ts", "velocity")

    def __init__(self, track_id: int, box: F32, ts: float, update_no: int) -> None:
        self.id = track_id
        self.box = box  # (4,) float32, last detected box
        self.velocity = np.zeros(4, np.float32)  # pixels per second, per coordinate
        self.start_ts = ts
        self.last_ts = ts
        self.hits = 1
        self.last_update = update_no  # the update that last detected it
        self.missed = 0  # updates without it just before the latest detection
        self.before: tuple[F32, F32, float, int] | None = None  # box, velocity, last_ts, hits before it

    def predict(self, ts: float, horizon_s: float) -> F32:
        dt = min(max(0.0, ts - self.last_ts), horizon_s)
        return (self.box + self.velocity * dt).astype(np.float32)

    def state(self, box: F32, det_index: int | None) -> TrackState:
        x1, y1, x2, y2 = (float(v) for v in box)
        missed = self.missed if det_index is not None else 0
        return TrackState(self.id, (x1, y1, x2, y2), det_index, self.start_ts, self.last_ts, self.hits, missed)


class IouTracker:
    """Tracks face boxes across frames by overlap with each track's predicted box.

    iou:             minimum IoU between a track's predicted box and a detection to continue
                     the track, in (0, 1).
    max_age_s:       a track not detected for longer than this ends, seconds, > 0.
    velocity_weight: weight of the newest velocity measurement in the exponential smoothing,
                     in [0, 1]; 0 disables prediction (the last box is used as is).

    Not thread-safe: one tracker per camera worker.
    """

    def __init__(self, iou: float = 0.3, max_age_s: float = 1.5, *, velocity_weight: float = 0.5) -> None:
        if not 0.0 < iou < 1.0:
            raise ValueError(f"iou must be in (0, 1) (exclusive), got {iou}")
        if not max_age_s > 0.0:
            raise ValueError(f"max_age_s must be > 0 seconds, got {max_age_s}")
        if not 0.0 <= velocity_weight <= 1.0:
            raise ValueError(f"velocity_weight must be in [0, 1], got {velocity_weight}")
        self.iou = float(iou)
        self.max_age_s = float(max_age_s)
        self.velocity_weight = float(velocity_weight)
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._now: float | None = None
        self._updates = 0  # calls to update()
        self.ended: list[TrackState] = []
        """Tracks that ended at the latest ``update``, ``expire`` or ``flush`` (last box, det_index None)."""

    @property
    def tracks(self) -> list[TrackState]:
        """Every live track with its box predicted at the latest update time."""
        now = self._now if self._now is not None else 0.0
        return [t.state(t.predict(now, self.max_age_s), None) for t in self._tracks]

    def predicted(self, ts: float) -> list[TrackState]:
        """Every live track with its box predicted at ``ts`` (epoch s, e.g. the next frame's time; at most
        ``max_age_s`` past its last detection), for looking where a track's face will be."""
        return [t.state(t.predict(ts, self.max_age_s), None) for t in self._tracks]

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, faces: Faces, ts: float) -> list[TrackState]:
        """Assign this frame's detections to tracks; returns one TrackState per detection, in the
        order of ``faces`` (``result[i].det_index == i``): continued tracks and new ones.

        faces: (N,) detections, xyxy in the same pixel space every call. ts: the frame's time, epoch
        s; a time earlier than the previous update is treated as equal to it (no prediction step).
        Tracks unseen for more than ``max_age_s`` at ``ts`` end first and are listed in ``ended``.
        """
        self.ended = []
        self._expire(ts)
        now = ts if self._now is None else max(ts, self._now)
        self._now = now
        self._updates += 1
        boxes = faces.xyxy
        out: list[TrackState | None] = [None] * len(boxes)
        if self._tracks and len(boxes):
            pred = np.stack([t.predict(now, self.max_age_s) for t in self._tracks])
            for r, c in greedy_assign(box_iou(pred, boxes), self.iou):
                track = self._tracks[r]
                self._continue(track, boxes[c], now)
                out[c] = track.state(track.box, c)
        for c in range(len(boxes)):
            if out[c] is None:
                out[c] = self._start(boxes[c], now, c)
        return [s for s in out if s is not None]

    def split(self, state: TrackState) -> TrackState:
        """End the track that the latest ``update`` continued with ``state`` (one of its results) and
        start a new track from that detection: for a caller that finds the face is not the track's
        (e.g. its descriptor differs after ``state.missed`` > 0). Returns the new track's state (same
        ``det_index`` and box); the ended one, as it was before that detection, is in ``ended``.
        """
        track = next((t for t in self._tracks if t.id == state.track_id), None)
        if (
            track is None
            or state.det_index is None
            or track.last_update != self._updates
            or track.hits != state.hits
            or track.before is None
        ):
            raise ValueError(f"track {state.track_id} was not continued by the latest update; cannot split it")
        box, velocity, last_ts, hits = track.before
        old = _Track(track.id, box, track.start_ts, track.last_update)
        old.velocity, old.last_ts, old.hits = velocity, last_ts, hits
        self.ended.append(old.state(box, None))
        self._tracks.remove(track)
        return self._start(np.asarray(state.xyxy, np.float32), track.last_ts, state.det_index)

    def expire(self, ts: float) -> list[TrackState]:
        """End the tracks unseen for more than ``max_age_s`` at ``ts`` (e.g. when no frame came);
        returns them (also in ``ended``)."""
        self.ended = []
        self._expire(ts)
        return self.ended

    def flush(self) -> list[TrackState]:
        """End every live track (stream ended, worker stopping); returns them (also in ``ended``)."""
        self.ended = [t.state(t.box, None) for t in self._tracks]
        self._tracks = []
        return self.ended

    def _start(self, box: F32, ts: float, det_index: int) -> TrackState:
        track = _Track(self._next_id, box.copy(), ts, self._updates)
        self._next_id += 1
        self._tracks.append(track)
        return track.state(track.box, det_index)

    def _expire(self, ts: float) -> None:
        keep = []
        for t in self._tracks:
            if ts - t.last_ts > self.max_age_s:
                self.ended.append(t.state(t.box, None))
            else:
                keep.append(t)
        self._tracks = keep

    def _continue(self, track: _Track, box: F32, ts: float) -> None:
        track.before = (track.box, track.velocity, track.last_ts, track.hits)
        track.missed = self._updates - track.last_update - 1
        track.last_update = self._updates
        dt = ts - track.last_ts
        if dt > 0:
            measured = (box - track.box) / dt
            w = 1.0 if track.hits == 1 and self.velocity_weight > 0 else self.velocity_weight
            track.velocity = (w * measured + (1.0 - w) * track.velocity).astype(np.float32)
        track.box = box.copy()
        track.last_ts = ts
        track.hits += 1
