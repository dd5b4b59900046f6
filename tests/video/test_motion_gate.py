"""Motion gating in the camera worker (CameraConfig.motion_gate) with the real engine and a real gallery:
static frames reuse the last detection, a change or the max-skip period runs the detector again, and
alerts and tracks are unchanged."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from sightline.config import CameraConfig, WatchConfig
from sightline.events import EventBus, EventStores
from sightline.gallery import Gallery
from sightline.types import Frame
from sightline.video.matcher import WatchlistMatcher
from sightline.video.worker import CameraWorker
from tests.conftest import GALLERY

W, H = 1280, 720


def scene(photo: str | None, noise_seed: int) -> np.ndarray:
    """The photo centred on a grey 1280x720 frame, plus +-2 levels of noise (sensor/compression)."""
    out = np.full((H, W, 3), 100, np.uint8)
    if photo is not None:
        with PILImage.open(GALLERY / photo) as im:
            im = im.convert("RGB")
            im = im.resize((round(im.width * 500 / im.height), 500), PILImage.BILINEAR)
            a = np.asarray(im)
        y0, x0 = (H - a.shape[0]) // 2, (W - a.shape[1]) // 2
        out[y0 : y0 + a.shape[0], x0 : x0 + a.shape[1]] = a
    noise = np.random.default_rng(noise_seed).integers(-2, 3, out.shape)
    return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.mark.timeout(120)
def test_static_frames_reuse_detection_and_still_alert(tmp_path: Path, engine) -> None:
    with Gallery.open(tmp_path, engine) as g:
        g.enroll_person("obama", [GALLERY / "obama/obama2.jpg"], watchlist="wanted", create=True)
        bus = EventBus()
        cam = CameraConfig(id="door", url="x.mp4", detect_mode="full", motion_gate=8.0, motion_max_skip_s=0.9)
        worker = CameraWorker(cam, engine, WatchlistMatcher(g), bus, WatchConfig(), EventStores(g.store))
        t0 = time.time()
        # 0-1.0 s grey, 1.2-2.4 s obama standing still, 2.6 s grey again; 0.2 s apart (5 fps).
        plan = [None] * 6 + ["obama/obama.jpg"] * 7 + [None] * 2
        alerts = []
        gated_at = []
        for i, photo in enumerate(plan):
            before = worker.stats().detections_gated
            alerts += worker.process(Frame("door", i, t0 + 0.2 * i, 0.2 * i, scene(photo, i)))
            gated_at.append(worker.stats().detections_gated > before)
        worker.flush()
        st = worker.stats()
    # grey: detected at 0, gated 0.2-0.8, detected again at 1.0 (max skip 0.9 s); obama appears at 1.2:
    # detected (change), gated while still until the max skip, then detected; gone at 2.6: detected.
    assert gated_at == [False, True, True, True, True, False, False, True, True, True, True, False, True, False, True]
    assert st.detections_gated == sum(gated_at)
    assert [(a.match.name, a.track_id) for a in alerts] == [("obama", 1)]
    assert st.tracks_started == 1 and st.sightings == 1 and st.frames == len(plan)


def test_motion_gate_off_by_default() -> None:
    assert CameraConfig(id="c", url="x.mp4").motion_gate == 0.0
