"""CameraWorker and WatchlistMatcher with the real engine on frames built from the fixture photos and a
real gallery (SQLite in tmp): alerts, cooldown, sightings and their retention, re-embedding, the
database rows and the bus, the run loop; the matcher's thresholds and refresh on synthetic vectors."""

from __future__ import annotations

import functools
import io
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFilter

from sightline.config import CameraConfig, WatchConfig
from sightline.events import EventBus, EventStores
from sightline.gallery import GALLERY_FILE, Gallery
from sightline.types import Alert, Frame, Sighting
from sightline.video.capture import FrameQueue
from sightline.video.matcher import WatchlistMatcher
from sightline.video.tracker import box_iou
from sightline.video.worker import CameraWorker, WorkerStats
from tests.conftest import GALLERY

WIDTH, HEIGHT = 1280, 720  # frames are scaled to the default detect_width 640 for detection
STEP_S = 0.2  # 5 analysed frames per second
BLANK = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)


@functools.cache
def photo_frame(name: str, blur: float = 0.0) -> np.ndarray:
    """The photo fitted to the frame height and centred on a grey 1280x720 frame (optionally blurred)."""
    with PILImage.open(GALLERY / name) as im:
        im = im.convert("RGB")
        im = im.resize((round(im.width * HEIGHT / im.height), HEIGHT), PILImage.BILINEAR)
        if blur:
            im = im.filter(ImageFilter.GaussianBlur(blur))
        a = np.asarray(im)
    out = BLANK.copy()
    x0 = (WIDTH - a.shape[1]) // 2
    out[:, x0 : x0 + a.shape[1]] = a
    out.setflags(write=False)
    return out


def obama(shift: int = 0, blur: float = 0.0) -> np.ndarray:
    return np.roll(photo_frame("obama/obama.jpg", blur), shift, axis=1)  # the margins are plain grey


def biden(shift: int = 0) -> np.ndarray:
    return np.roll(photo_frame("biden/biden.jpg"), shift, axis=1)


def frames(images: list[np.ndarray], t0: float, camera_id: str = "cam1") -> list[Frame]:
    return [Frame(camera_id, i, t0 + i * STEP_S, i * STEP_S, im) for i, im in enumerate(images)]


def decodes_as_jpeg(data: bytes | None) -> tuple[int, int]:
    assert data is not None and data[:3] == b"\xff\xd8\xff"
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        im.load()
        return im.size


@pytest.fixture(scope="module")
def enrolled_file(tmp_path_factory, engine) -> Path:
    """A gallery file with obama (from obama2.jpg, not the probe photo) in watchlist 'wanted'."""
    data = tmp_path_factory.mktemp("enrolled")
    with Gallery.open(data, engine) as g:
        report = g.enroll_person("obama", [GALLERY / "obama/obama2.jpg"], watchlist="wanted", create=True)
        assert report.results[0].template_ids
    return data / GALLERY_FILE


def open_gallery(enrolled_file: Path, dest: Path, engine) -> Gallery:
    # the whole data folder: the database and what the gallery keeps beside it (its template key)
    shutil.copytree(enrolled_file.parent, dest)
    return Gallery.open(dest, engine)


@dataclass
class Run:
    worker: CameraWorker
    frames: list[Frame]
    alerts: list[Alert]
    sightings: list[Sighting]  # from process() via the bus order, plus flush()
    events: list[object]  # everything on the bus, in order
    stats: WorkerStats
    db: Path


def run_worker(engine, gallery: Gallery, images, *, camera=None, watch=None) -> Run:
    bus = EventBus()
    sub = bus.subscribe(maxsize=1000)
    camera = camera or CameraConfig(id="cam1", url="file.mp4")
    worker = CameraWorker(
        camera,
        engine,
        WatchlistMatcher(gallery),
        bus,
        watch or WatchConfig(track_max_age_s=0.5),
        EventStores(gallery.store),
    )
    fs = frames(images, time.time(), camera.id)
    alerts = [a for f in fs for a in worker.process(f)]
    worker.flush()
    events = sub.drain()
    return Run(
        worker,
        fs,
        alerts,
        [e for e in events if isinstance(e, Sighting)],
        events,
        worker.stats(),
        gallery.store.path,
    )


