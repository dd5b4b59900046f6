"""Region-of-interest detection for live video: scan only where a face can newly be, or already is.

Detection is most of a live frame's cost (a 1280x720 frame at detect_width 640 with HOG upsample 1:
~60 ms), yet between two analysed frames (0.2 s apart at 5 fps) most of a camera's picture does not
change and the faces already tracked move little. :class:`RoiDetector` therefore scans, per frame:

* **changed blocks**: the frame's green channel sampled every ``w // 160`` pixels (~160x90 for 16:9,
  ~0.1 ms) is split into 10x10-sample blocks (80x80 pixels of a 1280 frame); blocks whose mean
  absolute difference from the previous analysed frame reaches ``motion`` levels, grown by one
  block on every side and merged into rectangles (8-connected components), are scanned at the same
  scale as a full pass, so a newcomer who moves is found as soon as a full pass would find it;
* **live tracks**: the union of each track's last box and the box the tracker predicts at this frame's
  time, widened by ``track_margin`` face sides (0.6) on every side, scaled so the face is about
  ``track_face_px`` pixels (80) for the detector -- HOG finds faces from ~75 px at its own scale -- but
  never finer than a full pass (the face was found at that scale): 2-3 ms per face instead of ~55 ms
  for a whole 1280x720 frame;
* **the whole frame** at least every ``full_every_s`` (a still newcomer, e.g. one who was missed
  while blurred, is found within that time), at the first frame, after a size change, and whenever
  the regions would cost more than ``full_share`` of a full pass (pixels scanned; a whole-frame scan
  is then about as cheap as its parts).

In a busy scene (people everywhere, camera shake) most frames are then full passes and ROI costs what
scanning every frame costs; ``busy_stride`` halves that by scanning the tracks' windows only on every
other busy frame, at a cost in recall.

Measured (``sightline bench streams-cpu``, docs/BENCHMARKS.md §5): on the streams benchmark clip the
detection CPU per analysed frame fell from 62 to 14 ms with the same faces found (recall 1.0).

Boxes from overlapping regions are merged (IoU >= 0.4: the higher score wins); landmarks are then
found once per face on the full-resolution frame, exactly as in a full pass.

Trade-offs: a face that appears without changing its blocks by ``motion`` (a slow fade, a tiny face
in a busy block) and without moving waits for the next full pass (<= ``full_every_s``); a tracked face
that moves more than ``track_margin`` face sides beyond its predicted box between analysed frames is
lost from its window (a changed-block region usually still covers it). Motion is measured against the previous analysed
frame, so camera shake or a lighting change makes every block "changed" and the frame costs a full
pass, never more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sightline.types import Faces, Image
from sightline.vision.detect import FaceDetector

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
#: Thumbnail samples per block side (blocks are BLOCK x BLOCK samples of the ~160 px wide thumbnail).
BLOCK = 10
#: Thumbnail width the frame is sampled down to, samples.
THUMB_WIDTH = 160


@dataclass(frozen=True)
class Region:
    """A rectangle to scan: ``xyxy`` in full-frame pixels (integers), resized by ``scale`` before the
    scanning detector sees it. ``kind``: "full", "motion" or "track"."""

    xyxy: tuple[int, int, int, int]
    scale: float
    kind: str

    @property
    def area(self) -> int:
        x1, y1, x2, y2 = self.xyxy
        return max(0, x2 - x1) * max(0, y2 - y1)


def thumbnail(image: Image) -> np.ndarray:
    """(h, w) int16 green channel of ``image`` sampled every ``W // THUMB_WIDTH`` pixels; the step is
    returned implicitly by ``image.shape[1] // thumb.shape[1]`` (see :func:`thumb_step`)."""
    step = thumb_step(image.shape[1])
    return image[::step, ::step, 1].astype(np.int16)


