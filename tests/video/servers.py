"""Real servers for the video tests: re-exports :mod:`sightline.eval.servers` (where they live, so other
test packages and the benchmarks share them) with the committed fixture photos as defaults."""

from __future__ import annotations

from pathlib import Path

from sightline.eval import servers as _servers
from sightline.eval.servers import (
    RELAY_SCRIPT,
    RTSP_PERL,
    HttpVideoServer,
    PerlRtspServer,
    Publisher,
    RelayRtspServer,
    RtspServerBase,
    free_tcp_port,
    free_udp_range,
    process_cpu_s,
    publish,
    rtsp_describe_status,
    stop_process,
    wait_port,
)
from tests.conftest import GALLERY

OBAMA = GALLERY / "obama" / "obama.jpg"
BIDEN = GALLERY / "biden" / "biden.jpg"

__all__ = [
    "BIDEN",
    "OBAMA",
    "RELAY_SCRIPT",
    "RTSP_PERL",
    "HttpVideoServer",
    "PerlRtspServer",
    "Publisher",
    "RelayRtspServer",
    "RtspServerBase",
    "free_tcp_port",
    "free_udp_range",
    "jpeg_frames",
    "process_cpu_s",
    "publish",
    "rtsp_describe_status",
    "stop_process",
    "wait_port",
]


def jpeg_frames(size: tuple[int, int] = (320, 240), photos: tuple[Path, ...] = (OBAMA, BIDEN)) -> list[bytes]:
    """Grey, obama and biden frames as JPEG bytes, letterboxed to ``size``."""
    return _servers.jpeg_frames(photos, size)
