"""The shared clip and server helpers (sightline.eval.clips / .servers) against the real tools."""

from __future__ import annotations

import socket
from pathlib import Path

import av
import numpy as np
import pytest

from sightline.config import CameraConfig
from sightline.eval.clips import Clip, make_grid_clip
from sightline.eval.servers import PerlRtspServer, rtsp_describe_status
from sightline.video.sources import open_source
from tests.conftest import GALLERY


def test_grid_clip_timeline_and_frames(tmp_path: Path) -> None:
    photos = [GALLERY / "obama" / "obama.jpg", GALLERY / "biden" / "biden.jpg"] * 2
    clip = make_grid_clip(tmp_path / "g.mp4", photos, size=(320, 180), fps=10, on_s=1.0, off_s=0.5)
    assert (clip.duration, clip.frame_count, clip.size) == (1.5, 15, (320, 180))
    assert clip.photo_at(0.5) == photos[0] and clip.photo_at(1.2) is None
    with av.open(str(clip.path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 15
    assert frames[0].shape == (180, 320, 3)
    assert float(frames[0].std()) > 20  # faces in the grid
    assert float(frames[-1].std()) < 3  # grey


def test_grid_clip_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly 4 photos"):
        make_grid_clip(tmp_path / "g.mp4", [GALLERY / "obama" / "obama.jpg"])
    with pytest.raises(ValueError, match="even"):
        make_grid_clip(tmp_path / "g.mp4", [GALLERY / "obama" / "obama.jpg"] * 4, size=(321, 180))


@pytest.mark.timeout(60)
def test_perl_server_skips_rtp_ports_taken_by_another_process(tmp_path: Path, short_clip: Clip) -> None:
    """RTSP::Server handed out its first RTP port pairs without checking them: with those ports taken by
    someone else (another server, here plain sockets) the publisher's packets went nowhere. The launcher
    skips pairs it cannot bind, and a probe closing before the publisher arrives does not reset the
    counter to 20000."""
    srv = PerlRtspServer.on_free_ports(tmp_path, rtp_ports=40)
    squatters = []
    try:
        for p in range(srv.rtp_start_port, srv.rtp_start_port + 6):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", p))
            squatters.append(s)
        srv.start()
        assert rtsp_describe_status(srv.url("door"), srv.client_port) == 404  # closes: housekeeping runs
        pub = srv.publish(short_clip, "door")
        cfg = CameraConfig(id="cam", url=pub.url, rtsp_transport="udp", read_timeout_s=5)
        with open_source(cfg) as src:
            got = []
            for _, rgb in src:
                got.append(np.asarray(rgb))
                if len(got) >= 10:
                    break
        assert len(got) == 10 and got[0].shape == (240, 320, 3)
    finally:
        srv.close()
        for s in squatters:
            s.close()