@pytest.fixture(scope="module")
def story(tmp_path_factory, engine, enrolled_file) -> Run:
    """obama walks by (4 frames), nobody (4), biden (4), nobody (4), obama again (3) within the cooldown."""
    images = (
        [obama(3 * i) for i in range(4)]
        + [BLANK] * 4
        + [biden(3 * i) for i in range(4)]
        + [BLANK] * 4
        + [obama(-3 * i) for i in range(3)]
    )
    with open_gallery(enrolled_file, tmp_path_factory.mktemp("story") / "data", engine) as g:
        return run_worker(engine, g, images)


def test_one_alert_for_the_watchlisted_face_with_its_crop_and_box(story, engine):
    (alert,) = story.alerts
    assert (alert.camera_id, alert.track_id) == ("cam1", 1)
    m = alert.match
    assert (m.name, m.watchlist) == ("obama", "wanted")
    assert m.similarity >= m.threshold == pytest.approx(engine.calibration.default_threshold)
    assert 0 < m.est_fmr < 1e-3
    assert alert.frame_ts == story.frames[0].ts  # the first embedding already matched
    w, h = decodes_as_jpeg(alert.crop_jpeg)
    assert max(w, h) <= 320 and min(w, h) >= 100  # the ~190 px face grown by 40%, capped at 320
    # the box is in full-frame pixels although detection ran at 640 px wide: same centre and about
    # the same size as detecting on the full frame (HOG's pyramid steps make the sizes differ ~20%)
    (full,) = engine.detect(story.frames[0].image).xyxy
    x1, y1, x2, y2 = alert.xyxy
    assert np.hypot((x1 + x2 - full[0] - full[2]) / 2, (y1 + y2 - full[1] - full[3]) / 2) < 10
    assert 0.75 < (x2 - x1) / (full[2] - full[0]) < 1.33
    assert box_iou([alert.xyxy], [full])[0, 0] > 0.5


def test_every_track_becomes_a_sighting_and_unmatched_ones_keep_nothing(story):
    s1, s2, s3 = sorted(story.sightings, key=lambda s: s.track_id)
    assert [s.track_id for s in (s1, s2, s3)] == [1, 2, 3]
    assert [s.frames for s in (s1, s2, s3)] == [4, 4, 3]
    fs = story.frames
    assert (s1.start_ts, s1.end_ts) == (fs[0].ts, fs[3].ts)
    assert (s2.start_ts, s2.end_ts) == (fs[8].ts, fs[11].ts)
    for s in (s1, s3):
        assert s.match is not None and s.match.name == "obama"
        decodes_as_jpeg(s.crop_jpeg)
        assert s.embedding is not None and s.embedding.shape == (128,)
    assert s2.match is None and s2.crop_jpeg is None and s2.embedding is None  # biden is not enrolled
    assert 0 < s2.quality <= 1


def test_the_cooldown_suppresses_the_second_obama_track(story):
    st = story.stats
    assert (st.alerts, st.alerts_suppressed, st.tracks_started, st.sightings) == (1, 1, 3, 3)
    assert st.matches == 2  # tracks 1 and 3 matched; only the first alerted


def test_alerts_and_sightings_land_in_the_database_and_on_the_bus(story, engine):
    kinds = [type(e).__name__ for e in story.events]
    # alert while obama is seen; each sighting when its track ends (the last one on flush)
    assert kinds == ["Alert", "Sighting", "Sighting", "Sighting"]
    (alert,) = story.alerts
    assert story.events[0] is alert and alert.id is not None  # published with its row id
    with Gallery.open(story.db.parent, engine) as g:  # the crop as stored (sealed at rest), read back
        stored = EventStores(g.store).alerts.get(alert.id)
        assert stored is not None and stored.alert.crop_jpeg == alert.crop_jpeg
    c = sqlite3.connect(story.db)
    try:
        rows = c.execute("SELECT id, camera_id, track_id, watchlist, status FROM alerts").fetchall()
        assert rows == [(alert.id, "cam1", 1, "wanted", "new")]
        rows = c.execute(
            "SELECT track_id, person_id IS NOT NULL, crop_jpeg IS NOT NULL, embedding IS NOT NULL, model "
            "FROM sightings ORDER BY track_id"
        ).fetchall()
        model = story.worker.engine.model
        assert rows == [(1, 1, 1, 1, model), (2, 0, 0, 0, None), (3, 1, 1, 1, model)]
    finally:
        c.close()


def test_stats_count_the_stages(story):
    st = story.stats
    assert (st.frames, st.frames_skipped, st.faces, st.errors, st.store_errors) == (19, 0, 11, 0, 0)
    assert st.embeds == 3 and st.embed_batches == 3  # one per track: the later shots were no clearly better
    assert st.detect_s > 0 and st.embed_s > 0 and st.match_s > 0 and st.tracks_active == 0
    (alert,) = story.alerts
    assert st.alert_latencies_s == (alert.ts - alert.frame_ts,)


