"""The per-camera analysis step: detect -> track -> best shot -> embed -> match -> alerts, sightings.

    worker = CameraWorker(camera, FaceEngine.from_config(cfg.engine), matcher, bus, watch, stores)
    alerts = worker.process(frame)          # one frame, no threads (tests, replays)
    worker.run(frame_queue, stop_event)     # the camera's analysis thread; flushes when stopped

Per frame: the frame is scaled to ``camera.detect_width`` (never enlarged) for detection; boxes are
mapped back to the full frame and faces smaller than ``camera.min_face_px`` (full-frame pixels,
shorter box side) are dropped. Landmarks, aligned chips, quality and crops then come from the
full-resolution frame. The effective smallest face is also bounded by the detector: the engine
drops boxes under ``EngineConfig.min_face_px`` in the DETECTION image, i.e. ``min_face_px / scale``
full-frame pixels (logged once per camera when that is the larger).

Region-of-interest detection (``camera.detect_mode == "roi"``, the default; :mod:`sightline.video.roi`):
only the blocks that changed since the previous analysed frame (at the full-pass scale) and a window
around each live track (where the tracker predicts its face, scaled so the face is ~80 px for the
detector) are scanned, with a whole-frame pass at least every ``camera.full_detect_s`` (2 s) and
whenever the regions would cost half a full pass or more. On the streams benchmark clip it finds the
same faces as scanning every frame (recall 1.0) at about a quarter of the detection CPU
(``sightline bench streams-cpu``). ``detect_mode="full"`` scans every analysed frame whole.

Motion gating (``camera.motion_gate`` > 0, off by default; only with ``detect_mode="full"``): a frame
in which no block changed by the gate since the last detected frame reuses that frame's faces instead
of running the detector (at least every ``camera.motion_max_skip_s``); see ``_gated_detect``. Static
scenes get cheap (``sightline bench streams --motion-gate``); busy ones do not.

Tracks (``IouTracker``) keep their best shot by quality. A track is embedded when it starts and
again only when its best shot is ``watch.reembed_quality_gain`` better than the embedded one, all
due tracks of a frame in one descriptor batch and one matcher call (one matrix multiply).

Identity checks: the tracker follows boxes only, so a face that appears where another was within
``watch.track_max_age_s`` (a doorway, people in single file) would continue that track and, unless
its shot were clearly better, never be embedded. So when a track is continued after a gap (missed
at least one analysed frame, ``TrackState.missed``) and every ``watch.identity_check_s`` of its
life, the face's chip is embedded (one descriptor per checked track, one batch per frame) and
compared with the track's embedding; below the calibration's similarity at FMR 1e-2 (0.91 for the
default model: clearly another person) the track is split (``IouTracker.split``): the old one ends and
becomes a Sighting, the face starts a new track whose first embedding is the check's.

Alerts: one per (track, person), raised on the frame whose embedding first matched; a second
alert for the same person on this camera within ``watch.alert_cooldown_s`` of the last one (frame
time) is suppressed and counted. A track that ends (unseen for ``watch.track_max_age_s``, or on
``flush`` when the stream ends or the worker stops) becomes a Sighting whose match is the
strongest the track produced. A sighting without a match keeps its crop and descriptor only when
``camera.keep_unmatched_sightings``; otherwise they are dropped in memory and never written.

Alerts and sightings are first written to ``stores`` (when given; a write failure is logged and
counted, the event is still published) and then published on ``bus``, in that order, so a
subscriber that looks in the database finds the row. Cooldown state lives in the worker and, with
``stores``, survives a restart: a new worker (the supervisor restarts one after a failure, ``sightline
watch`` or the server after a restart) reads the newest alert per person on its camera raised within the
cooldown and keeps suppressing repeats, so a reconnecting camera does not page officers twice. Without
stores a restarted worker may alert once more within the cooldown.

Costs measured on a 1280x720 frame with one face (onnx engine, HOG upsample 1, 2 shared CPU cores):
a full-frame detection dominates, 63-96 ms per frame at detect_width 640 (ROI frames: ~2-3 ms per
tracked face; 17 ms per analysed frame on average on the four-face benchmark clip, all stages);
20 ms at 320, where the smallest face found is twice as large as at 640; 235 ms at 1280); a
descriptor ~15 ms per embedded shot (mirror averaging), paid once per track plus clearly better
shots, and one per identity check (per gap and per ``identity_check_s`` of a track); the best shot
(chip, quality, JPEG crop of ~16 kB) ~1 ms per face; matching 0.16 ms for 4 descriptors against 3,001
watchlisted templates; storing an alert 0.06 ms.
Alert latency (``Frame.ts`` to ``Alert.ts``) on the first frame of a track: 0.08-0.13 s.

Not thread-safe: one worker (and one engine) per camera thread; ``stats()`` may be read from any
thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from sightline.config import CameraConfig, WatchConfig
from sightline.types import F32, Alert, Faces, Frame, Image, Match, Sighting
from sightline.video.bestshot import BestShot, Shot
from sightline.video.roi import RoiDetector
from sightline.video.tracker import IouTracker, TrackState
from sightline.vision import align, quality
from sightline.vision.engine import FaceEngine

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

#: Alert latencies kept for ``WorkerStats.alert_latencies_s`` (the most recent ones).
LATENCY_WINDOW = 256


class Matcher(Protocol):
    """``sightline.video.matcher.WatchlistMatcher``: (N, D) descriptors and the (N,) quality scores of the
    faces they describe -> N x (Match | None) (faces under the matcher's quality gate get None)."""

    def match(self, embeddings: F32, qualities: Sequence[float] | None = None) -> list[Match | None]: ...


class Publisher(Protocol):
    """``sightline.events.bus.EventBus``: hands a record to subscribers without blocking."""

    def publish(self, record: object) -> object: ...


class EventRecorder(Protocol):
    """``sightline.events.store.EventStores``: persists alerts and sightings, returns row ids."""

    def add_alert(self, alert: Alert) -> int: ...

    def add_sighting(self, sighting: Sighting, *, model: str | None = None) -> int: ...

    def recent_alerts(self, camera_id: str, since: float) -> dict[int, float]:
        """person id -> frame time (epoch s) of their newest alert on the camera raised at or after ``since``."""
        ...


class FrameSource(Protocol):
    """A camera's frame queue (``sightline.video.capture.FrameQueue``): the next frame, waiting up to
    ``timeout`` seconds; without one it returns None or raises ``queue.Empty``. A ``closed``
    attribute that is True once no more frames will come (the stream ended) lets ``run`` finish."""

    def get(self, timeout: float) -> Frame | None: ...


@dataclass(frozen=True)
class WorkerStats:
    """Counters of one camera worker since it started. Times are seconds of wall time spent in the
    stage (``time.perf_counter``); divide by ``frames`` for a per-frame cost.

    frames: frames analysed; frames_skipped: decoded frames this worker never saw (gaps in the
    frames' ``seq``: the capture's choice of frames at ``analysis_fps`` and its queue's drops; the
    capture counts the drops separately). detections_gated: frames whose detection motion gating
    skipped (their faces are the last detected frame's). detections_full / detections_roi: with
    ``camera.detect_mode == "roi"``, frames scanned whole / by regions only. faces: faces kept after the size filter.
    embeds: chips embedded (embed_batches calls); matches: embeddings that matched a watchlist.
    alerts_suppressed: alerts held back by the cooldown. identity_checks: faces embedded to check a
    continued track's identity (not in ``embeds``); identity_splits: tracks split by a check.
    errors: frames whose analysis raised; store_errors: failed writes.
    alert_latencies_s: ``alert.ts - frame.ts`` of the most recent alerts (capture to alert).
    frame_latencies_s: capture to analysis done (``time.time() - frame.ts`` after ``process``) of the
    most recent frames, queue wait included.
    """

    camera_id: str
    frames: int = 0
    frames_skipped: int = 0
    detections_gated: int = 0
    detections_full: int = 0
    detections_roi: int = 0
    faces: int = 0
    tracks_started: int = 0
    tracks_active: int = 0
    sightings: int = 0
    embeds: int = 0
    embed_batches: int = 0
    matches: int = 0
    alerts: int = 0
    alerts_suppressed: int = 0
    identity_checks: int = 0
    identity_splits: int = 0
    errors: int = 0
    store_errors: int = 0
    detect_s: float = 0.0
    track_s: float = 0.0
    bestshot_s: float = 0.0
    embed_s: float = 0.0
    match_s: float = 0.0
    emit_s: float = 0.0
    alert_latencies_s: tuple[float, ...] = ()
    frame_latencies_s: tuple[float, ...] = ()

    @property
    def alert_latency_max_s(self) -> float | None:
        return max(self.alert_latencies_s) if self.alert_latencies_s else None

    @property
    def alert_latency_mean_s(self) -> float | None:
        lat = self.alert_latencies_s
        return sum(lat) / len(lat) if lat else None


_COUNTERS = tuple(
    f.name
    for f in fields(WorkerStats)
    if f.name not in ("camera_id", "tracks_active", "alert_latencies_s", "frame_latencies_s")
)


class _TrackCtx:
    """What the worker knows about one live track (internal)."""

    __slots__ = (
        "alerted",
        "best",
        "checked_ts",
        "embedded_shot",
        "embedding",
        "frames",
        "last_ts",
        "match",
        "start_ts",
        "track_id",
        "xyxy",
    )

    def __init__(self, track_id: int, ts: float, best: BestShot) -> None:
        self.track_id = track_id
        self.start_ts = ts
        self.last_ts = ts
        self.frames = 0
        self.xyxy: Box = (0.0, 0.0, 0.0, 0.0)
        self.best = best
        self.embedding: F32 | None = None
        self.embedded_shot: Shot | None = None  # the shot ``embedding`` was computed from
        self.checked_ts = ts  # frame time of the latest embedding or identity check
        self.match: Match | None = None  # the strongest match so far
        self.alerted: set[int] = set()  # persons already alerted (or suppressed) on this track


class CameraWorker:
    """Analyses one camera's frames; see the module docstring for the rules.

    camera:  the camera's config: id, detect_width, min_face_px, keep_unmatched_sightings (its
             analysis_fps is applied by the capture, which chooses the frames queued).
    engine:  this worker's own face engine (engines are not thread-safe).
    matcher: watchlist matcher, shared by workers (``WatchlistMatcher`` is thread-safe).
    bus:     where alerts and sightings are published (None: nowhere).
    watch:   tracking, re-embedding and alert rules.
    stores:  where alerts and sightings are stored (None: not stored).
    """

    def __init__(
        self,
        camera: CameraConfig,
        engine: FaceEngine,
        matcher: Matcher,
        bus: Publisher | None,
        watch: WatchConfig | None = None,
        stores: EventRecorder | None = None,
    ) -> None:
        self.camera = camera
        self.engine = engine
        self.matcher = matcher
        self.bus = bus
        self.watch = watch or WatchConfig()
        self.stores = stores
        self.tracker = IouTracker(iou=self.watch.track_iou, max_age_s=self.watch.track_max_age_s)
        # below this a continued track's face is clearly another person (about 1 in 100 strangers score higher)
        self.same_person_similarity = engine.calibration.threshold_for_fmr(1e-2)
        self._tracks: dict[int, _TrackCtx] = {}
        self._last_alert: dict[int, float] = {}  # person id -> frame time of the last alert
        if stores is not None and self.watch.alert_cooldown_s > 0:
            try:  # keep the cooldown across restarts (module docstring)
                self._last_alert = stores.recent_alerts(camera.id, time.time() - self.watch.alert_cooldown_s)
            except Exception:  # a broken store must not stop the camera: it only costs a repeated alert
                logger.warning("camera %s: could not read recent alerts for the cooldown", camera.id, exc_info=True)
        self._counts: dict[str, float] = dict.fromkeys(_COUNTERS, 0)
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._frame_latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._last_seq: int | None = None
        self._warned_min_face = False
        self._roi = (
            RoiDetector(
                engine.detector,
                motion=camera.roi_motion,
                full_every_s=camera.full_detect_s,
                busy_stride=camera.roi_busy_stride,
            )
            if camera.detect_mode == "roi"
            else None
        )
        self._gate_thumb: np.ndarray | None = None  # motion gating: thumbnail of the last detected frame
        self._gate_faces: Faces | None = None
        self._gate_ts = 0.0

    # -- the per-frame step ------------------------------------------------------------------------

    def process(self, frame: Frame) -> list[Alert]:
        """Analyse one frame; returns the alerts it raised (already stored and published).

        Sightings of tracks that ended at this frame's time are stored and published too.
        """
        if frame.camera_id != self.camera.id:
            raise ValueError(f"frame of camera {frame.camera_id!r} given to the worker of {self.camera.id!r}")
        c = self._counts
        if self._last_seq is not None and frame.seq > self._last_seq + 1:
            c["frames_skipped"] += frame.seq - self._last_seq - 1
        self._last_seq = frame.seq
        c["frames"] += 1

        t0 = time.perf_counter()
        faces = self._roi_detect(frame) if self._roi is not None else self._gated_detect(frame)
        t1 = time.perf_counter()
        states = self.tracker.update(faces, frame.ts)
        ended = [s.track_id for s in self.tracker.ended]
        t2 = time.perf_counter()
        c["detect_s"] += t1 - t0
        c["track_s"] += t2 - t1
        c["faces"] += len(faces)
        for track_id in ended:  # first: their sightings must not depend on this frame's later stages
            self._end(track_id)

        t2 = time.perf_counter()
        chips = align.chips(frame.image, faces) if states else None
        states, known, check_s = self._check_identities(frame, chips, states)
        due = self._best_shots(frame, faces, chips, states, known)
        t3 = time.perf_counter()
        c["bestshot_s"] += t3 - t2 - check_s
        c["embed_s"] += check_s

        alerts: list[Alert] = []
        if due:
            todo = [ctx for ctx in due if ctx.embedded_shot is not ctx.best.shot]
            if todo:
                chips_due = np.stack([ctx.best.shot.chip for ctx in todo])  # type: ignore[union-attr]
                crops_due = (
                    np.stack([ctx.best.shot.model_crop for ctx in todo])  # type: ignore[union-attr,misc]
                    if self.engine.needs_crops
                    else None
                )
                for ctx, emb in zip(todo, self.engine.embed_chips(chips_due, crops=crops_due), strict=True):
                    ctx.embedding = emb
                    ctx.embedded_shot = ctx.best.shot
                    ctx.checked_ts = frame.ts
                c["embeds"] += len(todo)
                c["embed_batches"] += 1
            t4 = time.perf_counter()
            embs = np.stack([ctx.embedding for ctx in due])  # type: ignore[misc]
            # the quality of the shot each descriptor was computed from, for the matcher's quality gate
            shots = [ctx.embedded_shot for ctx in due]
            matches = self.matcher.match(embs, [s.quality if s is not None else 0.0 for s in shots])
            t5 = time.perf_counter()
            c["embed_s"] += t4 - t3
            c["match_s"] += t5 - t4
            for ctx, m in zip(due, matches, strict=True):
                if m is None:
                    continue
                c["matches"] += 1
                if ctx.match is None or m.similarity > ctx.match.similarity:
                    ctx.match = m
                alert = self._maybe_alert(ctx, m, frame)
                if alert is not None:
                    alerts.append(alert)
        self._frame_latencies.append(time.time() - frame.ts)
        return alerts

    def expire(self, now: float) -> list[Sighting]:
        """End the tracks unseen for longer than ``track_max_age_s`` at ``now`` (epoch s), e.g. while
        no frames arrive; returns their sightings (stored and published)."""
        return [s for st in self.tracker.expire(now) if (s := self._end(st.track_id)) is not None]

    def flush(self) -> list[Sighting]:
        """End every live track (the stream ended or the worker stops); returns their sightings."""
        ids = [st.track_id for st in self.tracker.flush()]
        ids += [t for t in self._tracks if t not in ids]  # none, unless a frame failed half-way
        return [s for t in ids if (s := self._end(t)) is not None]

    # -- the loop ------------------------------------------------------------------------------------

    def run(self, frames: FrameSource, stop: threading.Event, *, poll_s: float = 0.25) -> WorkerStats:
        """Analyse frames from ``frames`` until ``stop`` is set or the queue is closed and drained
        (the stream ended), then flush; returns the final stats.

        Every frame taken is analysed: choosing frames at ``camera.analysis_fps`` is the capture's job
        (by stream time, which a fast file replay does not share with wall time). A frame whose
        analysis raises is logged and counted, and the loop goes on. While no frame comes, tracks
        still end on time (wall clock, the clock of ``Frame.ts``). Stats are logged every
        ``watch.stats_interval_s``.
        """
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0 seconds, got {poll_s}")
        next_log = time.monotonic() + self.watch.stats_interval_s
        logger.info("camera %s: analysis started", self.camera.id)
        try:
            while not stop.is_set():
                try:
                    frame = frames.get(timeout=poll_s)
                except queue.Empty:
                    frame = None
                if frame is None:
                    if getattr(frames, "closed", False):
                        logger.info("camera %s: the stream ended", self.camera.id)
                        break
                    self.expire(time.time())
                else:
                    try:
                        self.process(frame)
                    except Exception:
                        self._counts["errors"] += 1
                        n = int(self._counts["errors"])
                        if n <= 10 or n % 100 == 0:
                            logger.exception(
                                "camera %s: analysis of frame %s failed (%s so far)", self.camera.id, frame.seq, n
                            )
                if time.monotonic() >= next_log:
                    next_log = time.monotonic() + self.watch.stats_interval_s
                    self._log_stats()
        finally:
            self.flush()
            self._log_stats()
            logger.info("camera %s: analysis stopped", self.camera.id)
        return self.stats()

    def stats(self) -> WorkerStats:
        """A snapshot of the counters (safe from any thread)."""
        counts = dict(self._counts)
        return WorkerStats(
            camera_id=self.camera.id,
            tracks_active=len(self._tracks),
            alert_latencies_s=tuple(self._latencies),
            frame_latencies_s=tuple(self._frame_latencies),
            **{k: (v if k.endswith("_s") else int(v)) for k, v in counts.items()},  # type: ignore[arg-type]
        )

    # -- stages --------------------------------------------------------------------------------------

    def _gated_detect(self, frame: Frame) -> Faces:
        """``_detect``, or with ``camera.motion_gate`` > 0 the last detected frame's faces when no block
        of the frame changed by the gate since then and it was detected under ``motion_max_skip_s`` ago.

        The change measure: the green channel sampled every ``w // 160`` pixels (~160x90 for 16:9,
        about 0.1 ms), split into 10x10 blocks; the largest block's mean absolute difference, 0-255.
        A face entering, leaving or moving changes its blocks by tens of levels; sensor and
        compression noise by a few. Static scenes (an empty corridor, people standing) then cost a
        thumbnail instead of a detection; a busy scene costs the same as without gating.
        """
        gate = self.camera.motion_gate
        if gate <= 0:
            return self._detect(frame.image)
        img = frame.image
        step = max(1, img.shape[1] // 160)
        thumb = img[::step, ::step, 1].astype(np.int16)
        last = self._gate_thumb
        if (
            last is not None
            and self._gate_faces is not None
            and last.shape == thumb.shape
            and frame.ts - self._gate_ts < self.camera.motion_max_skip_s
        ):
            h, w = (thumb.shape[0] // 10) * 10, (thumb.shape[1] // 10) * 10
            diff = np.abs(thumb[:h, :w] - last[:h, :w])
            change = float(diff.reshape(h // 10, 10, w // 10, 10).mean(axis=(1, 3)).max()) if h and w else 0.0
            if change < gate:
                self._counts["detections_gated"] += 1
                return self._gate_faces
        faces = self._detect(img)
        self._gate_thumb, self._gate_faces, self._gate_ts = thumb, faces, frame.ts
        return faces

    def _roi_detect(self, frame: Frame) -> Faces:
        """Region-of-interest detection (``camera.detect_mode == "roi"``, :mod:`sightline.video.roi`):
        changed blocks and windows around live tracks, or the whole frame when a full pass is due, at
        the same scale as :meth:`_detect`; the same size floor and full-resolution landmarks."""
        assert self._roi is not None
        image = frame.image
        scale = self.engine.detection_scale(image.shape, self.camera.detect_width)
        now = {st.track_id: st.xyxy for st in self.tracker.tracks}
        tracks = [(now[st.track_id], st.xyxy) for st in self.tracker.predicted(frame.ts) if st.track_id in now]
        found, full = self._roi.detect(image, frame.ts, tracks, scale)
        self._counts["detections_full" if full else "detections_roi"] += 1
        min_px = max(self.camera.min_face_px, self.engine.config.min_face_px / scale)
        found = found.take(np.minimum(found.widths, found.heights) >= min_px)
        return self.engine.landmarker.landmarks(image, found)

    def _detect(self, image: Image) -> Faces:
        """Faces in full-frame pixels with full-resolution landmarks, shorter side >= min_face_px.

        The engine scans a copy ``detect_width`` wide; its own ``min_face_px`` applies at that
        scale, so the floor in frame pixels is the larger of the two.
        """
        scale = self.engine.detection_scale(image.shape, self.camera.detect_width)
        engine_min = self.engine.config.min_face_px / scale
        if scale != 1.0 and not self._warned_min_face:
            self._warned_min_face = True
            if engine_min > self.camera.min_face_px:
                logger.warning(
                    "camera %s: frames %sx%s are detected at %s px wide, so faces under %.0f px are missed "
                    "(camera min_face_px %.0f); raise detect_width or lower the engine's min_face_px",
                    self.camera.id,
                    image.shape[1],
                    image.shape[0],
                    self.camera.detect_width,
                    engine_min,
                    self.camera.min_face_px,
                )
        return self.engine.detect(
            image, width=self.camera.detect_width, min_face_px=max(self.camera.min_face_px, engine_min)
        )

    def _check_identities(
        self, frame: Frame, chips: Image | None, states: list[TrackState]
    ) -> tuple[list[TrackState], dict[int, F32], float]:
        """Embed the chips of the tracks continued after a gap or not checked for
        ``watch.identity_check_s`` and split those whose face is clearly not the track's person
        (similarity to the track's embedding below ``same_person_similarity``).

        chips: (N, 150, 150, 3) of this frame's faces. Returns the states with each split one
        replaced by its new track's, the new tracks' descriptors by ``det_index`` (their first
        embedding, already computed), and the seconds spent embedding.
        """
        every = self.watch.identity_check_s
        checks = []
        for k, st in enumerate(states):
            ctx = self._tracks.get(st.track_id)
            if ctx is not None and ctx.embedding is not None and (st.missed > 0 or frame.ts - ctx.checked_ts >= every):
                checks.append((k, ctx))
        if not checks or chips is None:
            return states, {}, 0.0
        t0 = time.perf_counter()
        idx = [states[k].det_index for k, _ in checks]
        crops = self.engine.model_crops(frame.image, np.asarray([states[k].xyxy for k, _ in checks], np.float32))
        embs = self.engine.embed_chips(np.stack([chips[i] for i in idx]), crops=crops)  # type: ignore[index]
        check_s = time.perf_counter() - t0
        self._counts["identity_checks"] += len(checks)
        out = list(states)
        known: dict[int, F32] = {}
        for (k, ctx), emb in zip(checks, embs, strict=True):
            ctx.checked_ts = frame.ts
            similarity = float(emb @ ctx.embedding)  # type: ignore[operator]
            if similarity >= self.same_person_similarity:
                continue
            st = states[k]
            new = self.tracker.split(st)
            self._counts["identity_splits"] += 1
            logger.info(
                "camera %s: track %s continued by another face (similarity %.3f < %.3f, %s frames missed): "
                "ended, the face starts track %s",
                self.camera.id,
                st.track_id,
                similarity,
                self.same_person_similarity,
                st.missed,
                new.track_id,
            )
            self._end(st.track_id)
            out[k] = new
            known[new.det_index] = emb  # type: ignore[index]
        return out, known, check_s

    def _best_shots(
        self, frame: Frame, faces: Faces, chips: Image | None, states: Sequence[TrackState], known: dict[int, F32]
    ) -> list[_TrackCtx]:
        """Offer each face to its track's best shot; returns the tracks due for (re-)embedding and
        matching. A new track with a descriptor in ``known`` (by det_index) is only matched."""
        if not states:
            return []
        assert faces.kps is not None and chips is not None
        gain = self.watch.reembed_quality_gain
        due = []
        for st in states:
            i = st.det_index
            ctx = self._tracks.get(st.track_id)
            if ctx is None:
                ctx = self._tracks[st.track_id] = _TrackCtx(st.track_id, frame.ts, BestShot())
                self._counts["tracks_started"] += 1
            ctx.frames += 1
            ctx.last_ts = frame.ts
            ctx.xyxy = st.xyxy
            x1, y1, x2, y2 = st.xyxy
            q = quality.assess(min(x2 - x1, y2 - y1), faces.kps[i], chips[i])
            crop_fn = None
            if self.engine.needs_crops:
                box = np.asarray([st.xyxy], np.float32)
                crop_fn = lambda box=box: self.engine.model_crops(frame.image, box)[0]  # noqa: E731
            ctx.best.offer(frame.image, st.xyxy, q, chips[i], frame.ts, crop_fn)
            if ctx.embedding is None and i in known:  # split off: the identity check embedded this chip
                ctx.embedding, ctx.embedded_shot = known[i], ctx.best.shot
                due.append(ctx)
                continue
            done = ctx.embedded_shot
            if done is None or (ctx.best.shot is not done and ctx.best.quality >= done.quality + gain - 1e-9):
                due.append(ctx)
        return due

    def _maybe_alert(self, ctx: _TrackCtx, m: Match, frame: Frame) -> Alert | None:
        if m.person_id in ctx.alerted:
            return None
        ctx.alerted.add(m.person_id)
        last = self._last_alert.get(m.person_id)
        if last is not None and 0 <= frame.ts - last < self.watch.alert_cooldown_s:
            self._counts["alerts_suppressed"] += 1
            logger.info(
                "camera %s: alert for %s (track %s) suppressed, %.1f s after the last one (cooldown %s s)",
                self.camera.id,
                m.name,
                ctx.track_id,
                frame.ts - last,
                self.watch.alert_cooldown_s,
            )
            return None
        self._last_alert[m.person_id] = frame.ts
        if len(self._last_alert) > 4096:  # forget persons whose cooldown is long over
            horizon = frame.ts - self.watch.alert_cooldown_s
            self._last_alert = {p: t for p, t in self._last_alert.items() if t >= horizon}
        shot = ctx.best.shot
        assert shot is not None
        alert = Alert(
            camera_id=self.camera.id,
            track_id=ctx.track_id,
            match=m,
            ts=time.time(),
            frame_ts=frame.ts,
            xyxy=ctx.xyxy,
            crop_jpeg=shot.crop_jpeg,
            quality=shot.quality,
        )
        self._latencies.append(alert.ts - alert.frame_ts)
        self._counts["alerts"] += 1
        logger.info(
            "camera %s: ALERT %s (person %s, watchlist %s, similarity %.3f >= %.3f) on track %s",
            self.camera.id,
            m.name,
            m.person_id,
            m.watchlist,
            m.similarity,
            m.threshold,
            ctx.track_id,
        )
        published = self._emit(alert)  # carries the stored row id
        return published if isinstance(published, Alert) else alert

    def _end(self, track_id: int) -> Sighting | None:
        ctx = self._tracks.pop(track_id, None)
        if ctx is None or ctx.best.shot is None:
            return None
        keep = ctx.match is not None or self.camera.keep_unmatched_sightings
        sighting = Sighting(
            camera_id=self.camera.id,
            track_id=ctx.track_id,
            start_ts=ctx.start_ts,
            end_ts=ctx.last_ts,
            frames=ctx.frames,
            quality=max(0.0, min(1.0, ctx.best.quality)),
            match=ctx.match,
            crop_jpeg=ctx.best.shot.crop_jpeg if keep else None,
            embedding=ctx.embedding if keep else None,
        )
        # Drop this track's pixels and descriptor now (the context is unreachable after pop).
        ctx.best.shot = None
        ctx.embedding = None
        self._counts["sightings"] += 1
        published = self._emit(sighting)  # carries the stored row id
        return published if isinstance(published, Sighting) else sighting

    def _emit(self, record: Alert | Sighting) -> Alert | Sighting:
        """Store ``record`` (when there are stores), then publish it with its row id (``id``; None when
        not stored or storing failed) so subscribers such as the console can link to the stored row.
        Returns the published record."""
        from dataclasses import replace  # local: this method is the only part of the file the events code owns

        t0 = time.perf_counter()
        if self.stores is not None:
            try:
                if isinstance(record, Alert):
                    row_id = self.stores.add_alert(record)
                else:
                    model = self.engine.model if record.embedding is not None else None
                    row_id = self.stores.add_sighting(record, model=model)
                record = replace(record, id=row_id)
            except Exception:
                self._counts["store_errors"] += 1
                logger.exception("camera %s: storing a %s failed", self.camera.id, type(record).__name__)
        if self.bus is not None:
            self.bus.publish(record)
        self._counts["emit_s"] += time.perf_counter() - t0
        return record

    def _log_stats(self) -> None:
        s = self.stats()
        per = 1000.0 / max(1, s.frames)
        logger.info(
            "camera %s: %s frames (%s not seen), %s faces, %s tracks (%s active), %s embeds, "
            "%s alerts (%s suppressed), %s sightings, %s errors; ms/frame detect %.1f track %.2f "
            "bestshot %.1f embed %.1f match %.2f; alert latency max %s s",
            s.camera_id,
            s.frames,
            s.frames_skipped,
            s.faces,
            s.tracks_started,
            s.tracks_active,
            s.embeds,
            s.alerts,
            s.alerts_suppressed,
            s.sightings,
            s.errors,
            s.detect_s * per,
            s.track_s * per,
            s.bestshot_s * per,
            s.embed_s * per,
            s.match_s * per,
            "-" if s.alert_latency_max_s is None else f"{s.alert_latency_max_s:.3f}",
        )
