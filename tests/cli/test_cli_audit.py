"""The CLI accounts for what it does: enroll, search, person delete, watchlist and camera changes are
recorded in the audit log (actor ``cli:<OS user>``, client ``host:<hostname>``), and searches, enrollments
and erasures need a case reference (``--reason``), on a real SQLite gallery in a temp data dir."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sightline.cli.governance import cli_actor, cli_client
from sightline.cli.main import app
from tests.conftest import GALLERY, PROBES

runner = CliRunner()


def invoke(data_dir: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["--data-dir", str(data_dir), *args, "--json"])
    return res.exit_code, res.output


def audit_rows(data_dir: Path) -> list[dict]:
    conn = sqlite3.connect(data_dir / "gallery.sqlite3")
    try:
        rows = conn.execute(
            "SELECT actor, action, target, reason, client, outcome, details FROM audit_log ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    keys = ("actor", "action", "target", "reason", "client", "outcome", "details")
    return [dict(zip(keys, r, strict=True)) | {"details": json.loads(r[6] or "null")} for r in rows]


@pytest.mark.parametrize(
    ("cmd", "rest"),
    [
        (("enroll",), ("--watchlist", "w", "--person", "obama", str(GALLERY / "obama/obama.jpg"))),
        (("search",), (str(PROBES / "obama1.jpg"),)),
        (("person", "delete"), ("obama",)),
    ],
    ids=["enroll", "search", "person-delete"],
)
def test_reason_is_required(tmp_path, cmd, rest):
    code, out = invoke(tmp_path, *cmd, *rest)
    assert code == 2 and "--reason" in out
    code, out = invoke(tmp_path, *cmd, "--reason", "  ", *rest)
    assert code == 2 and "--reason is required" in json.loads(out)["error"]
    assert not (tmp_path / "gallery.sqlite3").exists() or audit_rows(tmp_path) == []  # nothing done, nothing logged


def test_every_change_and_search_is_audited_with_the_cli_actor(tmp_path):
    d = tmp_path
    code, out = invoke(d, "watchlist", "create", "staff", "--description", "door")
    assert code == 0, out
    code, out = invoke(
        d,
        "enroll",
        "--reason",
        "case 12",
        "--watchlist",
        "wanted",
        "--person",
        "obama",
        str(GALLERY / "obama/obama.jpg"),
    )
    assert code == 0 and json.loads(out)["templates_added"] == 1, out
    code, out = invoke(d, "search", "--reason", "case 13", "--watchlist", "wanted", str(PROBES / "obama1.jpg"))
    assert code == 0 and json.loads(out)["faces"][0]["candidates"][0]["match"], out
    code, out = invoke(d, "camera", "add", "door", "rtsp://admin:s3cret@10.0.0.5/stream")
    assert code == 0, out
    code, out = invoke(d, "camera", "remove", "door")
    assert code == 0, out
    code, out = invoke(d, "watchlist", "delete", "staff")
    assert code == 0, out
    code, out = invoke(d, "person", "delete", "obama", "--reason", "erasure request 7")
    assert code == 0, out
    erased = json.loads(out)
    assert erased["name"] == "obama" and erased["templates"] == 1 and erased["memberships"] == 1
    assert invoke(d, "person", "show", "obama")[0] == 2

    rows = audit_rows(d)
    assert {r["actor"] for r in rows} == {cli_actor()} and {r["client"] for r in rows} == {cli_client()}
    assert all(r["outcome"] == "ok" for r in rows)
    by_action = {r["action"]: r for r in rows}
    assert [r["action"] for r in rows] == [
        "watchlist.create",  # staff
        "watchlist.create",  # wanted, made by enroll
        "person.create",
        "person.enroll",
        "search.photo",
        "camera.create",
        "camera.delete",
        "watchlist.delete",
        "subject.erase",
    ]
    pid = erased["person_id"]
    enroll = by_action["person.enroll"]
    assert enroll["target"] == f"person:{pid}" and enroll["reason"] == "case 12"
    assert enroll["details"] == {"watchlist": "wanted", "accepted": 1, "skipped": 0}
    search = by_action["search.photo"]
    assert search["reason"] == "case 13" and search["details"]["faces"] == 1 and search["details"]["matches"] == 1
    camera = by_action["camera.create"]
    assert camera["target"] == "camera:door" and "s3cret" not in json.dumps(camera["details"])
    erase = by_action["subject.erase"]
    assert erase["target"] == f"person:{pid}" and erase["reason"] == "erasure request 7"
    assert erase["details"]["removed"]["templates"] == 1
    # the chain the CLI extended verifies
    code, out = invoke(d, "audit", "verify")
    assert code == 0 and json.loads(out)["ok"] is True, out


def test_a_failed_search_is_audited_as_failed(tmp_path):
    code, _ = invoke(tmp_path, "search", "--reason", "case 9", "--watchlist", "nope", str(PROBES / "obama1.jpg"))
    assert code == 2
    rows = audit_rows(tmp_path)
    assert [(r["action"], r["outcome"], r["reason"]) for r in rows] == [("search.photo", "failed", "case 9")]
