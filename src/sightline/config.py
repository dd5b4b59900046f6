"""Configuration: pydantic models, ``extra="forbid"``; every field has a unit, bounds and a description.

Config is data, never rewritten by validators. Build the services from it:
``engine = FaceEngine.from_config(cfg.engine)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DATA_DIR_ENV = "SIGHTLINE_DATA_DIR"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImagingConfig(_Model):
    """Limits applied to every photo before and while it is decoded."""

    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1024, le=2**31, description="Largest accepted photo file, bytes")
    max_pixels: int = Field(
        80_000_000,
        ge=10_000,
        le=1_000_000_000,
        description="Largest accepted width x height, pixels (decompression-bomb guard)",
    )


class EngineConfig(_Model):
    """The face engine: detector, landmarks, alignment and descriptor."""

    backend: Literal["auto", "dlib", "onnx"] = Field(
        "auto",
        description="Runtime for the neural networks: 'dlib' is the reference, 'onnx' the fast one; "
        "'auto' picks onnx where onnxruntime and its backend are available, else dlib",
    )
    detector: Literal["hog", "mmod"] = Field(
        "hog", description="Face detector: 'hog' (fast, frontal faces) or 'mmod' (CNN, more poses, slower)"
    )
    upsample: int = Field(
        1,
        ge=0,
        le=3,
        description="Times the image is upsampled 2x before detection; each step finds faces half as "
        "small and costs about 4x the time",
    )
    fallback_detector: Literal["none", "mmod"] = Field(
        "mmod",
        description="Detector retried on a photo where the main one finds no face (photos only, never on live video)",
    )
    min_face_px: float = Field(
        20.0, ge=8.0, le=4096.0, description="Faces whose box is narrower than this, in pixels, are ignored"
    )
    flip_average: bool = Field(
        True,
        description="Average the descriptor of the chip and its mirror image (2x descriptor cost; "
        "measured to help on LFW, see docs/BENCHMARKS.md)",
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads for the onnx backend; 0 = all cores")
    batch_size: int = Field(32, ge=1, le=1024, description="Chips per descriptor batch")


def default_data_dir() -> Path:
    """``$SIGHTLINE_DATA_DIR`` if set, else the user data dir (``~/.local/share/sightline`` on Linux)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("sightline", appauthor=False))


def default_cache_dir() -> Path:
    """User cache dir for derived files (converted models); safe to delete."""
    env = os.environ.get("SIGHTLINE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sightline", appauthor=False))


class Settings(_Model):
    """Everything a Sightline process needs; the CLI builds it from flags and the environment."""

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the gallery database lives")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    imaging: ImagingConfig = Field(default_factory=ImagingConfig)


class CameraConfig(_Model):
    """One camera (or video file) to watch."""

    id: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Camera name")
    url: str = Field(
        ..., min_length=1, description="rtsp://, http(s):// (MJPEG, HLS, progressive), a file path, or /dev/videoN"
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    loop: bool = Field(False, description="Files only: start again at the end")
    realtime: bool = Field(True, description="Files only: play at the file's native frame rate")
    analysis_fps: float = Field(5.0, gt=0, le=60, description="Frames analysed per second")
    detect_width: int = Field(
        640, ge=160, le=3840, description="Frames are scaled to this width, pixels, for detection"
    )
    min_face_px: float = Field(
        40.0, ge=8, le=2048, description="Smallest face analysed, pixels of the original frame (box side)"
    )
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="A stream silent this long is reconnected, s")
    reconnect_initial_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay, s (doubles)")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the reconnect delay, s")
    queue_frames: int = Field(2, ge=1, le=100, description="Frames buffered between capture and analysis")
    motion_gate: float = Field(
        0.0,
        ge=0,
        le=255,
        description="Motion gating: a frame whose largest block change from the last detected frame (mean "
        "absolute difference of 10x10-pixel blocks of a ~160 px wide green-channel thumbnail, 0-255 levels) is "
        "below this reuses that frame's faces instead of running the detector; 0 = detect every frame",
    )
    motion_max_skip_s: float = Field(
        1.0, gt=0, le=60, description="Motion gating: the detector still runs at least this often, s"
    )
    keep_unmatched_sightings: bool = Field(
        False,
        description="Store crops and descriptors of faces that match no watchlist (privacy: off by default)",
    )
    unmatched_retention_h: float = Field(
        24.0, gt=0, le=24 * 365, description="Maximum age of kept non-matching sightings, hours"
    )


class WatchConfig(_Model):
    """Tracking, best-shot and alerting rules shared by all cameras."""

    track_iou: float = Field(0.3, gt=0, lt=1, description="Minimum IoU to continue a track")
    track_max_age_s: float = Field(1.5, gt=0, le=60, description="A track unseen this long ends, s")
    reembed_quality_gain: float = Field(
        0.1, ge=0, le=1, description="Re-embed a track only when a shot this much better arrives (quality units)"
    )
    identity_check_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Embed a track's current face this often (and whenever it is continued after a gap) and "
        "split the track when it is clearly another person, s",
    )
    alert_cooldown_s: float = Field(
        60.0, ge=0, le=86400, description="Repeat alerts for the same person on the same camera are suppressed, s"
    )
    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="Per-camera stats period, s")
