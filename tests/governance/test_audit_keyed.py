"""The keyed audit chain: HMAC under a key from the keyring, migration from the unkeyed chain of schema 5,
rewrites with the old recipe or a wrong key, signed checkpoints in a separate file, and key rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sightline.config import AuditConfig
from sightline.gallery import GalleryStore
from sightline.gallery.store import MIGRATIONS, SCHEMA_VERSION, migrate
from sightline.governance import crypto
from sightline.governance.audit import CHECKPOINT_FILE, GENESIS_HASH, AuditError, AuditLog
from sightline.governance.keys import rotate_key

GALLERY = "gallery.sqlite3"


def canon(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hkdf(master: bytes) -> bytes:
    """The documented audit key derivation, computed here independently of the implementation."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sightline audit chain v1").derive(master)


def fields(row: tuple) -> dict:
    seq, ts, actor, action, target, reason, client, outcome, details, prev = row[:10]
    return {
        "seq": seq,
        "ts": ts,
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "client": client,
        "outcome": outcome,
        "details": details,
        "prev_hash": prev,
    }


def old_recipe(row: tuple) -> str:
    """Today's (schema 4/5) recipe: sha256 of the canonical JSON, no key, no key id."""
    return hashlib.sha256(canon(fields(row))).hexdigest()


def hmac_recipe(row: tuple, key: bytes, kid: str) -> str:
    return hmac.new(key, canon({**fields(row), "key_id": kid}), hashlib.sha256).hexdigest()


COLS = "seq, ts, actor, action, target, reason, client, outcome, details, prev_hash, hash"


def write_old_entries(conn: sqlite3.Connection, n: int, start: int = 1, prev: str = GENESIS_HASH) -> str:
    """Entries as today's code writes them (the old recipe); returns the last hash."""
    for seq in range(start, start + n):
        row = (
            seq,
            1_700_000_000.0 + seq,
            f"old{seq}",
            "camera.update",
            f"camera:c{seq}",
            None,
            "cli",
            "ok",
            "{}",
            prev,
        )
        h = old_recipe(row)
        conn.execute(f"INSERT INTO audit_log({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", (*row, h))
        prev = h
    return prev


def schema5_gallery(data: Path, n: int = 3) -> str:
    """A data directory as today's release leaves it: schema 5 (the released migrations only), n entries."""
    data.mkdir(parents=True)
    conn = sqlite3.connect(data / GALLERY, isolation_level=None)
    migrate(conn, MIGRATIONS[:5])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    conn.execute("BEGIN")
    last = write_old_entries(conn, n)
    conn.execute("COMMIT")
    conn.close()
    return last


def rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    out = conn.execute(f"SELECT {COLS}, key_id FROM audit_log ORDER BY seq").fetchall()
    conn.close()
    return out