def test_unmatched_sightings_keep_crop_and_descriptor_when_the_camera_says_so(tmp_path, engine, enrolled_file):
    camera = CameraConfig(id="cam1", url="file.mp4", keep_unmatched_sightings=True)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, [biden(3 * i) for i in range(3)], camera=camera)
        (s,) = r.sightings
        assert s.match is None and r.alerts == []
        decodes_as_jpeg(s.crop_jpeg)
        assert s.embedding is not None and s.embedding.shape == (128,)
        (stored,) = EventStores(g.store).sightings.list()
        assert stored.model == engine.model and stored.sighting.crop_jpeg == s.crop_jpeg
        np.testing.assert_array_equal(stored.sighting.embedding, s.embedding)


@pytest.mark.parametrize(
    ("gain", "embeds"),
    [
        # qualities ~0.05, 0.09, 0.20, 0.8, 0.8: embed the first, then at +0.15 and at +0.6
        (0.1, 3),
        (1.0, 1),  # never clearly better: only the first shot is embedded
    ],
)
def test_re_embeds_only_a_clearly_better_shot(tmp_path, engine, enrolled_file, gain, embeds):
    images = [obama(0, blur=4), obama(3, blur=3), obama(6, blur=2), obama(9), obama(12)]
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, images, watch=WatchConfig(track_max_age_s=0.5, reembed_quality_gain=gain))
    assert (r.stats.tracks_started, r.stats.embeds) == (1, embeds)
    (s,) = r.sightings
    assert s.quality > 0.5  # the best shot is kept whether or not it was embedded
    if gain == 0.1:
        assert len(r.alerts) == 1  # several matching embeddings, still one alert per (track, person)


def test_after_the_cooldown_a_new_track_alerts_again(tmp_path, engine, enrolled_file):
    images = [obama(0), obama(3)] + [BLANK] * 4 + [obama(6), obama(9)]
    watch = WatchConfig(track_max_age_s=0.5, alert_cooldown_s=1.0)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, images, watch=watch)
    assert [a.track_id for a in r.alerts] == [1, 2]  # 1.2 s apart > 1.0 s
    assert r.stats.alerts_suppressed == 0


def test_a_restarted_worker_keeps_the_cooldown_from_the_stored_alerts(tmp_path, engine, enrolled_file):
    """A camera that reconnects gets a new worker; with stores it reads the alerts raised on its camera within
    the cooldown, so the same person in the next frames is not alerted (paged) a second time. Another camera
    and a worker built after the cooldown alert as usual."""
    watch = WatchConfig(track_max_age_s=0.5, alert_cooldown_s=60.0)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        first = run_worker(engine, g, [obama(0), obama(3)], watch=watch)
        assert len(first.alerts) == 1
        again = run_worker(engine, g, [obama(6), obama(9)], watch=watch)  # a new worker: a restart
        assert again.alerts == [] and again.stats.alerts_suppressed == 1
        other = run_worker(engine, g, [obama(6)], watch=watch, camera=CameraConfig(id="cam2", url="file.mp4"))
        assert len(other.alerts) == 1  # cooldowns are per camera
        assert EventStores(g.store).recent_alerts("cam1", time.time() - 60) == {
            first.alerts[0].match.person_id: first.frames[0].ts
        }
        assert EventStores(g.store).recent_alerts("cam1", time.time() + 1) == {}  # nothing raised since then
        short = WatchConfig(track_max_age_s=0.5, alert_cooldown_s=0.01)
        time.sleep(0.05)
        after = run_worker(engine, g, [obama(6)], watch=short)
        assert len(after.alerts) == 1  # the stored alert is older than this worker's cooldown


def biden_at_obamas_face() -> np.ndarray:
    """biden moved down 48 px so that his face box overlaps obama(6)'s (IoU ~0.5 at detect_width 640)."""
    return np.roll(biden(), 48, axis=0)


