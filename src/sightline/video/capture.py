"""Per-camera capture: a thread that opens the camera, decodes, decimates and hands frames to analysis.

::

    cap = CameraCapture(cam_cfg, on_status=bus_publish)   # creates its FrameQueue(cfg.queue_frames)
    cap.start()
    frame = cap.queue.get(timeout=1.0)                    # in the analysis thread/process
    cap.stats(), cap.status()
    cap.stop()

One thread per camera runs open -> decode -> decimate -> put. PyAV releases the GIL inside FFmpeg
(demuxing, decoding, swscale), so decoding in threads runs in parallel with analysis. Measured on a
2-core VM: a thread decoding 1280x720 H.264 (3 Mbit/s, 420-670 frames/s flat out, with RGB
conversion) left a concurrent pure-Python thread at 91-100 % of its throughput, the worst pause
between its 1 ms sleeps 2-6 ms (the 9 % is CPU contention from 2 decoder threads on 2 cores, not
the GIL).

Decimation. Every frame is decoded (H.264 needs its references), but only frames due on the analysis
clock (:class:`AnalysisClock`, ``CameraConfig.analysis_fps``, default 5/s) are converted to RGB and
queued: the queue holds only frames to analyse. The clock runs on stream timestamps when there are
any (so a file decoded faster than real time is still sampled at 5 per stream-second) and on the
wall clock otherwise (MJPEG).

Latency wins over completeness: :class:`FrameQueue` is bounded (``queue_frames``, default 2) and a
put on a full queue drops the *oldest* frame and counts it.

Failures never stop other cameras: each camera has its own thread, and any error (open failure, read
timeout, end of a network stream, broken connection, even an unexpected exception) leads to a
reconnect after an exponential backoff (``reconnect_initial_s`` doubling up to ``reconnect_max_s``,
-10 % jitter so cameras behind one recorder do not retry in lockstep); the backoff restarts once a
frame has been decoded again. States (:class:`CameraStatus`):

    connecting -> live -> reconnecting -> live ...     (network, devices, looping files)
    connecting -> live -> ended                          (a file without loop reached its end)
    any -> failed                                        (retrying cannot help: missing file, not a video)
    any -> stopped                                       (stop() was called)

The queue is closed when the capture ends, fails or is stopped, so the consumer can finish.

stop() returns within ``join_timeout_s`` (2 s). It interrupts backoff waits and realtime pacing at
once; a thread blocked inside FFmpeg waiting for data on a silent stream is released by the read
timeout (``read_timeout_s``) at the latest -- FFmpeg offers no safe way to abort a read from another
thread (closing the container under it would crash). Such a thread is a daemon, never touches the
queue after stop(), and closes its input when the read returns.
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sightline.config import CameraConfig
from sightline.types import Frame
from sightline.video.sources import SourceError, VideoSource, backoff_delay, open_source, redact_url

logger = logging.getLogger(__name__)

CaptureState = Literal["connecting", "live", "reconnecting", "failed", "ended", "stopped"]
#: States after which the capture thread has finished.
TERMINAL_STATES: frozenset[str] = frozenset({"failed", "ended", "stopped"})
#: Reconnect delays are multiplied by a random factor in [1 - JITTER, 1].
BACKOFF_JITTER = 0.1


@dataclass(frozen=True)
class CameraStatus:
    """Where a camera's capture stands.

    state:      see the module docstring for the transitions.
    since:      when the camera entered this state, epoch seconds (time.time()).
    last_error: the most recent error (kept after recovery, for the UI), or None.
    reconnects: how many times the input was reopened after a failure.
    retry_in_s: while 'reconnecting': the backoff delay chosen before the next attempt, s.
    """

    camera_id: str
    state: CaptureState
    since: float
    last_error: str | None = None
    reconnects: int = 0
    retry_in_s: float | None = None


@dataclass(frozen=True)
class CaptureStats:
    """Frame counters of one camera since start().

    decoded:         frames decoded (all of them, analysed or not).
    skipped:         decoded frames not due on the analysis clock (never queued).
    enqueued:        frames put on the queue for analysis.
    dropped:         queued frames discarded unanalysed because the queue was full (oldest first).
    corrupt_packets: packets the decoder or demuxer rejected and skipped.
    fps:             decode rate over the last measuring window (about 1 s), frames/s.
    reconnects:      times the input was reopened.
    """

    camera_id: str
    decoded: int
    skipped: int
    enqueued: int
    dropped: int
    corrupt_packets: int
    fps: float
    reconnects: int


class FrameQueue:
    """A bounded, thread-safe frame queue that drops the oldest frame when full.

    put() never blocks: when ``maxsize`` frames are waiting, the oldest is discarded and counted in
    :attr:`dropped`. get() blocks up to ``timeout`` seconds and raises ``queue.Empty`` when nothing
    arrived, or at once when the queue is closed and empty. Use one queue per camera so the counters
    are per camera.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.got = 0

    def put(self, frame: Frame) -> int:
        """Append ``frame``; returns how many old frames were dropped to make room (0 or more).

        A put on a closed queue is ignored (returns 0).
        """
        with self._cond:
            if self._closed:
                return 0
            n = 0
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                n += 1
            self._items.append(frame)
            self.put_count += 1
            self.dropped += n
            self._cond.notify()
            return n

    def get(self, timeout: float | None = None) -> Frame:
        """The oldest waiting frame; blocks up to ``timeout`` s (None: forever, until close())."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise queue.Empty
            if not self._items:
                raise queue.Empty
            self.got += 1
            return self._items.popleft()

    def close(self) -> None:
        """No more frames will come: wakes waiting get()s; frames already queued can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class AnalysisClock:
    """Decides which frames are analysed: at most ``fps`` per second of stream (or wall) time.

    due(t) is True for the first frame and then for each frame at or after the next slot
    (slots ``1/fps`` apart, 1 ms tolerance so 25 fps in gives exactly every 5th frame at 5 fps).
    After a gap longer than a slot the clock restarts at the frame; a timestamp jumping back more than
    one second (stream restart) restarts it too.
    """

    TOLERANCE_S = 1e-3

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self._next: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        self._next = None
        self._last = None

    def due(self, t: float) -> bool:
        if self._last is not None and t < self._last - 1.0:
            self._next = None
        self._last = t
        if self._next is None or t >= self._next - self.TOLERANCE_S:
            nxt = (t if self._next is None else self._next) + self.period
            self._next = nxt if nxt > t else t + self.period
            return True
        return False


