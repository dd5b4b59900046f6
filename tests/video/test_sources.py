"""Video sources against real inputs: generated H.264 files, RTSP servers, HTTP MJPEG and HLS."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from sightline.config import CameraConfig
from sightline.eval.clips import Clip, ffmpeg_exe
from sightline.eval.servers import HttpVideoServer, RelayRtspServer
from sightline.video.sources import (
    SourceError,
    backoff_delay,
    open_source,
    plan_open,
    redact_url,
    source_kind,
)
from tests.video.servers import BIDEN, OBAMA


def cam(url: str | Path, **kw) -> CameraConfig:
    return CameraConfig(id="cam", url=str(url), **kw)


def read_n(src, n: int, timeout_s: float = 20.0) -> list[tuple[float | None, np.ndarray]]:
    out = []
    deadline = time.monotonic() + timeout_s
    for item in src:
        out.append(item)
        if len(out) >= n or time.monotonic() > deadline:
            break
    return out


# ---- URL handling (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("rtsp://10.0.0.5:554/stream1", "rtsp"),
        ("RTSPS://cam.local/live", "rtsp"),
        ("http://cam/mjpg/video.mjpg", "http"),
        ("https://example.org/live/index.m3u8", "http"),
        ("/dev/video0", "v4l2"),
        ("file:///dev/video2", "v4l2"),
        ("/srv/videos/door.mp4", "file"),
        ("relative/clip.mkv", "file"),
        ("file:///srv/videos/door.mp4", "file"),
    ],
)
def test_source_kind(url: str, kind: str) -> None:
    assert source_kind(url) == kind


@pytest.mark.parametrize("url", ["rtmp://host/app", "srt://host:9000", "ftp://x/y.mp4"])
def test_unsupported_scheme_is_permanent(url: str) -> None:
    with pytest.raises(SourceError) as ei:
        open_source(cam(url))
    assert ei.value.permanent
    assert "unsupported URL scheme" in str(ei.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
        ("http://u:p@cam/video?x=1", "http://u:***@cam/video?x=1"),
        ("rtsp://10.0.0.5/s1", "rtsp://10.0.0.5/s1"),
        ("/tmp/a:b@c.mp4", "/tmp/a:b@c.mp4"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_plan_open_options() -> None:
    tcp = plan_open(cam("rtsp://h/s", rtsp_transport="tcp", read_timeout_s=3))
    assert tcp.options["rtsp_transport"] == "tcp"
    assert tcp.options["timeout"] == "10000000"  # microseconds (FFmpeg >= 5 name; 'stimeout' is gone)
    assert tcp.timeout == (5.0, 3.0)
    assert "buffer_size" not in tcp.options
    udp = plan_open(cam("rtsp://h/s", rtsp_transport="udp", read_timeout_s=20))
    assert udp.options["rtsp_transport"] == "udp" and "buffer_size" in udp.options
    assert udp.timeout == (20.0, 20.0)
    http = plan_open(cam("http://h/v.mjpg", read_timeout_s=2))
    assert http.options["rw_timeout"] == "10000000" and http.options["reconnect"] == "0"
    v4l = plan_open(cam("/dev/video3"))
    assert v4l.format == "v4l2" and v4l.target == "/dev/video3" and v4l.timeout is not None
    f = plan_open(cam("file:///data/x.mp4"))
    assert f.target == "/data/x.mp4" and f.timeout is None and f.decode_threads == 0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0), (10_000, 30.0)],
)
def test_backoff_delay_doubles_and_caps(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, 0.5, 30.0) == pytest.approx(expected)


def test_backoff_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, 0.5, 30.0)


# ---- files -------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_file_decodes_every_frame_with_timestamps(face_clip: Clip) -> None:
    with open_source(cam(face_clip.path, realtime=False)) as src:
        assert (src.width, src.height) == face_clip.size
        assert src.nominal_fps == pytest.approx(25.0)
        assert not src.paced
        items = list(src)
    assert len(items) == face_clip.frame_count == 250
    pts = np.array([p for p, _ in items])
    assert pts[0] == pytest.approx(0.0)
    assert np.allclose(np.diff(pts), 0.04, atol=1e-6)
    img = items[0][1]
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8 and img.flags.c_contiguous


@pytest.mark.timeout(30)
def test_file_frames_show_the_clip_timeline(face_clip: Clip) -> None:
    """Grey segments decode as flat grey; the photo segments are not flat and differ from each other."""
    with open_source(cam(face_clip.path, realtime=False)) as src:
        frames = {round(p / 0.04): img for p, img in src}
    grey = frames[25]  # t = 1.0 s
    assert abs(float(grey.mean()) - 128) < 3 and float(grey.std()) < 3
    obama, biden = frames[round(3.5 / 0.04)], frames[round(8.5 / 0.04)]
    assert face_clip.photo_at(3.5) == OBAMA and face_clip.photo_at(8.5) == BIDEN
    assert float(obama.std()) > 20 and float(biden.std()) > 20
    assert float(np.abs(obama.astype(int) - biden.astype(int)).mean()) > 10


@pytest.mark.timeout(30)
def test_file_realtime_plays_at_native_rate(short_clip: Clip) -> None:
    """A 3 s clip takes about 3 s with realtime, far less without."""
    t0 = time.monotonic()
    with open_source(cam(short_clip.path, realtime=True)) as src:
        assert src.paced
        n = sum(1 for _ in src.frames())
    paced = time.monotonic() - t0
    t0 = time.monotonic()
    with open_source(cam(short_clip.path, realtime=False)) as src:
        m = sum(1 for _ in src.frames())
    fast = time.monotonic() - t0
    assert n == m == 75
    # The last frame is due at 2.96 s; allow for a loaded CI machine.
    assert 2.8 <= paced <= 4.0, paced
    assert fast < 1.5, fast


@pytest.mark.timeout(30)
def test_file_without_timestamps_is_paced_at_its_nominal_rate(short_clip: Clip, tmp_path: Path) -> None:
    """A raw H.264 elementary stream has no timestamps: its frames are timed (and paced) at 25 fps."""
    raw = tmp_path / "short.h264"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(short_clip.path), "-c", "copy", "-f", "h264", str(raw)],
        check=True,
        timeout=30,
    )
    t0 = time.monotonic()
    with open_source(cam(raw, realtime=True)) as src:
        assert not src.has_timestamps and src.paced
        pts = [f.pts for f in src.frames()]
    took = time.monotonic() - t0
    assert len(pts) == 75
    assert np.allclose(pts, np.arange(75) * 0.04)
    assert 2.8 <= took <= 4.0, took


@pytest.mark.timeout(30)
def test_file_loop_restarts_with_increasing_timestamps(short_clip: Clip) -> None:
    with open_source(cam(short_clip.path, realtime=False, loop=True)) as src:
        pts = [f.pts for f, _ in zip(src.frames(), range(75 * 2 + 30), strict=False)]
    assert len(pts) == 180
    d = np.diff(np.array(pts, dtype=float))
    assert np.allclose(d, 0.04, atol=1e-6), d[np.abs(d - 0.04) > 1e-6]
    assert pts[-1] == pytest.approx(179 * 0.04)


@pytest.mark.timeout(30)
def test_file_without_loop_ends(short_clip: Clip) -> None:
    with open_source(cam(short_clip.path, realtime=False, loop=False)) as src:
        assert sum(1 for _ in src.frames()) == 75
        assert sum(1 for _ in src.frames()) == 0  # stays at the end


def test_missing_file_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file") as ei:
        open_source(cam(tmp_path / "nope.mp4"))
    assert ei.value.permanent


def test_not_a_video_is_permanent(tmp_path: Path) -> None:
    p = tmp_path / "notes.mp4"
    p.write_bytes(bytes(random.Random(7).randrange(256) for _ in range(20_000)))
    with pytest.raises(SourceError, match="cannot open") as ei:
        open_source(cam(p))
    assert ei.value.permanent


def test_photo_is_not_a_video_stream(tmp_path: Path) -> None:
    """A JPEG opens (FFmpeg reads it as a one-frame video) and yields exactly one frame, then ends."""
    with open_source(cam(OBAMA, realtime=False)) as src:
        assert len(list(src)) == 1


@pytest.mark.timeout(30)
def test_truncated_file_decodes_what_is_there(face_clip: Clip, tmp_path: Path) -> None:
    data = face_clip.path.read_bytes()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: len(data) // 2])
    with open_source(cam(p, realtime=False)) as src:
        n = sum(1 for _ in src.frames())
    assert 50 < n < 250


@pytest.mark.timeout(30)
def test_corrupt_packets_are_counted_and_skipped(
    face_clip: Clip, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(face_clip.path.read_bytes())
    rnd = random.Random(1)
    for _ in range(40):  # 40 runs of 64 random bytes after the header
        off = rnd.randrange(len(data) // 10, len(data) - 100)
        data[off : off + 64] = bytes(rnd.randrange(256) for _ in range(64))
    p = tmp_path / "corrupt.mp4"
    p.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="sightline.video.sources"), open_source(cam(p, realtime=False)) as src:
        n = sum(1 for _ in src.frames())
        corrupt = src.corrupt_packets
    assert corrupt > 0
    assert 150 < n <= 250
    assert any("corrupt packet skipped" in r.getMessage() for r in caplog.records)


def test_v4l2_missing_device_is_retryable() -> None:
    """No webcam in CI: a missing /dev/videoN is an error the capture retries (USB cameras come back)."""
    with pytest.raises(SourceError, match="cannot open") as ei:
        open_source(cam("/dev/video97", read_timeout_s=1))
    assert not ei.value.permanent


# ---- RTSP --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("server", "transport"),
    [("rtsp_server", "udp"), ("rtsp_relay", "tcp"), ("rtsp_relay", "udp")],
)
def test_rtsp_source(
    server: str,
    transport: str,
    face_clip: Clip,
    request: pytest.FixtureRequest,
) -> None:
    srv = request.getfixturevalue(server)
    pub = srv.publish(face_clip, "door")
    t0 = time.monotonic()
    with open_source(cam(pub.url, rtsp_transport=transport, read_timeout_s=5)) as src:
        assert src.kind == "rtsp" and not src.paced
        assert (src.width, src.height) == (320, 240)
        items = read_n(src, 40)
    took = time.monotonic() - t0
    assert len(items) == 40
    # Only the first frame (decoded while FFmpeg probed the stream) may lack a timestamp.
    assert all(p is not None for p, _ in items[1:])
    pts = np.array([p for p, _ in items[1:]])
    assert np.all(np.diff(pts) > 0)
    assert np.allclose(np.diff(pts), 0.04, atol=0.002)
    assert items[-1][1].shape == (240, 320, 3)
    # Live: 40 frames arrive at the stream's rate (1.6 s) plus the wait for a keyframe (<= 1 s).
    assert 1.2 < took < 8.0, took


@pytest.mark.timeout(30)
def test_rtsp_unknown_stream_fails_retryably(rtsp_relay: RelayRtspServer) -> None:
    with pytest.raises(SourceError, match="cannot open") as ei:
        open_source(cam(rtsp_relay.url("nobody-here"), read_timeout_s=2))
    assert not ei.value.permanent
    assert "404" in str(ei.value)


@pytest.mark.timeout(30)
def test_rtsp_connection_refused_fails_fast() -> None:
    from sightline.eval.servers import free_tcp_port

    t0 = time.monotonic()
    with pytest.raises(SourceError, match="cannot open") as ei:
        open_source(cam(f"rtsp://127.0.0.1:{free_tcp_port()}/x", read_timeout_s=5))
    assert not ei.value.permanent
    assert time.monotonic() - t0 < 3


# ---- HTTP --------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_http_mjpeg(http_server: HttpVideoServer) -> None:
    with open_source(cam(http_server.url("/mjpeg"), read_timeout_s=5)) as src:
        assert src.kind == "http" and not src.paced
        assert not src.has_timestamps
        items = read_n(src, 30)
    assert len(items) == 30
    assert all(p is None for p, _ in items)  # not FFmpeg's invented 25 fps timestamps
    assert items[0][1].shape == (240, 320, 3)
    # The server switches picture every second: grey first, then obama.
    assert float(items[0][1].std()) < 5
    assert float(items[29][1].std()) > 20


@pytest.mark.timeout(30)
def test_http_read_timeout_on_a_stalled_stream(http_server: HttpVideoServer) -> None:
    """The server sends three JPEG parts and then nothing: a read timeout, not a hang."""
    with open_source(cam(http_server.url("/stall"), read_timeout_s=1.0)) as src:
        got = []
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="read timeout"):
            for item in src:
                got.append(item)
        waited = time.monotonic() - t0
    assert 1 <= len(got) <= 3
    assert waited < 4.0


@pytest.mark.timeout(60)
def test_http_hls_vod(http_server: HttpVideoServer, hls_dir: Path) -> None:
    import shutil

    shutil.copytree(hls_dir, http_server.root / "hls")
    with open_source(cam(http_server.url("/hls/index.m3u8"), realtime=False, read_timeout_s=5)) as src:
        got = []
        shapes = set()
        with pytest.raises(SourceError, match="stream ended"):
            for p, img in src:
                got.append(p)
                shapes.add(img.shape)
    assert len(got) == 250
    assert shapes == {(240, 320, 3)}
    assert np.allclose(np.diff(got), 0.04, atol=1e-3)


@pytest.mark.timeout(30)
def test_http_progressive_mp4_is_paced(http_server: HttpVideoServer, short_clip: Clip) -> None:
    (http_server.root / "clip.mp4").write_bytes(short_clip.path.read_bytes())
    t0 = time.monotonic()
    with open_source(cam(http_server.url("/clip.mp4"), realtime=True, read_timeout_s=5)) as src:
        assert src.paced  # known duration: played at its native rate like a file
        n = 0
        with pytest.raises(SourceError, match="stream ended"):
            for _ in src.frames():
                n += 1
    assert n == 75
    assert 2.8 <= time.monotonic() - t0 <= 4.5
