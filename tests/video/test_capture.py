"""Per-camera capture against real inputs: decimation, drop-oldest queueing, reconnects, stalls, stop()."""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sightline.config import CameraConfig
from sightline.eval.clips import Clip
from sightline.eval.servers import HttpVideoServer, RelayRtspServer, free_tcp_port
from sightline.types import Frame
from sightline.video.capture import AnalysisClock, CameraCapture, CameraStatus, FrameQueue


def cam(url: str | Path, id: str = "cam", **kw) -> CameraConfig:
    return CameraConfig(id=id, url=str(url), **kw)


def frame(seq: int) -> Frame:
    return Frame(camera_id="c", seq=seq, ts=float(seq), pts=None, image=np.zeros((2, 2, 3), np.uint8))


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Statuses:
    """Records every CameraStatus the capture reports (thread-safe)."""

    def __init__(self) -> None:
        self.items: list[CameraStatus] = []
        self._lock = threading.Lock()

    def __call__(self, st: CameraStatus) -> None:
        with self._lock:
            self.items.append(st)

    def states(self) -> list[str]:
        with self._lock:
            out: list[str] = []
            for s in self.items:
                if not out or out[-1] != s.state:
                    out.append(s.state)
            return out


class Consumer:
    """An analysis stand-in: takes frames off the queue as fast as they come, in a thread."""

    def __init__(self, q: FrameQueue) -> None:
        self.q = q
        self.frames: list[Frame] = []
        self.arrivals: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                f = self.q.get(timeout=0.2)
            except queue.Empty:
                if self.q.closed:
                    return
                continue
            self.frames.append(f)
            self.arrivals.append(time.monotonic())

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


# ---- FrameQueue -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maxsize", "puts", "dropped", "left"),
    [
        (1, 1, 0, [0]),
        (1, 5, 4, [4]),
        (2, 2, 0, [0, 1]),
        (2, 7, 5, [5, 6]),
        (3, 10, 7, [7, 8, 9]),
    ],
)
def test_frame_queue_drops_oldest_and_counts(maxsize: int, puts: int, dropped: int, left: list[int]) -> None:
    q = FrameQueue(maxsize)
    returned = sum(q.put(frame(i)) for i in range(puts))
    assert returned == q.dropped == dropped
    assert q.put_count == puts
    assert [q.get(timeout=0).seq for _ in range(len(q))] == left
    assert q.got == len(left)


def test_frame_queue_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        FrameQueue(0)


@pytest.mark.timeout(10)
def test_frame_queue_get_times_out_and_close_wakes_getters() -> None:
    q = FrameQueue(2)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 1.0
    q.put(frame(1))
    woke: list[float] = []

    def getter() -> None:
        assert q.get(timeout=5).seq == 1
        try:
            q.get(timeout=5)
        except queue.Empty:
            woke.append(time.monotonic())

    th = threading.Thread(target=getter)
    th.start()
    time.sleep(0.2)
    t_close = time.monotonic()
    q.close()
    th.join(2)
    assert woke and woke[0] - t_close < 0.5
    assert q.put(frame(2)) == 0 and len(q) == 0  # closed: puts are ignored


@pytest.mark.timeout(30)
def test_frame_queue_is_thread_safe() -> None:
    q = FrameQueue(3)
    got: list[int] = []
    done = threading.Event()

    def consume() -> None:
        while not (done.is_set() and len(q) == 0):
            with contextlib.suppress(queue.Empty):
                got.append(q.get(timeout=0.05).seq)

    def produce(base: int) -> None:
        for i in range(2000):
            q.put(frame(base + i))

    c = threading.Thread(target=consume)
    c.start()
    ps = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    done.set()
    c.join(10)
    assert q.put_count == 8000
    assert q.got == len(got) and q.got + q.dropped == 8000
    assert len(set(got)) == len(got)
    for k in range(4):  # each producer's frames come out in order
        mine = [s for s in got if k * 10_000 <= s < (k + 1) * 10_000]
        assert mine == sorted(mine)


