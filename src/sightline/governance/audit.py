"""The audit trail: an append-only, hash-chained log of who did what, when, from where and why.

    audit = AuditLog(gallery.store)
    audit.record("alice", "search.photo", reason="case 2024-117", client="10.0.0.7", details={"faces": 2})
    report = audit.verify()          # walks the chain; report.first_broken_seq names the first bad link
    head = audit.head()              # keep it somewhere else: detects a truncated tail later

Rows live in the ``audit_log`` table of the gallery file (schema 4): triggers refuse UPDATE and DELETE, and
each row carries ``prev_hash`` (the previous row's ``hash``; 64 zeros for the first) and ``hash``. Appends
compute ``prev_hash`` under SQLite's write lock (``BEGIN IMMEDIATE``), so concurrent writers (threads or
processes) form one chain.

Keyed chain (schema 6): ``hash`` = HMAC-SHA256 under the *audit key* of the canonical JSON of the row's
fields, ``prev_hash`` and ``key_id`` (``entry_hash(key=...)``). The audit key is derived with HKDF from the
master key of the keyring (``sightline.governance.crypto.derive_audit_key``: never stored in the database,
independent of the key that seals faces) and ``key_id`` (a column) names the master key, so entries made
before a key rotation verify with the retired key's audit key, which the key file keeps. Entries written
before schema 6 have ``key_id`` NULL and the old recipe (sha256 of the canonical JSON without ``key_id``);
they verify as they are, the first keyed entry links to them, and no unkeyed entry may follow a keyed one.

Signed checkpoints: every ``AuditConfig.checkpoint_every_entries`` entries and/or ``checkpoint_every_s``
seconds, at the first keyed entry, and when the server stops, the chain head is appended to a separate
file (opened ``O_APPEND``, fsynced) as a JSON line ``{seq, hash, ts, key_id, keyed_from, mac}`` (``mac``:
HMAC-SHA256 of the canonical JSON of the other fields under the audit key; ``keyed_from``: the first keyed
entry), optionally also sent to syslog/journald. ``verify`` checks each checkpoint's MAC and that the entry
it names still has its hash, and that no entry from ``keyed_from`` on is unkeyed.

What the chain proves, and what it does not: editing, deleting or reordering any row (with the triggers
dropped, or with a hex editor) breaks the chain at that row, and ``verify`` reports it. Without the audit
key nobody can recompute a keyed chain after a change (with the old unkeyed recipe or another key, the
first changed entry fails). Deleting the *last* rows leaves a valid shorter chain, and rewriting *every*
entry with the old unkeyed recipe looks like an old database: the checkpoint file (kept where the database's
writer cannot reach it) or an exported head (``head()``, ``verify(anchor=...)``) catches both. Whoever holds
the key file and the database can still rewrite everything: keep the key file off the data volume.

Conventions for callers (so that subject export finds the entries naming a person):
``target`` is ``"<kind>:<id>"`` — ``person:12``, ``template:40``, ``watchlist:3``, ``camera:door``,
``alert:7``, ``user:2``, ``token:5``, ``channel:9``; an entry about a person that targets something else puts
``"person_id": 12`` in ``details``. Never put biometric data (descriptors, images) in ``details``: they are
refused when they look like it (bytes, arrays, long number lists), and the whole ``details`` is capped at
``MAX_DETAILS_BYTES``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import logging.handlers
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sightline.config import AuditConfig
from sightline.gallery.records import GalleryError
from sightline.gallery.store import GalleryStore
from sightline.governance.crypto import AesGcmCipher, Keyring, derive_audit_key

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
#: Largest ``details`` JSON, bytes: room for ids, counts and names, not for images or descriptors.
MAX_DETAILS_BYTES = 8192
#: Longest list of numbers allowed anywhere in ``details`` (a 128-D descriptor is far longer).
MAX_NUMBER_LIST = 32

#: The actions of the team contract. Others are accepted when they are dotted lowercase names.
ACTIONS: frozenset[str] = frozenset(
    {
        "auth.login",
        "auth.logout",
        "search.photo",
        "search.sightings",
        "person.create",
        "person.enroll",
        "person.delete",
        "photo.delete",
        "watchlist.create",
        "watchlist.update",
        "watchlist.delete",
        "watchlist.member_add",
        "watchlist.member_remove",
        "camera.create",
        "camera.update",
        "camera.delete",
        "camera.start",
        "camera.stop",
        "alert.decision",
        "user.create",
        "user.update",
        "user.delete",
        "token.create",
        "token.revoke",
        "channel.create",
        "channel.delete",
        "audit.export",
        "subject.export",
        "subject.erase",
        "retention.purge",
        "key.rotate",
    }
)
#: Actions that must carry a reason or case reference when they succeed (searches by face, enrollment,
#: erasure of a subject).
REASON_REQUIRED: frozenset[str] = frozenset(
    {"search.photo", "search.sightings", "person.create", "person.enroll", "subject.erase"}
)
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_COLS = "seq, ts, actor, action, target, reason, client, outcome, details, prev_hash, hash, key_id"
#: Default name of the checkpoint file (``checkpoint_path``).
CHECKPOINT_FILE = "audit-checkpoints.jsonl"
#: Overrides the default checkpoint file for every process (CLI and server alike).
CHECKPOINT_ENV = "SIGHTLINE_AUDIT_CHECKPOINTS"
CSV_FIELDS: tuple[str, ...] = tuple(c.strip() for c in _COLS.split(","))


class AuditError(GalleryError, ValueError):
    """An audit entry that cannot be recorded as given (missing reason, bad action, biometric details)."""


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log.

    seq: position in the chain (1, 2, ...); ts: epoch s; actor: a username, ``cli:<OS user>`` or
    ``system:<job>``; action: dotted name (``ACTIONS``); target: ``kind:id`` or None; reason: the
    case reference given; client: IP address or host; outcome: ``ok``, ``denied``, ``failed`` ...;
    details: small JSON object, never biometric; prev_hash / hash: 64 hex chars; key_id: 16 hex chars of the
    master key whose audit key made ``hash`` (HMAC), None for an entry of the old unkeyed recipe.
    """

    seq: int
    ts: float
    actor: str
    action: str
    target: str | None
    reason: str | None
    client: str | None
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChainHead:
    """The newest entry's position and hash (``seq`` 0 and the genesis hash for an empty log).

    Store it outside the database (a file on another machine, a ticket, a printout) and pass it to
    ``AuditLog.verify(anchor=...)`` later: a log whose entry ``seq`` no longer has this hash, or that
    has fewer entries, was truncated or rewritten.
    """

    seq: int
    hash: str
    ts: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "ts": self.ts}

    @classmethod
    def from_json(cls, data: Any) -> ChainHead:
        """From ``to_json()`` output, or from a JSON export (its ``head``)."""
        if isinstance(data, dict) and "seq" not in data and isinstance(data.get("head"), dict):
            data = data["head"]
        try:
            seq, h = int(data["seq"]), str(data["hash"])
        except (TypeError, KeyError, ValueError) as e:
            raise AuditError(f"a chain head is a JSON object with 'seq' and 'hash', got {data!r:.200}") from e
        if seq < 0 or not re.fullmatch(r"[0-9a-f]{64}", h):
            raise AuditError(f"chain head has a bad seq ({seq}) or hash ({h!r:.80})")
        ts = data.get("ts")
        return cls(seq=seq, hash=h, ts=None if ts is None else float(ts))

    @classmethod
    def load(cls, path: Path) -> ChainHead:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            raise AuditError(f"cannot read chain head {path}: {e}") from e