# gain 0.1: obama's shot is clearly better than biden's, so without the check he would be re-embedded
# on biden's track (alert on track 1, biden's sighting matched to obama); gain 1: never re-embedded,
# so without the check obama would be missed altogether.
@pytest.mark.parametrize("gain", [0.1, 1.0])
def test_another_face_at_the_same_spot_after_a_gap_starts_a_new_track(tmp_path, engine, enrolled_file, gain):
    """A doorway: biden (not enrolled) leaves, obama (wanted) appears where he was 0.6 s later, within
    track_max_age_s. By box overlap alone obama would continue biden's track; the identity check on
    the gap splits it."""
    images = [biden_at_obamas_face()] * 3 + [BLANK] * 2 + [obama(6)] * 3
    watch = WatchConfig(track_max_age_s=1.5, reembed_quality_gain=gain)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, images, watch=watch)
    (alert,) = r.alerts
    assert (alert.match.name, alert.track_id, alert.frame_ts) == ("obama", 2, r.frames[5].ts)
    s1, s2 = sorted(r.sightings, key=lambda s: s.track_id)
    assert (s1.track_id, s1.frames, s1.match, s1.end_ts) == (1, 3, None, r.frames[2].ts)  # biden's, ended
    assert (s2.track_id, s2.frames, s2.start_ts) == (2, 3, r.frames[5].ts)
    assert s2.match is not None and s2.match.name == "obama"
    kinds = [type(e).__name__ for e in r.events]
    assert kinds == ["Sighting", "Alert", "Sighting"]  # biden's sighting when the track is split
    st = r.stats
    assert (st.identity_splits, st.identity_checks, st.tracks_started, st.sightings) == (1, 1, 2, 2)
    assert st.embeds == 1  # biden's first shot; obama's first embedding is the check's


def test_the_same_face_after_a_gap_keeps_its_track(tmp_path, engine, enrolled_file):
    images = [obama(0)] * 3 + [BLANK] * 2 + [obama(6)] * 3
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, images, watch=WatchConfig(track_max_age_s=1.5))
    assert [a.track_id for a in r.alerts] == [1]
    (s,) = r.sightings
    assert s.frames == 6 and s.match is not None
    st = r.stats
    assert (st.identity_checks, st.identity_splits, st.tracks_started, st.embeds) == (1, 0, 1, 1)


@pytest.mark.parametrize(
    ("images", "checks", "splits"),
    [
        # 0.0-1.4 s, embedded at 0.0: checked at 0.6 and 1.2 (every 0.5 s of the track's life)
        ([obama(3 * i) for i in range(8)], 2, 0),
        # no gap, so only the periodic check finds that obama took biden's track (at 0.6 s; his better
        # shot at 0.4 s is not re-embedded with reembed_quality_gain 1)
        ([biden_at_obamas_face()] * 2 + [obama(6)] * 3, 1, 1),
    ],
    ids=["same face", "another face without a gap"],
)
def test_identity_is_checked_every_identity_check_s(tmp_path, engine, enrolled_file, images, checks, splits):
    watch = WatchConfig(track_max_age_s=1.5, identity_check_s=0.5, reembed_quality_gain=1.0)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, images, watch=watch)
    assert (r.stats.identity_checks, r.stats.identity_splits) == (checks, splits)
    assert [a.match.name for a in r.alerts] == ["obama"]
    assert r.stats.tracks_started == 1 + splits


@pytest.mark.parametrize(("min_face_px", "faces"), [(100, 1), (400, 0)])
def test_min_face_px_is_in_full_frame_pixels(tmp_path, engine, enrolled_file, min_face_px, faces):
    # obama's face is ~187 px in the 1280 px frame, ~94 px in the 640 px detection image
    camera = CameraConfig(id="cam1", url="file.mp4", min_face_px=min_face_px)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        r = run_worker(engine, g, [obama()], camera=camera)
    assert r.stats.faces == faces and len(r.alerts) == faces


def test_a_frame_of_another_camera_is_refused(tmp_path, engine, enrolled_file):
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        w = CameraWorker(CameraConfig(id="cam1", url="x"), engine, WatchlistMatcher(g), None)
        with pytest.raises(ValueError, match="frame of camera 'cam2' given to the worker of 'cam1'"):
            w.process(Frame("cam2", 0, 0.0, None, BLANK))


