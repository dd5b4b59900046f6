"""Video inputs: RTSP, HTTP(S), local files and V4L2 webcams, decoded with PyAV (FFmpeg).

:func:`open_source` picks the input kind from ``CameraConfig.url`` and returns an open
:class:`VideoSource`; iterating it yields ``(pts_seconds | None, rgb)`` for every decoded frame, where
``rgb`` is an (H, W, 3) uint8 array. :meth:`VideoSource.frames` yields :class:`DecodedFrame` instead,
which converts to RGB only on request, so a caller that analyses 5 of 25 frames per second pays the
YUV -> RGB conversion 5 times, not 25 (the capture does this).

URL -> kind:

=========================  =======  ==========================================================
``rtsp://``, ``rtsps://``  rtsp     ``CameraConfig.rtsp_transport`` (tcp or udp), video only
``http://``, ``https://``  http     MJPEG (multipart), HLS (``.m3u8``), progressive MP4/TS
``/dev/videoN``            v4l2     ``format="v4l2"``
a path or ``file://``      file     ``loop`` and ``realtime`` apply
=========================  =======  ==========================================================

Timeouts. Every network/device input is opened with PyAV's ``timeout=(open_s, read_s)``, an FFmpeg
interrupt callback that works for every protocol (FFmpeg polls it about every 100 ms while waiting),
plus the protocol's own socket timeout as a backstop at twice the open timeout (``timeout`` for RTSP,
``rw_timeout``/``timeout`` for HTTP, in microseconds; FFmpeg >= 5 replaced RTSP's ``stimeout`` with
``timeout``). A stream silent for ``read_timeout_s`` raises :class:`SourceError` ("read timeout") and
the capture reconnects; an open (connect, handshake, probing) gets max(5 s, ``read_timeout_s``)
because probing waits for a keyframe, and cameras send one every 1-4 s. The
callback is time-based only, so a thread blocked in a read on a silent stream can only be released by
that timeout: closing the container from another thread would free memory FFmpeg is still using.

Errors. A packet the decoder rejects (``av.error.InvalidDataError`` and other per-packet FFmpeg errors)
is logged, counted in :attr:`VideoSource.corrupt_packets` and skipped; :data:`MAX_CONSECUTIVE_CORRUPT`
in a row means the stream is garbage and raises :class:`SourceError`. Failures to open or read raise
:class:`SourceError`; ``permanent=True`` marks those that retrying cannot fix (a missing local file, a
file that is not a video, an unsupported URL scheme).

Decoding threads. ``thread_type="AUTO"`` enables slice and frame threading. Frame threading delays
every frame by (threads - 1) frame periods, so live inputs use :data:`LIVE_DECODE_THREADS` (one
frame of extra latency, about 40 ms at 25 fps) while files let FFmpeg pick (one per core).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from sightline.config import CameraConfig
from sightline.types import Image

if TYPE_CHECKING:
    import av.container
    import av.stream
    import av.video.frame

logger = logging.getLogger(__name__)

SourceKind = Literal["rtsp", "http", "file", "v4l2"]

#: Decoder threads for live inputs; frame threading adds (threads - 1) frames of latency.
LIVE_DECODE_THREADS = 2
#: Packets rejected in a row before the stream is declared broken (about 10 s at 25 fps).
MAX_CONSECUTIVE_CORRUPT = 250
#: Timeout for opening a network input (connect, handshake, probing the first packets), s; at least
#: ``read_timeout_s``.
MIN_OPEN_TIMEOUT_S = 5.0
#: Realtime pacing re-anchors its clock when it falls behind by more than this, s (no catch-up burst),
#: or would wait longer than :data:`PACE_MAX_WAIT_S` (a timestamp jump in the file).
PACE_MAX_LAG_S = 0.5
PACE_MAX_WAIT_S = 5.0
#: UDP receive buffer for RTSP over UDP, bytes: a 1080p keyframe is several hundred KB and the kernel
#: default (208 KB) drops its tail, which shows as corrupt packets.
RTSP_UDP_BUFFER_BYTES = 4 * 1024 * 1024
_AVFMT_NOTIMESTAMPS = 0x0080  # libavformat/avformat.h


class SourceError(Exception):
    """A video input could not be opened or read.

    url:       the input, credentials redacted.
    permanent: True when retrying cannot help (missing local file, not a video, unsupported scheme);
               the capture then stops with state 'failed' instead of reconnecting.
    """

    def __init__(self, message: str, *, url: str, permanent: bool = False) -> None:
        super().__init__(f"{message} [{url}]")
        self.reason = message
        self.url = url
        self.permanent = permanent


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and status); paths unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def source_kind(url: str) -> SourceKind:
    """Which kind of input ``url`` names. Raises SourceError (permanent) for an unsupported scheme."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("", "file"):
        path = urlsplit(url).path if scheme == "file" else url
        return "v4l2" if path.startswith("/dev/video") else "file"
    raise SourceError(
        f"unsupported URL scheme {scheme!r}: use rtsp://, rtsps://, http://, https://, file://, a path or /dev/videoN",
        url=redact_url(url),
        permanent=True,
    )


