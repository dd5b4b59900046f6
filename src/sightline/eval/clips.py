"""Test and benchmark videos made with the ffmpeg CLI from face photos, with known timings.

``make_face_clip(out, [(None, 2.0), (obama_jpg, 3.0), (None, 2.0), (biden_jpg, 3.0)])`` writes an
H.264 clip whose timeline is known exactly: each segment shows a photo (letterboxed to ``size``) or a
plain grey frame (``None``) for its duration. The returned :class:`Clip` maps a time to the photo on
screen, so pipeline tests can check what should be recognised when.

``make_grid_clip(out, [p1, p2, p3, p4])`` writes the streams benchmark clip: four photos in a 2x2 grid
(four faces per frame) for ``on_s`` seconds, then ``off_s`` seconds of grey so tracks end and start again.

Encoding: libx264 ``-preset veryfast``, yuv420p, constant frame rate, no B-frames, a keyframe every
``gop`` frames (default: one per second) so readers joining a live stream mid-way start within a second.
The container follows the file extension (.mp4 with faststart, .mkv, .ts, .h264 raw).
Needs the ``ffmpeg`` executable (Debian package ffmpeg); every call runs one ffmpeg process.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GREY",
    "Clip",
    "Segment",
    "ffmpeg_exe",
    "make_face_clip",
    "make_grid_clip",
    "make_test_pattern_clip",
]

#: The letterbox / blank colour of generated clips (ffmpeg colour syntax).
GREY = "0x808080"


@dataclass(frozen=True)
class Segment:
    """One stretch of a clip: ``photo`` (None = grey) shown from ``start`` to ``end``, seconds."""

    photo: Path | None
    start: float
    end: float


@dataclass(frozen=True)
class Clip:
    """A generated clip: its path, geometry (width, height in pixels), frame rate and timeline."""

    path: Path
    size: tuple[int, int]
    fps: int
    segments: tuple[Segment, ...]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.segments[-1].end if self.segments else 0.0

    @property
    def frame_count(self) -> int:
        return round(self.duration * self.fps)

    def photo_at(self, t: float) -> Path | None:
        """The photo on screen at ``t`` seconds from the clip start (None for grey or past the end)."""
        for s in self.segments:
            if s.start <= t < s.end:
                return s.photo
        return None


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable; raises RuntimeError naming the install script when missing."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not found: run scripts/install-system-deps.sh (Debian package ffmpeg)")
    return exe


def _check_duration(i: int, dur: float, fps: int) -> None:
    frames = dur * fps
    if dur <= 0 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"segment {i}: duration {dur} s is not a positive whole number of frames at {fps} fps")


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"size must be positive even numbers for yuv420p, got {size}")
    return w, h


def _encode_args(fps: int, gop: int | None) -> list[str]:
    g = gop or fps
    return [
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-r", str(fps),
        "-g", str(g), "-keyint_min", str(g), "-sc_threshold", "0", "-bf", "0", "-threads", "2",
    ]  # fmt: skip


def _run(cmd: list[str], out_path: Path, timeout_s: float) -> None:
    if out_path.suffix == ".mp4":
        cmd += ["-movflags", "+faststart"]
    cmd.append(str(out_path))
    try:
        subprocess.run(cmd, check=True, timeout=timeout_s, capture_output=True)
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or b"").decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"ffmpeg failed to write {out_path}: {tail}") from e


def make_face_clip(
    out_path: Path,
    segments: list[tuple[Path | None, float]],
    size: tuple[int, int] = (640, 360),
    fps: int = 25,
    gop: int | None = None,
    timeout_s: float = 120.0,
) -> Clip:
    """Encode a slideshow clip; returns its :class:`Clip` description.

    segments: (photo or None for grey, seconds) in order; each duration must be a whole number of
    frames at ``fps`` so the timeline is exact. size: (width, height), even numbers.
    """
    if not segments:
        raise ValueError("segments must not be empty")
    w, h = _check_size(size)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    filters = []
    timeline = []
    t = 0.0
    for i, (photo, dur) in enumerate(segments):
        _check_duration(i, dur, fps)
        if photo is None:
            cmd += ["-f", "lavfi", "-t", f"{dur}", "-i", f"color=c={GREY}:s={w}x{h}:r={fps}"]
            filters.append(f"[{i}:v]setsar=1,format=yuv420p[v{i}]")
        else:
            cmd += ["-loop", "1", "-framerate", str(fps), "-t", f"{dur}", "-i", str(photo)]
            filters.append(
                f"[{i}:v]scale={w}:{h}:force_original_aspect_ratio=decrease,"
                f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color={GREY},setsar=1,fps={fps},format=yuv420p[v{i}]"
            )
        timeline.append(Segment(None if photo is None else Path(photo), t, t + dur))
        t += dur
    concat = "".join(f"[v{i}]" for i in range(len(segments))) + f"concat=n={len(segments)}:v=1:a=0[out]"
    cmd += ["-filter_complex", ";".join([*filters, concat]), "-map", "[out]", *_encode_args(fps, gop)]
    out_path = Path(out_path)
    _run(cmd, out_path, timeout_s)
    return Clip(out_path, (w, h), fps, tuple(timeline))


def make_grid_clip(
    out_path: Path,
    photos: Sequence[Path],
    size: tuple[int, int] = (1280, 720),
    fps: int = 25,
    on_s: float = 2.0,
    off_s: float = 1.0,
    gop: int | None = None,
    timeout_s: float = 120.0,
) -> Clip:
    """The streams benchmark clip: four photos in a 2x2 grid for ``on_s`` s, then ``off_s`` s of grey.

    Each photo is letterboxed into a (width/2, height/2) tile, so a 1280x720 clip shows four faces of
    roughly 100-200 px. The returned Clip's segments carry ``photos[0]`` for the grid stretch (the
    timeline says when faces are on screen, not which tile holds whom).
    """
    if len(photos) != 4:
        raise ValueError(f"make_grid_clip needs exactly 4 photos, got {len(photos)}")
    w, h = _check_size(size)
    _check_duration(0, on_s, fps)
    _check_duration(1, off_s, fps)
    tw, th = w // 2, h // 2
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    filters = []
    for i, p in enumerate(photos):
        cmd += ["-loop", "1", "-framerate", str(fps), "-t", f"{on_s}", "-i", str(p)]
        filters.append(
            f"[{i}:v]scale={tw}:{th}:force_original_aspect_ratio=decrease,pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2:"
            f"color={GREY},setsar=1,fps={fps},format=yuv420p[t{i}]"
        )
    cmd += ["-f", "lavfi", "-t", f"{off_s}", "-i", f"color=c={GREY}:s={w}x{h}:r={fps}"]
    filters.append("[t0][t1][t2][t3]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0[grid]")
    filters.append("[4:v]setsar=1,format=yuv420p[grey]")
    filters.append("[grid][grey]concat=n=2:v=1:a=0[out]")
    cmd += ["-filter_complex", ";".join(filters), "-map", "[out]", *_encode_args(fps, gop)]
    out_path = Path(out_path)
    _run(cmd, out_path, timeout_s)
    timeline = (Segment(Path(photos[0]), 0.0, on_s), Segment(None, on_s, on_s + off_s))
    return Clip(out_path, (w, h), fps, timeline)


def make_test_pattern_clip(out_path: Path, seconds: float, size: tuple[int, int], fps: int = 25) -> Path:
    """A moving test pattern (testsrc2), H.264, keyframe every second; for load and timing tests."""
    w, h = _check_size(size)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r={fps}:d={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(fps), "-bf", "0"]
    cmd += ["-threads", "2"]
    out_path = Path(out_path)
    _run(cmd, out_path, 120.0)
    return out_path