def test_run_drains_a_closed_queue_then_flushes(tmp_path, engine, enrolled_file):
    """The capture closes its queue when the stream ends: the worker analyses what is left, ends its
    tracks and returns, without being told to stop."""
    t0 = time.time()
    q = FrameQueue(maxsize=10)
    for i in range(3):  # every second decoded frame reached the worker (seq 0, 2, 4)
        q.put(Frame("cam1", 2 * i, t0 + STEP_S * i, STEP_S * i, obama(3 * i)))
    q.close()
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        bus = EventBus()
        sub = bus.subscribe(maxsize=100)
        w = CameraWorker(CameraConfig(id="cam1", url="x"), engine, WatchlistMatcher(g), bus, None, EventStores(g.store))
        st = w.run(q, threading.Event(), poll_s=0.05)
        assert (st.frames, st.frames_skipped, st.alerts, st.sightings, st.tracks_active) == (3, 2, 1, 1, 0)
        kinds = [type(e).__name__ for e in sub.drain()]
        assert kinds == ["Alert", "Sighting"]
        assert EventStores(g.store).sightings.count(matched=True) == 1


def test_run_stops_on_the_stop_event_and_flushes(tmp_path, engine, enrolled_file):
    t0 = time.time()
    q = FrameQueue(maxsize=2)
    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        bus = EventBus()
        sub = bus.subscribe(maxsize=100)
        w = CameraWorker(CameraConfig(id="cam1", url="x"), engine, WatchlistMatcher(g), bus, None, EventStores(g.store))
        stop = threading.Event()
        result: list[WorkerStats] = []
        t = threading.Thread(target=lambda: result.append(w.run(q, stop, poll_s=0.05)))
        t.start()
        try:
            q.put(Frame("cam1", 0, t0, None, obama()))
            assert isinstance(sub.get(timeout=30), Alert)
            assert w.stats().tracks_active == 1
        finally:
            stop.set()
            t.join(timeout=30)
        assert not t.is_alive()
        (st,) = result
        assert (st.frames, st.sightings, st.tracks_active) == (1, 1, 0)
        (s,) = sub.drain()  # the track was live (max age 1.5 s): flushed when stopped
        assert isinstance(s, Sighting) and s.match is not None and s.frames == 1


# -- WatchlistMatcher on synthetic descriptors --------------------------------------------------------


def basis(i: int, dim: int = 128) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1
    return v


def near(i: int, similarity: float) -> np.ndarray:
    """A unit vector with exactly ``similarity`` to basis(i) and 0 to every other basis(j < 100)."""
    return (similarity * basis(i) + np.sqrt(1 - similarity**2) * basis(127)).astype(np.float32)


@pytest.fixture
def gallery(tmp_path, engine):
    with Gallery.open(tmp_path / "data", engine) as g:
        yield g


def add(g: Gallery, name: str, *dims: int) -> int:
    pid = g.store.add_person(name).id
    for d in dims:
        g.store.add_template(pid, model=g.engine.model, descriptor=basis(d), quality=0.9, photo_sha256=f"{d:064x}")
    return pid


def test_matcher_picks_the_best_person_over_every_watchlist_at_its_threshold(gallery):
    ada, bob = add(gallery, "Ada", 0, 1), add(gallery, "Bob", 2)
    add(gallery, "Cy", 3)  # on no watchlist
    gallery.create_watchlist("vip", threshold=0.5)
    gallery.create_watchlist("wanted", threshold=0.9)
    for wl, pid in [("vip", ada), ("wanted", ada), ("wanted", bob)]:
        gallery.add_member(wl, pid)
    matcher = WatchlistMatcher(gallery)
    queries = [near(0, 0.95), near(0, 0.7), near(1, 0.7), near(2, 0.95), near(2, 0.8), basis(3), near(0, 0.3)]
    got = matcher.match(np.stack(queries))
    want = [("Ada", "wanted", 0.9), ("Ada", "vip", 0.5), ("Ada", "vip", 0.5), ("Bob", "wanted", 0.9), None, None, None]
    assert [None if m is None else (m.name, m.watchlist, m.threshold) for m in got] == want
    assert got[0] is not None and got[0].similarity == pytest.approx(0.95, abs=1e-6)
    assert got[0].est_fmr == pytest.approx(gallery.engine.calibration.est_fmr(got[0].similarity))
    assert matcher.size() == (2, 3) and matcher.watchlists() == ("vip", "wanted")
    assert WatchlistMatcher(gallery, watchlists=["VIP"]).match(near(2, 0.95)) == [None]  # only vip active


def test_a_watchlist_without_threshold_uses_the_calibrated_default(gallery):
    gallery.add_member(gallery.create_watchlist("staff").name, add(gallery, "Ada", 0))
    default = gallery.engine.calibration.default_threshold
    above, below = WatchlistMatcher(gallery).match(np.stack([near(0, default + 0.005), near(0, default - 0.005)]))
    assert above is not None and above.threshold == pytest.approx(default) and below is None


