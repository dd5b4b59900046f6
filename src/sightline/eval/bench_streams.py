"""How many live cameras one machine watches in real time: ``sightline bench streams --json``.

For N = 1, 2, 4, 6, 8, ... concurrent streams: a 1280x720 25 fps H.264 clip with four faces per frame
(the committed fixture photos in a 2x2 grid, on for 2 s, then 1 s of grey so tracks end and start
again) is published N times by ``ffmpeg -re`` into a local rtsp-server-perl and read back over RTSP
(UDP) by a :class:`~sightline.video.supervisor.Supervisor` with N capture + N worker threads, each worker
with its own one-thread engine, analysing 5 frames/s per camera. The four people are enrolled from
OTHER photos of them (watchlist ``bench``) and the alert cooldown is 0, so every new track alerts.

Per N, after a warm-up, over ``seconds`` of wall time:

* ``analysed_fps_per_camera``: frames analysed per second, mean over cameras (target ``analysis_fps``).
* ``dropped_frames``: frames queued for analysis but discarded because the worker was behind.
* ``detections_gated``: analysed frames whose detection motion gating skipped (``--motion-gate``).
* ``latency_p50_s`` / ``latency_p95_s``: frame capture (decode) to alert, over all alerts.
* ``frame_latency_p50_s`` / ``frame_latency_p95_s``: capture to analysis done, every analysed frame.
* ``cpu_cores``: CPU used, in cores (CPU seconds per wall second) of this process, split into
  ``decode`` (capture threads and FFmpeg's decoder threads: everything but the workers), and the
  workers' ``detect`` / ``track`` / ``bestshot`` / ``embed`` / ``match`` / ``other`` (the workers'
  thread CPU time shared out by each stage's wall time). ``cpu_cores.total`` near the core count
  shows that threads run in parallel (the GIL is released in FFmpeg, dlib and onnxruntime).
  ``servers_cores``: the RTSP server and ffmpeg publishers, which the bench machine also pays for.

``max_streams``: the largest N whose p95 alert latency is at most 1 s with no analysis backlog
(analysed rate at least 95 % of ``analysis_fps`` and at most 1 % of the queued frames dropped).
The loop stops after the first N that fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightline.config import CameraConfig, EngineConfig, WatchConfig
from sightline.eval.bench_engine import DEFAULT_IMAGE_DIR, _cpu_info

logger = logging.getLogger(__name__)

RTSP_SERVER = "/usr/bin/rtsp-server-perl"
#: (clip photo, enrolment photo) per person, relative to the committed test faces' gallery folder.
PEOPLE = (
    ("obama", "obama/obama.jpg", "obama/obama2.jpg"),
    ("biden", "biden/biden.jpg", "biden/biden2.jpg"),
    ("rose_leslie", "rose_leslie/img1.jpg", "rose_leslie/img2.jpg"),
    ("kit_harington", "kit_harington/john1.jpeg", "kit_harington/john2.jpeg"),
)
DEFAULT_COUNTS = (1, 2, 4, 6, 8, 10, 12, 16)


@dataclass(frozen=True)
class Criteria:
    """What 'keeps up' means: p95 alert latency (s), analysed share of the target rate, dropped share."""

    max_p95_s: float = 1.0
    min_rate_share: float = 0.95
    max_drop_share: float = 0.01


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not found (Debian package ffmpeg)")
    return exe


def make_clip(out: Path, photos: list[Path], size: tuple[int, int] = (1280, 720), fps: int = 25) -> Path:
    """The benchmark clip: the photos in a 2x2 grid for 2 s, then 1 s grey; H.264, keyframe every second."""
    w, h = size
    tw, th = w // 2, h // 2
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    filters = []
    for i, p in enumerate(photos[:4]):
        cmd += ["-loop", "1", "-framerate", str(fps), "-t", "2", "-i", str(p)]
        filters.append(
            f"[{i}:v]scale={tw}:{th}:force_original_aspect_ratio=decrease,pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2:"
            f"color=0x808080,setsar=1,fps={fps},format=yuv420p[t{i}]"
        )
    cmd += ["-f", "lavfi", "-t", "1", "-i", f"color=c=0x808080:s={w}x{h}:r={fps}"]
    filters.append("[t0][t1][t2][t3]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0[grid]")
    filters.append("[4:v]setsar=1,format=yuv420p[grey]")
    filters.append("[grid][grey]concat=n=2:v=1:a=0[out]")
    cmd += ["-filter_complex", ";".join(filters), "-map", "[out]", "-c:v", "libx264", "-preset", "veryfast"]
    cmd += ["-pix_fmt", "yuv420p", "-r", str(fps), "-g", str(fps), "-bf", "0", "-threads", "2", str(out)]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    return out


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"RTSP server not listening on port {port} after {timeout} s")


def _describe_ok(url: str, port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            return s.makefile("rb").readline().startswith(b"RTSP/1.0 200")
    except OSError:
        return False


class _Streams:
    """rtsp-server-perl plus N looping ffmpeg publishers (internal)."""

    def __init__(self, workdir: Path, clip: Path, n: int) -> None:
        if not os.path.exists(RTSP_SERVER):
            raise RuntimeError(f"{RTSP_SERVER} not found (Debian package rtsp-server-perl)")
        self.client_port, self.source_port = _free_tcp_port(), _free_tcp_port()
        rtp = 20000 + (os.getpid() % 200) * 100
        self.log = open(workdir / "rtsp.log", "ab")  # noqa: SIM115 (closed in close())
        self.procs: list[subprocess.Popen] = []
        server = [RTSP_SERVER, "--clientport", str(self.client_port), "--serverport", str(self.source_port)]
        server += ["--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"]
        server += ["--rtp_start_port", str(rtp), "--loglevel", "1"]
        self.procs.append(subprocess.Popen(server, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL))
        _wait_port(self.client_port)
        _wait_port(self.source_port)
        self.urls = []
        for i in range(n):
            src = f"rtsp://127.0.0.1:{self.source_port}/cam{i}"
            cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1"]
            cmd += ["-i", str(clip), "-c", "copy", "-rtsp_transport", "udp", "-f", "rtsp", src]
            self.procs.append(subprocess.Popen(cmd, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL))
            url = f"rtsp://127.0.0.1:{self.client_port}/cam{i}"
            deadline = time.monotonic() + 15
            while not _describe_ok(url, self.client_port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"publishing {src} failed (see {workdir / 'rtsp.log'})")
                time.sleep(0.05)
            self.urls.append(url)

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and publishers (from /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / tick
        return total

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.log.close()


def _thread_cpu_s(native_ids: list[int]) -> float:
    """CPU seconds (user + system) of this process's threads with these native ids."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for tid in native_ids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
    return total


