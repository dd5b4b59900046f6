"""Small test videos made with the ffmpeg CLI from the committed face photos.

``make_face_clip(out, [(None, 2.0), (obama_jpg, 3.0), (None, 2.0), (biden_jpg, 3.0)])`` writes an
H.264 clip whose timeline is known exactly: each segment shows a photo (letterboxed to ``size``) or a
plain grey frame (``None``) for its duration. The returned :class:`Clip` maps a time to the photo on
screen, so pipeline tests can check what should be recognised when.

Encoding: libx264 ``-preset veryfast``, yuv420p, constant frame rate, a keyframe every ``gop``
frames (default: one per second) so readers joining a live stream mid-way start within a second.
The container follows the file extension (.mp4 with faststart, .mkv, .ts, .h264 raw).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

GREY = "0x808080"


@dataclass(frozen=True)
class Segment:
    """One stretch of a clip: ``photo`` (None = grey) shown from ``start`` to ``end``, seconds."""

    photo: Path | None
    start: float
    end: float


@dataclass(frozen=True)
class Clip:
    """A generated clip: its path, geometry and timeline."""

    path: Path
    size: tuple[int, int]
    fps: int
    segments: tuple[Segment, ...]

    @property
    def duration(self) -> float:
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
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not found: run scripts/install-system-deps.sh")
    return exe


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
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    filters = []
    timeline = []
    t = 0.0
    for i, (photo, dur) in enumerate(segments):
        frames = dur * fps
        if dur <= 0 or abs(frames - round(frames)) > 1e-6:
            raise ValueError(f"segment {i}: duration {dur} s is not a positive whole number of frames at {fps} fps")
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
    g = gop or fps
    cmd += [
        "-filter_complex",
        ";".join([*filters, concat]),
        "-map",
        "[out]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-r",
        str(fps),
        "-g",
        str(g),
        "-keyint_min",
        str(g),
        "-sc_threshold",
        "0",
        "-bf",
        "0",
        "-threads",
        "2",
    ]
    out_path = Path(out_path)
    if out_path.suffix == ".mp4":
        cmd += ["-movflags", "+faststart"]
    cmd.append(str(out_path))
    subprocess.run(cmd, check=True, timeout=timeout_s, capture_output=True)
    return Clip(out_path, (w, h), fps, tuple(timeline))


def make_test_pattern_clip(out_path: Path, seconds: float, size: tuple[int, int], fps: int = 25) -> Path:
    """A moving test pattern (testsrc2), H.264, keyframe every second; for load and timing tests."""
    w, h = size
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s={w}x{h}:r={fps}:d={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(fps),
        "-bf",
        "0",
        "-threads",
        "2",
        str(out_path),
    ]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    return Path(out_path)