def test_matcher_follows_gallery_changes(gallery):
    ada = add(gallery, "Ada", 0)
    gallery.create_watchlist("wanted", threshold=0.8)
    matcher = WatchlistMatcher(gallery)
    q = near(0, 0.85)
    assert matcher.match(q) == [None]  # not a member yet
    gallery.add_member("wanted", ada)
    assert [m.name for m in matcher.match(q) if m] == ["Ada"]
    reloads = matcher.reloads
    assert matcher.match(q)[0] is not None and matcher.reloads == reloads  # nothing changed: no reload
    gallery.store.update_watchlist(gallery.get_watchlist("wanted").id, description="", threshold=0.9)
    assert matcher.match(q) == [None]
    gallery.store.update_watchlist(gallery.get_watchlist("wanted").id, description="", threshold=0.8)
    add_id = gallery.store.add_template(
        ada, model=gallery.engine.model, descriptor=basis(5), quality=0.9, photo_sha256="e" * 64
    )
    assert add_id and matcher.match(near(5, 0.85))[0] is not None  # a new template counts at once
    gallery.delete_person(ada)
    assert matcher.match(q) == [None] and matcher.size() == (0, 0)


def test_matcher_checks_the_descriptor_shape(gallery):
    m = WatchlistMatcher(gallery)
    assert m.match(np.zeros((0, 128), np.float32)) == []
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, 128\), got \(2, 64\)"):
        m.match(np.zeros((2, 64), np.float32))


@pytest.mark.timeout(120)
def test_a_fusion_engine_embeds_best_shots_and_identity_checks_with_their_crops(tmp_path):
    """model="fusion" descriptors need a 224x224 crop of the original frame besides the chip: the live
    worker keeps it with each best shot (the frame is gone by the time a later shot is embedded) and cuts
    it for identity checks, so a watchlisted face alerts and a track continued by another face is split."""
    from sightline.config import EngineConfig
    from sightline.vision.engine import FaceEngine

    engine = FaceEngine.from_config(EngineConfig(model="fusion", threads=1))
    keep = CameraConfig(id="cam1", url="file.mp4", keep_unmatched_sightings=True)
    with Gallery.open(tmp_path / "data", engine) as g:
        g.enroll_person("obama", [GALLERY / "obama/obama2.jpg"], watchlist="wanted", create=True)
        # obama for 4 frames, one frame missed, then biden at the same spot: a gap, so an identity check
        images = [obama(3 * i) for i in range(4)] + [BLANK] + [biden(0)] * 3
        r = run_worker(engine, g, images, camera=keep, watch=WatchConfig(track_max_age_s=1.0))
    (alert,) = r.alerts
    assert alert.match.name == "obama" and alert.frame_ts == r.frames[0].ts
    assert r.stats.errors == 0 and r.stats.identity_checks >= 1 and r.stats.identity_splits == 1
    assert [s.match.name if s.match else None for s in r.sightings] == ["obama", None]
    assert all(s.embedding is not None and s.embedding.shape == (engine.dim,) for s in r.sightings)


def test_the_matchers_quality_gate_sees_the_quality_of_each_embedded_shot(tmp_path, engine, enrolled_file):
    """The worker hands the matcher each descriptor's shot quality: above every shot's quality, the gate
    stops the watchlisted face from alerting; the supervisor builds its matcher with the watch's gate."""
    from sightline.video.supervisor import Supervisor

    with open_gallery(enrolled_file, tmp_path / "data", engine) as g:
        gated = WatchlistMatcher(g, min_alert_quality=0.99)
        bus = EventBus()
        worker = CameraWorker(CameraConfig(id="cam1", url="f.mp4"), engine, gated, bus, WatchConfig())
        alerts = [a for f in frames([obama(3 * i) for i in range(3)], time.time()) for a in worker.process(f)]
        assert alerts == [] and gated.gated >= 1 and worker.stats().matches == 0
        open_ = WatchlistMatcher(g, min_alert_quality=0.0)
        worker = CameraWorker(CameraConfig(id="cam1", url="f.mp4"), engine, open_, bus, WatchConfig())
        alerts = [a for f in frames([obama(3 * i) for i in range(3)], time.time()) for a in worker.process(f)]
        assert len(alerts) == 1 and open_.gated == 0
        sup = Supervisor(
            [CameraConfig(id="c", url="f.mp4")], lambda: engine, g, bus, WatchConfig(min_alert_quality=0.3)
        )
        assert sup.matcher.min_alert_quality == 0.3
