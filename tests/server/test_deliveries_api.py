"""Notification deliveries through the API and /metrics: a webhook that refuses (HTTP 404, a permanent
failure) leaves a failed delivery that supervisors see and retry once the receiver is fixed; the outbox
and the notifier's counters appear in /metrics. A real receiver (http.server) on a free port."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.server.test_alerts_api import _door_alert, world  # noqa: F401 (fixture)


class Receiver:
    """A webhook receiver answering ``status`` (changeable) and keeping the bodies it got."""

    def __init__(self) -> None:
        self.status = 404
        self.bodies: list[dict] = []
        outer = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.status < 300:
                    outer.bodies.append(json.loads(body))
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()


def wait_for(pred, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_failed_delivery_is_listed_retried_and_counted(server, world, receiver):  # noqa: F811
    sup = server.client("supervisor")
    wl = next(w for w in sup.get("/api/watchlists").json() if w["name"] == "wanted")
    r = sup.post(f"/api/watchlists/{wl['id']}/channels", json={"kind": "webhook", "target": receiver.url})
    assert r.status_code == 201, r.text
    alert = _door_alert(world["match"], 5)
    alert_id = server.services.stores.add_alert(alert)
    server.services.notifier.wake()

    failed = wait_for(lambda: sup.get("/api/deliveries", params={"status": "failed"}).json())
    assert len(failed) == 1
    d = failed[0]
    assert d["alert_id"] == alert_id and d["kind"] == "webhook" and d["watchlist"] == "wanted"
    assert d["attempts"] == 1 and "404" in d["last_error"]
    assert sup.get("/api/deliveries", params={"status": "delivered"}).json() == []
    assert [x["id"] for x in sup.get("/api/deliveries", params={"alert_id": alert_id}).json()] == [d["id"]]

    metrics = server.client("admin").get("/metrics").text
    assert 'sightline_outbox_deliveries{status="failed"} 1' in metrics
    assert "sightline_notify_failed_total 1" in metrics

    # operators review alerts but do not run the notification plumbing
    op = server.client("operator")
    assert op.get("/api/deliveries").status_code == 403
    assert op.post(f"/api/deliveries/{d['id']}/retry").status_code == 403

    receiver.status = 204  # the receiver is fixed; a supervisor retries
    r = sup.post(f"/api/deliveries/{d['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == d["id"] and r.json()["status"] in ("pending", "delivered")
    delivered = wait_for(lambda: sup.get("/api/deliveries", params={"status": "delivered"}).json())
    assert [x["id"] for x in delivered] == [d["id"]] and delivered[0]["delivered_at"] is not None
    assert receiver.bodies and receiver.bodies[0]["alert_id"] == alert_id

    r = sup.post(f"/api/deliveries/{d['id']}/retry")
    assert r.status_code == 409 and "delivered" in r.json()["detail"]  # nothing to retry
    assert sup.post("/api/deliveries/999999/retry").status_code == 404
    assert sup.get("/api/deliveries", params={"status": "lost"}).status_code == 422

    retries = server.audit_rows("delivery.retry")
    assert len(retries) == 1 and retries[0]["actor"] == "supervisor"
    assert retries[0]["target"] == f"delivery:{d['id']}"
    metrics = server.client("admin").get("/metrics").text
    assert 'sightline_outbox_deliveries{status="delivered"} 1' in metrics
    assert "sightline_notify_delivered_total 1" in metrics
