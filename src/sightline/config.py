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
    model: Literal["dlib", "fusion"] = Field(
        "dlib",
        description="Face descriptor: 'dlib' (128-D ResNet, always available) or 'fusion' (dlib + faceres, "
        "1152-D, z-normalised score average; needs `sightline models install`, see docs/MODELS.md for the "
        "weights' licence); templates of different models never mix",
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
    key_file: Path | None = Field(
        None,
        description="Key file outside the data directory (--key-file); None: SIGHTLINE_KEY_FILE, SIGHTLINE_KEY, a "
        "systemd credential or <data_dir>/sightline.key",
    )


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
        "below this reuses that frame's faces instead of running the detector; 0 = detect every frame. "
        "Only with detect_mode='full' (ROI detection has its own motion test, roi_motion)",
    )
    motion_max_skip_s: float = Field(
        1.0, gt=0, le=60, description="Motion gating: the detector still runs at least this often, s"
    )
    detect_mode: Literal["full", "roi"] = Field(
        "roi",
        description="'full': scan the whole frame every analysed frame; 'roi': scan only the blocks that changed "
        "since the last analysed frame (roi_motion) and windows around live tracks, with a whole-frame pass at "
        "least every full_detect_s (sightline.video.roi; motion_gate is then unused)",
    )
    roi_motion: float = Field(
        6.0,
        gt=0,
        le=255,
        description="ROI detection: a block (80x80 pixels of a 1280 frame) whose mean absolute change of the "
        "green channel since the last analysed frame reaches this, 0-255 levels, is scanned",
    )
    full_detect_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="ROI detection: the whole frame is still scanned at least this often, s (the longest a "
        "newcomer who does not move can go unseen)",
    )
    roi_busy_stride: bool = Field(
        False,
        description="ROI detection in a busy scene (changed blocks worth half a whole-frame scan or more): "
        "scan the whole frame only every other analysed frame and just the live tracks' windows between "
        "(about half the detection cost; a newcomer is found one analysed frame later)",
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
    min_alert_quality: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Quality gate: a face whose quality score (size x sharpness x pose, 0-1, "
        "sightline.vision.quality) is below this never matches a watchlist, so never raises an alert; "
        "0 = off. 0.1 halved stranger alerts on the test clips for one more late/missed degraded shot in 9 "
        "(benchmarks/quality_gate.py, docs/BENCHMARKS.md §6)",
    )
    templates: Literal["per-photo", "fused"] = Field(
        "per-photo",
        description="How a listed person with several photos is scored: 'per-photo' = by their best photo; "
        "'fused' = against ONE template, the normalised mean of their photos, described by the fused-template "
        "calibrations (the model default and tuned thresholds follow them; tune with `watchlist tune "
        "--templates fused`). Measured on LFW with 2 photos each at equal false alerts: fused misses fewer "
        "listed people at FPIR 1% (dlib 11.4% vs 17.1%, 5 splits; fusion model 4.5% vs 8.2%) and, for dlib, "
        "at 0.1% (37.7% vs 45.5%), but the fusion model misses more at 0.1% (34.8% vs 27.8%, one split). "
        "Gallery photo search stays per-photo (docs/BENCHMARKS.md §6)",
    )


class NotifyConfig(_Model):
    """The notification outbox worker (``sightline.events.notify.Notifier``): how often it looks for due
    deliveries, how long each may take and how failed ones are retried (capped exponential backoff)."""

    poll_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the worker looks for due deliveries when not woken, s"
    )
    timeout_s: float = Field(
        10.0, gt=0, le=120, description="Network timeout of one delivery (connect, send, wait for the answer), s"
    )
    max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts before a delivery is marked failed (it can then be retried by hand)"
    )
    backoff_initial_s: float = Field(5.0, gt=0, le=3600, description="Delay after the first failed attempt, s")
    backoff_max_s: float = Field(
        900.0, gt=0, le=86400, description="Cap of the retry delay, which doubles after each failed attempt, s"
    )
    backoff_jitter: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fraction of each retry delay drawn at random (0: exact delays; 0.5: between half and all of "
        "it), so many deliveries failing together do not retry in lockstep",
    )
    lease_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="How long a claimed delivery is reserved for the worker that claimed it, s; must exceed "
        "timeout_s. A worker that dies mid-delivery leaves it to be retried after this long",
    )
    concurrency: int = Field(4, ge=1, le=64, description="Deliveries in flight at once per worker")