def _worker_tids() -> list[int]:
    return [t.native_id for t in threading.enumerate() if t.name.startswith("worker-") and t.native_id is not None]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


_STAGES = ("detect_s", "track_s", "bestshot_s", "embed_s", "match_s")


def run_one(
    n: int, clip: Path, gallery: Any, workdir: Path, *, seconds: float, warmup_s: float, camera: dict[str, Any]
) -> dict[str, Any]:
    """Run N streams; returns the row (see the module docstring)."""
    from sightline.events import EventBus
    from sightline.types import Alert
    from sightline.video.supervisor import Supervisor
    from sightline.vision.engine import FaceEngine

    streams = _Streams(workdir, clip, n)
    try:
        cams = [CameraConfig(id=f"cam{i}", url=u, rtsp_transport="udp", **camera) for i, u in enumerate(streams.urls)]
        engine_cfg = EngineConfig(threads=1, fallback_detector="none")
        bus = EventBus()
        alerts = bus.subscribe(Alert, maxsize=100_000)
        watch = WatchConfig(alert_cooldown_s=0, track_max_age_s=0.5)
        sup = Supervisor(cams, lambda: FaceEngine.from_config(engine_cfg), gallery, bus, watch, None)
        with sup:
            deadline = time.monotonic() + 30
            while not all(r.status.state == "live" for r in sup.status()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streams not live after 30 s: {[r.status for r in sup.status()]}")
                time.sleep(0.1)
            time.sleep(warmup_s)
            alerts.drain()
            before = sup.status()
            tids = _worker_tids()
            w0, p0, s0 = time.monotonic(), time.process_time(), streams.cpu_s()
            wcpu0 = _thread_cpu_s(tids)
            time.sleep(seconds)
            wall = time.monotonic() - w0
            proc_cpu = time.process_time() - p0
            worker_cpu = _thread_cpu_s(tids) - wcpu0
            server_cpu = streams.cpu_s() - s0
            after = sup.status()
            got = alerts.drain()
    finally:
        streams.close()
    b = {r.camera_id: r for r in before}
    frames = [r.worker.frames - b[r.camera_id].worker.frames for r in after]
    gated = sum(r.worker.detections_gated - b[r.camera_id].worker.detections_gated for r in after)
    dropped = sum(r.capture.dropped - b[r.camera_id].capture.dropped for r in after)
    enqueued = sum(r.capture.enqueued - b[r.camera_id].capture.enqueued for r in after)
    stage = {k: sum(getattr(r.worker, k) - getattr(b[r.camera_id].worker, k) for r in after) for k in _STAGES}
    frame_lat: list[float] = []
    for r, f in zip(after, frames, strict=True):
        frame_lat += list(r.worker.frame_latencies_s[-f:]) if f > 0 else []
    lat = [a.ts - a.frame_ts for a in got]
    stage_wall = sum(stage.values())
    worker_wall = max(stage_wall, 1e-9)
    cpu = {"decode": round((proc_cpu - worker_cpu) / wall, 3)}
    for k, v in stage.items():
        cpu[k.removesuffix("_s")] = round(worker_cpu * v / worker_wall / wall, 3) if stage_wall else 0.0
    cpu["total"] = round(proc_cpu / wall, 3)
    row = {
        "streams": n,
        "seconds": round(wall, 1),
        "analysed_fps_per_camera": round(sum(frames) / n / wall, 2),
        "dropped_frames": dropped,
        "detections_gated": gated,
        "queued_frames": enqueued,
        "alerts": len(lat),
        "latency_p50_s": _pct(lat, 50),
        "latency_p95_s": _pct(lat, 95),
        "frame_latency_p50_s": _pct(frame_lat, 50),
        "frame_latency_p95_s": _pct(frame_lat, 95),
        "ms_per_frame": {k.removesuffix("_s"): round(1000 * v / max(1, sum(frames)), 1) for k, v in stage.items()},
        "cpu_cores": cpu,
        "servers_cores": round(server_cpu / wall, 3),
    }
    logger.info("bench streams: %s", row)
    return row


def keeps_up(row: dict[str, Any], analysis_fps: float, c: Criteria = Criteria()) -> bool:
    p95 = row["latency_p95_s"]
    return (
        p95 is not None
        and p95 <= c.max_p95_s
        and row["analysed_fps_per_camera"] >= c.min_rate_share * analysis_fps
        and row["dropped_frames"] <= c.max_drop_share * max(1, row["queued_frames"])
    )


def bench_streams(
    *,
    counts: tuple[int, ...] = DEFAULT_COUNTS,
    seconds: float = 15.0,
    warmup_s: float = 4.0,
    analysis_fps: float = 5.0,
    detect_width: int = 640,
    motion_gate: float = 0.0,
    image_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the streams benchmark (see the module docstring); returns the JSON-able result."""
    from sightline.gallery import Gallery
    from sightline.vision.engine import FaceEngine

    faces = (image_dir or DEFAULT_IMAGE_DIR) / "gallery"
    for _, clip_photo, enroll_photo in PEOPLE:
        for p in (clip_photo, enroll_photo):
            if not (faces / p).is_file():
                raise FileNotFoundError(f"benchmark photo {faces / p} missing (needs a source checkout)")
    camera = {
        "analysis_fps": analysis_fps,
        "detect_width": detect_width,
        "motion_gate": motion_gate,
        "read_timeout_s": 5.0,
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="sightline-bench-streams-") as tmp:
        work = Path(tmp)
        clip = make_clip(work / "grid.mp4", [faces / c for _, c, _ in PEOPLE])
        engine = FaceEngine.from_config(EngineConfig(threads=1))
        with Gallery.open(work / "data", engine) as gallery:
            for name, _, enroll_photo in PEOPLE:
                gallery.enroll_person(name, [faces / enroll_photo], watchlist="bench", create=True)
            for n in counts:
                row = run_one(n, clip, gallery, work, seconds=seconds, warmup_s=warmup_s, camera=camera)
                row["keeps_up"] = keeps_up(row, analysis_fps)
                rows.append(row)
                if not row["keeps_up"]:
                    break
    ok = [r["streams"] for r in rows if r["keeps_up"]]
    return {
        "benchmark": "streams",
        "max_streams": max(ok) if ok else 0,
        "criteria": {
            "latency_p95_s_max": Criteria.max_p95_s,
            "analysed_share_min": Criteria.min_rate_share,
            "dropped_share_max": Criteria.max_drop_share,
        },
        "stream": {"size": [1280, 720], "fps": 25, "codec": "h264", "transport": "rtsp/udp", "faces_per_frame": 4},
        "analysis_fps": analysis_fps,
        "detect_width": detect_width,
        "motion_gate": motion_gate,
        "seconds_per_row": seconds,
        "cpu": _cpu_info(),
        "rows": rows,
    }
