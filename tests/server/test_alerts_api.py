"""Alerts (list, filters, crop, decisions), the live WebSocket, sightings and their search by photo,
metrics and security headers, through the real app over a real SQLite file."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import time

import pytest
from PIL import Image

from sightline.types import Alert, Match, Sighting
from sightline.video.capture import CameraStatus
from tests.gallery.conftest import FakeEngine, fake_embedding, write_photo


def _jpeg(color=(200, 100, 50)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(buf, format="JPEG")
    return buf.getvalue()


def _door_alert(match, track_id: int) -> Alert:
    """A fresh alert (now) on camera 'door' for ``match``, with a small crop, not yet stored."""
    return Alert(
        camera_id="door",
        track_id=track_id,
        match=match,
        ts=time.time(),
        frame_ts=time.time(),
        xyxy=(0.0, 0.0, 9.0, 9.0),
        crop_jpeg=_jpeg(),
        quality=0.4,
    )


@pytest.fixture
def world(server, tmp_path):
    """A person 'Ada' enrolled (fake engine, seed 3) on watchlist 'wanted', and two stored alerts."""
    g = server.services.gallery
    photo = write_photo(tmp_path / "ada.png", seed=3)
    g.enroll_person("Ada", [photo], watchlist="wanted", create=True)
    pid = g.store.find_persons(name="Ada")[0].id
    m = Match(person_id=pid, name="Ada", watchlist="wanted", similarity=0.83, threshold=0.6, est_fmr=1e-6)
    now = time.time()
    ids = [
        server.services.stores.add_alert(
            Alert(
                camera_id=cam,
                track_id=i,
                match=m,
                ts=now - 100 + i,
                frame_ts=now - 100.2 + i,
                xyxy=(1.0, 2.0, 30.0, 40.0),
                crop_jpeg=_jpeg(),
                quality=0.7,
            )
        )
        for i, cam in enumerate(("door", "yard"))
    ]
    return {"person_id": pid, "match": m, "alert_ids": ids, "now": now}


def test_list_filter_get_crop_and_decide(server, world):
    op = server.client("operator")
    alerts = op.get("/api/alerts").json()
    assert [a["id"] for a in alerts] == world["alert_ids"][::-1]  # newest first
    a = alerts[0]
    assert a["person_name"] == "Ada" and a["status"] == "new" and a["meaning"]
    # what the score means against the whole list: Ada's one template on 'wanted' -> N = 1
    cal = server.services.engine.calibration
    assert a["list_templates"] == 1
    assert a["stranger_rate"] == pytest.approx(cal.est_fmr(a["similarity"]))  # N = 1: FPIR = FMR
    assert "1 enrolled photos" in a["meaning_for_list"] or "one enrolled photo" in a["meaning_for_list"]
    assert a["crop_url"] == f"/api/alerts/{a['id']}/crop"
    assert a["enrolled_crop_url"].startswith(f"/api/persons/{world['person_id']}/photos/")
    assert [x["camera_id"] for x in op.get("/api/alerts?camera=door").json()] == ["door"]
    assert op.get(f"/api/alerts?since={world['now'] - 99.5}").json()[0]["camera_id"] == "yard"
    assert op.get("/api/alerts?status=bogus").status_code == 422
    crop = op.get(a["crop_url"])
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert op.get(a["enrolled_crop_url"]).status_code == 200
    assert op.get("/api/alerts/424242").status_code == 404

    r = op.post(f"/api/alerts/{a['id']}/decision", json={"decision": "confirmed", "comment": "at gate 3"})
    assert r.status_code == 200
    d = r.json()
    assert d["status"] == "confirmed" and d["decided_by"] == "operator" and d["comment"] == "at gate 3"
    assert op.post(f"/api/alerts/{a['id']}/decision", json={"decision": "maybe"}).status_code == 422
    assert (
        server.client("admin").post(f"/api/alerts/{a['id']}/decision", json={"decision": "rejected"}).status_code == 403
    )
    assert [x["id"] for x in op.get("/api/alerts?status=confirmed").json()] == [a["id"]]
    entry = server.audit_rows("alert.decision")[-1]
    assert entry["target"] == f"alert:{a['id']}" and json.loads(entry["details"])["decision"] == "confirmed"


def test_live_websocket_sends_new_alerts_and_camera_status(server, world):
    m = world["match"]
    client = server.client("operator")  # cookie session
    bus = server.services.bus
    before = bus.subscribers  # the notifier's waker is one
    with client.websocket_connect("/api/alerts/live") as ws:
        deadline = time.monotonic() + 10
        while bus.subscribers == before and time.monotonic() < deadline:
            time.sleep(0.05)  # the socket subscribes right after accepting
        assert bus.subscribers == before + 1
        alert = Alert(
            camera_id="door",
            track_id=9,
            match=m,
            ts=time.time(),
            frame_ts=time.time() - 0.1,
            xyxy=(0.0, 0.0, 10.0, 10.0),
            crop_jpeg=_jpeg(),
            quality=0.5,
        )
        alert_id = server.services.stores.add_alert(alert)
        server.services.bus.publish(dataclasses.replace(alert, id=alert_id))
        server.services.bus.publish(CameraStatus(camera_id="door", state="live", since=time.time()))
        got = [ws.receive_json(), ws.receive_json()]
    by_type = {e["type"]: e for e in got}
    assert by_type["alert"]["alert"]["id"] == alert_id and by_type["alert"]["alert"]["person_name"] == "Ada"
    assert by_type["camera"]["camera_id"] == "door" and by_type["camera"]["state"] == "live"
    deadline = time.monotonic() + 10
    while bus.subscribers != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bus.subscribers == before  # the subscription closed with the socket


def test_websocket_refuses_foreign_origin_for_cookie_sessions(server):
    from starlette.websockets import WebSocketDisconnect

    client = server.client("operator")
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        client.websocket_connect("/api/alerts/live", headers={"origin": "https://evil.example"}) as ws,
    ):
        ws.receive_json()
    assert exc.value.code == 4403


def test_sightings_list_crop_and_search_by_photo(server, world, tmp_path):
    stores = server.services.stores
    now = world["now"]
    kept = stores.add_sighting(
        Sighting(
            camera_id="door",
            track_id=1,
            start_ts=now - 50,
            end_ts=now - 40,
            frames=12,
            quality=0.8,
            match=world["match"],
            crop_jpeg=_jpeg(),
            embedding=fake_embedding(3, 5),
        ),
        model=FakeEngine.model,
    )
    stores.add_sighting(
        Sighting(
            camera_id="yard",
            track_id=2,
            start_ts=now - 30,
            end_ts=now - 20,
            frames=5,
            quality=0.6,
            crop_jpeg=_jpeg((0, 0, 0)),
            embedding=fake_embedding(7, 1),
        ),
        model=FakeEngine.model,
    )
    stores.add_sighting(
        Sighting(camera_id="yard", track_id=3, start_ts=now - 10, end_ts=now - 5, frames=3, quality=0.5)
    )
    op = server.client("operator")
    rows = op.get("/api/sightings").json()
    assert [r["track_id"] for r in rows] == [3, 2, 1]
    assert rows[0]["crop_url"] is None and rows[2]["person_name"] == "Ada"
    assert [r["track_id"] for r in op.get(f"/api/sightings?person_id={world['person_id']}").json()] == [1]
    assert [r["track_id"] for r in op.get("/api/sightings?camera=yard").json()] == [3, 2]
    assert op.get(f"/api/sightings/{kept}/crop").status_code == 200
    assert server.client("admin").get("/api/sightings").status_code == 403

    probe = write_photo(tmp_path / "probe.png", seed=3, variant=9).read_bytes()
    assert op.post("/api/sightings/search", files={"file": ("p.png", probe)}).status_code == 422  # no reason
    r = op.post("/api/sightings/search", files={"file": ("p.png", probe)}, data={"reason": "case 9"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["searched"] == 2 and out["faces"] == 1
    assert [m["id"] for m in out["matches"]] == [kept] and out["matches"][0]["match_similarity"] > 0.9
    assert server.audit_rows("search.sightings")[-1]["reason"] == "case 9"


def test_metrics_and_health(server, world):
    assert server.anon.get("/healthz").json()["status"] == "ok"
    assert server.anon.get("/metrics").status_code == 401
    assert server.client("operator").get("/metrics").status_code == 403
    text = server.client("supervisor").get("/metrics").text
    assert 'sightline_alerts{status="new"} 2' in text
    assert "sightline_search_latency_seconds_count 0" in text
    assert "# TYPE sightline_login_failures_total counter" in text


def test_security_headers_everywhere(server):
    for path in ("/healthz", "/api/persons", "/docs", "/openapi.json"):
        r = server.anon.get(path)
        csp = r.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    docs = server.anon.get("/docs")
    assert docs.status_code == 200 and "'sha256-" in docs.headers["content-security-policy"]
    # Swagger UI comes from this server (an air-gapped install has no CDN): no other origin anywhere
    assert "http" not in docs.headers["content-security-policy"] and "cdn" not in docs.text
    for ref in re.findall(r'(?:src|href)="([^"]+)"', docs.text):
        asset = server.anon.get(ref)
        assert ref.startswith("/docs/assets/") and asset.status_code == 200 and len(asset.content) > 100, ref
    assert server.anon.get("/docs/assets/nope.js").status_code == 404
    assert server.anon.get("/api/persons").headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in server.anon.get("/healthz").headers
    from fastapi.testclient import TestClient

    tls = TestClient(server.app, base_url="https://testserver")  # not entered: the app's lifespan runs once
    assert tls.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_errors_are_json_detail(server):
    c = server.client("supervisor")
    r = c.post("/api/watchlists", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = c.get("/api/persons/not-a-number")
    assert r.status_code == 422 and "person_id" in r.json()["detail"]
    for path in ("/api/persons/99999999999999999999", "/api/alerts?person_id=99999999999999999999"):
        assert c.get(path).status_code == 422, path  # beyond SQLite's integers: 4xx, not a crash
    assert c.get("/api/alerts?since=nan").status_code == 200
    assert c.get("/api/no-such-route").json() == {"detail": "Not Found"}


@pytest.mark.parametrize("value", [str(2**63), "99999999999999999999", "-1"])
def test_every_integer_id_in_a_path_is_bounded(server, value):
    """Every route with an integer path parameter answers an id beyond SQLite's INTEGER (or below 0) with 422,
    for a role that may use the route, before touching the database."""
    from fastapi.routing import APIRoute

    from tests.server.test_authz_matrix import app_routes

    c = server.client()  # anonymous; each request carries a role's bearer token (no CSRF needed)
    checked = 0
    for route in app_routes(server.app):
        if not isinstance(route, APIRoute):
            continue
        ints = {p.name for p in route.dependant.path_params if p.field_info.annotation is int}
        if not ints:
            continue
        path = re.sub(r"\{([^}:]+)[^}]*\}", lambda m, ints=ints: value if m.group(1) in ints else "x", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            for headers in (server.bearer("supervisor"), server.bearer("admin"), server.bearer("operator")):
                r = c.request(method, path, headers=headers, params={"reason": "bounds"})
                assert r.status_code < 500, (method, path, r.status_code, r.text)
                if r.status_code not in (401, 403):
                    assert r.status_code == 422, (method, path, r.status_code, r.text)
                    checked += 1
                    break
    assert checked >= 15  # persons, photos, watchlists, members, channels, alerts, sightings, users, tokens
    # and the bound is declared, so clients and fuzzers see it in the schema
    spec = c.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for prm in op.get("parameters", []):
                sch = prm.get("schema", {})
                if prm["in"] == "path" and sch.get("type") == "integer":
                    assert sch.get("maximum") == 2**63 - 1 and sch.get("minimum") == 0, (path, prm)


def test_alert_reaches_a_webhook_channel_added_through_the_api(server, world):
    """The server runs the notifier: an alert on a watchlist with a webhook channel is POSTed to it."""
    import http.server
    import threading

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        sup = server.client("supervisor")
        wl = next(w for w in sup.get("/api/watchlists").json() if w["name"] == "wanted")
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        assert (
            sup.post(f"/api/watchlists/{wl['id']}/channels", json={"kind": "webhook", "target": url}).status_code == 201
        )
        alert = _door_alert(world["match"], 77)
        alert_id = server.services.stores.add_alert(alert)
        server.services.bus.publish(dataclasses.replace(alert, id=alert_id))
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        httpd.shutdown()
    assert received, "the webhook received nothing"
    assert json.dumps(received[0]).count(str(alert_id)) >= 1


class _DlibCalibratedEngine(FakeEngine):
    """The fake engine under the dlib model's name and real shipped calibration, so the fused-template
    calibrations of dlib_resnet_v1 apply (descriptors stay fake: only the meaning is under test)."""

    model = "dlib_resnet_v1"

    def __init__(self) -> None:
        super().__init__()
        from sightline.vision.calibration import load_builtin

        self.calibration = load_builtin("dlib_resnet_v1")


@pytest.mark.parametrize("templates", ["per-photo", "fused"])
def test_an_alerts_meaning_follows_the_cameras_template_mode(make_server, tmp_path, templates):
    """With watch.templates = "fused" the cameras compare a face with ONE mean template per listed person,
    so the API's "chance a stranger scores this high against the list" must come from the fused-template
    calibration of the person's photo count, not from N photos compared one by one."""
    from sightline.config import WatchConfig
    from sightline.vision.calibration import FusedCalibrations

    srv = make_server(engine=_DlibCalibratedEngine(), watch=WatchConfig(templates=templates))
    g = srv.services.gallery
    photos = [write_photo(tmp_path / f"ada{v}.png", seed=3, variant=v) for v in (0, 1)]
    g.enroll_person("Ada", photos, watchlist="wanted", create=True)
    pid = g.store.find_persons(name="Ada")[0].id
    sim = 0.935
    m = Match(person_id=pid, name="Ada", watchlist="wanted", similarity=sim, threshold=0.93, est_fmr=1e-3)
    srv.services.stores.add_alert(_door_alert(m, 1))
    (a,) = srv.client("operator").get("/api/alerts").json()
    assert a["list_templates"] == 2
    cal = srv.services.engine.calibration
    if templates == "per-photo":
        assert a["stranger_rate"] == pytest.approx(1 - (1 - cal.est_fmr(sim)) ** 2)  # two photos, two chances
    else:
        k2 = FusedCalibrations.builtin("dlib_resnet_v1", cal).for_k(2)
        assert a["stranger_rate"] == pytest.approx(k2.est_fmr(sim))  # one fused template of 2 photos
        assert k2.est_fmr(sim) > 1 - (1 - cal.est_fmr(sim)) ** 2  # the per-photo figure would under-state it
