"""``Services`` builds its background work from ``ServerConfig``: the notifier with ``config.notify`` (woken
by the bus), the retention job with ``config.retention`` (started and stopped with the server, purging old
alerts and auditing it), over a real gallery file."""

from __future__ import annotations

import json
import time

from sightline.types import Alert, Match
from tests.gallery.conftest import write_photo
from tests.server.test_alerts_api import _jpeg

DAY_S = 86400.0


def test_notifier_and_retention_come_from_the_server_config(make_server):
    srv = make_server(notify={"max_attempts": 2, "timeout_s": 3.0, "lease_s": 10.0}, retention={"purge_interval_s": 60})
    svc = srv.services
    assert svc.notifier is not None and svc.notifier.config == srv.config.notify
    assert svc.notifier.config.max_attempts == 2
    assert svc.retention is not None and svc.retention.config == srv.config.retention
    assert svc.notifier.running and svc.retention.running  # started by the app's lifespan
    svc.stop()
    assert not svc.notifier.running and not svc.retention.running
    svc.stop()  # idempotent


def test_retention_job_purges_old_alerts_while_the_server_runs(make_server, tmp_path):
    srv = make_server(retention={"alerts_max_age_days": 30})
    svc = srv.services
    g = svc.gallery
    g.enroll_person("Ada", [write_photo(tmp_path / "ada.png", seed=3)], watchlist="wanted", create=True)
    pid = g.store.find_persons(name="Ada")[0].id
    m = Match(person_id=pid, name="Ada", watchlist="wanted", similarity=0.8, threshold=0.6, est_fmr=1e-6)

    def alert(age_days: float) -> int:
        ts = time.time() - age_days * DAY_S
        a = Alert(camera_id="door", track_id=1, match=m, ts=ts, frame_ts=ts, xyxy=(0, 0, 9, 9), crop_jpeg=_jpeg())
        return svc.stores.add_alert(a)

    old, recent = alert(45), alert(1)
    runs = svc.retention.runs
    svc.retention.run_now()
    deadline = time.monotonic() + 30
    while svc.retention.runs == runs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.stores.alerts.get(old) is None and svc.stores.alerts.get(recent) is not None
    purge = srv.audit_rows("retention.purge")
    assert purge and json.loads(purge[-1]["details"])["alerts"] == 1 and purge[-1]["actor"] == "system:retention"
