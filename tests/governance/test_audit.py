"""The audit log: hash chain, required reasons, no biometric details, tamper detection, queries and exports."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sightline.gallery import GalleryStore
from sightline.governance.audit import (
    GENESIS_HASH,
    AuditError,
    AuditLog,
    ChainHead,
    entry_hash,
    parse_when,
)


@pytest.fixture
def store(tmp_path):
    s = GalleryStore.open(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def log(store):
    return AuditLog(store)


def fill(log: AuditLog, n: int = 5) -> None:
    for i in range(n):
        log.record(f"user{i % 2}", "camera.update", target=f"camera:c{i}", client="10.0.0.1", details={"i": i})


def tamper(store: GalleryStore, sql: str, params=()) -> None:
    """What an attacker with write access to the file does: drop the append-only triggers, then edit."""
    conn = sqlite3.connect(store.path)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def audit_key_of(store: GalleryStore) -> tuple[str, bytes]:
    """(key id hex, audit key) of the store's current key, derived here with HKDF as documented."""
    ring = store.cipher.keyring
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sightline audit chain v1")
    return ring.current.hex(), hkdf.derive(ring.keys[ring.current])


def test_entries_form_a_chain_whose_hash_is_an_hmac_of_canonical_json(log, store):
    a = log.record("alice", "auth.login", client="10.0.0.7")
    b = log.record("alice", "search.photo", reason="case 17", details={"faces": 2, "watchlist": "wanted"})
    assert (a.seq, b.seq) == (1, 2)
    assert a.prev_hash == GENESIS_HASH and b.prev_hash == a.hash
    kid, akey = audit_key_of(store)
    assert a.key_id == b.key_id == kid
    # The documented recipe, computed independently of the implementation.
    payload = {
        "seq": 2,
        "ts": b.ts,
        "actor": "alice",
        "action": "search.photo",
        "target": None,
        "reason": "case 17",
        "client": None,
        "outcome": "ok",
        "details": '{"faces":2,"watchlist":"wanted"}',
        "prev_hash": a.hash,
        "key_id": kid,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert b.hash == hmac.new(akey, text.encode(), hashlib.sha256).hexdigest()
    # The key is not the one that seals faces, and the sha256 of the text (the old recipe) is not the hash.
    assert akey != store.cipher.keyring.keys[store.cipher.keyring.current]
    assert b.hash != hashlib.sha256(text.encode()).hexdigest()
    report = log.verify()
    assert report.ok and report.entries == 2 and report.head.hash == b.hash and report.first_broken_seq is None


@pytest.mark.parametrize(
    "action", ["search.photo", "search.sightings", "person.enroll", "person.create", "subject.erase"]
)
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_searches_and_enrollments_need_a_reason(log, action, reason):
    with pytest.raises(AuditError, match="reason"):
        log.record("alice", action, reason=reason)
    assert log.count() == 0


def test_a_refused_search_is_recorded_without_a_reason(log):
    e = log.record("alice", "search.photo", outcome="denied", details={"why": "no reason given"})
    assert e.outcome == "denied" and e.reason is None


@pytest.mark.parametrize(
    ("actor", "action", "details", "message"),
    [
        ("", "auth.login", None, "actor"),
        ("alice", "", None, "dotted"),
        ("alice", "login", None, "dotted"),
        ("alice", "Auth.Login", None, "dotted"),
        ("alice", "auth.login", {"crop": b"\xff\xd8\xff"}, "bytes"),
        ("alice", "auth.login", {"emb": np.zeros(128, np.float32)}, "numpy"),
        ("alice", "auth.login", {"emb": [0.1] * 128}, "descriptor"),
        ("alice", "auth.login", {"nested": {"deep": [[0.5] * 64]}}, "descriptor"),
        ("alice", "auth.login", {"x": "a" * 20_000}, "limit"),
        ("alice", "auth.login", {"x": float("nan")}, "plain JSON"),
        ("alice", "auth.login", {"x": object()}, "plain JSON"),
        ("alice", "auth.login", ["not", "a", "dict"], "object"),
    ],
)
def test_bad_entries_are_refused_and_nothing_is_written(log, actor, action, details, message):
    with pytest.raises(AuditError, match=message):
        log.record(actor, action, details=details)
    assert log.count() == 0


def test_the_table_refuses_updates_and_deletes(log, store):
    fill(log, 2)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._write("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._write("DELETE FROM audit_log WHERE seq = 2")
    assert log.verify().ok


@pytest.mark.parametrize(
    ("sql", "broken"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", 3),
        ("UPDATE audit_log SET reason = 'other case' WHERE seq = 4", 4),
        ("UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 2", 2),
        ("UPDATE audit_log SET ts = ts - 3600 WHERE seq = 1", 1),
        ("UPDATE audit_log SET outcome = 'denied' WHERE seq = 5", 5),
        ("DELETE FROM audit_log WHERE seq = 3", 4),
        ("UPDATE audit_log SET seq = 9 WHERE seq = 5", 9),
    ],
)
def test_verify_reports_the_first_broken_link(log, store, sql, broken):
    fill(log)
    tamper(store, sql)
    report = log.verify()
    assert not report.ok and report.first_broken_seq == broken
    assert report.problem


def test_an_entry_rehashed_with_the_old_recipe_is_caught_at_that_entry(log, store):
    fill(log)
    e = log.query(order="asc")[2]  # seq 3
    forged = entry_hash(
        seq=3,
        ts=e.ts,
        actor="mallory",
        action=e.action,
        target=e.target,
        reason=e.reason,
        client=e.client,
        outcome=e.outcome,
        details=json.dumps(e.details, sort_keys=True, separators=(",", ":")),
        prev_hash=e.prev_hash,
    )
    tamper(store, "UPDATE audit_log SET actor = 'mallory', hash = ?, key_id = NULL WHERE seq = 3", (forged,))
    report = log.verify(checkpoints=False)
    assert not report.ok and report.first_broken_seq == 3 and "old unkeyed recipe" in (report.problem or "")


def test_a_truncated_tail_is_caught_only_with_an_exported_head(log, store, tmp_path):
    fill(log, 6)
    head = log.head()
    (tmp_path / "head.json").write_text(json.dumps(head.to_json()))
    tamper(store, "DELETE FROM audit_log WHERE seq > 4")
    assert log.verify().ok  # the shorter chain is valid on its own: the documented limit
    report = log.verify(anchor=ChainHead.load(tmp_path / "head.json"))
    assert not report.ok and "tail" in (report.problem or "")
    export = {"exported_at": 0, "head": head.to_json(), "entries": []}  # a JSON export anchors as well
    assert ChainHead.from_json(export) == head


def test_a_rewritten_chain_is_caught_by_the_exported_head(log, store):
    fill(log, 3)
    head = log.head()
    # Rewrite everything consistently (the attacker recomputes the chain) after changing entry 2.
    tamper(store, "DELETE FROM audit_log")
    for i in range(3):
        log.record("user0", "camera.update", target=f"camera:x{i}", details={"i": i})
    assert log.verify(checkpoints=False).ok
    report = log.verify(anchor=head, checkpoints=False)
    assert not report.ok and report.first_broken_seq == 3 and "rewritten" in (report.problem or "")
    assert log.verify(anchor=log.head(), checkpoints=False).ok
    # The checkpoint written at the first keyed entry catches it without an exported head.
    report = log.verify()
    assert not report.ok and report.first_broken_seq == 1 and "checkpoint" in (report.problem or "")


def test_appends_from_threads_and_processes_form_one_chain(log, store, tmp_path):
    script = (
        "import sys; from pathlib import Path; from sightline.gallery import GalleryStore;"
        "from sightline.governance.audit import AuditLog;"
        "s = GalleryStore.open(Path(sys.argv[1]).parent); a = AuditLog(s)\n"
        "for i in range(40): a.record('proc' + sys.argv[2], 'camera.update', details={'i': i})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(store.path), str(k)], cwd=Path(__file__).parents[2])
        for k in range(2)
    ]

    def work(k: int) -> None:
        for i in range(40):
            log.record(f"thread{k}", "camera.update", details={"i": i})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    report = log.verify()
    assert report.ok and report.entries == 160
    assert [e.seq for e in log.query(order="asc", limit=None)] == list(range(1, 161))


def test_record_joins_the_callers_transaction(log, store):
    with pytest.raises(RuntimeError), store.transaction():
        store.add_person("Ada")
        log.record("alice", "person.delete", target="person:1")
        raise RuntimeError("the action failed")
    assert log.count() == 0 and store.find_persons() == []
    assert log.verify().ok


def test_query_filters(log):
    log.record("alice", "search.photo", reason="c1", details={"person_id": 7})
    log.record("bob", "search.sightings", reason="c2")
    log.record("alice", "person.delete", target="person:7")
    log.record("alice", "auth.login", outcome="failed")
    assert [e.seq for e in log.query()] == [4, 3, 2, 1]
    assert [e.seq for e in log.query(actor="alice", order="asc")] == [1, 3, 4]
    assert [e.seq for e in log.query(action="search.*", order="asc")] == [1, 2]
    assert [e.seq for e in log.query(action="search")] == []
    assert [e.seq for e in log.query(person_id=7, order="asc")] == [1, 3]
    assert [e.seq for e in log.query(outcome="failed")] == [4]
    assert [e.seq for e in log.query(limit=2)] == [4, 3]
    t2 = log.query(order="asc")[1].ts
    assert [e.seq for e in log.query(since=t2, order="asc")] == [2, 3, 4]
    assert [e.seq for e in log.query(until=t2)] == [1]
    assert log.count_matching(actor="alice") == 3
    with pytest.raises(AuditError, match="limit"):
        log.query(limit=0)
    with pytest.raises(AuditError, match="person_id"):
        log.query(person_id=2**64)


def test_paged_iteration_covers_every_entry(log):
    fill(log, 1203)  # more than two pages
    assert [e.seq for e in log.iter()] == list(range(1, 1204))
    assert [e.seq for e in log.iter(order="desc", limit=501)] == list(range(1203, 702, -1))


def test_csv_export_holds_everything_needed_to_recompute_the_hashes(log, store):
    kid, akey = audit_key_of(store)
    log.record("alice", "search.photo", reason='case, with "quotes"', client="::1", details={"name": "Zoë"})
    fill(log, 3)
    buf = io.StringIO()
    assert log.export(buf, "csv") == 4
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4]
    for r in rows:
        recomputed = entry_hash(
            seq=int(r["seq"]),
            ts=float(r["ts"]),
            actor=r["actor"],
            action=r["action"],
            target=r["target"] or None,
            reason=r["reason"] or None,
            client=r["client"] or None,
            outcome=r["outcome"],
            details=r["details"],
            prev_hash=r["prev_hash"],
            key=akey,
            key_id=r["key_id"],
        )
        assert r["key_id"] == kid and recomputed == r["hash"]


def test_csv_export_defuses_spreadsheet_formulas(log):
    log.record("alice", "search.photo", reason='=HYPERLINK("http://evil","x")', client="@host")
    buf = io.StringIO()
    log.export(buf, "csv")
    row = next(csv.DictReader(io.StringIO(buf.getvalue())))
    assert row["reason"] == '\'=HYPERLINK("http://evil","x")' and row["client"] == "'@host"
    assert row["actor"] == "alice"


def test_json_export_carries_the_head_and_filters(log):
    fill(log, 4)
    buf = io.StringIO()
    assert log.export(buf, "json", actor="user1") == 2
    doc = json.loads(buf.getvalue())
    assert doc["head"] == log.head().to_json()
    assert doc["filters"] == {"actor": "user1"}
    assert [e["seq"] for e in doc["entries"]] == [2, 4]
    empty = io.StringIO()
    assert log.export(empty, "json", actor="nobody") == 0 and json.loads(empty.getvalue())["entries"] == []
    with pytest.raises(AuditError, match="format"):
        log.export(io.StringIO(), "xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14", 1_699_920_000.0),
        ("24h", 1_000_000.0 - 86400),
        ("90m", 1_000_000.0 - 5400),
        ("7d", 1_000_000.0 - 7 * 86400),
    ],
)
def test_parse_when(text, expected):
    assert parse_when(text, now=1_000_000.0) == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "inf", "12x", "2023-13-40"])
def test_parse_when_refuses_nonsense(text):
    with pytest.raises(AuditError, match="since"):
        parse_when(text)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actor=st.text(max_size=30),
    reason=st.none() | st.text(max_size=40),
    target=st.none() | st.text(max_size=30),
    details=st.none() | st.dictionaries(st.text(max_size=10), _json, max_size=5),
)
def test_any_input_is_recorded_verifiably_or_refused_clearly(log, actor, reason, target, details):
    """Arbitrary text (lone surrogates, control characters, RTL marks) and nested JSON: each entry is either
    stored and verifiable, read back equal, or refused with an AuditError; never another exception."""
    try:
        e = log.record(actor, "camera.update", reason=reason, target=target, details=details)
    except AuditError:
        return
    back = log.query(limit=1)[0]
    assert back == e
    assert log.verify().ok
