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
* ``detections_full`` / ``detections_roi``: with ``--detect-mode roi``, analysed frames scanned whole / only
  in regions (changed blocks and windows around live tracks; :mod:`sightline.video.roi`).
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
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightline.config import CameraConfig, EngineConfig, WatchConfig
from sightline.eval.bench_engine import DEFAULT_IMAGE_DIR, _cpu_info
from sightline.eval.clips import make_grid_clip
from sightline.eval.servers import PerlRtspServer

logger = logging.getLogger(__name__)

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


class _Streams:
    """rtsp-server-perl (free TCP ports, a free UDP range) plus N looping ffmpeg publishers (internal)."""

    def __init__(self, workdir: Path, clip: Path, n: int) -> None:
        self.server = PerlRtspServer.on_free_ports(workdir, rtp_ports=max(200, 8 * n + 64))
        self.server.start()
        try:
            self.urls = [self.server.publish(clip, f"cam{i}", timeout_s=15.0).url for i in range(n)]
        except BaseException:
            self.server.close()
            raise

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and publishers."""
        return self.server.cpu_s()

    def close(self) -> None:
        self.server.close()


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
    n: int,
    clip: Path,
    gallery: Any,
    workdir: Path,
    *,
    seconds: float,
    warmup_s: float,
    camera: dict[str, Any],
    model: str = "dlib",
) -> dict[str, Any]:
    """Run N streams; returns the row (see the module docstring). model: EngineConfig.model."""
    from sightline.events import EventBus
    from sightline.types import Alert
    from sightline.video.supervisor import Supervisor
    from sightline.vision.engine import FaceEngine

    streams = _Streams(workdir, clip, n)
    try:
        cams = [CameraConfig(id=f"cam{i}", url=u, rtsp_transport="udp", **camera) for i, u in enumerate(streams.urls)]
        engine_cfg = EngineConfig(threads=1, fallback_detector="none", model=model)
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
    full = sum(r.worker.detections_full - b[r.camera_id].worker.detections_full for r in after)
    roi = sum(r.worker.detections_roi - b[r.camera_id].worker.detections_roi for r in after)
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
        "detections_full": full,
        "detections_roi": roi,
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
    detect_mode: str | None = None,
    full_detect_s: float | None = None,
    image_dir: Path | None = None,
    model: str = "dlib",
) -> dict[str, Any]:
    """Run the streams benchmark (see the module docstring); returns the JSON-able result.

    detect_mode / full_detect_s: the CameraConfig fields (None: the CameraConfig default).
    model: the descriptor model (EngineConfig.model: "dlib" or "fusion", which needs faceres installed)."""
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
    if detect_mode is not None:
        camera["detect_mode"] = detect_mode
    if full_detect_s is not None:
        camera["full_detect_s"] = full_detect_s
    effective = CameraConfig(id="bench", url="bench.mp4", **camera)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sightline-bench-streams-") as tmp:
        work = Path(tmp)
        clip = make_grid_clip(work / "grid.mp4", [faces / c for _, c, _ in PEOPLE]).path
        engine = FaceEngine.from_config(EngineConfig(threads=1, model=model))
        with Gallery.open(work / "data", engine) as gallery:
            for name, _, enroll_photo in PEOPLE:
                gallery.enroll_person(name, [faces / enroll_photo], watchlist="bench", create=True)
            for n in counts:
                row = run_one(n, clip, gallery, work, seconds=seconds, warmup_s=warmup_s, camera=camera, model=model)
                row["keeps_up"] = keeps_up(row, analysis_fps)
                rows.append(row)
                if not row["keeps_up"]:
                    break
    ok = [r["streams"] for r in rows if r["keeps_up"]]
    return {
        "benchmark": "streams",
        "model": engine.model,
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
        "detect_mode": effective.detect_mode,
        "full_detect_s": effective.full_detect_s,
        "roi_motion": effective.roi_motion,
        "seconds_per_row": seconds,
        "cpu": _cpu_info(),
        "rows": rows,
    }


# ---- CPU cost per camera, measured in one process without servers: `sightline bench streams-cpu` ------------

#: Worker variants compared by :func:`bench_streams_cpu`: name -> CameraConfig fields.
CPU_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {"detect_mode": "full"},
    "roi": {"detect_mode": "roi"},
    "roi_full1s": {"detect_mode": "roi", "full_detect_s": 1.0},
    "roi_busy_stride": {"detect_mode": "roi", "roi_busy_stride": True},
    "full_1280_up0": {"detect_mode": "full", "detect_width": 1280, "_upsample": 0},
}


def _decode_cost(clip: Path, loops: int, threads: int, thread_type: str, analysis_every: int) -> dict[str, float]:
    """CPU ms per decoded frame (demux + decode) and per RGB conversion, decoding ``clip`` ``loops`` times."""
    import av

    dec_s = rgb_s = 0.0
    frames = rgbs = 0
    for _ in range(loops):
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            s.thread_type = thread_type
            s.codec_context.thread_count = threads
            t0 = time.process_time()
            for f in c.decode(s):
                frames += 1
                if frames % analysis_every == 0:
                    t1 = time.process_time()
                    f.to_ndarray(format="rgb24")
                    rgb_s += time.process_time() - t1
                    rgbs += 1
            dec_s += time.process_time() - t0
    dec_s -= rgb_s
    return {
        "decode_ms_per_frame": round(1000 * dec_s / max(1, frames), 3),
        "rgb_ms_per_frame": round(1000 * rgb_s / max(1, rgbs), 3),
    }


def _analysed_frames(clip: Path, analysis_every: int) -> list[tuple[float, np.ndarray]]:
    import av

    out = []
    with av.open(str(clip)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % analysis_every == 0:
                img = np.ascontiguousarray(f.to_ndarray(format="rgb24"))
                img.setflags(write=False)
                out.append((float(f.time), img))
    return out


def _run_variant(
    name: str,
    fields: dict[str, Any],
    frames: list[tuple[float, np.ndarray]],
    loops: int,
    gallery: Any,
    clip_s: float,
    model: str = "dlib",
) -> tuple[dict[str, Any], list[Any]]:
    """Analyse the frames ``loops`` times with one worker; returns its row and the faces per frame."""
    from sightline.events import EventBus
    from sightline.types import Alert, Frame
    from sightline.video.matcher import WatchlistMatcher
    from sightline.video.worker import CameraWorker
    from sightline.vision.engine import FaceEngine

    fields = dict(fields)
    upsample = fields.pop("_upsample", None)
    engine_cfg = EngineConfig(
        threads=1, fallback_detector="none", model=model, **({} if upsample is None else {"upsample": upsample})
    )
    engine = FaceEngine.from_config(engine_cfg)
    cam = CameraConfig(id="cam", url="bench.mp4", **fields)
    bus = EventBus()
    alerts = bus.subscribe(Alert, maxsize=100_000)
    worker = CameraWorker(
        cam, engine, WatchlistMatcher(gallery), bus, WatchConfig(alert_cooldown_s=0, track_max_age_s=0.5)
    )
    seen: list[Any] = []
    update = worker.tracker.update

    def recording_update(faces: Any, ts: float) -> Any:  # instrumentation: keep each frame's detections
        seen.append(faces)
        return update(faces, ts)

    worker.tracker.update = recording_update  # type: ignore[method-assign]
    t_start = time.time()
    cpu = 0.0
    seq = 0
    for k in range(loops):
        for pts, img in frames:
            ts = t_start + k * clip_s + pts
            t0 = time.thread_time()
            worker.process(Frame(camera_id="cam", seq=seq, ts=ts, pts=pts, image=img))
            cpu += time.thread_time() - t0
            seq += 1
    worker.flush()
    st = worker.stats()
    n = st.frames
    stage_wall = sum(getattr(st, k) for k in _STAGES)
    row: dict[str, Any] = {
        "variant": name,
        "camera": {
            k: v
            for k, v in cam.model_dump().items()
            if k in ("detect_mode", "detect_width", "full_detect_s", "roi_motion")
        },
        "upsample": engine_cfg.upsample,
        "frames": n,
        "cpu_ms_per_frame": round(1000 * cpu / max(1, n), 2),
        # the worker's wall-clock stage timers, shared out over its CPU time
        "cpu_ms_per_frame_by_stage": {
            k.removesuffix("_s"): round(1000 * cpu * getattr(st, k) / max(stage_wall, 1e-9) / max(1, n), 2)
            for k in _STAGES
        },
        "faces": st.faces,
        "tracks_started": st.tracks_started,
        "alerts": len(alerts.drain()),
        "embeds": st.embeds,
        "identity_checks": st.identity_checks,
        "detections_full": st.detections_full,
        "detections_roi": st.detections_roi,
    }
    return row, seen


def _gil_probe(frames: list[tuple[float, np.ndarray]], scans: int = 6) -> dict[str, float]:
    """Whether whole-frame HOG scans let other Python threads run: one thread scans frames while this one
    spins a pure-Python loop; the CPU seconds each got. A spinner share near 0 means the GIL is held
    during scans (worker threads would serialise: processes needed); near the scanner's (both compete
    for the cores only) means it is released. Robust to a busy machine: both threads see the same load."""
    from sightline.vision.detect.hog import HogDetector

    det = HogDetector(upsample=0)
    images = [img for _, img in frames[:scans]]
    done = threading.Event()
    scan_cpu: list[float] = []

    def scan_all() -> None:
        t0 = time.thread_time()
        for img in images:
            det.detect(img)
        scan_cpu.append(time.thread_time() - t0)
        done.set()

    t = threading.Thread(target=scan_all, name="gil-probe")
    spins = 0
    c0 = time.thread_time()
    t.start()
    while not done.is_set():
        spins += 1
    spin_cpu = time.thread_time() - c0
    t.join()
    return {
        "scanner_cpu_s": round(scan_cpu[0], 3),
        "spinner_cpu_s": round(spin_cpu, 3),
        "spinner_share": round(spin_cpu / max(scan_cpu[0], 1e-9), 3),
    }


def _recall(found: list[Any], reference: list[Any], iou: float = 0.5) -> float | None:
    """Share of the reference's faces (per frame) that ``found`` also has (IoU >= ``iou``)."""
    from sightline.video.tracker import box_iou

    total = hit = 0
    for f, r in zip(found, reference, strict=True):
        total += len(r)
        if len(r) and len(f):
            hit += int((box_iou(r.xyxy, f.xyxy).max(axis=1) >= iou).sum())
    return round(hit / total, 4) if total else None


