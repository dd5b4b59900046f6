"""Run many cameras at once: per camera a capture thread and an analysis thread, restarted on a crash.

    sup = Supervisor(cameras, engine_factory, gallery, bus, watch, stores, watchlists=["wanted"])
    sup.start()
    sup.status()        # list[CameraReport]: capture state, capture counters, worker counters
    sup.stop()          # stops every camera and joins every thread (a few seconds at most)

Per camera: a :class:`~sightline.video.capture.CameraCapture` thread (open, decode, decimate to
``analysis_fps``, drop-oldest queue, reconnect with backoff) feeds a worker thread running
:meth:`CameraWorker.run <sightline.video.worker.CameraWorker.run>` with its OWN ``FaceEngine``
from ``engine_factory`` (engines are not thread-safe). One :class:`WatchlistMatcher` (thread-safe) is
shared. A camera that is dead, unreachable or failed never stops the others: its capture retries
on its own thread; a worker that raises out of ``run`` (a bug, an engine that failed to load) is
logged, counted in ``CameraReport.worker_restarts`` and restarted after a backoff
(``WORKER_RESTART_INITIAL_S`` doubling to ``WORKER_RESTART_MAX_S``) with a fresh worker (tracks start
over, alert cooldowns carry over from the stored alerts; a fresh engine when the engine itself failed to
build). A worker whose camera ended (a file without loop) or failed for good finishes normally and is
not restarted.

Threads, not processes (measured on this 2-core machine): the heavy calls release the GIL -- FFmpeg
demuxing, decoding and swscale in PyAV, dlib's HOG detector and landmarks, onnxruntime's descriptor.
``FaceEngine.detect`` on a 640x360 frame took 57.9 ms on one thread and 28.4 ms per frame in
aggregate on two threads (1.96 cores busy, one engine per thread), and ``sightline bench streams``
drives one process to 1.82 of 2 cores with 6 cameras (12 threads plus FFmpeg's). What stays under
the GIL is the per-frame Python glue (tracking, best-shot bookkeeping, 1-2 ms per analysed frame,
and the capture loop per decoded frame), a small share at 5 analysed frames per second per camera.
Processes would add a copy of every analysed frame through shared memory and one engine load per
process for no measured gain, so threads are used. When several cameras share few cores, give each
worker's engine ``EngineConfig.threads=1`` (``sightline watch`` does) so onnxruntime does not
oversubscribe. The machine's share of cores can vary (shared hosts): one run measured only ~1.1 cores
busy at 4 streams while a rerun minutes later measured 1.45 and kept up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sightline.config import CameraConfig, WatchConfig
from sightline.video.capture import CameraCapture, CameraStatus, CaptureStats
from sightline.video.matcher import WatchlistMatcher
from sightline.video.worker import CameraWorker, EventRecorder, Publisher, WorkerStats

if TYPE_CHECKING:
    from sightline.gallery.service import Gallery
    from sightline.vision.engine import FaceEngine

logger = logging.getLogger(__name__)

#: First delay before a crashed worker is restarted, s (doubles per crash in a row, capped).
WORKER_RESTART_INITIAL_S = 0.5
WORKER_RESTART_MAX_S = 30.0
#: A worker that ran this long without crashing resets the restart backoff, s.
WORKER_STABLE_S = 60.0


@dataclass(frozen=True)
class CameraReport:
    """One camera's state in a :class:`Supervisor`.

    status:          the capture's state (connecting / live / reconnecting / failed / ended / stopped).
    capture:         decode counters: decoded, skipped, enqueued, dropped (queue full), corrupt, fps.
    worker:          analysis counters of the current worker (they restart from 0 after a crash).
    worker_alive:    whether the analysis thread is running.
    worker_restarts: how many times the worker crashed and was restarted.
    worker_error:    the last crash, as "Type: message", or None.
    backlog:         frames waiting in the camera's queue now (at most ``queue_frames``).
    """

    camera_id: str
    status: CameraStatus
    capture: CaptureStats
    worker: WorkerStats
    worker_alive: bool
    worker_restarts: int
    worker_error: str | None
    backlog: int


class _Camera:
    """One supervised camera (internal): its capture, its worker thread and restart bookkeeping."""

    def __init__(self, cfg: CameraConfig, capture: CameraCapture) -> None:
        self.cfg = cfg
        self.capture = capture
        self.worker: CameraWorker | None = None
        self.thread: threading.Thread | None = None
        self.restarts = 0
        self.error: str | None = None


class Supervisor:
    """Starts, watches and stops the capture and analysis threads of several cameras.

    cameras:        the cameras; ids must be unique.
    engine_factory: builds one face engine; called once per worker (and again after an engine
                    failure), e.g. ``lambda: FaceEngine.from_config(cfg.engine)``.
    gallery:        the gallery the watchlists are matched against.
    bus:            where alerts, sightings and camera status changes are published (None: nowhere).
    watch:          tracking, best-shot and alert rules shared by all cameras.
    stores:         where alerts and sightings are stored (None: not stored).
    watchlists:     names of the watchlists to match (None: every watchlist).
    matcher:        a matcher to share instead of building one from ``gallery`` and ``watchlists``.
    """

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        engine_factory: Callable[[], FaceEngine],
        gallery: Gallery,
        bus: Publisher | None,
        watch: WatchConfig | None = None,
        stores: EventRecorder | None = None,
        *,
        watchlists: Collection[str] | None = None,
        matcher: WatchlistMatcher | None = None,
    ) -> None:
        ids = [c.id for c in cameras]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"cameras must have unique ids; repeated: {', '.join(dup)}")
        if not cameras:
            raise ValueError("cameras must name at least one camera")
        self.cameras = tuple(cameras)
        self.engine_factory = engine_factory
        self.gallery = gallery
        self.bus = bus
        self.watch = watch or WatchConfig()
        self.stores = stores
        self.matcher = (
            matcher
            if matcher is not None
            else WatchlistMatcher(
                gallery, watchlists, min_alert_quality=self.watch.min_alert_quality, templates=self.watch.templates
            )
        )
        self._stop = threading.Event()
        self._cams: dict[str, _Camera] = {}
        self._started = False
        self._lock = threading.Lock()

    # -- control ---------------------------------------------------------------------------------------

    def start(self) -> Supervisor:
        """Start every camera's capture and worker threads (once). Returns self."""
        if self._started:
            raise RuntimeError("Supervisor.start() called twice")
        self._started = True
        self.matcher.refresh()  # fail here, not in every worker, when the gallery is unusable
        on_status = self.bus.publish if self.bus is not None else None
        for cfg in self.cameras:
            cam = _Camera(cfg, CameraCapture(cfg, on_status=on_status))
            self._cams[cfg.id] = cam
            cam.thread = threading.Thread(target=self._worker_loop, args=(cam,), name=f"worker-{cfg.id}", daemon=True)
            cam.thread.start()
            cam.capture.start()
        logger.info("supervisor: %s camera(s) started", len(self._cams))
        return self

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop every camera and join the threads, waiting up to ``timeout_s`` in all; True when every
        worker finished (a capture blocked in a network read exits by itself within its read timeout)."""
        self._stop.set()
        stoppers = [
            threading.Thread(target=c.capture.stop, name=f"stop-{c.cfg.id}", daemon=True) for c in self._cams.values()
        ]
        for t in stoppers:
            t.start()
        deadline = time.monotonic() + timeout_s
        for t in stoppers:
            t.join(max(0.0, deadline - time.monotonic()))
        ok = True
        for c in self._cams.values():
            if c.thread is not None:
                c.thread.join(max(0.0, deadline - time.monotonic()))
                if c.thread.is_alive():
                    ok = False
                    logger.warning("camera %s: worker thread still running after stop", c.cfg.id)
        logger.info("supervisor: stopped")
        return ok

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every worker has finished (all cameras ended or failed); True when they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for c in self._cams.values():
            if c.thread is not None:
                c.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if c.thread.is_alive():
                    return False
        return True

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation ----------------------------------------------------------------------------------

    def status(self) -> list[CameraReport]:
        """One report per camera, in the order given (safe from any thread)."""
        out = []
        for c in self._cams.values():
            w = c.worker
            out.append(
                CameraReport(
                    camera_id=c.cfg.id,
                    status=c.capture.status(),
                    capture=c.capture.stats(),
                    worker=w.stats() if w is not None else WorkerStats(camera_id=c.cfg.id),
                    worker_alive=c.thread is not None and c.thread.is_alive(),
                    worker_restarts=c.restarts,
                    worker_error=c.error,
                    backlog=len(c.capture.queue),
                )
            )
        return out

    # -- the worker thread ----------------------------------------------------------------------------

    def _worker_loop(self, cam: _Camera) -> None:
        engine: FaceEngine | None = None  # stays None while the factory fails: tried again on restart
        crashes_in_row = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if engine is None:
                    engine = self.engine_factory()
                worker = CameraWorker(cam.cfg, engine, self.matcher, self.bus, self.watch, self.stores)
                cam.worker = worker
                worker.run(cam.capture.queue, self._stop)
                return  # stopped, or the stream ended / failed for good (queue closed)
            except Exception as e:
                cam.restarts += 1
                cam.error = f"{type(e).__name__}: {e}"
                crashes_in_row = 1 if time.monotonic() - started > WORKER_STABLE_S else crashes_in_row + 1
                delay = min(WORKER_RESTART_MAX_S, WORKER_RESTART_INITIAL_S * 2 ** (crashes_in_row - 1))
                logger.exception(
                    "camera %s: analysis worker crashed (restart %s in %.1f s)", cam.cfg.id, cam.restarts, delay
                )
                self._stop.wait(delay)
