"""Cameras through the API: add / edit / remove with masked credentials, and a real camera (a looping H.264
clip of a watchlisted face) started by the server's supervisor -> live status, a snapshot, and an alert
stored, listed and pushed over the WebSocket."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from sightline.eval.clips import make_face_clip
from tests.conftest import GALLERY


def test_camera_crud_masks_credentials(server):
    sup = server.client("supervisor")
    op = server.client("operator")
    body = {"id": "door", "url": "rtsp://admin:hunter2@10.0.0.5/stream", "options": {"rtsp_transport": "udp"}}
    r = sup.post("/api/cameras", json=body)
    assert r.status_code == 201, r.text
    cam = r.json()
    assert "hunter2" not in cam["url"] and cam["options"] == {"rtsp_transport": "udp"}
    assert cam["status"]["state"] == "stopped" and cam["status"]["running"] is False
    assert sup.post("/api/cameras", json=body).status_code == 409
    assert sup.post("/api/cameras", json={"id": "bad id!", "url": "x"}).status_code == 422
    assert sup.post("/api/cameras", json={"id": "c2", "url": "x", "options": {"analysis_fps": 0}}).status_code == 422
    assert sup.post("/api/cameras", json={"id": "c3", "url": "x", "options": {"warp": 9}}).status_code == 422
    assert op.post("/api/cameras", json={"id": "c4", "url": "x"}).status_code == 403
    r = sup.patch("/api/cameras/door", json={"options": {"analysis_fps": 2}})
    assert r.json()["options"] == {"analysis_fps": 2.0} and "hunter2" not in r.json()["url"]
    assert [c["id"] for c in op.get("/api/cameras").json()] == ["door"]
    assert "hunter2" not in op.get("/api/cameras").text
    assert sup.delete("/api/cameras/door").status_code == 204
    assert sup.delete("/api/cameras/door").status_code == 404
    actions = [r["action"] for r in server.audit_rows() if r["action"].startswith("camera.")]
    assert actions == ["camera.create", "camera.update", "camera.delete"]
    assert all("hunter2" not in str(r) for r in server.audit_rows())


def test_snapshot_of_an_unreachable_camera_is_503(server, tmp_path):
    sup = server.client("supervisor")
    sup.post("/api/cameras", json={"id": "gone", "url": str(tmp_path / "missing.mp4")})
    r = sup.get("/api/cameras/gone/snapshot")
    assert r.status_code == 503 and "no such file" in r.json()["detail"]
    assert sup.get("/api/cameras/nope/snapshot").status_code == 404


@pytest.mark.slow
def test_live_camera_raises_an_alert_end_to_end(make_server, engine, tmp_path):
    clip = make_face_clip(
        tmp_path / "obama.mp4", [(None, 1.0), (GALLERY / "obama" / "obama.jpg", 3.0)], size=(640, 360), fps=10
    )
    srv = make_server(engine=engine, start_cameras=True)
    srv.services.gallery.enroll_person(
        "Barack Obama", [GALLERY / "obama" / "obama2.jpg"], watchlist="wanted", create=True
    )
    sup = srv.client("supervisor")
    op = srv.client("operator")
    with op.websocket_connect("/api/alerts/live") as ws:
        r = sup.post("/api/cameras", json={"id": "lobby", "url": str(clip.path), "options": {"loop": True}})
        assert r.status_code == 201
        alert = None
        deadline = time.monotonic() + 90
        while alert is None and time.monotonic() < deadline:
            event = ws.receive_json()
            if event["type"] == "alert":
                alert = event["alert"]
    assert alert is not None, "no alert within 90 s"
    assert alert["camera_id"] == "lobby" and alert["person_name"] == "Barack Obama"
    assert [a["id"] for a in op.get("/api/alerts?camera=lobby").json()][-1] <= alert["id"]
    cam = op.get("/api/cameras").json()[0]
    assert cam["status"]["running"] and cam["status"]["state"] in ("live", "connecting", "reconnecting")
    snap = op.get("/api/cameras/lobby/snapshot")
    assert snap.status_code == 200 and Image.open(io.BytesIO(snap.content)).size == (640, 360)
    metrics = sup.get("/metrics").text
    assert 'sightline_camera_running{camera="lobby"} 1' in metrics
    assert sup.post("/api/cameras/lobby/stop").json()["status"]["running"] is False
    assert sup.post("/api/cameras/lobby/start").json()["status"]["running"] is True
    assert sup.delete("/api/cameras/lobby").status_code == 204