def rewrite(path: Path, start: int, recipe, *, key_id: str | bool | None = False, actor: str = "mallory") -> None:
    """What an attacker with write access to the file does: drop the triggers, change entry ``start``'s actor,
    then recompute every hash from there to the end with ``recipe(row) -> hash`` so every link holds.
    key_id: the label written on the rewritten entries (False: keep each entry's own)."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    conn.execute("UPDATE audit_log SET actor = ? WHERE seq = ?", (actor, start))
    prev = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (start - 1,)).fetchone()
    prev = GENESIS_HASH if prev is None else prev[0]
    for r in conn.execute(f"SELECT {COLS}, key_id FROM audit_log WHERE seq >= ? ORDER BY seq", (start,)).fetchall():
        kid = r[11] if key_id is False else key_id
        row = (*r[:9], prev)
        h = recipe(row, kid)
        conn.execute("UPDATE audit_log SET prev_hash = ?, hash = ?, key_id = ? WHERE seq = ?", (prev, h, kid, r[0]))
        prev = h
    conn.commit()
    conn.close()


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def store(data):
    s = GalleryStore.open(data)
    yield s
    s.close()


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.record(f"user{i % 2}", "camera.update", target=f"camera:c{i}", client="10.0.0.1", details={"i": i})


def master(store: GalleryStore) -> tuple[str, bytes]:
    ring = store.cipher.keyring
    return ring.current.hex(), ring.keys[ring.current]


# -- migration -----------------------------------------------------------------------------------------


def test_a_schema_5_database_opens_upgrades_verifies_and_continues_keyed(data):
    legacy_head = schema5_gallery(data, n=3)
    with GalleryStore.open(data) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        log = AuditLog(store)
        report = log.verify()
        assert report.ok and report.entries == 3 and (report.unkeyed_entries, report.keyed_entries) == (3, 0)
        e = log.record("alice", "camera.create", target="camera:new")
        kid, key = master(store)
        assert e.seq == 4 and e.prev_hash == legacy_head and e.key_id == kid
        fill(log, 2)
        report = log.verify()
        assert report.ok and (report.unkeyed_entries, report.keyed_entries) == (3, 3)
        assert report.checkpoint_file == str(data / CHECKPOINT_FILE) and report.checkpoints_checked >= 1
    got = rows(data / GALLERY)
    assert [r[11] for r in got] == [None, None, None, kid, kid, kid]
    for r in got:  # the recipes, recomputed here: old entries unchanged, new ones HMAC under the HKDF key
        assert r[10] == (old_recipe(r[:10]) if r[11] is None else hmac_recipe(r[:10], hkdf(key), kid))
    # The first keyed entry was checkpointed at once, with the seq from which the chain is keyed.
    first = json.loads((data / CHECKPOINT_FILE).read_text().splitlines()[0])
    assert (first["seq"], first["keyed_from"], first["key_id"]) == (4, 4, kid)


def test_downgrading_the_keyed_entries_to_the_old_recipe_is_caught(data):
    schema5_gallery(data, n=3)
    with GalleryStore.open(data) as store:
        log = AuditLog(store)
        fill(log, 4)  # entries 4..7 keyed
        assert log.verify().ok
        # Rewrite entry 6 and rehash 6..7 the old way (no key id): it cannot follow keyed entry 5.
        rewrite(store.path, 6, lambda row, kid: old_recipe(row), key_id=None)
        report = log.verify(checkpoints=False)
        assert not report.ok and report.first_broken_seq == 6 and "old unkeyed recipe" in report.problem
        # Rewrite every keyed entry as unkeyed (4..7): the database alone looks like an old one ...
        rewrite(store.path, 4, lambda row, kid: old_recipe(row), key_id=None)
        assert log.verify(checkpoints=False).ok  # the documented limit of the chain without its checkpoints
        # ... but the signed checkpoint says the chain is keyed from entry 4.
        report = log.verify()
        assert not report.ok and report.first_broken_seq == 4 and "keyed from entry 4" in report.problem


def test_a_store_without_the_key_cannot_append_unkeyed_entries_to_a_keyed_chain(data, store):
    log = AuditLog(store)
    fill(log, 2)
    with GalleryStore.open(data, encrypt=False) as plain, pytest.raises(AuditError, match="keyed"):
        AuditLog(plain).record("mallory", "camera.update")
    assert log.count() == 2 and log.verify().ok


# -- rewriting and rehashing -----------------------------------------------------------------------------

WRONG = crypto.generate_key()


@pytest.mark.parametrize(
    ("recipe", "label", "why"),
    [
        (lambda row, kid: old_recipe(row), None, "old unkeyed recipe"),  # old recipe, key id dropped
        (lambda row, kid: old_recipe(row), False, "altered"),  # old recipe, key id kept
        (lambda row, kid: hmac_recipe(row, hkdf(WRONG), kid), False, "altered"),  # wrong key, real key id
        (
            lambda row, kid: hmac_recipe(row, hkdf(WRONG), kid),
            crypto.key_id(WRONG).hex(),
            "not in the keyring",
        ),  # wrong key, its own id
    ],
    ids=["old-recipe-unkeyed", "old-recipe-same-key-id", "wrong-key", "wrong-key-own-id"],
)
def test_a_rewritten_and_rehashed_chain_fails_at_the_first_changed_entry(store, recipe, label, why):
    log = AuditLog(store)
    fill(log, 8)
    untouched = log.verify()
    assert untouched.ok and untouched.keyed_entries == 8 and untouched.checkpoints_checked >= 1
    rewrite(store.path, 5, recipe, key_id=label)
    for report in (log.verify(), log.verify(checkpoints=False)):
        assert not report.ok and report.first_broken_seq == 5 and why in report.problem
        assert report.entries == 4 and report.head.seq == 4


def test_a_chain_rewritten_from_the_first_entry_with_the_old_recipe_fails_at_entry_1(store):
    log = AuditLog(store)
    fill(log, 5)
    rewrite(store.path, 1, lambda row, kid: old_recipe(row), key_id=None)
    report = log.verify()
    assert not report.ok and report.first_broken_seq == 1 and "keyed from entry 1" in report.problem


# -- checkpoints -------------------------------------------------------------------------------------------


def cp_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_checkpoints_are_signed_lines_appended_every_n_entries(store, data):
    log = AuditLog(store, config=AuditConfig(checkpoint_every_entries=3, checkpoint_every_s=0))
    fill(log, 7)
    path = data / CHECKPOINT_FILE
    lines = cp_lines(path)
    assert [c["seq"] for c in lines] == [1, 4, 7]  # the first keyed entry, then every 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kid, key = master(store)
    heads = {r[0]: r[10] for r in rows(store.path)}
    for c in lines:
        assert set(c) == {"seq", "hash", "ts", "key_id", "keyed_from", "mac"}
        assert c["hash"] == heads[c["seq"]] and c["key_id"] == kid and c["keyed_from"] == 1
        unsigned = {k: v for k, v in c.items() if k != "mac"}
        assert c["mac"] == hmac.new(hkdf(key), canon(unsigned), hashlib.sha256).hexdigest()
    assert log.verify().checkpoints_checked == 3
    assert log.checkpoint() is None  # the head is already checkpointed
    log.record("u", "camera.update")
    assert log.checkpoint().seq == 8 and [c["seq"] for c in cp_lines(path)] == [1, 4, 7, 8]


def test_a_checkpoint_past_the_tail_means_truncation(store):
    log = AuditLog(store, config=AuditConfig(checkpoint_every_entries=2, checkpoint_every_s=0))
    fill(log, 6)
    conn = sqlite3.connect(store.path)
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq > 4")
    conn.commit()
    conn.close()
    assert log.verify(checkpoints=False).ok
    report = log.verify()
    assert (
        not report.ok and "removed from the tail" in report.problem and "entry 5" in report.problem
    )  # checkpoints at 1, 3, 5


@pytest.mark.parametrize("edit", ["hash", "seq", "mac", "garbage", "foreign-key"])
def test_an_edited_or_forged_checkpoint_file_fails_verification(store, data, edit):
    log = AuditLog(store, config=AuditConfig(checkpoint_every_entries=2, checkpoint_every_s=0))
    fill(log, 4)
    path = data / CHECKPOINT_FILE
    lines = cp_lines(path)
    c = lines[-1]
    if edit == "hash":
        c["hash"] = "f" * 64
    elif edit == "seq":
        c["seq"] += 1
    elif edit == "mac":
        c["mac"] = "0" * 64
    elif edit == "foreign-key":
        c["key_id"] = crypto.key_id(WRONG).hex()
        unsigned = {k: v for k, v in c.items() if k != "mac"}
        c["mac"] = hmac.new(hkdf(WRONG), canon(unsigned), hashlib.sha256).hexdigest()
    text = "".join(json.dumps(x) + "\n" for x in lines)
    if edit == "garbage":
        text += "not json\n"
    path.write_text(text)
    report = log.verify()
    assert not report.ok and "checkpoint file" in report.problem
    assert log.verify(checkpoints=False).ok


def test_a_checkpoint_is_written_every_t_seconds_while_quiet_and_at_shutdown(store, data):
    log = AuditLog(store, config=AuditConfig(checkpoint_every_entries=0, checkpoint_every_s=0.2))
    fill(log, 2)  # entry 1 forced (first keyed); entry 2 waits for the timer
    log.start_checkpoints()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and 2 not in [c["seq"] for c in cp_lines(data / CHECKPOINT_FILE)]:
        time.sleep(0.05)
    assert [c["seq"] for c in cp_lines(data / CHECKPOINT_FILE)][-1] == 2
    slow = AuditLog(store, config=AuditConfig(checkpoint_every_entries=1000, checkpoint_every_s=3600))
    slow.record("u", "camera.update")
    log.stop_checkpoints()
    assert [c["seq"] for c in cp_lines(data / CHECKPOINT_FILE)][-1] == 3  # the shutdown checkpoint


def test_checkpoints_go_where_configured_and_beside_an_outside_key_file(tmp_path, monkeypatch):
    keydir, data = tmp_path / "keys", tmp_path / "data"
    with GalleryStore.open(data, key_file=keydir / "k.json") as store:
        AuditLog(store).record("u", "camera.update")
        assert (keydir / CHECKPOINT_FILE).exists() and not (data / CHECKPOINT_FILE).exists()
        elsewhere = tmp_path / "remote" / "cp.jsonl"
        AuditLog(store, config=AuditConfig(checkpoint_file=elsewhere)).record("u", "camera.update")
        assert cp_lines(elsewhere)[0]["seq"] == 2
        monkeypatch.setenv("SIGHTLINE_AUDIT_CHECKPOINTS", str(tmp_path / "env.jsonl"))
        log = AuditLog(store)
        assert log.checkpoint_file() == tmp_path / "env.jsonl"
        assert log.checkpoint().seq == 2 and log.verify().ok


def test_checkpoints_can_also_go_to_syslog(store):
    sockdir = tempfile.mkdtemp(prefix="sl", dir="/tmp")  # AF_UNIX paths are short
    addr = os.path.join(sockdir, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.settimeout(30)
    try:
        log = AuditLog(store, config=AuditConfig(syslog=True, syslog_address=addr))
        log.record("u", "camera.update")  # the first keyed entry: checkpointed at once
        msg = sock.recv(65536).decode()
        assert "sightline-audit-checkpoint" in msg
        line = json.loads(msg[msg.index("{") : msg.rindex("}") + 1])
        assert line["seq"] == 1 and line["hash"] == log.head().hash and "mac" in line
        log.stop_checkpoints()
    finally:
        sock.close()
        os.unlink(addr)
        os.rmdir(sockdir)


def test_a_missing_syslog_socket_never_stops_recording(store, caplog):
    log = AuditLog(store, config=AuditConfig(syslog=True, syslog_address="/nonexistent/dev/log"))
    e = log.record("u", "camera.update")
    assert e.seq == 1 and log.verify().ok
    assert any("syslog" in r.getMessage() for r in caplog.records)


# -- rotation ---------------------------------------------------------------------------------------------


def test_key_rotation_keeps_old_entries_verifiable_without_the_old_key(data, store):
    log = AuditLog(store, config=AuditConfig(checkpoint_every_entries=2, checkpoint_every_s=0))
    fill(log, 3)
    old_id, old_key = master(store)
    report = rotate_key(store, data, audit=log, actor="cli:root")
    new_id = report.new_key_id
    assert report.dropped and new_id != old_id
    fill(log, 2)
    kids = [r[11] for r in rows(store.path)]
    assert kids == [old_id] * 3 + [new_id] * 3  # the key.rotate entry is the new key's first
    saved = json.loads(crypto.key_file(data).read_text())
    assert [k["id"] for k in saved["keys"]] == [new_id]  # the old key is gone: its blobs cannot be opened ...
    assert [a["id"] for a in saved["audit_keys"]] == [old_id]  # ... but its audit key stays
    assert crypto.parse_key(saved["audit_keys"][0]["key"]) == hkdf(old_key) != old_key
    with GalleryStore.open(data) as fresh:  # another process, reading the rewritten key file
        r = AuditLog(fresh).verify()
        assert r.ok and r.keyed_entries == 6 and r.checkpoints_checked >= 2
    # A second rotation keeps both retired audit keys.
    rotate_key(store, data, audit=log, actor="cli:root")
    with GalleryStore.open(data) as fresh:
        assert AuditLog(fresh).verify().ok
    assert len(json.loads(crypto.key_file(data).read_text())["audit_keys"]) == 2


def test_the_audit_key_is_independent_of_the_sealing_key(store):
    ring = store.cipher.keyring
    akey = crypto.derive_audit_key(ring.keys[ring.current])
    assert akey == hkdf(ring.keys[ring.current]) and akey != ring.keys[ring.current]
    assert crypto.key_id(akey) not in ring.keys


# -- the command ----------------------------------------------------------------------------------------------


def cli(data: Path, *args: str, code: int = 0) -> dict:
    from typer.testing import CliRunner

    from sightline.cli.main import app

    res = CliRunner().invoke(app, ["--data-dir", str(data), "audit", *args])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout) if "--json" in args else {"text": res.output}


def test_audit_verify_command_names_the_first_rehashed_entry(data, store):
    fill(AuditLog(store), 6)
    assert cli(data, "verify", "--json")["checkpoints_checked"] >= 1
    rewrite(store.path, 4, lambda row, kid: old_recipe(row), key_id=None)
    out = cli(data, "verify", "--json", code=1)
    assert out["first_broken_seq"] == 4 and "old unkeyed recipe" in out["problem"]
    assert "BROKEN at entry 4" in " ".join(cli(data, "verify", code=1)["text"].split())
    rewrite(store.path, 1, lambda row, kid: old_recipe(row), key_id=None)  # the whole log, as an old one
    assert cli(data, "verify", "--json", code=1)["first_broken_seq"] == 1
    assert cli(data, "verify", "--no-checkpoints", "--json")["ok"]  # the chain alone cannot tell
    missing = cli(data, "verify", "--checkpoints", str(data / "none.jsonl"), "--json", code=1)
    assert "does not exist" in missing["problem"]


def test_audit_checkpoint_command_appends_the_head(data, store):
    log = AuditLog(store, config=AuditConfig(checkpoint_every_entries=1000, checkpoint_every_s=3600))
    fill(log, 3)
    out = cli(data, "checkpoint", "--json")
    assert out["written"] and out["checkpoint"]["seq"] == 3 and out["file"] == str(data / CHECKPOINT_FILE)
    assert not cli(data, "checkpoint", "--json")["written"]  # nothing new
    assert cli(data, "verify", "--json")["checkpoints_checked"] == 2
