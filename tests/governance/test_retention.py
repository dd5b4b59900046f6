"""Retention: every maximum age enforced by purge / RetentionJob, and the status report."""

from __future__ import annotations

import threading
import time

import pytest

from sightline.config import CameraConfig, RetentionConfig
from sightline.governance.retention import RetentionJob, camera_rules, purge, retention_status
from sightline.types import Sighting
from sightline.video.cameras import CameraStore
from tests.governance.conftest import jpeg, raw_bytes

DAY = 86400.0
CFG = RetentionConfig(alerts_max_age_days=10, confirmed_sightings_max_age_days=5, unmatched_default_h=2)


def rows(world, table: str) -> int:
    return world.store._conn().execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_nothing_young_is_purged_and_a_quiet_pass_is_not_audited(world):
    before = world.audit.count()
    report = purge(world.store, CFG, now=world.ts + 60, audit=world.audit)
    assert report.total == 0
    assert rows(world, "alerts") == 3 and rows(world, "sightings") == 3
    assert world.audit.count() == before


def test_each_limit_applies_at_its_own_age(world):
    # 1.5 h later: the door camera keeps unmatched faces 1 h; the yard camera (not stored) 2 h.
    r1 = purge(world.store, CFG, now=world.ts + 1.5 * 3600, audit=world.audit)
    assert (r1.alerts, r1.confirmed_sightings, r1.unmatched_by_camera) == (0, 0, {"door": 1})
    # 3 h: the yard's unmatched sighting goes too.
    r2 = purge(world.store, CFG, now=world.ts + 3 * 3600, audit=world.audit)
    assert r2.unmatched_by_camera == {"yard": 1}
    # 6 days: the matched sighting (5 days); alerts (10 days) stay.
    r3 = purge(world.store, CFG, now=world.ts + 6 * DAY, audit=world.audit)
    assert (r3.alerts, r3.confirmed_sightings) == (0, 1)
    assert rows(world, "alerts") == 3
    # 10 days + 1.5 s: the alerts at ts and ts+1 go, the one at ts+2 stays.
    r4 = purge(world.store, CFG, now=world.ts + 10 * DAY + 1.5, audit=world.audit)
    assert r4.alerts == 2 and rows(world, "alerts") == 1
    assert rows(world, "sightings") == 0
    # Persons and templates are never purged by age.
    assert rows(world, "templates") == 3 and rows(world, "persons") == 2
    purges = world.audit.query(action="retention.purge", order="asc")
    assert [e.details["total"] for e in purges] == [1, 1, 1, 2]
    assert all(e.actor == "system:retention" for e in purges)
    assert world.audit.verify().ok


def test_switching_off_keep_unmatched_removes_kept_faces_at_once(world):
    cams = CameraStore(world.store)
    cams.remove("door")
    cams.add(CameraConfig(id="door", url="door.mp4", keep_unmatched_sightings=False))
    world.events.add_sighting(Sighting("door", 11, world.ts, world.ts + 1, 2, 0.5, None, None, None))
    report = purge(world.store, CFG, now=world.ts + 60)
    assert report.unmatched_by_camera == {"door": 1}  # the one with a crop; the face-less record stays
    left = world.events.sightings.list(camera_id="door", matched=False)
    assert [s.sighting.track_id for s in left] == [11]


def test_batches_delete_everything_past_age(world):
    for i in range(25):
        world.events.add_sighting(Sighting("yard", 100 + i, world.ts, world.ts + 1, 1, 0.5, None, jpeg(i, 8), None))
    cfg = CFG.model_copy(update={"batch_rows": 4})
    report = purge(world.store, cfg, now=world.ts + 3 * 3600)
    assert report.unmatched_by_camera == {"door": 1, "yard": 26}


def test_a_camera_with_broken_options_gets_the_private_default(world):
    world.store._write(
        "INSERT INTO cameras(id, url, options, created_at) VALUES ('bad', 'x', ?, 0)",
        ('{"unmatched_retention_h": -5, "keep_unmatched_sightings": true}',),
    )
    rules = {r.camera_id: r for r in camera_rules(world.store)}
    assert rules["bad"].keep_unmatched is False and rules["door"].keep_unmatched is True
    assert rules["door"].unmatched_retention_h == 1.0


def test_purged_crops_do_not_linger_in_the_file(tmp_path, monkeypatch):
    """secure_delete: a purged (here unencrypted) crop is zeroed, not left in a free page."""
    from tests.governance.conftest import populate

    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)
    w = populate(tmp_path / "data", encrypt=False)
    try:
        crops = list(w.alert_crops.values())
        w.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert all(c[-40:-8] in raw_bytes(w.data) for c in crops)
        purge(w.store, CFG, now=w.ts + 20 * DAY)
        w.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert not [c for c in crops if c[-40:-8] in raw_bytes(w.data)]
    finally:
        w.gallery.close()


def test_status_reports_what_is_kept_and_until_when(world):
    status = retention_status(world.store, CFG, now=world.ts)
    by = {c.name: c for c in status.classes}
    assert by["alerts"].rows == 3 and by["alerts"].oldest_until == pytest.approx(world.ts + 10 * DAY)
    assert by["confirmed_sightings"].rows == 1 and by["confirmed_sightings"].with_biometrics == 1
    assert by["confirmed_sightings"].oldest_until == pytest.approx(world.ts + 2 + 5 * DAY)
    assert by["unmatched_sightings:door"].oldest_until == pytest.approx(world.ts + 1 + 3600)
    assert by["unmatched_sightings:door"].with_biometrics == 1
    assert by["unmatched_sightings:yard"].max_age_s == 2 * 3600 and "not stored" in by["unmatched_sightings:yard"].rule
    assert by["templates"].rows == 3 and by["templates"].oldest_until is None
    assert by["audit_log"].rows == 3 and by["audit_log"].max_age_s is None
    assert status.to_json()["classes"][0]["name"] == "alerts"


def wait_for(cond, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_the_job_purges_at_start_and_stops(world):
    job = RetentionJob(world.store, CFG, audit=world.audit, clock=lambda: world.ts + 30 * DAY)
    job.start()
    try:
        assert wait_for(lambda: job.runs >= 1)
        assert job.last is not None and job.last.alerts == 3 and job.errors == 0
        assert rows(world, "alerts") == 0
    finally:
        job.stop()
    assert not job.running


def test_the_job_survives_a_failing_pass(world):
    """A pass that fails (here: the store is closed under it) is counted; the thread keeps going."""
    cfg = CFG.model_copy(update={"purge_interval_s": 1})
    world.gallery.close()
    job = RetentionJob(world.store, cfg)
    job.start()
    try:
        assert wait_for(lambda: job.errors >= 1)
        job.run_now()
        assert wait_for(lambda: job.errors >= 2)
        assert job.running
    finally:
        job.stop()


def test_the_job_can_run_in_a_thread_of_its_own_while_others_write(world):
    job = RetentionJob(world.store, CFG.model_copy(update={"purge_interval_s": 1}), clock=lambda: world.ts + 99 * DAY)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            world.audit.record("system:test", "camera.update", details={"x": 1})

    t = threading.Thread(target=writer)
    t.start()
    job.start()
    try:
        assert wait_for(lambda: job.runs >= 2)
    finally:
        stop.set()
        t.join()
        job.stop()
    assert job.errors == 0 and world.audit.verify().ok