# ---- AnalysisClock ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps_in", "fps_out", "seconds", "expected"),
    [
        (25, 5, 2, 10),  # every 5th frame
        (30, 5, 2, 10),
        (25, 25, 1, 25),
        (10, 12, 2, 20),  # fewer frames than the analysis rate: all of them
        (25, 2, 5, 10),
    ],
)
def test_analysis_clock_rate(fps_in: int, fps_out: float, seconds: int, expected: int) -> None:
    clock = AnalysisClock(fps_out)
    ts = [100.0 + i / fps_in for i in range(fps_in * seconds)]
    assert sum(clock.due(t) for t in ts) == expected


def test_analysis_clock_takes_exactly_every_fifth_frame() -> None:
    clock = AnalysisClock(5)
    picked = [i for i in range(100) if clock.due(i * 0.04)]
    assert picked == list(range(0, 100, 5))


def test_analysis_clock_restarts_after_gaps_and_jumps_back() -> None:
    clock = AnalysisClock(5)
    assert clock.due(10.0) and not clock.due(10.1) and clock.due(10.2)
    assert clock.due(50.0)  # a gap: taken, then the slots continue from there
    assert not clock.due(50.1) and clock.due(50.2)
    assert clock.due(3.0)  # timestamps restarted (new stream)
    assert not clock.due(3.04)


def test_analysis_clock_rejects_bad_fps() -> None:
    with pytest.raises(ValueError, match="fps"):
        AnalysisClock(0)


# ---- files ------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_capture_decimates_to_analysis_rate(face_clip: Clip) -> None:
    """25 fps in, analysis at 5 fps: all 250 frames decoded, 50 queued (every 5th), then 'ended'."""
    rec = Statuses()
    cap = CameraCapture(cam(face_clip.path, realtime=False, analysis_fps=5, queue_frames=100), on_status=rec)
    cap.start()
    assert cap.join(20)
    st = cap.stats()
    assert (st.decoded, st.enqueued, st.skipped, st.dropped) == (250, 50, 200, 0)
    frames = [cap.queue.get(timeout=0) for _ in range(len(cap.queue))]
    assert [f.seq for f in frames] == list(range(0, 250, 5))
    assert np.allclose([f.pts for f in frames], np.arange(50) * 0.2, atol=1e-6)
    assert all(f.camera_id == "cam" and f.image.shape == (240, 320, 3) for f in frames)
    assert not frames[0].image.flags.writeable
    assert rec.states() == ["connecting", "live", "ended"]
    assert cap.status().state == "ended" and cap.queue.closed
    assert cap.stop()  # stopping an ended capture keeps 'ended'
    assert cap.status().state == "ended"


@pytest.mark.timeout(30)
def test_capture_drops_oldest_when_analysis_falls_behind(face_clip: Clip) -> None:
    """Nobody consumes: the queue keeps the 2 newest frames; the 48 older ones are counted as dropped."""
    cap = CameraCapture(cam(face_clip.path, realtime=False, analysis_fps=5, queue_frames=2))
    cap.start()
    assert cap.join(20)
    st = cap.stats()
    assert (st.decoded, st.enqueued, st.dropped) == (250, 50, 48)
    assert cap.queue.dropped == 48
    assert [cap.queue.get(timeout=0).seq for _ in range(2)] == [240, 245]


@pytest.mark.timeout(30)
def test_capture_realtime_delivers_at_analysis_rate(short_clip: Clip) -> None:
    """A 3 s clip played in real time: about 15 frames, one every 0.2 s of wall time."""
    cap = CameraCapture(cam(short_clip.path, realtime=True, analysis_fps=5))
    consumer = Consumer(cap.queue)
    t0 = time.monotonic()
    cap.start()
    assert cap.join(10)
    elapsed = time.monotonic() - t0
    consumer.join()
    assert len(consumer.frames) == 15 and cap.stats().dropped == 0
    gaps = np.diff(consumer.arrivals)
    assert 0.15 < float(np.median(gaps)) < 0.25, gaps
    assert 2.8 < elapsed < 4.5, elapsed
    assert cap.stats().fps == pytest.approx(25, rel=0.3)