class RetentionConfig(_Model):
    """How long events are kept (``sightline.governance.retention``). Faces that match no watchlist are not
    stored at all unless their camera's ``keep_unmatched_sightings`` is on, and then for at most its
    ``unmatched_retention_h``. The audit log is never purged (append-only; it holds no biometric data)."""

    alerts_max_age_days: float = Field(
        90.0, gt=0, le=3650, description="Alerts (with their crops and deliveries) older than this are deleted, days"
    )
    confirmed_sightings_max_age_days: float = Field(
        30.0, gt=0, le=3650, description="Sightings that matched a watchlist person are deleted after this, days"
    )
    unmatched_default_h: float = Field(
        24.0,
        gt=0,
        le=24 * 365,
        description="Maximum age of non-matching sightings from a camera not stored in the database (an ad-hoc "
        "`sightline watch URL`), hours; stored cameras use their own unmatched_retention_h",
    )
    purge_interval_s: float = Field(
        300.0, ge=1, le=86400, description="How often the retention job enforces the limits, s"
    )
    batch_rows: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Rows deleted per transaction, so a large purge never holds the write lock for long",
    )


class AuditConfig(_Model):
    """Signed checkpoints of the audit chain's head (``sightline.governance.audit``): a separate append-only file
    that a rewrite of the database cannot match, optionally mirrored to syslog/journald."""

    checkpoint_file: Path | None = Field(
        None,
        description="Append-only file of signed chain heads (JSON lines); None: $SIGHTLINE_AUDIT_CHECKPOINTS, "
        "else audit-checkpoints.jsonl beside a writable key file, else in the data directory. Keep it where "
        "whoever can write the database cannot (another mount, another machine)",
    )
    checkpoint_every_entries: int = Field(
        100,
        ge=0,
        le=1_000_000,
        description="Write a checkpoint once this many entries were added since the last; 0: not by count",
    )
    checkpoint_every_s: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Write a checkpoint when the last one is this old and entries were added since, s; 0: not by "
        "time (both 0: no checkpoints at all)",
    )
    syslog: bool = Field(False, description="Also send each checkpoint line to syslog/journald")
    syslog_address: str = Field(
        "/dev/log", min_length=1, description="Unix socket of the syslog daemon (journald listens on /dev/log)"
    )


class ServerConfig(_Model):
    """``sightline serve``: where it listens, what it keeps, and the limits it enforces per request and user."""

    host: str = Field("127.0.0.1", min_length=1, description="Interface to listen on ('0.0.0.0': every interface)")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0: any free port)")
    data_dir: Path = Field(default_factory=default_data_dir, description="Where the gallery database lives")
    session_idle_s: float = Field(
        30 * 60.0, ge=10, le=7 * 86400, description="A console session unused this long expires, s"
    )
    session_max_s: float = Field(
        12 * 3600.0, ge=60, le=30 * 86400, description="A console session expires this long after login, s"
    )
    secure_cookies: bool = Field(
        False,
        description="Always mark the session cookie Secure (set when TLS ends at a proxy); it is also Secure "
        "whenever the request itself came over https",
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        le=2**31,
        description="Largest accepted request body, bytes (checked before the body is read; 413 beyond)",
    )
    max_upload_files: int = Field(20, ge=1, le=1000, description="Most photos in one enrollment upload")
    max_pixels: int = Field(
        40_000_000, ge=10_000, le=1_000_000_000, description="Largest accepted photo, width x height pixels"
    )
    search_rate_per_min: float = Field(
        30.0, gt=0, le=100_000, description="Photo searches allowed per user per minute (429 beyond)"
    )
    search_burst: int = Field(
        10, ge=1, le=10_000, description="Searches a user may make at once before the rate applies"
    )
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed logins per username or client within login_window_s before 429"
    )
    login_window_s: float = Field(300.0, gt=0, le=86400, description="Window over which failed logins count, s")
    metrics_public: bool = Field(False, description="Serve /metrics without authentication (scrapers on a trusted net)")
    start_cameras: bool = Field(True, description="Start the cameras stored in the database when the server starts")
    ws_queue: int = Field(
        256, ge=1, le=100_000, description="Events queued per live WebSocket client before the oldest are dropped"
    )
    engine: EngineConfig = Field(
        default_factory=EngineConfig, description="Face engine for searches and enrollment (and, per camera, live)"
    )
    imaging: ImagingConfig = Field(default_factory=ImagingConfig, description="Photo decoding limits")
    watch: WatchConfig = Field(default_factory=WatchConfig, description="Tracking and alert rules of the cameras")
    notify: NotifyConfig = Field(
        default_factory=NotifyConfig,
        description="Notification outbox worker: polling, per-delivery timeout and retry backoff of the channels",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="Maximum ages of alerts and sightings, enforced by a background job while the server runs",
    )
    key_file: Path | None = Field(
        None,
        description="Encryption key file, e.g. on another mount than data_dir; None: SIGHTLINE_KEY_FILE, "
        "SIGHTLINE_KEY, $CREDENTIALS_DIRECTORY/sightline.key (systemd LoadCredential=) or <data_dir>/sightline.key",
    )
    audit: AuditConfig = Field(
        default_factory=AuditConfig, description="Signed checkpoints of the audit chain (file, period, syslog)"
    )