@dataclass(frozen=True)
class OpenPlan:
    """How :func:`open_source` calls ``av.open`` for a camera (pure data, for logs and tests).

    target:     what FFmpeg opens (the URL, or the local path of a file:// URL).
    format:     forced demuxer, e.g. "v4l2", or None to probe.
    options:    demuxer/protocol options (FFmpeg AVOptions as strings; timeouts in microseconds).
    timeout:    PyAV (open_s, read_s) interrupt timeouts, or None for local files (reads never block).
    decode_threads: codec thread_count (0 = FFmpeg decides, one per core).
    """

    kind: SourceKind
    target: str
    format: str | None
    options: dict[str, str] = field(default_factory=dict)
    timeout: tuple[float, float] | None = None
    decode_threads: int = 0


def plan_open(cfg: CameraConfig) -> OpenPlan:
    """The ``av.open`` arguments for ``cfg`` (see the module docstring for the choices)."""
    kind = source_kind(cfg.url)
    read_s = cfg.read_timeout_s
    open_s = max(MIN_OPEN_TIMEOUT_S, read_s)
    timeout = (open_s, read_s)
    # The sockets' own timeouts are only a backstop, at twice the open timeout: PyAV's interrupt
    # callback must fire first because it says what happened, whereas a socket timeout during the RTSP
    # handshake surfaces from FFmpeg as a misleading "Invalid data found when processing input".
    usec = str(int(2 * open_s * 1_000_000))
    if kind == "rtsp":
        options = {
            "rtsp_transport": cfg.rtsp_transport,
            "timeout": usec,
            "allowed_media_types": "video",
        }
        if cfg.rtsp_transport == "udp":
            options["buffer_size"] = str(RTSP_UDP_BUFFER_BYTES)
        return OpenPlan(kind, cfg.url, None, options, timeout, LIVE_DECODE_THREADS)
    if kind == "http":
        # rw_timeout is the generic protocol option the HLS demuxer passes on to its segment requests;
        # reconnect stays off: the capture owns reconnecting (with backoff and status).
        options = {"rw_timeout": usec, "timeout": usec, "reconnect": "0"}
        return OpenPlan(kind, cfg.url, None, options, timeout, LIVE_DECODE_THREADS)
    path = urlsplit(cfg.url).path if cfg.url.startswith("file://") else cfg.url
    if kind == "v4l2":
        return OpenPlan(kind, path, "v4l2", {}, timeout, LIVE_DECODE_THREADS)
    return OpenPlan(kind, path, None, {}, None, 0)


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One decoded frame, not yet converted to RGB.

    pts: presentation time, seconds (increasing across loops of a looped file), or None when a live
         stream carries none (e.g. MJPEG over HTTP) or not yet (the first frame of an RTSP stream
         may precede the first timestamp; later gaps are filled with previous + 1/fps). Files
         without timestamps (raw .h264) get frame number / nominal fps.
    """

    pts: float | None
    width: int
    height: int
    frame: av.video.frame.VideoFrame = field(repr=False)

    def to_rgb(self) -> Image:
        """(H, W, 3) uint8 RGB, C-contiguous (swscale; about 1-2 ms for 1280x720)."""
        return np.ascontiguousarray(self.frame.to_ndarray(format="rgb24"))


class VideoSource:
    """An open input; iterate it for ``(pts_seconds | None, rgb)``. Use from one thread; close() it.

    Files end when their last frame is decoded (or restart when ``loop``); network and device inputs
    never end quietly: end of stream, read timeout or a broken connection raise :class:`SourceError`.
    ``stop`` (an Event) interrupts realtime pacing promptly and ends the iteration.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        plan: OpenPlan,
        container: av.container.InputContainer,
        stream: av.stream.Stream,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.kind: SourceKind = plan.kind
        self.url = redact_url(cfg.url)
        self._container = container
        self._stream = stream
        self._stop = stop if stop is not None else threading.Event()
        #: Packets the decoder rejected (skipped), since open.
        self.corrupt_packets = 0
        rate = stream.average_rate or stream.guessed_rate
        #: Nominal frame rate, frames/s, or None when the stream does not declare one.
        self.nominal_fps: float | None = float(rate) if rate else None
        #: Paced at the native rate: files with ``cfg.realtime``, and HTTP inputs of known duration
        #: (progressive or VOD HLS, which would otherwise be read as fast as the network allows).
        self.paced = cfg.realtime and (plan.kind == "file" or (plan.kind == "http" and container.duration is not None))
        # Demuxers flagged AVFMT_NOTIMESTAMPS (MJPEG over HTTP, raw .h264) get timestamps invented by
        # FFmpeg at an assumed 25 fps; a 10 fps camera would then run 2.5x slow on the stream clock.
        # Live frames are reported without pts (the capture then uses the wall clock); files get
        # frame number / nominal fps, their only clock.
        self.has_timestamps = not (int(container.format.flags) & _AVFMT_NOTIMESTAMPS)
        self._closed = False

    @property
    def width(self) -> int:
        return int(self._stream.codec_context.width)

    @property
    def height(self) -> int:
        return int(self._stream.codec_context.height)

    def __iter__(self) -> Iterator[tuple[float | None, Image]]:
        for f in self.frames():
            yield f.pts, f.to_rgb()

    def frames(self) -> Iterator[DecodedFrame]:
        """Every decoded frame, in presentation order, paced when :attr:`paced`."""
        loop = self.cfg.loop and self.kind == "file"
        period = 1.0 / self.nominal_fps if self.nominal_fps else 0.04
        offset = 0.0  # added to a looped file's timestamps so they keep increasing
        last_out: float | None = None
        anchor: tuple[float, float] | None = None  # (monotonic, pts) of the pacing clock
        passes = 0
        n_total = 0  # frames yielded, for pacing inputs without timestamps at the nominal rate
        while not self._stop.is_set():
            first_in_pass = True
            n_pass = 0
            for frame in self._decode_pass():
                raw = frame.time if self.has_timestamps else None
                pts = None if raw is None else float(raw)
                if pts is not None:
                    if first_in_pass and passes > 0 and last_out is not None:
                        offset = last_out + period - pts
                    pts += offset
                elif last_out is not None:
                    # A frame without a timestamp in a stream that has them (RTSP before the first
                    # sync, damaged packets): one period after the previous frame.
                    pts = last_out + period
                elif not self.has_timestamps and self.kind == "file":
                    # A file without timestamps (raw .h264, .mjpeg): its nominal rate is its clock.
                    pts = n_total * period
                first_in_pass = False
                if self.paced:
                    anchor = self._pace(pts if pts is not None else n_total * period, anchor)  # HTTP w/o pts
                    if self._stop.is_set():
                        return
                if pts is not None:
                    last_out = pts
                n_pass += 1
                n_total += 1
                yield DecodedFrame(pts, frame.width, frame.height, frame)
            if self._stop.is_set():
                return
            if self.kind in ("rtsp", "http", "v4l2"):
                raise SourceError("stream ended (end of file from the server or device)", url=self.url)
            if not loop:
                return
            if n_pass == 0:
                raise SourceError("file has no decodable video frames to loop", url=self.url, permanent=True)
            passes += 1
            logger.debug("%s: looping to the start (pass %s)", self.url, passes + 1)
            try:
                self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
            except Exception as e:
                raise SourceError(f"cannot seek to the start to loop: {e}", url=self.url) from e

    def _pace(self, pts: float, anchor: tuple[float, float] | None) -> tuple[float, float]:
        """Sleep (interruptibly) until ``pts`` is due on the wall clock; returns the pacing anchor."""
        now = time.monotonic()
        if anchor is None:
            return (now, pts)
        wait = anchor[0] + (pts - anchor[1]) - now
        if wait < -PACE_MAX_LAG_S or wait > PACE_MAX_WAIT_S:
            return (now, pts)
        if wait > 0:
            self._stop.wait(wait)
        return anchor

    def _decode_pass(self) -> Iterator[av.video.frame.VideoFrame]:
        """Demux and decode to the end of the input (files) or until an error (raised as SourceError)."""
        import av

        container = self._container
        demux = container.demux(self._stream)
        bad_in_row = 0
        last_frame_at = time.monotonic()
        read_timeout = self.cfg.read_timeout_s
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.ExitError as e:
                raise SourceError(f"read timeout: no data for {read_timeout:g} s", url=self.url) from e
            except av.error.InvalidDataError as e:
                # A demuxer-level corrupt chunk; the demuxer resynchronises on the next read.
                bad_in_row = self._count_corrupt(e, bad_in_row, "demux")
                demux = container.demux(self._stream)
                continue
            except (av.FFmpegError, OSError) as e:
                raise SourceError(f"read failed: {e}", url=self.url) from e
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as e:
                bad_in_row = self._count_corrupt(e, bad_in_row, "decode")
                continue
            if frames:
                bad_in_row = 0
                last_frame_at = time.monotonic()
            elif self.kind != "file" and time.monotonic() - last_frame_at > read_timeout:
                raise SourceError(f"read timeout: packets but no decodable frame for {read_timeout:g} s", url=self.url)
            yield from frames  # type: ignore[misc]

    def _count_corrupt(self, err: Exception, bad_in_row: int, where: str) -> int:
        self.corrupt_packets += 1
        bad_in_row += 1
        # Log the first of a run and then every 25th, so a damaged stream does not flood the log.
        if bad_in_row == 1 or bad_in_row % 25 == 0:
            logger.warning(
                "%s: corrupt packet skipped (%s: %s; %s in a row, %s total)",
                self.url,
                where,
                err,
                bad_in_row,
                self.corrupt_packets,
            )
        if bad_in_row >= MAX_CONSECUTIVE_CORRUPT:
            raise SourceError(f"{bad_in_row} corrupt packets in a row", url=self.url)
        return bad_in_row

    def close(self) -> None:
        """Release the input (idempotent). Call from the thread that iterates."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception as e:  # closing a broken network input can fail; nothing to do about it
                logger.debug("%s: error while closing: %s", self.url, e)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(cfg: CameraConfig, *, stop: threading.Event | None = None) -> VideoSource:
    """Open the camera's input and its first video stream.

    Blocks up to max(MIN_OPEN_TIMEOUT_S, read_timeout_s) for network inputs (connect, RTSP handshake,
    probing). Raises SourceError on failure; ``permanent`` is set when retrying cannot help.
    ``stop`` interrupts realtime pacing (see :class:`VideoSource`).
    """
    import av

    plan = plan_open(cfg)
    url = redact_url(cfg.url)
    if plan.kind == "file":
        p = Path(plan.target)
        if not p.is_file():
            raise SourceError("no such file", url=url, permanent=True)
        if not os.access(p, os.R_OK):
            raise SourceError("file is not readable", url=url, permanent=True)
    t0 = time.monotonic()
    try:
        container = av.open(
            plan.target,
            mode="r",
            format=plan.format,
            container_options=plan.options,
            timeout=plan.timeout,
        )
    except (av.FFmpegError, OSError, ValueError) as e:
        took = time.monotonic() - t0
        # The interrupt surfaces as ExitError, except inside FFmpeg's RTSP handshake, which reports
        # any failed read as InvalidDataError: tell them apart by the time spent.
        if isinstance(e, av.error.ExitError) or (plan.timeout is not None and took >= 0.95 * plan.timeout[0]):
            raise SourceError(f"open timed out after {took:.1f} s ({e})", url=url) from e
        # A local file FFmpeg cannot parse will not improve on retry; a camera might.
        raise SourceError(f"cannot open: {e}", url=url, permanent=plan.kind == "file") from e
    if not container.streams.video:
        container.close()
        raise SourceError("no video stream", url=url, permanent=plan.kind == "file")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = plan.decode_threads
    src = VideoSource(cfg, plan, container, stream, stop)
    logger.info(
        "%s: opened %s input in %.2f s (%sx%s, %s fps%s)",
        url,
        plan.kind,
        time.monotonic() - t0,
        src.width,
        src.height,
        "?" if src.nominal_fps is None else f"{src.nominal_fps:.3g}",
        ", paced" if src.paced else "",
    )
    return src


def backoff_delay(attempt: int, initial_s: float, max_s: float) -> float:
    """Reconnect delay before retry number ``attempt`` (1, 2, ...), s: initial * 2**(attempt-1), capped."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    exp = min(attempt - 1, 60)
    return min(max_s, initial_s * math.pow(2.0, exp))