class CameraCapture:
    """Capture thread of one camera; see the module docstring.

    cfg:          the camera.
    out:          the queue frames go to; default a new FrameQueue(cfg.queue_frames).
    on_status:    called with each new CameraStatus, from the capture thread (and from stop()'s
                  caller for 'stopped'); keep it quick; exceptions are logged and ignored.
    join_timeout_s: how long stop() waits for the thread, s.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        out: FrameQueue | None = None,
        *,
        on_status: Callable[[CameraStatus], None] | None = None,
        join_timeout_s: float = 2.0,
    ) -> None:
        self.cfg = cfg
        self.queue = out if out is not None else FrameQueue(cfg.queue_frames)
        self._on_status = on_status
        self._join_timeout_s = join_timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._status = CameraStatus(cfg.id, "connecting", time.time())
        self._clock = AnalysisClock(cfg.analysis_fps)
        self._seq = 0
        self._decoded = 0
        self._skipped = 0
        self._enqueued = 0
        self._dropped = 0
        self._corrupt_done = 0  # corrupt packets of sources already closed
        self._source: VideoSource | None = None
        self._fps = 0.0
        self._fps_mark = (time.monotonic(), 0)

    # ---- control ----------------------------------------------------------------------------------

    def start(self) -> CameraCapture:
        """Start the capture thread (once). Returns self."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.cfg.id}: start() called twice")
        with self._lock:
            self._status = CameraStatus(self.cfg.id, "connecting", time.time())
        self._notify(self._status)
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.cfg.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Stop capturing and close the queue; returns True when the thread has finished.

        Waits at most ``join_timeout_s``; False means the thread is still inside a blocking read and
        will exit by itself within ``read_timeout_s`` (it no longer queues anything).
        """
        self._stop.set()
        self.queue.close()
        finished = True
        if self._thread is not None:
            self._thread.join(self._join_timeout_s)
            finished = not self._thread.is_alive()
            if not finished:
                logger.info(
                    "camera %s: capture thread still in a blocking read; it exits within %s s",
                    self.cfg.id,
                    self.cfg.read_timeout_s,
                )
        if self._status.state not in ("failed", "ended", "stopped"):
            self._set_status("stopped")
        return finished

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish on its own (a file that ended, a failure); True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> CameraCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation ------------------------------------------------------------------------------

    def status(self) -> CameraStatus:
        return self._status

    def stats(self) -> CaptureStats:
        with self._lock:
            now = time.monotonic()
            t0, n0 = self._fps_mark
            fps = self._fps
            if now - t0 > 2.0:  # no recent frames: report the rate since the last mark
                fps = (self._decoded - n0) / (now - t0)
            src = self._source
            corrupt = self._corrupt_done + (src.corrupt_packets if src is not None else 0)
            return CaptureStats(
                camera_id=self.cfg.id,
                decoded=self._decoded,
                skipped=self._skipped,
                enqueued=self._enqueued,
                dropped=self._dropped,
                corrupt_packets=corrupt,
                fps=fps,
                reconnects=self._status.reconnects,
            )

    # ---- the thread -------------------------------------------------------------------------------

    def _set_status(
        self, state: CaptureState, error: str | None = None, *, reconnect: bool = False, retry_in_s: float | None = None
    ) -> None:
        with self._lock:
            old = self._status
            if old.state in TERMINAL_STATES and state != old.state:
                return  # nothing comes after stopped/ended/failed
            st = CameraStatus(
                camera_id=self.cfg.id,
                state=state,
                since=time.time() if state != old.state else old.since,
                last_error=error if error is not None else old.last_error,
                reconnects=old.reconnects + (1 if reconnect else 0),
                retry_in_s=retry_in_s,
            )
            self._status = st
        if st.state != old.state:
            level = logging.WARNING if state in ("reconnecting", "failed") and old.state != state else logging.INFO
            logger.log(level, "camera %s: %s -> %s%s", self.cfg.id, old.state, state, f" ({error})" if error else "")
        if st.state != old.state or error is not None or reconnect:
            self._notify(st)

    def _notify(self, st: CameraStatus) -> None:
        if self._on_status is not None:
            try:
                self._on_status(st)
            except Exception:
                logger.exception("camera %s: on_status callback failed", self.cfg.id)

    def _run(self) -> None:
        cfg = self.cfg
        attempt = 0  # failures since the last decoded frame
        opened_before = False
        url = redact_url(cfg.url)
        logger.info("camera %s: capture starting (%s)", cfg.id, url)
        try:
            while not self._stop.is_set():
                if opened_before:
                    self._set_status("reconnecting", reconnect=True)
                opened_before = True
                try:
                    with open_source(cfg, stop=self._stop) as src:
                        with self._lock:
                            self._source = src
                        try:
                            self._pump(src)
                        finally:
                            with self._lock:
                                self._corrupt_done += src.corrupt_packets
                                self._source = None
                    if self._stop.is_set():
                        break
                    # A file (not looped) reached its end: the normal finish.
                    self._set_status("ended")
                    break
                except SourceError as e:
                    if self._stop.is_set():
                        break
                    if self._status.state == "live":
                        attempt = 0  # it worked until now: start the backoff again from the beginning
                    if e.permanent:
                        self._set_status("failed", e.reason)
                        break
                    error = e.reason
                except Exception as e:  # a bug or an FFmpeg surprise: keep the camera alive, say why
                    if self._stop.is_set():
                        break
                    if self._status.state == "live":
                        attempt = 0
                    logger.exception("camera %s: unexpected capture error", cfg.id)
                    error = f"unexpected error: {type(e).__name__}: {e}"
                attempt += 1
                delay = backoff_delay(attempt, cfg.reconnect_initial_s, cfg.reconnect_max_s)
                delay *= 1.0 - BACKOFF_JITTER * random.random()
                self._set_status("reconnecting", error, retry_in_s=delay)
                self._stop.wait(delay)
        finally:
            self.queue.close()
            logger.info("camera %s: capture thread finished (%s)", cfg.id, self._status.state)

    def _pump(self, src: VideoSource) -> None:
        """Decode, decimate and queue until the source ends, raises, or stop() is called."""
        self._clock.reset()
        got = False
        q = self.queue
        camera_id = self.cfg.id
        for df in src.frames():
            if self._stop.is_set():
                break
            ts = time.time()
            if not got:
                got = True
                self._set_status("live")
            seq = self._seq
            self._seq += 1
            t = df.pts if df.pts is not None else time.monotonic()
            due = self._clock.due(t)
            frame = None
            if due:
                image = df.to_rgb()
                image.setflags(write=False)
                frame = Frame(camera_id=camera_id, seq=seq, ts=ts, pts=df.pts, image=image)
            with self._lock:
                self._decoded += 1
                if not due:
                    self._skipped += 1
                now = time.monotonic()
                t0, n0 = self._fps_mark
                if now - t0 >= 1.0:
                    self._fps = (self._decoded - n0) / (now - t0)
                    self._fps_mark = (now, self._decoded)
            if frame is not None and not self._stop.is_set():
                dropped = q.put(frame)
                with self._lock:
                    self._enqueued += 1
                    self._dropped += dropped
