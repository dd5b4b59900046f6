"""Fixtures for the video tests: generated clips, real RTSP servers, an HTTP MJPEG/HLS server.

Everything is a real component: clips are encoded by the ffmpeg CLI from the committed face photos,
RTSP streams are published by ffmpeg into a real server process and read back over the network, and
every process and thread started here is stopped at teardown. The helpers live in
sightline.eval.servers and sightline.eval.clips (tests/video/servers.py adds the fixture photos).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sightline.eval.clips import Clip, ffmpeg_exe, make_face_clip
from sightline.eval.servers import HttpVideoServer, PerlRtspServer, RelayRtspServer, free_tcp_port
from tests.video.servers import BIDEN, OBAMA, jpeg_frames


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def face_clip(clip_dir: Path) -> Clip:
    """10 s, 320x240 @ 25 fps, H.264 (-g 25): 2 s grey, 3 s obama, 2 s grey, 3 s biden."""
    return make_face_clip(
        clip_dir / "faces.mp4", [(None, 2.0), (OBAMA, 3.0), (None, 2.0), (BIDEN, 3.0)], size=(320, 240), fps=25
    )


@pytest.fixture(scope="session")
def short_clip(clip_dir: Path) -> Clip:
    """3 s, 320x240 @ 25 fps (75 frames): 1 s grey, 2 s obama."""
    return make_face_clip(clip_dir / "short.mp4", [(None, 1.0), (OBAMA, 2.0)], size=(320, 240), fps=25)


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[PerlRtspServer]:
    """rtsp-server-perl on free ports (UDP only); killed with its publishers at teardown."""
    srv = PerlRtspServer.on_free_ports(tmp_path)
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def rtsp_relay(tmp_path: Path) -> Iterator[RelayRtspServer]:
    """The test relay (RTP over TCP and UDP) on a free port; ffmpeg publishes over TCP."""
    port = free_tcp_port()
    srv = RelayRtspServer(tmp_path, client_port=port, source_port=port, transport_in="tcp")
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpVideoServer]:
    root = tmp_path / "www"
    root.mkdir()
    srv = HttpVideoServer(root, frames=jpeg_frames())
    srv.start()
    yield srv
    srv.close()


@pytest.fixture(scope="session")
def hls_dir(clip_dir: Path, face_clip: Clip) -> Path:
    """The face clip as a VOD HLS playlist (``index.m3u8``, 2 s segments), remuxed without re-encoding."""
    out = clip_dir / "hls"
    out.mkdir(exist_ok=True)
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(face_clip.path),
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
            str(out / "seg%03d.ts"),
            str(out / "index.m3u8"),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return out
