"""The governance commands end to end: `sightline audit|retention|subject|key` on a real data directory."""

from __future__ import annotations

import csv
import getpass
import io
import json
import socket
import sqlite3
import zipfile

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.governance import crypto
from tests.governance.conftest import populate

runner = CliRunner()
ME = f"cli:{getpass.getuser()}"


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)
    monkeypatch.delenv("SIGHTLINE_NEW_KEY", raising=False)
    w = populate(tmp_path / "data")
    w.gallery.close()
    return w


def run(w, *args: str, code: int = 0, as_json: bool = True):
    res = runner.invoke(app, ["--data-dir", str(w.data), *args, *(["--json"] if as_json else [])])
    assert res.exit_code == code, res.output + repr(res.exception)
    return json.loads(res.stdout) if as_json and res.stdout.strip() else res.stdout


def audit_rows(w, action: str) -> list[tuple]:
    conn = sqlite3.connect(w.data / "gallery.sqlite3")
    rows = conn.execute(
        "SELECT actor, target, reason, details, client FROM audit_log WHERE action = ?", (action,)
    ).fetchall()
    conn.close()
    return rows


def test_audit_verify_passes_then_finds_the_tampered_entry(data, tmp_path):
    out = run(data, "audit", "verify")
    assert out["ok"] and out["entries"] == 3
    head = tmp_path / "head.json"
    run(data, "audit", "head", "--out", str(head))
    conn = sqlite3.connect(data.data / "gallery.sqlite3")
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 2")
    conn.commit()
    conn.close()
    out = run(data, "audit", "verify", code=1)
    assert not out["ok"] and out["first_broken_seq"] == 2
    text = run(data, "audit", "verify", code=1, as_json=False)
    assert "BROKEN at entry 2" in text


def test_audit_verify_with_a_saved_head_detects_truncation(data, tmp_path):
    head = tmp_path / "head.json"
    run(data, "audit", "head", "--out", str(head))
    conn = sqlite3.connect(data.data / "gallery.sqlite3")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq = 3")
    conn.commit()
    conn.close()
    assert run(data, "audit", "verify")["ok"]
    out = run(data, "audit", "verify", "--anchor", str(head), code=1)
    assert "tail" in out["problem"]
    head.write_text("{}")
    assert "error" in run(data, "audit", "verify", "--anchor", str(head), code=2)


def test_audit_list_filters_and_is_audited(data):
    out = run(data, "audit", "list", "--actor", "alice", "--action", "person.*")
    assert [e["action"] for e in out] == ["person.create"]
    out = run(data, "audit", "list", "--person", str(data.ada))
    assert [e["seq"] for e in out] == [2, 1]
    assert run(data, "audit", "list", "--since", "1h")[0]["action"] == "audit.export"  # the previous list
    assert run(data, "audit", "list", "--since", "nonsense", code=2)["error"].startswith("--since")
    rows = audit_rows(data, "audit.export")
    assert len(rows) == 3 and all(r[0] == ME for r in rows)


def test_audit_export_csv_and_json(data, tmp_path):
    out = tmp_path / "audit.csv"
    text = run(data, "audit", "export", "--format", "csv", "--out", str(out), as_json=False)
    assert "exported 3 entries" in text
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["action"] for r in rows] == ["person.create", "search.photo", "person.create"]
    res = runner.invoke(app, ["--data-dir", str(data.data), "audit", "export", "--format", "json"])
    doc = json.loads(res.stdout)
    assert len(doc["entries"]) == 4 and doc["entries"][-1]["action"] == "audit.export"  # the CSV export
    assert runner.invoke(app, ["--data-dir", str(data.data), "audit", "export", "--format", "xml"]).exit_code == 2


def test_retention_status_and_purge(data):
    status = run(data, "retention", "status")
    names = {c["name"]: c for c in status["classes"]}
    assert names["alerts"]["rows"] == 3 and names["unmatched_sightings:door"]["with_biometrics"] == 1
    # The fixture's events are from 2023: far past every default age.
    report = run(data, "retention", "purge")
    assert report["alerts"] == 3 and report["total"] == 6
    assert audit_rows(data, "retention.purge")[0][0] == ME
    assert run(data, "retention", "purge", "--alerts-days", "0", code=2)["error"].startswith("alerts_max_age_days")
    text = run(data, "retention", "status", as_json=False)
    assert "alerts" in text and "kept" in text


