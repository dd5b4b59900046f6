"""Live video: inputs (RTSP, HTTP, files, V4L2) decoded with PyAV, and per-camera capture threads.

``open_source(cfg)`` opens one camera's input; ``CameraCapture(cfg).start()`` runs its capture thread
(decode -> decimate to ``analysis_fps`` -> bounded drop-oldest ``FrameQueue``), reconnecting with
capped backoff and reporting a ``CameraStatus``. Importing this package does not import PyAV.
"""

from sightline.video.capture import (
    AnalysisClock,
    CameraCapture,
    CameraStatus,
    CaptureState,
    CaptureStats,
    FrameQueue,
)
from sightline.video.sources import DecodedFrame, SourceError, SourceKind, VideoSource, open_source

__all__ = [
    "AnalysisClock",
    "CameraCapture",
    "CameraStatus",
    "CaptureState",
    "CaptureStats",
    "DecodedFrame",
    "FrameQueue",
    "SourceError",
    "SourceKind",
    "VideoSource",
    "open_source",
]
