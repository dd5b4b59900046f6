"""Persons, photos, watchlists and search by photo through the real app, the real face engine and a real
SQLite file: enroll by upload, search with a reason, limits, audit entries."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from tests.badinputs import bomb_png, corpus
from tests.conftest import GALLERY, PROBES


@pytest.fixture(scope="module")
def real(engine):  # the session engine of tests/conftest.py (onnx where available)
    return engine


@pytest.fixture
def srv(make_server, real):
    return make_server(engine=real, search_rate_per_min=600, search_burst=50)


def _files(*paths):
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def _enroll(client, person_id, *paths, reason="case 1"):
    return client.post(f"/api/persons/{person_id}/photos", files=_files(*paths), data={"reason": reason})


def test_enroll_search_and_delete_round_trip(srv):
    sup = srv.client("supervisor")
    op = srv.client("operator")
    r = sup.post("/api/watchlists", json={"name": "wanted", "description": "demo", "fmr": 1e-3})
    assert r.status_code == 201
    wl = r.json()
    assert wl["threshold"] == pytest.approx(wl["effective_threshold"]) and 0 < wl["est_fmr"] <= 2e-3
    # a reason is required to create a person, and the watchlist must exist
    assert sup.post("/api/persons", json={"name": "Barack Obama"}).status_code == 422
    r = sup.post("/api/persons", json={"name": "Barack Obama", "watchlists": ["nope"], "reason": "r"})
    assert r.status_code == 404 and "wanted" in r.json()["detail"]
    r = sup.post("/api/persons", json={"name": "Barack Obama", "watchlists": ["wanted"], "reason": "case 1"})
    assert r.status_code == 201
    obama = r.json()
    assert obama["watchlists"] == ["wanted"] and obama["template_count"] == 0

    # enrollment: two good photos, one that is text named .jpg, one with no face
    grey = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(grey, format="PNG")
    files = [
        *_files(GALLERY / "obama" / "obama.jpg", GALLERY / "obama" / "obama2.jpg"),
        ("files", ("notes.jpg", b"not a photo at all\n" * 10, "image/jpeg")),
        ("files", ("grey.jpg", grey.getvalue(), "image/jpeg")),  # a PNG named .jpg: sniffed, decoded, no face
    ]
    assert sup.post(f"/api/persons/{obama['id']}/photos", files=files).status_code == 422  # no reason
    r = sup.post(f"/api/persons/{obama['id']}/photos", files=files, data={"reason": "case 1"})
    assert r.status_code == 200, r.text
    out = r.json()
    by_name = {f["name"]: f for f in out["files"]}
    assert out["accepted"] == 2 and out["skipped"] == 2
    assert by_name["obama.jpg"]["accepted"] and by_name["obama.jpg"]["template_id"]
    assert by_name["notes.jpg"]["code"] == "not_an_image"
    assert by_name["grey.jpg"]["code"] == "no_face"

    detail = op.get(f"/api/persons/{obama['id']}").json()
    assert len(detail["photos"]) == 2
    crop = op.get(detail["photos"][0]["crop_url"])
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert "no-store" in crop.headers["cache-control"]
    Image.open(io.BytesIO(crop.content)).verify()
    # the list and the detail name the best-quality crop (the console's avatar); no crop before enrollment
    best = max(detail["photos"], key=lambda ph: (ph["quality"], -ph["template_id"]))
    assert detail["crop_url"] == best["crop_url"]
    listed = {p["id"]: p for p in op.get("/api/persons").json()}
    assert listed[obama["id"]]["crop_url"] == best["crop_url"]
    other = sup.post("/api/persons", json={"name": "No Photo Yet", "reason": "case 1"}).json()
    assert other["crop_url"] is None
    assert {p["id"]: p for p in op.get("/api/persons").json()}[other["id"]]["crop_url"] is None

    # search by photo: operators may, with a reason; admins may not
    probe = (PROBES / "obama1.jpg").read_bytes()
    assert op.post("/api/search", files={"file": ("p.jpg", probe)}).status_code == 422
    assert (
        srv.client("admin").post("/api/search", files={"file": ("p.jpg", probe)}, data={"reason": "x"}).status_code
        == 403
    )
    r = op.post("/api/search", files={"file": ("p.jpg", probe)}, data={"reason": "case 7", "watchlist": "wanted"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["watchlist"] == "wanted" and len(res["faces"]) == 1
    top = res["faces"][0]["candidates"][0]
    assert top["name"] == "Barack Obama" and top["is_match"] and top["similarity"] >= res["threshold"]
    assert "strangers" in top["meaning"] and top["crop_url"].startswith(f"/api/persons/{obama['id']}/photos/")
    # the list-aware meaning counts every template of the list searched (a stranger gets N chances)
    n_wanted = srv.services.gallery.store.template_counts(srv.services.engine.model, "wanted")[1]
    assert top["list_templates"] == n_wanted >= 1
    assert top["stranger_rate"] >= top["est_fmr"] and "against" in top["meaning_for_list"]
    # a photo of someone else is no match
    r = op.post(
        "/api/search",
        files={"file": ("k.jpg", (PROBES / "johnsnow_test1.jpg").read_bytes())},
        data={"reason": "case 7"},
    )
    assert all(not c["is_match"] for f in r.json()["faces"] for c in f["candidates"])

    # remove one photo, then the person
    tid = detail["photos"][1]["template_id"]
    assert op.delete(f"/api/persons/{obama['id']}/photos/{tid}").status_code == 403
    assert sup.delete(f"/api/persons/{obama['id']}/photos/{tid}").status_code == 204
    assert sup.delete(f"/api/persons/{obama['id']}/photos/{tid}").status_code == 404
    r = sup.delete(f"/api/persons/{obama['id']}")
    assert r.status_code == 422 and "reason" in r.json()["detail"]  # an erasure names its case
    assert op.get(f"/api/persons/{obama['id']}").status_code == 200
    assert sup.delete(f"/api/persons/{obama['id']}?reason=erasure request 12").status_code == 204
    assert op.get(f"/api/persons/{obama['id']}").status_code == 404
    assert sup.delete(f"/api/persons/{obama['id']}?reason=again").status_code == 404
    conn = srv.services.gallery.store._conn()
    assert conn.execute("SELECT count(*) FROM templates WHERE person_id = ?", (obama["id"],)).fetchone()[0] == 0

    rows = srv.audit_rows()
    actions = [r["action"] for r in rows]
    for a in ("watchlist.create", "person.create", "person.enroll", "search.photo", "photo.delete", "subject.erase"):
        assert a in actions, a
    search = [r for r in rows if r["action"] == "search.photo"]
    assert [s["reason"] for s in search] == ["case 7", "case 7"] and all(s["actor"] == "operator" for s in search)
    enroll = next(r for r in rows if r["action"] == "person.enroll")
    assert enroll["target"] == f"person:{obama['id']}" and json.loads(enroll["details"]) == {
        "accepted": 2,
        "skipped": 2,
    }
    erase = next(r for r in rows if r["action"] == "subject.erase")
    assert erase["reason"] == "erasure request 12" and erase["actor"] == "supervisor"
    assert erase["target"] == f"person:{obama['id']}"
    assert json.loads(erase["details"])["removed"]["templates"] == 1  # the counts erased, never the data


def test_bad_photos_are_clear_4xx_never_5xx(srv):
    sup = srv.client("supervisor")
    op = srv.client("operator")
    pid = sup.post("/api/persons", json={"name": "Someone", "reason": "r"}).json()["id"]
    for name, (data, code) in corpus().items():
        r = op.post("/api/search", files={"file": ("probe", data)}, data={"reason": "fuzz"})
        assert r.status_code in (413, 422), (name, r.status_code, r.text)
        assert r.json()["detail"]
        r = sup.post(f"/api/persons/{pid}/photos", files=[("files", ("x", data))], data={"reason": "fuzz"})
        assert r.status_code == 200 and r.json()["files"][0]["code"] == code, name
    assert srv.audit_rows("search.photo")[-1]["outcome"] == "failed"


def test_pixel_and_byte_limits(make_server, real):
    srv = make_server(engine=real, max_upload_bytes=200_000, max_pixels=100_000)
    op = srv.client("operator")
    r = op.post("/api/search", files={"file": ("bomb.png", bomb_png(2000))}, data={"reason": "x"})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
    big = b"\xff\xd8\xff" + b"0" * 300_000
    r = op.post("/api/search", files={"file": ("big.jpg", big)}, data={"reason": "x"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # chunked (no Content-Length): refused while streaming
    r = op.post(
        "/api/search",
        content=iter(
            [b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'] + [b"x" * 100_000] * 5
        ),
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert r.status_code == 413


def test_search_rate_limit_per_user(make_server, real):
    srv = make_server(engine=real, search_rate_per_min=1, search_burst=2)
    probe = (PROBES / "obama-240p.jpg").read_bytes()
    op = srv.client("operator")
    codes = [
        op.post("/api/search", files={"file": ("p.jpg", probe)}, data={"reason": "r"}).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    r = op.post("/api/search", files={"file": ("p.jpg", probe)}, data={"reason": "r"})
    assert int(r.headers["retry-after"]) >= 1
    # another user has their own budget
    assert (
        srv.client("supervisor").post("/api/search", files={"file": ("p.jpg", probe)}, data={"reason": "r"}).status_code
        == 200
    )


def test_watchlists_members_and_thresholds(srv):
    sup = srv.client("supervisor")
    op = srv.client("operator")
    wl = sup.post("/api/watchlists", json={"name": "staff", "threshold": 0.5}).json()
    assert sup.post("/api/watchlists", json={"name": "STAFF"}).status_code == 409
    assert sup.post("/api/watchlists", json={"name": "x", "threshold": 0.5, "fmr": 1e-3}).status_code == 422
    assert op.post("/api/watchlists", json={"name": "y"}).status_code == 403
    pid = sup.post("/api/persons", json={"name": "Rose", "reason": "r"}).json()["id"]
    assert sup.post(f"/api/watchlists/{wl['id']}/members", json={"person_id": pid}).json()["added"] is True
    assert sup.post(f"/api/watchlists/{wl['id']}/members", json={"person_id": 424242}).status_code == 404
    got = op.get(f"/api/watchlists/{wl['id']}").json()
    assert [m["name"] for m in got["members"]] == ["Rose"] and got["threshold"] == 0.5
    assert [p["name"] for p in op.get("/api/persons?watchlist=staff").json()] == ["Rose"]
    assert op.get("/api/persons?q=ros").json()[0]["id"] == pid
    assert got["threshold_tuned_for"] is None  # set by hand
    srv.services.gallery.store.update_watchlist(wl["id"], description="", threshold=0.5, threshold_templates="fused")
    r = sup.patch(f"/api/watchlists/{wl['id']}", json={"description": "door staff"})
    assert r.json()["threshold_tuned_for"] == "fused"  # an edit that keeps the threshold keeps what it was tuned for
    r = sup.patch(f"/api/watchlists/{wl['id']}", json={"default_threshold": True})
    assert r.json()["threshold"] is None and r.json()["threshold_tuned_for"] is None
    assert sup.delete(f"/api/watchlists/{wl['id']}/members/{pid}").status_code == 204
    assert sup.delete(f"/api/watchlists/{wl['id']}/members/{pid}").status_code == 404
    assert sup.delete(f"/api/watchlists/{wl['id']}").status_code == 204
    assert op.get(f"/api/watchlists/{wl['id']}").status_code == 404
    actions = [r["action"] for r in srv.audit_rows() if r["action"].startswith("watchlist.")]
    assert actions == [
        "watchlist.create",
        "watchlist.member_add",
        "watchlist.update",
        "watchlist.update",
        "watchlist.member_remove",
        "watchlist.delete",
    ]


def test_channels_of_a_watchlist(srv):
    sup = srv.client("supervisor")
    wl = sup.post("/api/watchlists", json={"name": "vip"}).json()
    r = sup.post(
        f"/api/watchlists/{wl['id']}/channels",
        json={"kind": "webhook", "target": "https://user:pw@hooks.example.org/x", "secret": "s3cret-key"},
    )
    assert r.status_code == 201, r.text
    ch = r.json()
    assert "pw" not in ch["target"] and ch["has_secret"] is True and "s3cret" not in json.dumps(ch)
    assert [c["id"] for c in sup.get(f"/api/watchlists/{wl['id']}/channels").json()] == [ch["id"]]
    assert sup.post(f"/api/watchlists/{wl['id']}/channels", json={"kind": "fax", "target": "x"}).status_code == 422
    assert sup.delete(f"/api/channels/{ch['id']}").status_code == 204
    assert sup.delete(f"/api/channels/{ch['id']}").status_code == 404
