"""Everything a running server uses, built once from its config and handed to ``create_app``.

    services = Services.open(ServerConfig(data_dir=Path("/var/lib/sightline")))
    app = create_app(config, services)        # the lifespan starts the cameras, notifier and retention job
    ...
    services.close()

Nothing here is a module global: tests build as many ``Services`` as they like (a fake engine may be
injected with ``engine=``). The camera supervisor runs every started camera as its own
``sightline.video.supervisor.Supervisor`` (capture + analysis threads), so a camera can be started,
stopped or re-configured alone while the others keep running; they share one watchlist matcher.
Background work besides the cameras: the notification outbox worker (``Notifier``, configured by
``config.notify``, woken by every alert published on the bus) and the retention job (``RetentionJob``,
``config.retention``: purges old alerts and sightings, audited as ``retention.purge``).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sightline.config import CameraConfig, EngineConfig, NotifyConfig, ServerConfig, WatchConfig
from sightline.events import EventBus, EventStores
from sightline.events.notify import Notifier
from sightline.gallery import Gallery
from sightline.server.auth import LoginThrottle, RateLimiter, SessionStore, TokenStore, UserStore
from sightline.server.metrics import CameraSample, ServerMetrics

if TYPE_CHECKING:
    from sightline.gallery.service import EngineLike
    from sightline.gallery.store import GalleryStore
    from sightline.governance.audit import AuditLog
    from sightline.governance.retention import RetentionJob
    from sightline.video.supervisor import CameraReport, Supervisor
    from sightline.vision.engine import FaceEngine

logger = logging.getLogger(__name__)

#: Longest wait for one frame of a camera for a snapshot, s.
SNAPSHOT_TIMEOUT_S = 8.0


class CameraError(ValueError):
    """A camera request that cannot be carried out (unknown camera, unreadable input)."""


@dataclass(frozen=True)
class CameraState:
    """What the console shows about a camera. since: epoch s; fps: decode rate, frames/s."""

    state: str
    running: bool
    last_error: str | None = None
    since: float | None = None
    fps: float = 0.0
    dropped: int = 0
    analysed: int = 0
    alerts: int = 0
    worker_restarts: int = 0
    alert_latency_max_s: float | None = None


class CameraSupervisor:
    """Starts and stops the stored cameras one by one, each under its own ``Supervisor``.

    engine_factory: builds one face engine per camera worker (engines are not thread-safe).
    recorder:       where workers store alerts and sightings (``EventStores``).
    """

    def __init__(
        self,
        gallery: Gallery,
        bus: EventBus,
        recorder: EventStores,
        engine_factory: Callable[[], FaceEngine],
        watch: WatchConfig,
    ) -> None:
        from sightline.video.cameras import CameraStore
        from sightline.video.matcher import WatchlistMatcher

        self.gallery = gallery
        self.bus = bus
        self.recorder = recorder
        self.engine_factory = engine_factory
        self.watch = watch
        self.cameras = CameraStore(gallery.store)
        self.matcher = WatchlistMatcher(
            gallery, None, min_alert_quality=watch.min_alert_quality, templates=watch.templates
        )
        self._running: dict[str, Supervisor] = {}
        self._lock = threading.Lock()

    def start(self, camera_id: str) -> bool:
        """Start a stored camera; False when it was already running. Raises ``CameraError`` if unknown."""
        from sightline.video.supervisor import Supervisor

        stored = self.cameras.get(camera_id)
        if stored is None:
            raise CameraError(f"no camera with id {camera_id!r}")
        with self._lock:
            sup = self._running.get(camera_id)
            if sup is not None and not sup.wait(0):
                return False
            sup = Supervisor(
                [stored.config],
                self.engine_factory,
                self.gallery,
                self.bus,
                self.watch,
                self.recorder,
                matcher=self.matcher,
            )
            sup.start()
            self._running[camera_id] = sup
        logger.info("camera %s started", camera_id)
        return True

    def stop(self, camera_id: str, timeout_s: float = 5.0) -> bool:
        """Stop a camera; False when it was not running."""
        with self._lock:
            sup = self._running.pop(camera_id, None)
        if sup is None:
            return False
        sup.stop(timeout_s)
        logger.info("camera %s stopped", camera_id)
        return True

    def start_all(self) -> list[str]:
        """Start every stored camera (a camera whose config cannot be read is logged and skipped)."""
        started = []
        for cam in self.cameras.list():
            try:
                if self.start(cam.id):
                    started.append(cam.id)
            except Exception:
                logger.exception("camera %s could not be started", cam.id)
        return started

    def stop_all(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            sups, self._running = list(self._running.values()), {}
        for sup in sups:
            sup.stop(timeout_s)

    def running(self, camera_id: str) -> bool:
        with self._lock:
            sup = self._running.get(camera_id)
        return sup is not None and not sup.wait(0)

    def report(self, camera_id: str) -> CameraReport | None:
        with self._lock:
            sup = self._running.get(camera_id)
        if sup is None:
            return None
        reports = sup.status()
        return reports[0] if reports else None

    def state(self, camera_id: str) -> CameraState:
        r = self.report(camera_id)
        if r is None:
            return CameraState(state="stopped", running=False)
        return CameraState(
            state=r.status.state,
            running=r.worker_alive or r.status.state not in ("ended", "failed", "stopped"),
            last_error=r.status.last_error or r.worker_error,
            since=r.status.since,
            fps=round(float(r.capture.fps), 2),
            dropped=int(r.capture.dropped),
            analysed=int(r.worker.frames),
            alerts=int(r.worker.alerts),
            worker_restarts=int(r.worker_restarts),
            alert_latency_max_s=r.worker.alert_latency_max_s,
        )

    def samples(self) -> list[CameraSample]:
        out = []
        for cam in self.cameras.list():
            st = self.state(cam.id)
            r = self.report(cam.id)
            out.append(
                CameraSample(
                    camera_id=cam.id,
                    state=st.state,
                    running=st.running,
                    decode_fps=st.fps,
                    decoded=0 if r is None else int(r.capture.decoded),
                    analysed=st.analysed,
                    dropped=st.dropped,
                    alerts=st.alerts,
                    alert_latency_max_s=st.alert_latency_max_s,
                    worker_restarts=st.worker_restarts,
                    frame_latency_mean_s=_mean(r.worker.frame_latencies_s) if r is not None else None,
                )
            )
        return out

    def snapshot(self, camera_id: str, *, max_side: int = 1280, timeout_s: float = SNAPSHOT_TIMEOUT_S) -> bytes:
        """A current frame of the camera as JPEG bytes (at most ``max_side`` pixels wide or high).

        Opens the camera's input separately for one frame (a second RTSP session; a file's first frame),
        so it works whether or not the camera is running. Raises ``CameraError`` when no frame came
        within ``timeout_s`` or the input cannot be opened."""
        from PIL import Image as PILImage

        from sightline.video.sources import SourceError, open_source

        stored = self.cameras.get(camera_id)
        if stored is None:
            raise CameraError(f"no camera with id {camera_id!r}")
        cfg: CameraConfig = stored.config.model_copy(
            update={"loop": False, "realtime": False, "read_timeout_s": min(stored.config.read_timeout_s, timeout_s)}
        )
        result: dict[str, Any] = {}

        def grab() -> None:
            try:
                src = open_source(cfg)
                try:
                    for _pts, rgb in src:
                        result["rgb"] = rgb
                        break
                finally:
                    src.close()
            except SourceError as e:
                result["error"] = str(e)
            except Exception as e:  # a broken input must not take the request down with a 500
                result["error"] = f"{type(e).__name__}: {e}"

        t = threading.Thread(target=grab, name=f"snapshot-{camera_id}", daemon=True)
        t.start()
        t.join(timeout_s)
        if "rgb" not in result:
            why = result.get("error", f"timed out after {timeout_s} s")
            raise CameraError(f"camera {camera_id!r}: no frame ({why})")
        im = PILImage.fromarray(result["rgb"])
        im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        return buf.getvalue()


def _mean(values: tuple[float, ...]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class Services:
    """The server's dependencies (see the module docstring). ``retention``: the background purge job."""

    config: ServerConfig
    gallery: Gallery
    engine: EngineLike
    stores: EventStores
    bus: EventBus
    supervisor: CameraSupervisor
    audit: AuditLog
    users: UserStore
    sessions: SessionStore
    tokens: TokenStore
    login_throttle: LoginThrottle
    search_limiter: RateLimiter
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    notifier: Notifier | None = None
    retention: RetentionJob | None = None
    started_at: float = field(default_factory=time.time)

    @classmethod
    def open(
        cls,
        config: ServerConfig,
        *,
        engine: EngineLike | None = None,
        engine_factory: Callable[[], FaceEngine] | None = None,
    ) -> Services:
        """Open the gallery in ``config.data_dir`` and build everything over it.

        engine:         the engine for searches and enrollment (default: ``FaceEngine.from_config(config.engine)``).
        engine_factory: builds one engine per camera worker (default: the configured engine with one
                        thread and no fallback detector, as ``sightline watch`` does).
        """
        from sightline.governance.audit import AuditLog
        from sightline.governance.retention import RetentionJob
        from sightline.vision.engine import FaceEngine

        if engine is None:
            engine = FaceEngine.from_config(config.engine)
        if engine_factory is None:
            cam_cfg: EngineConfig = config.engine.model_copy(update={"threads": 1, "fallback_detector": "none"})

            def engine_factory() -> FaceEngine:
                return FaceEngine.from_config(cam_cfg)

        imaging = config.imaging.model_copy(
            update={
                "max_pixels": min(config.imaging.max_pixels, config.max_pixels),
                "max_file_bytes": min(config.imaging.max_file_bytes, config.max_upload_bytes),
            }
        )
        from sightline.gallery.store import GalleryStore

        # GalleryStore.open plugs in the governance cipher (encryption at rest), from config.key_file when set.
        gallery = Gallery(GalleryStore.open(config.data_dir, key_file=config.key_file), engine, imaging)
        store = gallery.store
        stores = EventStores(store)
        bus = EventBus()
        audit = AuditLog(store, config=config.audit)
        return cls(
            config=config,
            gallery=gallery,
            engine=engine,
            stores=stores,
            bus=bus,
            supervisor=CameraSupervisor(gallery, bus, stores, engine_factory, config.watch),
            audit=audit,
            users=UserStore(store),
            sessions=SessionStore(store, idle_s=config.session_idle_s, max_s=config.session_max_s),
            tokens=TokenStore(store),
            login_throttle=LoginThrottle(config.login_max_failures, config.login_window_s),
            search_limiter=RateLimiter(config.search_rate_per_min, config.search_burst),
            notifier=_notifier(store, config.notify, bus),
            retention=RetentionJob(store, config.retention, audit=audit),
        )

    def start(self) -> None:
        """Start the background work: the notifier (woken by every alert published on ``bus``), the
        retention job (a purge now, then every ``config.retention.purge_interval_s``) and, with
        ``config.start_cameras``, the stored cameras. A part that fails to start is logged; the rest runs.
        The audit log's signed checkpoints are written every ``config.audit.checkpoint_every_s`` meanwhile."""
        try:
            self.audit.start_checkpoints()
        except Exception:
            logger.exception("audit checkpoint thread could not be started; checkpoints follow the entry count")
        if self.notifier is not None:
            try:
                self.notifier.start()
            except Exception:
                logger.exception("notifier could not be started; alerts are stored but not sent")
        if self.retention is not None:
            try:
                self.retention.start()
            except Exception:
                logger.exception("retention job could not be started; old events are not purged")
        if self.config.start_cameras:
            started = self.supervisor.start_all()
            if started:
                logger.info("started %s stored camera(s): %s", len(started), ", ".join(started))

    def stop(self) -> None:
        """Stop the cameras, the notifier and the retention job (idempotent)."""
        self.supervisor.stop_all()
        if self.notifier is not None:
            try:
                self.notifier.stop()
            except Exception:
                logger.exception("notifier did not stop cleanly")
        if self.retention is not None:
            self.retention.stop()
        self.audit.stop_checkpoints()  # the shutdown checkpoint: anchors the last entries (never raises)

    def close(self) -> None:
        self.stop()
        self.gallery.close()


def _notifier(store: GalleryStore, config: NotifyConfig, bus: EventBus) -> Notifier | None:
    """The outbox worker, or None when it cannot be built (alerts are then stored but not sent)."""
    try:
        return Notifier(store, config, bus=bus)
    except Exception:
        logger.exception("notifier could not be built; alerts are stored but not sent")
        return None
