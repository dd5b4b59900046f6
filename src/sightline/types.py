"""Frozen, typed records shared by every stage.

Vocabulary (one everywhere): ``xyxy`` pixel boxes (x1, y1, x2, y2; x2/y2 exclusive, float32),
``kps`` landmarks ((N, 5, 2) float32 pixel x/y, dlib's 5-point order: right-eye outer, right-eye
inner, left-eye outer, left-eye inner, nose base — "right" is the subject's right), ``similarity``
(cosine of L2-normalised descriptors, higher is closer, in [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: An RGB image, (H, W, 3) uint8, C-contiguous.
Image = U8
#: An aligned face chip, (S, S, 3) uint8 RGB (S = 150 for dlib's descriptor).
Chip = U8


def _as_f32(a: object, shape_tail: tuple[int, ...], name: str) -> F32:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Faces:
    """A batch of detected faces in one image, as numpy columns.

    xyxy:  (N, 4) float32 pixel boxes in the coordinates of the image given to the detector.
    score: (N,) float32 detector confidence; its scale depends on the detector (HOG margin,
           MMOD score), higher is more confident.
    kps:   (N, 5, 2) float32 landmarks, or None before the landmark stage ran.
    """

    xyxy: F32
    score: F32
    kps: F32 | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", _as_f32(self.xyxy, (4,), "xyxy"))
        object.__setattr__(self, "score", _as_f32(np.reshape(self.score, (-1,)), (), "score"))
        n = len(self.xyxy)
        if len(self.score) != n:
            raise ValueError(f"score has {len(self.score)} rows but xyxy has {n}")
        if self.kps is not None:
            kps = _as_f32(self.kps, (5, 2), "kps")
            if len(kps) != n:
                raise ValueError(f"kps has {len(kps)} rows but xyxy has {n}")
            object.__setattr__(self, "kps", kps)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def widths(self) -> F32:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def heights(self) -> F32:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    def with_kps(self, kps: F32) -> Faces:
        return Faces(self.xyxy, self.score, kps)

    def take(self, idx: npt.ArrayLike) -> Faces:
        """A new Faces holding the rows ``idx`` (an index array or boolean mask)."""
        i = np.asarray(idx)
        return Faces(self.xyxy[i], self.score[i], None if self.kps is None else self.kps[i])

    def scaled(self, factor: float) -> Faces:
        """Coordinates multiplied by ``factor`` (e.g. mapping a downscaled frame back)."""
        return Faces(self.xyxy * factor, self.score, None if self.kps is None else self.kps * factor)


@dataclass(frozen=True)
class Quality:
    """How usable a face is for recognition.

    size_px:   the face box's shorter side, pixels in the source image.
    sharpness: variance of the Laplacian of the grey chip, normalised to [0, 1].
    frontal:   1.0 for a frontal face, falling towards 0 with yaw/roll (from the 5 landmarks).
    score:     overall quality in [0, 1], the product of the size, sharpness and pose factors.
    """

    size_px: float
    sharpness: float
    frontal: float
    score: float


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One face found in a photo, with everything the engine knows about it.

    embedding: (D,) float32, L2-normalised, or None when only detection was asked for.
    """

    xyxy: tuple[float, float, float, float]
    kps: F32
    det_score: float
    quality: Quality
    embedding: F32 | None = None
    chip: Chip | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.xyxy
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class Candidate:
    """One gallery person returned for a probe face.

    similarity: cosine similarity to the person's best-matching template, higher is closer.
    is_match:   similarity >= threshold of the watchlist searched (or the engine default).
    est_fmr:    estimated false-match rate per comparison at this similarity (from the
                embedder's impostor calibration), e.g. 1e-4 = 1 in 10,000 strangers score this high.
    """

    person_id: int
    name: str
    similarity: float
    threshold: float
    is_match: bool
    est_fmr: float
    template_id: int | None = None
    external_id: str | None = None


# ---- live video ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded camera frame.

    camera_id: the camera's id (its name in config / the database).
    seq:       decode order number on this camera, from 0, counting every decoded frame (also the
               ones dropped before analysis), so gaps show drops.
    ts:        wall-clock capture time, seconds since the epoch (time.time()) when decoded.
    pts:       presentation time in the stream, seconds (None when the stream has none).
    image:     (H, W, 3) uint8 RGB.
    """

    camera_id: str
    seq: int
    ts: float
    pts: float | None
    image: Image = field(repr=False)


@dataclass(frozen=True)
class Match:
    """A watchlist hit for one face: the best candidate at or above the watchlist's threshold.

    similarity: cosine similarity (higher is closer); est_fmr: estimated false-match rate per
    comparison at that similarity (see ``Calibration``).
    """

    person_id: int
    name: str
    watchlist: str
    similarity: float
    threshold: float
    est_fmr: float


@dataclass(frozen=True, eq=False)
class Alert:
    """A watchlisted person seen on a camera: one per (track, person), subject to a cooldown.

    ts: when the alert was raised (epoch s); frame_ts: capture time of the frame it was raised on
    (latency = ts - frame_ts); xyxy: the face box in that frame's pixels; crop_jpeg: the best
    shot so far, JPEG bytes. id: the alert's row id once stored (``AlertStore.add``), None before
    (the camera worker publishes the stored record with its id, so consoles can link to it).
    """

    camera_id: str
    track_id: int
    match: Match
    ts: float
    frame_ts: float
    xyxy: tuple[float, float, float, float]
    crop_jpeg: bytes = field(repr=False)
    quality: float = 0.0
    id: int | None = None


@dataclass(frozen=True, eq=False)
class Sighting:
    """A track that ended: a face seen on a camera from ``start_ts`` to ``end_ts`` (epoch s).

    match is None for a face that matched no watchlist; then crop_jpeg and embedding are None
    unless the camera's sighting retention keeps non-matching faces. id: the sighting's row id once
    stored (``SightingStore.add``), None before.
    """

    camera_id: str
    track_id: int
    start_ts: float
    end_ts: float
    frames: int
    quality: float
    match: Match | None = None
    crop_jpeg: bytes | None = field(default=None, repr=False)
    embedding: F32 | None = field(default=None, repr=False)
    id: int | None = None