def bench_streams_cpu(
    *,
    variants: tuple[str, ...] = tuple(CPU_VARIANTS),
    loops: int = 4,
    analysis_fps: float = 5.0,
    decode_threads: tuple[int, ...] = (1, 2),
    image_dir: Path | None = None,
    clip: Path | None = None,
    model: str = "dlib",
) -> dict[str, Any]:
    """Per-camera CPU cost of live analysis, measured with process/thread CPU time (not wall time, so a busy
    shared machine slows it but hardly biases it), for worker variants compared in one run on the streams
    benchmark clip (1280x720, 25 fps, four faces for 2 s then 1 s grey), decoded from a file, or on ``clip``
    (any video file, e.g. real footage of people walking: the recall of ROI detection under motion).

    Per variant: CPU ms per analysed frame (and by stage), faces found, their ``recall`` against the first
    variant (faces it found on the same frames, IoU >= 0.5), alerts (cooldown 0: one per track that matched).
    Decode: CPU ms per decoded frame for each decoder thread count and per RGB conversion.
    ``gil_probe_full_frame_hog``: CPU a pure-Python thread got while another scanned 1280x720 frames with HOG,
    relative to the scanner's (near 0: the GIL is held during scans; see :func:`_gil_probe`).
    ``projected_streams``: cameras the machine's usable cores carry at ``analysis_fps`` =
    cores x 1000 / (25 x decode ms + analysis_fps x (rgb ms + analysis ms)), the decode with the
    cheapest thread count; RTSP depacketising and the server side are not included (see bench streams).
    ``model``: the descriptor model (EngineConfig.model); "fusion" also embeds each best shot's box crop
    with faceres (the ``embed`` stage).
    """
    from sightline.gallery import Gallery
    from sightline.vision.engine import FaceEngine

    unknown = [v for v in variants if v not in CPU_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; valid: {sorted(CPU_VARIANTS)}")
    faces_dir = (image_dir or DEFAULT_IMAGE_DIR) / "gallery"
    if clip is not None and not Path(clip).is_file():
        raise ValueError(f"clip {clip} is not a file")
    cpu_info = _cpu_info()
    cores = cpu_info["usable_cpus"]
    with tempfile.TemporaryDirectory(prefix="sightline-bench-cpu-") as tmp:
        work = Path(tmp)
        import av

        if clip is None:
            grid = make_grid_clip(work / "grid.mp4", [faces_dir / c for _, c, _ in PEOPLE])
            path, fps, size, clip_s = grid.path, float(grid.fps), list(grid.size), grid.duration
            desc: dict[str, Any] = {"name": "bench grid (make_grid_clip)", "faces_per_frame": 4}
        else:
            path = Path(clip)
            with av.open(str(path)) as c:
                st = c.streams.video[0]
                fps = float(st.average_rate or 25)
                size = [st.codec_context.width, st.codec_context.height]
                n_frames = sum(1 for _ in c.decode(st))
            clip_s = n_frames / fps
            desc = {"name": path.name}
        every = max(1, round(fps / analysis_fps))
        decode = {
            f"threads_{t}": _decode_cost(path, loops, t, "SLICE" if t == 1 else "AUTO", every) for t in decode_threads
        }
        frames = _analysed_frames(path, every)
        gil = _gil_probe(frames)
        engine = FaceEngine.from_config(EngineConfig(threads=1, model=model))
        rows = []
        with Gallery.open(work / "data", engine) as gallery:
            for name, _, enroll_photo in PEOPLE:
                gallery.enroll_person(name, [faces_dir / enroll_photo], watchlist="bench", create=True)
            reference = None
            for v in variants:
                row, seen = _run_variant(v, CPU_VARIANTS[v], frames, loops, gallery, clip_s + 1 / fps, model)
                if reference is None:
                    reference = seen
                row["recall"] = _recall(seen, reference)
                rows.append(row)
    dec = min(decode.values(), key=lambda d: d["decode_ms_per_frame"])
    for row in rows:
        per_cam = fps * dec["decode_ms_per_frame"] + analysis_fps * (dec["rgb_ms_per_frame"] + row["cpu_ms_per_frame"])
        row["cpu_ms_per_camera_second"] = round(per_cam, 1)
        row["projected_streams"] = round(cores * 1000 / per_cam, 1)
    return {
        "benchmark": "streams_cpu",
        "model": engine.model,
        "clip": {**desc, "size": size, "fps": round(fps, 3), "cycle_s": round(clip_s, 3)},
        "analysis_fps": analysis_fps,
        "loops": loops,
        "reference_variant": variants[0],
        "decode": decode,
        "gil_probe_full_frame_hog": gil,
        "cpu": cpu_info,
        "rows": rows,
    }
