"""The audit routes through the real app: roles, filters, exports (themselves audited) and chain checks."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sightline.governance.audit import entry_hash
from sightline.governance.crypto import derive_audit_key

PATHS = [
    "/api/audit",
    "/api/audit/export?format=csv",
    "/api/audit/export?format=json",
    "/api/audit/verify",
    "/api/audit/head",
]


@pytest.mark.parametrize("path", PATHS)
def test_only_auditors_and_admins_read_the_audit_log(server, path):
    assert server.anon.get(path).status_code == 401
    for role in ("operator", "supervisor"):
        r = server.anon.get(path, headers=server.bearer(role))
        assert r.status_code == 403, (role, r.text)
    for role in ("auditor", "admin"):
        assert server.anon.get(path, headers=server.bearer(role)).status_code == 200
    assert server.client("auditor").get(path).status_code == 200  # cookie session too


def test_list_shows_logins_newest_first_with_filters(server):
    server.client("operator")
    bad = server.anon.post("/api/auth/login", json={"username": "operator", "password": "wrong password!"})
    assert bad.status_code in (401, 403)
    audit = server.services.audit
    audit.record("operator", "search.photo", reason="case 12", client="10.1.2.3", details={"faces": 1})
    c = server.client("auditor")
    entries = c.get("/api/audit").json()
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
    assert (entries[0]["action"], entries[0]["actor"]) == ("auth.login", "auditor")  # this client's own login
    assert entries[1]["action"] == "search.photo" and entries[1]["reason"] == "case 12"
    logins = c.get("/api/audit", params={"action": "auth.login", "actor": "operator"}).json()
    assert {e["outcome"] for e in logins} >= {"ok"} and len(logins) >= 2
    assert all(e["action"] == "auth.login" and e["actor"] == "operator" for e in logins)
    fam = c.get("/api/audit", params={"action": "search.*"}).json()
    assert [e["action"] for e in fam] == ["search.photo"]
    # The console's filter form sends blank fields: they are ignored, not errors.
    blank = c.get("/api/audit", params={"actor": "", "action": " ", "since": "", "until": "", "limit": 500})
    assert blank.status_code == 200 and len(blank.json()) == len(entries)
    since = entries[0]["ts"]
    assert [e["seq"] for e in c.get("/api/audit", params={"since": str(since)}).json()] == [entries[0]["seq"]]
    assert c.get("/api/audit", params={"until": str(since)}).json()[0]["seq"] == entries[1]["seq"]
    assert c.get("/api/audit", params={"since": "24h"}).status_code == 200
    assert c.get("/api/audit", params={"limit": 1}).json()[0]["seq"] == entries[0]["seq"]


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "nan"}, "until"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"person_id": "x"}, "person_id"),
        ({"person_id": "99999999999999999999"}, "person_id"),
        ({"actor": "a" * 300}, "actor"),
    ],
)
def test_bad_filters_are_422_with_a_reason(server, params, word):
    r = server.client("auditor").get("/api/audit", params=params)
    assert r.status_code == 422 and word in r.json()["detail"]


def test_csv_export_is_a_download_that_is_audited(server):
    c = server.client("auditor")
    r = c.get("/api/audit/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and r.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and [int(x["seq"]) for x in rows] == sorted(int(x["seq"]) for x in rows)
    last = rows[-1]
    ring = server.services.gallery.store.cipher.keyring
    assert last["key_id"] == ring.current.hex()
    assert (
        entry_hash(
            seq=int(last["seq"]),
            ts=float(last["ts"]),
            actor=last["actor"],
            action=last["action"],
            target=last["target"] or None,
            reason=last["reason"] or None,
            client=last["client"] or None,
            outcome=last["outcome"],
            details=last["details"],
            prev_hash=last["prev_hash"],
            key=derive_audit_key(ring.keys[ring.current]),
            key_id=last["key_id"],
        )
        == last["hash"]
    )
    exports = server.audit_rows("audit.export")
    assert exports[-1]["actor"] == "auditor" and exports[-1]["client"] == "testclient"
    details = json.loads(exports[-1]["details"])
    assert details["format"] == "csv" and details["entries"] == len(rows)


def test_json_export_with_filters_carries_the_head(server):
    server.services.audit.record("admin", "camera.create", target="camera:door")
    r = server.client("admin").get("/api/audit/export", params={"format": "json", "action": "camera.*"})
    doc = r.json()
    assert [e["target"] for e in doc["entries"]] == ["camera:door"] and doc["filters"] == {"action": "camera.*"}
    assert doc["head"]["seq"] >= doc["entries"][-1]["seq"]
    assert json.loads(server.audit_rows("audit.export")[-1]["details"])["action"] == "camera.*"
    assert server.client("admin").get("/api/audit/export", params={"format": "xml"}).status_code == 422


def test_verify_reports_tampering_and_checks_a_saved_head(server):
    c = server.client("auditor")
    server.services.audit.record("admin", "camera.create", target="camera:a")
    ok = c.get("/api/audit/verify").json()
    assert ok["ok"] and ok["first_broken_seq"] is None and ok["entries"] >= 2
    head = c.get("/api/audit/head").json()
    assert c.get("/api/audit/verify", params={"anchor_seq": head["seq"], "anchor_hash": head["hash"]}).json()["ok"]
    wrong = c.get("/api/audit/verify", params={"anchor_seq": head["seq"], "anchor_hash": "0" * 64}).json()
    assert not wrong["ok"] and "rewritten" in wrong["problem"]
    assert c.get("/api/audit/verify", params={"anchor_seq": 1}).status_code == 422
    huge = {"anchor_seq": "99999999999999999999", "anchor_hash": "0" * 64}
    assert c.get("/api/audit/verify", params=huge).status_code == 422
    assert c.get("/api/audit/verify", params={"anchor_seq": 1, "anchor_hash": "xyz"}).status_code == 422
    conn = sqlite3.connect(server.services.gallery.store.path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'nobody' WHERE seq = 1")
    conn.commit()
    conn.close()
    bad = c.get("/api/audit/verify").json()
    assert not bad["ok"] and bad["first_broken_seq"] == 1 and bad["problem"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["actor", "action", "target", "person_id", "outcome", "since", "until", "limit", "format"]),
        st.text(max_size=40),
        max_size=5,
    )
)
def test_any_query_is_answered_or_refused_never_a_server_error(server, params):
    c = server.anon
    for path in ("/api/audit", "/api/audit/export"):
        r = c.get(path, params=params, headers=server.bearer("auditor"))
        assert r.status_code in (200, 422), (path, params, r.status_code, r.text)
        if r.status_code == 422:
            assert r.json()["detail"]


def test_verify_reports_the_signed_checkpoints_as_the_cli_does(make_server, tmp_path):
    from sightline.config import AuditConfig

    cp = tmp_path / "elsewhere" / "checkpoints.jsonl"
    server = make_server(audit=AuditConfig(checkpoint_file=cp, checkpoint_every_entries=2, checkpoint_every_s=0))
    for i in range(5):
        server.services.audit.record("admin", "camera.create", target=f"camera:c{i}")
    c = server.client("auditor")
    ok = c.get("/api/audit/verify").json()
    assert ok["ok"] and ok["checkpoint_file"] == str(cp) and ok["checkpoints_checked"] >= 2
    assert ok["keyed_entries"] == ok["entries"] and ok["unkeyed_entries"] == 0
    assert c.get("/api/audit").json()[0]["key_id"] == server.services.gallery.store.cipher.keyring.current.hex()
    # Cut the tail of the database: the signed checkpoints name entries it no longer has.
    head = server.services.audit.head().seq
    conn = sqlite3.connect(server.services.gallery.store.path)
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq > 2")
    conn.commit()
    conn.close()
    assert head > 2
    bad = c.get("/api/audit/verify").json()
    assert not bad["ok"] and "removed from the tail" in bad["problem"]
    cli_view = server.services.audit.verify().to_json()
    assert {k: v for k, v in bad.items() if k != "entries" and k != "head"} == {
        k: v for k, v in cli_view.items() if k != "entries" and k != "head"
    }


def test_the_server_uses_its_key_file_setting_and_checkpoints_at_shutdown(make_server, tmp_path):
    key = tmp_path / "keymount" / "sightline.key"
    server = make_server(key_file=key)
    store = server.services.gallery.store
    assert store.cipher.keyring.source == str(key) and key.exists()
    assert not (store.path.parent / "sightline.key").exists()
    cp = key.parent / "audit-checkpoints.jsonl"  # beside the key file, by default
    server.services.audit.record("admin", "camera.create", target="camera:x")  # starts the file
    server.services.audit.record("admin", "camera.create", target="camera:y")  # not due (100 entries / 300 s)
    head = server.services.audit.head().seq
    assert json.loads(cp.read_text().splitlines()[-1])["seq"] < head
    server.services.stop()  # what the lifespan does at shutdown
    assert json.loads(cp.read_text().splitlines()[-1])["seq"] == head