def thumb_step(width: int) -> int:
    """Sampling step of :func:`thumbnail` for frames ``width`` pixels wide."""
    return max(1, width // THUMB_WIDTH)


def changed_blocks(thumb: np.ndarray, last: np.ndarray, motion: float) -> np.ndarray:
    """(bh, bw) bool: blocks of BLOCK x BLOCK samples whose mean absolute difference >= ``motion``
    levels. Partial blocks at the right and bottom edges count as whole blocks."""
    h, w = thumb.shape
    bh, bw = -(-h // BLOCK), -(-w // BLOCK)
    diff = np.zeros((bh * BLOCK, bw * BLOCK), np.float32)
    diff[:h, :w] = np.abs(thumb - last)
    sums = diff.reshape(bh, BLOCK, bw, BLOCK).sum(axis=(1, 3))
    counts = np.zeros((bh * BLOCK, bw * BLOCK), np.float32)
    counts[:h, :w] = 1
    n = counts.reshape(bh, BLOCK, bw, BLOCK).sum(axis=(1, 3))
    return sums / np.maximum(n, 1) >= motion


def block_rects(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding rectangles (bx1, by1, bx2, by2), in blocks, exclusive ends, of the 8-connected
    components of ``mask`` grown by one block on every side."""
    bh, bw = mask.shape
    grown = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown[np.clip(ys + dy, 0, bh - 1), np.clip(xs + dx, 0, bw - 1)] = True
    seen = np.zeros_like(grown)
    rects = []
    for y0, x0 in zip(*np.nonzero(grown), strict=True):
        if seen[y0, x0]:
            continue
        stack = [(int(y0), int(x0))]
        seen[y0, x0] = True
        y1, x1, y2, x2 = y0, x0, y0, x0
        while stack:
            y, x = stack.pop()
            y1, x1, y2, x2 = min(y1, y), min(x1, x), max(y2, y), max(x2, x)
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < bh and 0 <= nx < bw and grown[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        rects.append((int(x1), int(y1), int(x2) + 1, int(y2) + 1))
    return rects


def track_region(boxes: Sequence[Box], frame_wh: tuple[int, int], margin: float, face_px: float, gain: float) -> Region:
    """The window around a track: the union of ``boxes`` (its last box and where it is predicted to be),
    widened by ``margin`` face sides on every side, clipped to the frame, at the scale that makes the face
    ``face_px`` pixels for a detector that magnifies by ``gain`` itself (2**upsample for HOG)."""
    w, h = frame_wh
    arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    x1, y1 = float(arr[:, 0].min()), float(arr[:, 1].min())
    x2, y2 = float(arr[:, 2].max()), float(arr[:, 3].max())
    side = max(1.0, float(np.minimum(arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]).mean()))
    pad = margin * side
    box = (max(0, int(x1 - pad)), max(0, int(y1 - pad)), min(w, int(np.ceil(x2 + pad))), min(h, int(np.ceil(y2 + pad))))
    return Region(box, face_px / (side * gain), "track")


def dedupe(faces: Faces, iou: float = 0.4) -> Faces:
    """Greedy non-maximum suppression: of boxes overlapping by ``iou`` or more, the highest score stays."""
    if len(faces) < 2:
        return faces
    from sightline.video.tracker import box_iou

    order = np.argsort(-faces.score, kind="stable")
    ious = box_iou(faces.xyxy, faces.xyxy)
    keep: list[int] = []
    for i in order:
        if all(ious[i, k] < iou for k in keep):
            keep.append(int(i))
    return faces.take(sorted(keep))


def scan(detector: FaceDetector, image: Image, region: Region) -> Faces:
    """Run ``detector`` on ``region`` of ``image`` (resized by ``region.scale``, bilinear, when not 1);
    boxes in full-frame pixels, clipped to the region, without landmarks."""
    x1, y1, x2, y2 = region.xyxy
    crop = image[y1:y2, x1:x2]
    if crop.size == 0:
        return Faces.empty()
    s = region.scale
    if abs(s - 1.0) > 1e-3:
        from PIL import Image as PILImage

        size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
        small = np.asarray(PILImage.fromarray(np.ascontiguousarray(crop)).resize(size, PILImage.BILINEAR))
        sx, sy = crop.shape[1] / size[0], crop.shape[0] / size[1]
    else:
        small, sx, sy = np.ascontiguousarray(crop), 1.0, 1.0
    faces = detector.detect(small)
    if len(faces) == 0:
        return faces
    xyxy = faces.xyxy * np.array([sx, sy, sx, sy], np.float32) + np.array([x1, y1, x1, y1], np.float32)
    xyxy = np.clip(xyxy, [x1, y1, x1, y1], [x2, y2, x2, y2]).astype(np.float32)
    return Faces(xyxy, faces.score)


@dataclass
class RoiStats:
    """Counters of one :class:`RoiDetector`: frames scanned whole (``full``) or by regions (``roi``),
    regions scanned by kind, and the pixels the detector scanned (after resizing, before its own
    upsampling) whole frames and regions together (``scanned_px``) and in the full passes (``full_px``)."""

    full: int = 0
    roi: int = 0
    motion_regions: int = 0
    track_regions: int = 0
    scanned_px: float = 0.0
    full_px: float = 0.0

    @property
    def scanned_share(self) -> float:
        """Pixels scanned over what full passes on every frame would scan (1.0 without ROI)."""
        frames = self.full + self.roi
        return self.scanned_px / (self.full_px / self.full * frames) if self.full and frames else 1.0


class RoiDetector:
    """Per-camera region-of-interest face detection (module docstring); one per worker, not thread-safe.

    detector: the engine's detector. For dlib's HOG (``HogDetector``), regions and full passes are
              scanned by a copy with ``upsample=0`` on crops resized to the same overall magnification
              (``scale x 2**upsample``): the same detections at the same scale, without dlib's
              pyramid_up of a downscaled copy (one resize instead of two; ~15 % cheaper per full pass).
              Other detectors scan as configured.
    motion: block change that marks a region, 0-255 levels. full_every_s: the longest time between
    full passes, s. full_share: above this share of a full pass's pixels, regions give way to a full
    pass (a busy frame). busy_stride: in busy frames, a full pass only every other analysed frame, just
    the tracks' windows between (about half the cost; measured recall 0.87 of a full scan on a 1080p
    street scene). track_margin: window padding, face sides. track_face_px: face size in a track window, pixels.
    """

    def __init__(
        self,
        detector: FaceDetector,
        *,
        motion: float,
        full_every_s: float,
        full_share: float = 0.5,
        busy_stride: bool = False,
        track_margin: float = 0.6,
        track_face_px: float = 80.0,
    ) -> None:
        if not motion > 0:
            raise ValueError(f"motion must be > 0 levels, got {motion}")
        if not full_every_s > 0:
            raise ValueError(f"full_every_s must be > 0 seconds, got {full_every_s}")
        if not 0 < full_share <= 1:
            raise ValueError(f"full_share must be in (0, 1], got {full_share}")
        if not track_margin >= 0:
            raise ValueError(f"track_margin must be >= 0 face sides, got {track_margin}")
        if not track_face_px > 0:
            raise ValueError(f"track_face_px must be > 0 pixels, got {track_face_px}")
        from sightline.vision.detect.hog import HogDetector

        if isinstance(detector, HogDetector) and detector.upsample > 0:
            self.scanner: FaceDetector = HogDetector(upsample=0, adjust_threshold=detector.adjust_threshold)
            self.gain = 1.0
            self.magnify = float(2**detector.upsample)
        else:
            self.scanner = detector
            self.gain = float(2 ** int(getattr(detector, "upsample", 0)))
            self.magnify = 1.0
        self.motion = motion
        self.full_every_s = full_every_s
        self.full_share = full_share
        self.busy_stride = busy_stride
        self._last_was_full = False
        self.track_margin = track_margin
        self.track_face_px = track_face_px
        self.stats = RoiStats()
        self.last_regions: list[Region] = []  # what the latest detect() scanned
        self._last_thumb: np.ndarray | None = None
        self._last_full_ts: float | None = None

    def plan(self, image: Image, ts: float, tracks: Sequence[Sequence[Box]], full_scale: float) -> list[Region]:
        """The regions to scan in this frame: ``[Region(whole frame, kind="full")]`` when a full pass is
        due. tracks: per live track, its boxes (last, predicted) in full-frame pixels. full_scale: the
        engine's detection scale of a whole frame (``detect_width / W``). Updates the motion reference."""
        h, w = image.shape[:2]
        scale = full_scale * self.magnify
        full = [Region((0, 0, w, h), scale, "full")]
        thumb = thumbnail(image)
        last, self._last_thumb = self._last_thumb, thumb
        if (
            last is None
            or last.shape != thumb.shape
            or self._last_full_ts is None
            or ts - self._last_full_ts >= self.full_every_s
            or ts < self._last_full_ts
        ):
            return full
        regions: list[Region] = []
        block_px = BLOCK * thumb_step(w)
        for bx1, by1, bx2, by2 in block_rects(changed_blocks(thumb, last, self.motion)):
            box = (bx1 * block_px, by1 * block_px, min(w, bx2 * block_px), min(h, by2 * block_px))
            regions.append(Region(box, scale, "motion"))
        for boxes in tracks:
            r = track_region(boxes, (w, h), self.track_margin, self.track_face_px, self.gain)
            # never magnified beyond a full pass: the face was found at that scale, finer costs more
            regions.append(Region(r.xyxy, min(r.scale, scale), "track"))
        if sum(r.area * r.scale**2 for r in regions) > self.full_share * w * h * scale**2:
            if self.busy_stride and self._last_was_full:
                # busy scene, whole frame scanned last time: only the tracks' windows now
                return [r for r in regions if r.kind == "track"]
            return full
        return regions

    def detect(self, image: Image, ts: float, tracks: Sequence[Sequence[Box]], full_scale: float) -> tuple[Faces, bool]:
        """Faces found in this frame's regions (boxes in full-frame pixels, no landmarks, not size-filtered,
        overlaps merged) and whether this was a full pass."""
        regions = self.plan(image, ts, tracks, full_scale)
        self.last_regions = regions
        st = self.stats
        is_full = bool(regions) and regions[0].kind == "full"
        self._last_was_full = is_full
        if is_full:
            st.full += 1
            st.full_px += regions[0].area * regions[0].scale ** 2
            self._last_full_ts = ts
        else:
            st.roi += 1
        found = []
        for r in regions:
            st.scanned_px += r.area * r.scale**2
            if r.kind == "motion":
                st.motion_regions += 1
            elif r.kind == "track":
                st.track_regions += 1
            f = scan(self.scanner, image, r)
            if len(f):
                found.append(f)
        if not found:
            return Faces.empty(), is_full
        faces = Faces(np.concatenate([f.xyxy for f in found]), np.concatenate([f.score for f in found]))
        return (faces if is_full else dedupe(faces)), is_full