@dataclass(frozen=True)
class VerifyReport:
    """What ``AuditLog.verify`` found.

    ok: every link holds (and the anchor and checkpoints, if any, match); entries: rows checked; head: the
    newest row's seq and hash; first_broken_seq: the first row whose hash, link, key or checkpoint is wrong
    (None when ok, or when only the anchor, the tail or the checkpoint file failed); problem: a sentence for
    people; keyed_entries / unkeyed_entries: rows checked with HMAC / with the old sha256 recipe;
    checkpoint_file: the file read (None: none); checkpoints_checked: its lines whose MAC held.
    """

    ok: bool
    entries: int
    head: ChainHead
    first_broken_seq: int | None = None
    problem: str | None = None
    anchor_checked: bool = field(default=False)
    keyed_entries: int = 0
    unkeyed_entries: int = 0
    checkpoint_file: str | None = None
    checkpoints_checked: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head.to_json(),
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem,
            "anchor_checked": self.anchor_checked,
            "keyed_entries": self.keyed_entries,
            "unkeyed_entries": self.unkeyed_entries,
            "checkpoint_file": self.checkpoint_file,
            "checkpoints_checked": self.checkpoints_checked,
        }


@dataclass(frozen=True)
class Checkpoint:
    """One line of the checkpoint file: the chain head ``seq``/``hash`` at ``ts`` (epoch s, when written),
    ``keyed_from`` (the first keyed entry's seq; None before any), signed with the audit key of master key
    ``key_id`` (16 hex): ``mac`` = HMAC-SHA256 (hex) of ``payload_text()``."""

    seq: int
    hash: str
    ts: float
    key_id: str
    keyed_from: int | None
    mac: str

    def payload(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "ts": self.ts, "key_id": self.key_id, "keyed_from": self.keyed_from}

    def payload_text(self) -> str:
        return json.dumps(self.payload(), sort_keys=True, separators=(",", ":"))

    def line(self) -> str:
        return json.dumps({**self.payload(), "mac": self.mac}, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def signed(cls, seq: int, h: str, ts: float, key_id: str, keyed_from: int | None, key: bytes) -> Checkpoint:
        unsigned = cls(seq, h, ts, key_id, keyed_from, "")
        return cls(seq, h, ts, key_id, keyed_from, _mac(key, unsigned.payload_text()))

    @classmethod
    def parse(cls, line: str) -> Checkpoint:
        """Raises ``AuditError`` for a line that is not a checkpoint (never quotes more than 80 chars)."""
        try:
            d = json.loads(line)
            kf = d["keyed_from"]
            cp = cls(
                int(d["seq"]),
                str(d["hash"]),
                float(d["ts"]),
                str(d["key_id"]),
                None if kf is None else int(kf),
                str(d["mac"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise AuditError(f"not a checkpoint line ({type(e).__name__}): {line[:80]!r}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", cp.hash) or not re.fullmatch(r"[0-9a-f]{16}", cp.key_id):
            raise AuditError(f"checkpoint line has a bad hash or key id: {line[:80]!r}")
        return cp


def _mac(key: bytes, text: str) -> str:
    return hmac.digest(key, text.encode("utf-8"), "sha256").hex()  # the one-shot C path (hmac.new is slower)


def canonical_details(details: dict[str, Any] | None) -> str:
    """``details`` as the canonical JSON text stored and hashed; refuses what looks biometric."""
    if details is None:
        return "{}"
    if not isinstance(details, dict):
        raise AuditError(f"details must be a JSON object (dict), got {type(details).__name__}")
    _check_not_biometric(details, "details")
    try:
        text = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise AuditError(f"details must be plain JSON (str, numbers, bool, None, lists, dicts): {e}") from e
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise AuditError(f"details hold text that is not valid Unicode: {e.reason}") from e
    if size > MAX_DETAILS_BYTES:
        raise AuditError(f"details are {size} bytes; the limit is {MAX_DETAILS_BYTES} (no blobs here)")
    return text


def _check_not_biometric(value: Any, where: str) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise AuditError(f"{where} holds bytes: the audit log never stores images or descriptors")
    if type(value).__module__ == "numpy":
        raise AuditError(f"{where} holds a numpy value: pass plain ints/floats, never descriptors")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError(f"{where} has a non-string key {k!r}")
            _check_not_biometric(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        numbers = sum(isinstance(v, float) for v in value)
        if numbers > MAX_NUMBER_LIST:
            raise AuditError(f"{where} is a list of {numbers} floats: that looks like a descriptor, not audit data")
        for i, v in enumerate(value):
            _check_not_biometric(v, f"{where}[{i}]")


def entry_hash(
    *,
    seq: int,
    ts: float,
    actor: str,
    action: str,
    target: str | None,
    reason: str | None,
    client: str | None,
    outcome: str,
    details: str,
    prev_hash: str,
    key: bytes | None = None,
    key_id: str | None = None,
) -> str:
    """The entry's ``hash`` (64 hex chars) from the canonical JSON (sorted keys, no spaces, UTF-8) of its fields.

    With ``key`` (the audit key, ``crypto.derive_audit_key`` of master key ``key_id``): HMAC-SHA256 under it,
    with ``key_id`` among the fields (an entry cannot be relabelled with another key). Without: the schema 4
    recipe, sha256 of the fields without ``key_id`` (entries written before schema 6).
    ``details`` is the stored canonical JSON *text* (hashed as a string, so the hash never depends on
    re-serialising it); ``ts`` is hashed as Python's shortest round-trip repr of the float stored.
    """
    payload = {
        "seq": int(seq),
        "ts": float(ts),
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "client": client,
        "outcome": outcome,
        "details": details,
        "prev_hash": prev_hash,
    }
    if key is None:
        if key_id is not None:
            raise AuditError("an entry with a key id needs its audit key to be hashed")
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    if key_id is None or not re.fullmatch(r"[0-9a-f]{16}", key_id):
        raise AuditError(f"a keyed entry needs the 16-hex id of its master key, got {key_id!r:.40}")
    payload["key_id"] = key_id
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _mac(key, text)


def _entry(row: Sequence[Any]) -> AuditEntry:
    try:
        details = json.loads(row[8])
    except (TypeError, json.JSONDecodeError):
        details = {"_unparsable": str(row[8])[:200]}
    return AuditEntry(
        seq=int(row[0]),
        ts=float(row[1]),
        actor=row[2],
        action=row[3],
        target=row[4],
        reason=row[5],
        client=row[6],
        outcome=row[7],
        details=details if isinstance(details, dict) else {"_value": details},
        prev_hash=row[9],
        hash=row[10],
        key_id=row[11],
    )


def _read_checkpoints(path: Path, akeys: Mapping[str, bytes]) -> tuple[int, dict[int, str], int | None, str | None]:
    """(lines whose MAC held, {seq: hash}, smallest keyed_from, the first problem or None) of a checkpoint file."""
    cps: dict[int, str] = {}
    keyed_from: int | None = None
    n = 0
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return 0, {}, None, f"cannot read checkpoint file {path} ({type(e).__name__})"
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cp = Checkpoint.parse(line)
        except AuditError as e:
            return n, cps, keyed_from, f"checkpoint file {path}, line {i}: {e}: the file was altered"
        key = akeys.get(cp.key_id)
        if key is None:
            return (
                n,
                cps,
                keyed_from,
                (f"checkpoint file {path}, line {i} is signed with key {cp.key_id}, which is not in the keyring"),
            )
        if not hmac.compare_digest(_mac(key, cp.payload_text()).encode(), cp.mac.encode("utf-8", "replace")):
            return n, cps, keyed_from, f"checkpoint file {path}, line {i} has a bad MAC: the file was altered"
        if cps.get(cp.seq, cp.hash) != cp.hash:
            return n, cps, keyed_from, f"checkpoint file {path} holds two hashes for entry {cp.seq}"
        cps[cp.seq] = cp.hash
        if cp.keyed_from is not None:
            keyed_from = cp.keyed_from if keyed_from is None else min(keyed_from, cp.keyed_from)
        n += 1
    return n, cps, keyed_from, None


@dataclass
class _Walk:
    """The per-row checks of ``AuditLog.verify``: link, scheme (no unkeyed entry after a keyed one) and hash."""

    akeys: Mapping[str, bytes]
    cp_keyed_from: int | None
    keyed: int = 0
    unkeyed: int = 0

    def check(self, r: Sequence[Any], prev_seq: int, prev_hash: str) -> str | None:
        seq = int(r[0])
        if seq != prev_seq + 1:
            return f"entry {seq} follows entry {prev_seq}: entries are missing"
        if r[9] != prev_hash:
            return f"entry {seq} does not link to entry {prev_seq} (prev_hash differs): an entry was changed or removed"
        kid = r[11]
        key: bytes | None = None
        if kid is None:
            if self.keyed:
                return (
                    f"entry {seq} has no key id but follows keyed entries: it was rewritten with the old unkeyed recipe"
                )
            if self.cp_keyed_from is not None and seq >= self.cp_keyed_from:
                return (
                    f"entry {seq} has no key id, but the signed checkpoints show the chain keyed from entry "
                    f"{self.cp_keyed_from}: it was rewritten with the old unkeyed recipe"
                )
        else:
            key = self.akeys.get(str(kid))
            if key is None:
                if not self.akeys:
                    return f"entry {seq} is keyed (key {kid}) but no key is configured to verify it"
                return (
                    f"entry {seq} is signed with key {kid}, which is not in the keyring ({', '.join(self.akeys)}): "
                    "a forged entry, or the retired key was lost"
                )
        try:
            expected = entry_hash(
                seq=seq,
                ts=float(r[1]),
                actor=r[2],
                action=r[3],
                target=r[4],
                reason=r[5],
                client=r[6],
                outcome=r[7],
                details=r[8],
                prev_hash=r[9],
                key=key,
                key_id=None if kid is None else str(kid),
            )
        except (TypeError, ValueError) as e:
            return f"entry {seq} cannot be hashed: {e}"
        if not hmac.compare_digest(expected.encode(), str(r[10]).encode("utf-8", "replace")):
            return f"entry {seq} was altered (its hash does not match its content)"
        if kid is None:
            self.unkeyed += 1
        else:
            self.keyed += 1
        return None


_PAGE = 500
#: Longest accepted text per field, characters.
TEXT_LIMITS = {"actor": 200, "target": 500, "reason": 2000, "client": 200, "outcome": 40}


def _text(name: str, value: str | None) -> str | None:
    """A stripped text field (None when blank); refuses non-text, over-long text and text that is not
    valid Unicode (lone surrogates from undecodable command-line bytes) with ``AuditError``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise AuditError(f"audit {name} must be text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > TEXT_LIMITS[name]:
        raise AuditError(f"audit {name} is {len(value)} characters; at most {TEXT_LIMITS[name]}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise AuditError(f"audit {name} is not valid Unicode text: {e.reason}") from e
    return value or None


_MAX_INT = 2**63 - 1  # SQLite INTEGER
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A CSV cell safe to open in a spreadsheet: None -> empty; text that a spreadsheet would run as a
    formula (starting with = + - @ tab or CR) gets a leading apostrophe (strip it before recomputing a
    hash; the JSON export is exact)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _filters(
    actor: str | None,
    action: str | None,
    target: str | None,
    person_id: int | None,
    outcome: str | None,
    since: float | None,
    until: float | None,
    upto_seq: int | None = None,
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if upto_seq is not None:
        if not 0 <= int(upto_seq) <= _MAX_INT:
            raise AuditError(f"upto_seq must be in [0, {_MAX_INT}], got {upto_seq}")
        where.append("seq <= ?")
        params.append(int(upto_seq))
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if action is not None:
        if action.endswith(".*"):
            where.append("substr(action, 1, ?) = ?")
            params.extend([len(action) - 1, action[:-1]])
        else:
            where.append("action = ?")
            params.append(action)
    if target is not None:
        where.append("target = ?")
        params.append(target)
    if person_id is not None:
        if not 0 <= int(person_id) <= _MAX_INT:
            raise AuditError(f"person_id must be in [0, {_MAX_INT}], got {person_id}")
        where.append("(target = ? OR json_extract(details, '$.person_id') = ?)")
        params.extend([f"person:{int(person_id)}", int(person_id)])
    if outcome is not None:
        where.append("outcome = ?")
        params.append(outcome)
    if since is not None:
        where.append("ts >= ?")
        params.append(float(since))
    if until is not None:
        where.append("ts < ?")
        params.append(float(until))
    return where, params


_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_when(text: str | None, *, name: str = "since", now: float | None = None) -> float | None:
    """Epoch seconds from ``1700000000``, ``2024-05-01``, ``2024-05-01T12:00:00+02:00`` (UTC without a
    zone) or a duration ago (``90m``, ``24h``, ``7d``); None for None or blank. Raises ``AuditError``
    naming ``name``."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    m = _REL.match(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise AuditError(f"{name} must be a finite time, got {text!r}")
        return value
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise AuditError(
            f"{name} must be epoch seconds, an ISO date/time or a duration like 24h or 7d, got {text!r:.60}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def checkpoint_path(
    store: GalleryStore, keyring: Keyring | None, config: AuditConfig, env: Mapping[str, str] | None = None
) -> Path:
    """Where checkpoints go: ``config.checkpoint_file``, else ``$SIGHTLINE_AUDIT_CHECKPOINTS``, else
    ``audit-checkpoints.jsonl`` beside the key file when the keys come from a writable key file (so a key
    file on another mount takes the checkpoints with it), else in the gallery's directory."""
    env = os.environ if env is None else env
    if config.checkpoint_file is not None:
        return Path(config.checkpoint_file).expanduser()
    named = env.get(CHECKPOINT_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    if keyring is not None and keyring.source not in ("env", "memory") and not keyring.read_only:
        return Path(keyring.source).parent / CHECKPOINT_FILE
    return store.path.parent / CHECKPOINT_FILE


class AuditLog:
    """The audit trail in a gallery file. Thread-safe (the store gives each thread its connection).

    ``record`` joins the caller's ``with store.transaction():`` when there is one, so an action and its
    audit entry commit or roll back together; otherwise it commits on its own.

    keyring: the keys whose derived audit keys make and check the HMAC chain (default: the keyring of the
    store's cipher, re-read when the key file changes; a store opened without a cipher writes the old
    unkeyed entries, and refuses to once the chain is keyed). config: the checkpoints (``AuditConfig``).
    """

    def __init__(
        self, store: GalleryStore, *, keyring: Keyring | None = None, config: AuditConfig | None = None
    ) -> None:
        self.store = store
        self.config = AuditConfig() if config is None else config
        self._keyring = keyring
        self._akeys: dict[tuple[bytes, bytes], bytes] = {}
        self._cp_lock = threading.Lock()
        self._cp_tail: tuple[tuple[int, int, int], int, float] | None = None  # (file stamp, seq, ts)
        self._cp_warned = False
        self._keyed_from: int | None = None
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._syslog: logging.Handler | None = None
        self._force_pending = False

    # -- keys ------------------------------------------------------------------------------------

    def keyring(self) -> Keyring | None:
        """The keyring in use (None: the store has no cipher and none was given)."""
        if self._keyring is not None:
            return self._keyring
        cipher = self.store.cipher
        if isinstance(cipher, AesGcmCipher):
            cipher.reload_if_changed()  # a rotation by another process
            return cipher.keyring
        return None

    def _audit_keys(self, ring: Keyring) -> dict[str, bytes]:
        """Audit keys by key id hex (HKDF once per master key, cached)."""
        out: dict[str, bytes] = {}
        for kid, akey in ring.audit_keys.items():
            out[kid.hex()] = akey
        for kid, key in ring.keys.items():
            cached = self._akeys.get((kid, key))
            if cached is None:
                cached = self._akeys[(kid, key)] = derive_audit_key(key)
            out[kid.hex()] = cached
        return out

    def checkpoint_file(self) -> Path:
        """The checkpoint file this log writes and verifies against (``checkpoint_path``)."""
        return checkpoint_path(self.store, self.keyring(), self.config)

    # -- writing ---------------------------------------------------------------------------------

    def record(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        reason: str | None = None,
        client: str | None = None,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry; returns it with its seq and hash.

        Raises ``AuditError`` for an empty actor, an action that is not a dotted lowercase name, a
        successful (``outcome="ok"``) action of ``REASON_REQUIRED`` without a reason, or details that are
        not small plain JSON (bytes, numpy values and long float lists are refused as biometric-looking).
        """
        actor = _text("actor", actor) or ""
        target = _text("target", target)
        client = _text("client", client)
        if not actor:
            raise AuditError("an audit entry needs an actor (username, 'cli:<user>' or 'system:<job>')")
        if not isinstance(action, str) or not _ACTION_RE.match(action):
            raise AuditError(f"audit action must be a dotted lowercase name like 'search.photo', got {action!r}")
        outcome = _text("outcome", outcome) or "ok"
        reason = _text("reason", reason)
        if action in REASON_REQUIRED and outcome == "ok" and reason is None:
            raise AuditError(f"{action} needs a reason or case reference")
        details_text = canonical_details(details)
        ring = self.keyring()
        kid: str | None = None
        akey: bytes | None = None
        if ring is not None:
            kid = ring.current.hex()
            akey = self._audit_keys(ring)[kid]
        ts = time.time()
        with self.store.transaction() as conn:
            last = conn.execute("SELECT seq, hash, key_id FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
            if kid is None and last is not None and last[2] is not None:
                raise AuditError(
                    f"the audit chain is keyed (its last entry by key {last[2]}) but this process has no key: "
                    "open the gallery with its key to record"
                )
            first_keyed = kid is not None and (last is None or last[2] is None)
            h = entry_hash(
                seq=seq,
                ts=ts,
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                client=client,
                outcome=outcome,
                details=details_text,
                prev_hash=prev,
                key=akey,
                key_id=kid,
            )
            conn.execute(
                f"INSERT INTO audit_log({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, ts, actor, action, target, reason, client, outcome, details_text, prev, h, kid),
            )
        if action not in ACTIONS:
            logger.debug("audit action %s is not in the contract list", action)
        if ring is not None:
            if conn.in_transaction:  # the caller's transaction may still roll back: no checkpoint names it yet
                self._force_pending = self._force_pending or first_keyed
            else:
                force, self._force_pending = first_keyed or self._force_pending, False
                self._maybe_checkpoint(ring, ChainHead(seq, h, ts), force=force)
        return AuditEntry(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            client=client,
            outcome=outcome,
            details=json.loads(details_text),
            prev_hash=prev,
            hash=h,
            key_id=kid,
        )

    # -- checkpoints -----------------------------------------------------------------------------

    def _last_checkpoint(self, path: Path) -> tuple[int, float] | None:
        """(seq, ts) of the file's last line (cached by the file's size, mtime and inode); None when none."""
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._cp_tail is not None and self._cp_tail[0] == stamp:
            return self._cp_tail[1], self._cp_tail[2]
        try:
            with open(path, "rb") as f:
                f.seek(max(0, st.st_size - 4096))
                tail = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        for line in reversed(tail):
            try:
                cp = Checkpoint.parse(line)
            except AuditError:
                continue
            self._cp_tail = (stamp, cp.seq, cp.ts)
            return cp.seq, cp.ts
        return None

    def _maybe_checkpoint(self, ring: Keyring, head: ChainHead, *, force: bool = False) -> None:
        """After ``head`` (the entry just recorded) committed: checkpoint it when due. Never raises."""
        cfg = self.config
        if cfg.checkpoint_every_entries == 0 and cfg.checkpoint_every_s == 0:
            return  # checkpoints off
        try:
            path = checkpoint_path(self.store, ring, cfg)
            with self._cp_lock:
                last = self._last_checkpoint(path)
                last_seq, last_ts = (0, self._started) if last is None else last
                due = (
                    force
                    or last is None
                    or (
                        head.seq > last_seq
                        and (
                            (cfg.checkpoint_every_entries and head.seq - last_seq >= cfg.checkpoint_every_entries)
                            or (cfg.checkpoint_every_s and time.time() - last_ts >= cfg.checkpoint_every_s)
                        )
                    )
                )
                if due:
                    self._write_checkpoint(path, ring, head)
        except Exception as e:  # the entry is committed: never fail its caller; retried at the next entry
            level = logging.DEBUG if self._cp_warned else logging.WARNING
            logger.log(level, "audit checkpoint not written (%s): %s", type(e).__name__, e)
            self._cp_warned = True

    def keyed_from(self) -> int | None:
        """The seq of the first keyed entry (None: none yet). Cached once found: it never changes."""
        if self._keyed_from is None:
            row = self.store._conn().execute("SELECT min(seq) FROM audit_log WHERE key_id IS NOT NULL").fetchone()
            self._keyed_from = None if row[0] is None else int(row[0])
        return self._keyed_from

    def _write_checkpoint(self, path: Path, ring: Keyring, head: ChainHead) -> Checkpoint:
        kid = ring.current.hex()
        cp = Checkpoint.signed(head.seq, head.hash, time.time(), kid, self.keyed_from(), self._audit_keys(ring)[kid])
        line = cp.line()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))  # one write of one line: lines of several processes never mix
            os.fsync(fd)
        finally:
            os.close(fd)
        logger.info("audit checkpoint: entry %s, hash %s, to %s", cp.seq, cp.hash, path)
        if self.config.syslog:
            self._to_syslog(line.rstrip("\n"))
        return cp

    def _to_syslog(self, line: str) -> None:
        try:
            if self._syslog is None:
                address = self.config.syslog_address
                if address.startswith("/") and not os.path.exists(address):
                    raise OSError(f"no syslog socket at {address}")
                self._syslog = logging.handlers.SysLogHandler(
                    address=address, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV
                )
            record = logging.LogRecord(
                "sightline.audit", logging.INFO, __file__, 0, "sightline-audit-checkpoint %s", (line,), None
            )
            self._syslog.handle(record)
        except OSError as e:
            logger.warning("audit checkpoint not sent to syslog (%s): %s", type(e).__name__, e)

    def checkpoint(self) -> Checkpoint | None:
        """Write a signed checkpoint of the committed head now, unless the file's last one already names it.
        None when nothing was written (no key, an empty log, or nothing new). Raises ``OSError``."""
        ring = self.keyring()
        if ring is None:
            return None
        path = checkpoint_path(self.store, ring, self.config)
        with self._cp_lock:
            head = self.head()
            last = self._last_checkpoint(path)
            if head.seq == 0 or (last is not None and last[0] >= head.seq):
                return None
            return self._write_checkpoint(path, ring, head)

    def start_checkpoints(self) -> None:
        """Write a checkpoint every ``config.checkpoint_every_s`` while entries come in (a thread), so a quiet
        server still anchors its last entries; ``stop_checkpoints`` ends it with a final one."""
        if self._thread is not None or self.config.checkpoint_every_s == 0:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.config.checkpoint_every_s):
                try:
                    self.checkpoint()
                except Exception as e:  # keep the thread: the next period tries again
                    logger.warning("audit checkpoint failed (%s): %s", type(e).__name__, e)

        self._thread = threading.Thread(target=loop, name="audit-checkpoints", daemon=True)
        self._thread.start()

    def stop_checkpoints(self) -> Checkpoint | None:
        """Stop the thread (if any) and write the shutdown checkpoint. Never raises for a failed write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        try:
            return self.checkpoint()
        except (OSError, GalleryError) as e:
            logger.warning("audit checkpoint at shutdown failed (%s): %s", type(e).__name__, e)
            return None
        finally:
            if self._syslog is not None:
                self._syslog.close()
                self._syslog = None

    # -- reading ---------------------------------------------------------------------------------

    def head(self) -> ChainHead:
        """The newest entry's seq and hash (seq 0 and 64 zeros when the log is empty)."""
        row = self.store._conn().execute("SELECT seq, hash, ts FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return ChainHead(0, GENESIS_HASH, None) if row is None else ChainHead(int(row[0]), str(row[1]), float(row[2]))

    def count(self) -> int:
        return int(self.store._conn().execute("SELECT count(*) FROM audit_log").fetchone()[0])

    def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        person_id: int | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 1000,
        order: Literal["asc", "desc"] = "desc",
        upto_seq: int | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every filter given, newest first (``order="asc"``: chain order).

        action: exact name, or a prefix ending in ``.*`` (``search.*``); since/until: epoch s,
        ``since <= ts < until``; person_id: entries naming that person (target ``person:<id>`` or
        ``details.person_id``); limit: rows (1..1,000,000; None = all); upto_seq: only entries up to this
        seq (an export bounded to the chain head it reports).
        """
        return list(
            self.iter(
                actor=actor,
                action=action,
                target=target,
                person_id=person_id,
                outcome=outcome,
                since=since,
                until=until,
                limit=limit,
                order=order,
                upto_seq=upto_seq,
            )
        )

    def iter(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        person_id: int | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        order: Literal["asc", "desc"] = "asc",
        upto_seq: int | None = None,
    ) -> Iterator[AuditEntry]:
        """Like ``query`` but yields entries page by page (for exports of a long log); default chain order.

        Each page of ``_PAGE`` rows is a fresh query (keyset on ``seq``) on the calling thread's
        connection, so no cursor stays open between pages: the consumer may record entries meanwhile,
        or resume the iteration on another thread (a streamed HTTP response)."""
        if limit is not None and not 1 <= limit <= 1_000_000:
            raise AuditError(f"limit must be in [1, 1000000] entries, got {limit}")
        if order not in ("asc", "desc"):
            raise AuditError(f"order must be 'asc' or 'desc', got {order!r}")
        where, params = _filters(actor, action, target, person_id, outcome, since, until, upto_seq)
        return self._pages(where, params, limit, order)

    def _pages(self, where: list[str], params: list[Any], limit: int | None, order: str) -> Iterator[AuditEntry]:
        left = limit
        last: int | None = None
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            clauses = list(where)
            args = list(params)
            if last is not None:
                clauses.append("seq > ?" if order == "asc" else "seq < ?")
                args.append(last)
            sql = f"SELECT {_COLS} FROM audit_log"
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            sql += f" ORDER BY seq {order.upper()} LIMIT ?"
            rows = self.store._conn().execute(sql, [*args, page]).fetchall()
            for r in rows:
                yield _entry(r)
            if len(rows) < page:
                return
            last = int(rows[-1][0])
            if left is not None:
                left -= len(rows)

    def count_matching(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        person_id: int | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        upto_seq: int | None = None,
    ) -> int:
        """How many entries match the filters (as for ``query``)."""
        where, params = _filters(actor, action, target, person_id, outcome, since, until, upto_seq)
        sql = "SELECT count(*) FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.store._conn().execute(sql, params).fetchone()[0])

    # -- verification ----------------------------------------------------------------------------

    def verify(
        self, *, anchor: ChainHead | None = None, checkpoints: Path | Literal[False] | None = None
    ) -> VerifyReport:
        """Walk the whole chain in seq order and report the first broken link.

        A link is broken when a row's seq is not the previous one + 1, its ``prev_hash`` is not the
        previous row's ``hash`` (64 zeros for the first), or its ``hash`` does not match its fields: the
        HMAC under the audit key of its ``key_id`` (a key id not in the keyring fails: a forged key, or a
        retired key that was lost), or for an unkeyed entry the old sha256, accepted only before the first
        keyed entry (in the database, and per the signed checkpoints' ``keyed_from``).
        checkpoints: the checkpoint file (None: ``checkpoint_file()``, skipped when absent; False: not read).
        Each line's MAC must hold, each named entry must still have that hash, and none may name an entry
        past the log's end (a cut tail). With ``anchor`` (an earlier ``head()``), also checks that the row
        ``anchor.seq`` still exists with that hash. Linear in the log size; reads in a snapshot so concurrent
        appends do not disturb it.
        """
        ring = self.keyring()
        akeys = {} if ring is None else self._audit_keys(ring)
        cp_path: Path | None = None
        cps: dict[int, str] = {}
        cp_problem: str | None = None
        cp_keyed_from: int | None = None
        n_cp = 0
        if checkpoints is not False:
            cp_path = self.checkpoint_file() if checkpoints is None else Path(checkpoints)
            if cp_path.exists():
                n_cp, cps, cp_keyed_from, cp_problem = _read_checkpoints(cp_path, akeys)
            elif checkpoints is not None:
                cp_problem = f"checkpoint file {cp_path} does not exist"
            else:
                cp_path = None
        state = _Walk(akeys=akeys, cp_keyed_from=cp_keyed_from)
        prev_hash, prev_seq, n = GENESIS_HASH, 0, 0
        anchor_hash: str | None = None
        last_ts: float | None = None

        def report(ok: bool, broken: int | None = None, problem: str | None = None) -> VerifyReport:
            return VerifyReport(
                ok=ok,
                entries=n,
                head=ChainHead(prev_seq, prev_hash, last_ts),
                first_broken_seq=broken,
                problem=problem,
                anchor_checked=anchor is not None,
                keyed_entries=state.keyed,
                unkeyed_entries=state.unkeyed,
                checkpoint_file=None if cp_path is None else str(cp_path),
                checkpoints_checked=n_cp,
            )

        with self.store.transaction(write=False) as conn:
            cur = conn.execute(f"SELECT {_COLS} FROM audit_log ORDER BY seq")
            while True:
                rows = cur.fetchmany(1000)
                if not rows:
                    break
                for r in rows:
                    seq = int(r[0])
                    problem = state.check(r, prev_seq, prev_hash)
                    if problem is None and seq in cps and cps[seq] != r[10]:
                        problem = (
                            f"entry {seq} does not have the hash its signed checkpoint records: the log was rewritten"
                        )
                    if problem is not None:
                        logger.warning("audit chain broken at seq %s: %s", seq, problem)
                        return report(False, seq, problem)
                    prev_seq, prev_hash, last_ts = seq, str(r[10]), float(r[1])
                    if anchor is not None and seq == anchor.seq:
                        anchor_hash = prev_hash
                    n += 1
        if cp_problem is not None:
            logger.warning("audit checkpoints: %s", cp_problem)
            return report(False, None, cp_problem)
        past = [c for c in cps if c > prev_seq]
        if past:
            problem = (
                f"the log ends at entry {prev_seq}, but a signed checkpoint names entry {max(past)}: "
                "entries were removed from the tail"
            )
            logger.warning("audit chain: %s", problem)
            return report(False, None, problem)
        if anchor is not None and anchor.seq > 0:
            if anchor_hash is None:
                problem = (
                    f"the log ends at seq {prev_seq}, before the exported head seq {anchor.seq}: "
                    "entries were removed from the tail"
                )
                return report(False, None, problem)
            if anchor_hash != anchor.hash:
                problem = f"entry {anchor.seq} no longer has the exported head's hash: the log was rewritten"
                return report(False, anchor.seq, problem)
        return report(True)

    # -- export ----------------------------------------------------------------------------------

    def export(self, out: Any, fmt: Literal["csv", "json"] = "json", **filters: Any) -> int:
        """Write the entries matching ``filters`` (as for ``iter``) to the text stream ``out``, in chain order;
        returns how many. See ``export_chunks`` for the formats."""
        n = 0
        for chunk, count in self._chunks(fmt, filters):
            out.write(chunk)
            n = count
        return n

    def export_chunks(
        self, fmt: Literal["csv", "json"] = "json", *, head: ChainHead | None = None, **filters: Any
    ) -> Iterator[str]:
        """The export as text chunks (one per entry), for a streamed HTTP response.

        JSON: ``{"exported_at", "filters", "head", "entries": [...]}``; head is the chain head when the
        export began, to anchor later verifications. CSV: a header row (``CSV_FIELDS``) then one row per
        entry, ``ts`` with full precision, ``details`` as compact JSON and ``key_id`` last, so the hashes can be
        recomputed by whoever holds the audit key (the old sha256 ones by anyone)
        (text cells a spreadsheet would run as a formula start with an added apostrophe: ``_csv_cell``).
        ``head``: the head to report (default: the head when the first chunk is made); pass the head taken
        before recording the export itself, with ``upto_seq=head.seq``, for an export that is exactly the
        log as it was when asked for. Raises ``AuditError`` for a bad format or filter before yielding
        anything."""
        gen = self._chunks(fmt, filters, head)
        return (chunk for chunk, _ in gen)

    def _chunks(self, fmt: str, filters: dict[str, Any], head: ChainHead | None = None) -> Iterator[tuple[str, int]]:
        if fmt not in ("csv", "json"):
            raise AuditError(f"export format must be 'csv' or 'json', got {fmt!r}")
        filters = {**filters, "order": "asc"}
        entries = self.iter(**filters)  # validates the filters now, before the first chunk
        return self._csv(entries) if fmt == "csv" else self._json(entries, filters, head)

    @staticmethod
    def _csv(entries: Iterator[AuditEntry]) -> Iterator[tuple[str, int]]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_FIELDS)
        n = 0
        for e in entries:
            details = json.dumps(e.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            row = (e.seq, repr(e.ts), e.actor, e.action, e.target, e.reason, e.client, e.outcome, details)
            writer.writerow([*(_csv_cell(v) for v in row), e.prev_hash, e.hash, e.key_id or ""])
            n += 1
            yield buf.getvalue(), n
            buf.seek(0)
            buf.truncate()
        if n == 0:
            yield buf.getvalue(), 0

    def _json(
        self, entries: Iterator[AuditEntry], filters: dict[str, Any], head: ChainHead | None
    ) -> Iterator[tuple[str, int]]:
        meta = {k: v for k, v in filters.items() if v is not None and k not in ("order", "upto_seq")}
        head = self.head() if head is None else head
        prefix = {"exported_at": time.time(), "head": head.to_json(), "filters": meta}
        yield json.dumps(prefix, sort_keys=True)[:-1] + ', "entries": [', 0
        n = 0
        for e in entries:
            n += 1
            yield ("\n" if n == 1 else ",\n") + json.dumps(e.to_json(), ensure_ascii=False), n
        yield "\n]}\n", n