def test_subject_export_and_erase(data, tmp_path):
    dest = tmp_path / "ada.zip"
    out = run(data, "subject", "export", "Ada", "--out", str(dest), "--reason", "DSAR 9")
    assert out["templates"] == 2 and out["alerts"] == 2
    with zipfile.ZipFile(dest) as zf:
        assert json.loads(zf.read("manifest.json"))["person"]["name"] == "Ada"
    # erase needs --yes and a reason
    assert "--yes" in run(data, "subject", "erase", "Ada", "--reason", "court order", code=2)["error"]
    res = runner.invoke(app, ["--data-dir", str(data.data), "subject", "erase", "Ada", "--yes"])
    assert res.exit_code == 2  # --reason is required
    assert "no person named" in run(data, "subject", "erase", "Nobody", "--reason", "x", "--yes", code=2)["error"]
    assert "no person with id" in run(data, "subject", "erase", "9" * 25, "--reason", "x", "--yes", code=2)["error"]
    assert "person_id" in run(data, "audit", "list", "--person", "9" * 25, code=2)["error"]
    out = run(data, "subject", "erase", str(data.ada), "--reason", "court order", "--yes")
    assert out["templates"] == 2 and out["alerts"] == 2 and out["sightings"] == 1
    actor, target, reason, _details, client = audit_rows(data, "subject.erase")[0]
    assert (actor, target, reason, client) == (ME, f"person:{data.ada}", "court order", f"host:{socket.gethostname()}")
    assert run(data, "audit", "verify")["ok"]
    assert "no person" in run(data, "subject", "export", "Ada", "--out", str(dest), "--reason", "x", code=2)["error"]


def test_key_status_rotate_and_generate(data):
    status = run(data, "key", "status")
    old = status["current_key_id"]
    assert status["blobs"]["alerts.crop_jpeg"] == {old: 3}
    out = run(data, "key", "rotate")
    assert out["dropped"] and out["old_key_ids"] == [old]
    status = run(data, "key", "status")
    assert status["key_ids"] == [out["new_key_id"]] and status["blobs"]["alerts.crop_jpeg"] == {out["new_key_id"]: 3}
    assert audit_rows(data, "key.rotate")[0][0] == ME
    key = run(data, "key", "generate", as_json=False).strip()
    assert len(crypto.parse_key(key)) == 32


def test_key_rotate_with_an_environment_key(data, monkeypatch):
    ring = crypto.read_key_file(crypto.key_file(data.data))
    monkeypatch.setenv("SIGHTLINE_KEY", crypto.encode_key(ring.keys[ring.current]))
    assert "SIGHTLINE_NEW_KEY" in run(data, "key", "rotate", code=2)["error"]
    k2 = crypto.generate_key()
    monkeypatch.setenv("SIGHTLINE_NEW_KEY", crypto.encode_key(k2))
    # A wrong SIGHTLINE_KEY cannot open the blobs: the rotation stops and changes nothing.
    monkeypatch.setenv("SIGHTLINE_KEY", crypto.encode_key(crypto.generate_key()))
    assert "not in the keyring" in run(data, "key", "rotate", code=2)["error"]
    monkeypatch.setenv("SIGHTLINE_KEY", crypto.encode_key(ring.keys[ring.current]))
    out = run(data, "key", "rotate")
    assert out["source"] == "env" and not out["dropped"] and out["new_key_id"] == crypto.key_id(k2).hex()
    monkeypatch.setenv("SIGHTLINE_KEY", crypto.encode_key(k2))
    monkeypatch.delenv("SIGHTLINE_NEW_KEY")
    assert run(data, "key", "status")["blobs"]["templates.crop_jpeg"] == {crypto.key_id(k2).hex(): 3}


def test_retention_run_purges_in_the_foreground_until_its_duration(data):
    res = runner.invoke(app, ["--data-dir", str(data.data), "retention", "run", "--duration", "0.5", "--json"])
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)  # one pass purged (the next would be 300 s later)
    assert first["alerts"] == 3 and first["total"] == 6
    assert audit_rows(data, "retention.purge")[0][0] == "system:retention"