@pytest.mark.timeout(30)
def test_missing_file_fails_without_retrying(tmp_path: Path) -> None:
    rec = Statuses()
    cap = CameraCapture(cam(tmp_path / "gone.mp4", reconnect_initial_s=0.05), on_status=rec)
    cap.start()
    assert cap.join(5)
    st = cap.status()
    assert st.state == "failed" and "no such file" in (st.last_error or "")
    assert st.reconnects == 0
    assert rec.states() == ["connecting", "failed"]
    assert cap.queue.closed


@pytest.mark.timeout(30)
def test_corrupt_file_is_logged_not_fatal(face_clip: Clip, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = bytearray(face_clip.path.read_bytes())
    rnd = random.Random(3)
    for _ in range(40):
        off = rnd.randrange(len(data) // 10, len(data) - 100)
        data[off : off + 64] = bytes(rnd.randrange(256) for _ in range(64))
    p = tmp_path / "corrupt.mp4"
    p.write_bytes(bytes(data))
    cap = CameraCapture(cam(p, realtime=False, queue_frames=100))
    with caplog.at_level("WARNING"):
        cap.start()
        assert cap.join(20)
    st = cap.stats()
    assert cap.status().state == "ended"
    assert st.corrupt_packets > 0
    assert 150 < st.decoded <= 250
    assert any("corrupt packet skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(30)
def test_truncated_file_ends_cleanly(face_clip: Clip, tmp_path: Path) -> None:
    data = face_clip.path.read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: len(data) // 3])
    cap = CameraCapture(cam(p, realtime=False, queue_frames=100))
    cap.start()
    assert cap.join(20)
    assert cap.status().state == "ended"
    assert 20 < cap.stats().decoded < 200


# ---- stop() -----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_stop_is_prompt_while_pacing_a_looping_file(short_clip: Clip) -> None:
    rec = Statuses()
    cap = CameraCapture(cam(short_clip.path, realtime=True, loop=True), on_status=rec)
    cap.start()
    wait_for(lambda: cap.stats().enqueued >= 3, 10, "frames")
    t0 = time.monotonic()
    assert cap.stop()
    assert time.monotonic() - t0 < 0.5
    assert not cap.running and cap.status().state == "stopped"
    assert rec.states() == ["connecting", "live", "stopped"]


@pytest.mark.timeout(30)
def test_stop_is_prompt_during_backoff() -> None:
    cap = CameraCapture(cam(f"rtsp://127.0.0.1:{free_tcp_port()}/x", reconnect_initial_s=30, reconnect_max_s=60))
    cap.start()
    wait_for(lambda: cap.status().retry_in_s is not None, 10, "the first backoff")
    assert cap.status().retry_in_s == pytest.approx(30, rel=0.11)
    t0 = time.monotonic()
    assert cap.stop()
    assert time.monotonic() - t0 < 0.5
    assert cap.status().state == "stopped"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_silent_server_open_timeout_and_stop_while_blocked() -> None:
    """A server that accepts the connection and never answers: the open times out (5 s minimum,
    FFmpeg's interrupt callback) and the camera goes to 'reconnecting'. stop() while the thread is
    blocked in that open returns within its 2 s join budget; the thread then exits by the timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    try:
        rec = Statuses()
        cfg = cam(f"rtsp://127.0.0.1:{port}/x", read_timeout_s=1, reconnect_initial_s=0.1, reconnect_max_s=0.2)
        cap = CameraCapture(cfg, on_status=rec)
        t0 = time.monotonic()
        cap.start()
        wait_for(lambda: cap.status().state == "reconnecting", 10, "reconnecting")
        assert 4.5 < time.monotonic() - t0 < 8, "the open timeout is max(5 s, read_timeout_s)"
        assert "open timed out" in (cap.status().last_error or "")
        time.sleep(0.5)  # now blocked in the second open
        t1 = time.monotonic()
        finished = cap.stop()
        assert time.monotonic() - t1 < 2.5
        assert not finished  # still inside FFmpeg: it cannot be interrupted safely from outside
        assert cap.status().state == "stopped"
        assert cap.join(6), "the blocked open must end by its own timeout"
        assert cap.stats().enqueued == 0
    finally:
        srv.close()


# ---- RTSP -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("server", "transport"), [("rtsp_server", "udp"), ("rtsp_relay", "tcp")])
def test_rtsp_capture_live(server: str, transport: str, face_clip: Clip, request: pytest.FixtureRequest) -> None:
    srv = request.getfixturevalue(server)
    pub = srv.publish(face_clip, "lobby")
    cap = CameraCapture(cam(pub.url, rtsp_transport=transport, analysis_fps=5))
    consumer = Consumer(cap.queue)
    cap.start()
    wait_for(lambda: len(consumer.frames) >= 3, 15, "first frames")
    n0, t0 = len(consumer.frames), time.monotonic()
    time.sleep(3.0)
    rate = (len(consumer.frames) - n0) / (time.monotonic() - t0)
    st = cap.stats()
    t_stop = time.monotonic()
    assert cap.stop()
    assert time.monotonic() - t_stop < 2.0
    assert cap.status().state == "stopped"
    assert 4.0 < rate < 6.0, rate  # analysis rate, not the 25 fps stream rate
    assert 20 < st.fps < 30, st.fps
    assert st.decoded > 4 * st.enqueued
    seqs = [f.seq for f in consumer.frames]
    assert seqs == sorted(seqs)


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("server", "transport"), [("rtsp_server", "udp"), ("rtsp_relay", "tcp")])
def test_rtsp_server_restart_reconnects(
    server: str, transport: str, face_clip: Clip, request: pytest.FixtureRequest
) -> None:
    """Kill the server mid-stream: the camera goes 'reconnecting' (with the error), retries with
    backoff while the port is closed, and is 'live' again with frames flowing once it is back."""
    srv = request.getfixturevalue(server)
    pub = srv.publish(face_clip, "gate")
    rec = Statuses()
    cfg = cam(pub.url, rtsp_transport=transport, read_timeout_s=2, reconnect_initial_s=0.2, reconnect_max_s=1.0)
    cap = CameraCapture(cfg, on_status=rec)
    consumer = Consumer(cap.queue)
    cap.start()
    try:
        wait_for(lambda: len(consumer.frames) >= 5, 15, "frames before the crash")
        srv.kill()
        t_kill = time.monotonic()
        wait_for(lambda: cap.status().state == "reconnecting", 10, "reconnecting")
        detect_s = time.monotonic() - t_kill
        assert cap.status().last_error
        time.sleep(2.5)  # a few refused attempts: backoff 0.2, 0.4, 0.8, 1.0 (capped)
        down = cap.status()
        assert down.state == "reconnecting" and down.reconnects >= 2
        assert down.retry_in_s is not None and down.retry_in_s <= 1.0
        n_before = len(consumer.frames)
        srv.start()
        srv.publish(face_clip, "gate")
        wait_for(lambda: len(consumer.frames) >= n_before + 5, 20, "frames after the restart")
        assert cap.status().state == "live"
        assert rec.states()[:4] == ["connecting", "live", "reconnecting", "live"]
        assert detect_s < 4.0, detect_s  # closed connection or read timeout (2 s)
        after = [f.seq for f in consumer.frames[n_before:]]
        assert min(after) > max(f.seq for f in consumer.frames[:n_before])
    finally:
        assert cap.stop()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_stalled_stream_detected_by_read_timeout(face_clip: Clip, rtsp_relay: RelayRtspServer) -> None:
    """The publisher freezes (SIGSTOP) with every connection still open: only the read timeout can
    tell. The camera reconnects and goes live again when the stream resumes."""
    pub = rtsp_relay.publish(face_clip, "yard")
    rec = Statuses()
    cfg = cam(pub.url, rtsp_transport="tcp", read_timeout_s=1.5, reconnect_initial_s=0.2, reconnect_max_s=0.5)
    cap = CameraCapture(cfg, on_status=rec)
    consumer = Consumer(cap.queue)
    cap.start()
    try:
        wait_for(lambda: len(consumer.frames) >= 3, 15, "frames")
        pub.pause()
        t0 = time.monotonic()
        wait_for(lambda: cap.status().state == "reconnecting", 8, "read timeout")
        assert 1.2 < time.monotonic() - t0 < 4.0
        assert "read timeout" in (cap.status().last_error or "")
        n = len(consumer.frames)
        pub.resume()
        wait_for(lambda: len(consumer.frames) >= n + 5, 20, "frames after resume")
        assert cap.status().state == "live"
    finally:
        pub.resume()
        assert cap.stop()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_unreachable_camera_does_not_stop_another(short_clip: Clip) -> None:
    dead_cfg = cam(f"rtsp://127.0.0.1:{free_tcp_port()}/x", id="dead", reconnect_initial_s=0.1, reconnect_max_s=0.4)
    dead = CameraCapture(dead_cfg)
    good = CameraCapture(cam(short_clip.path, id="good", realtime=True, loop=True, analysis_fps=5))
    consumer = Consumer(good.queue)
    dead.start()
    good.start()
    try:
        time.sleep(4.0)
        st = dead.status()
        assert st.state == "reconnecting"
        assert "Connection refused" in (st.last_error or ""), st.last_error
        assert st.reconnects >= 5  # 0.1, 0.2, 0.4, 0.4, ... s apart
        assert st.retry_in_s is not None and st.retry_in_s <= 0.4
        assert dead.stats().decoded == 0
        assert good.status().state == "live"
        assert 15 <= len(consumer.frames) <= 22, len(consumer.frames)  # ~5/s for 4 s
        assert {f.camera_id for f in consumer.frames} == {"good"}
    finally:
        assert dead.stop()
        assert good.stop()


# ---- HTTP MJPEG -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_mjpeg_capture_decimates_on_the_wall_clock(http_server: HttpVideoServer) -> None:
    """MJPEG carries no timestamps: frames get pts None and the analysis clock runs on wall time."""
    cap = CameraCapture(cam(http_server.url("/mjpeg"), analysis_fps=5, read_timeout_s=3))
    consumer = Consumer(cap.queue)
    cap.start()
    try:
        wait_for(lambda: len(consumer.frames) >= 1, 10, "first frame")
        n0, d0, t0 = len(consumer.frames), cap.stats().decoded, time.monotonic()
        time.sleep(3.0)
        dt = time.monotonic() - t0
        rate = (len(consumer.frames) - n0) / dt
        decoded_rate = (cap.stats().decoded - d0) / dt
    finally:
        assert cap.stop()
    assert 4.0 < rate < 6.0, rate
    assert 20 < decoded_rate < 30, decoded_rate
    assert all(f.pts is None for f in consumer.frames)
    assert consumer.frames[-1].image.shape == (240, 320, 3)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_mjpeg_server_gone_then_back(http_server: HttpVideoServer, tmp_path: Path) -> None:
    """The HTTP server disappears (connection closed): 'reconnecting', then 'live' on a new server
    at the same address."""
    from tests.video.servers import jpeg_frames

    port = http_server.port
    rec = Statuses()
    cap = CameraCapture(
        cam(http_server.url("/mjpeg"), read_timeout_s=2, reconnect_initial_s=0.2, reconnect_max_s=0.5),
        on_status=rec,
    )
    consumer = Consumer(cap.queue)
    cap.start()
    try:
        wait_for(lambda: len(consumer.frames) >= 3, 10, "frames")
        http_server.close()
        wait_for(lambda: cap.status().state == "reconnecting", 6, "reconnecting")
        n = len(consumer.frames)
        again = HttpVideoServer(tmp_path, frames=jpeg_frames())
        again.start(port=port)
        try:
            wait_for(lambda: len(consumer.frames) >= n + 3, 15, "frames from the new server")
        finally:
            again.close()
        assert rec.states()[:4] == ["connecting", "live", "reconnecting", "live"]
    finally:
        assert cap.stop()
