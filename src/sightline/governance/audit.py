"""The audit trail: an append-only, hash-chained log of who did what, when, from where and why.

    audit = AuditLog(gallery.store)
    audit.record("alice", "search.photo", reason="case 2024-117", client="10.0.0.7", details={"faces": 2})
    report = audit.verify()          # walks the chain; report.first_broken_seq names the first bad link
    head = audit.head()              # keep it somewhere else: detects a truncated tail later

Rows live in the ``audit_log`` table of the gallery file (schema 4): triggers refuse UPDATE and DELETE, and
each row carries ``prev_hash`` (the previous row's ``hash``; 64 zeros for the first) and ``hash`` =
sha256 of the canonical JSON of the row's fields plus ``prev_hash`` (see ``entry_hash``). Appends compute
``prev_hash`` under SQLite's write lock (``BEGIN IMMEDIATE``), so concurrent writers (threads or processes)
form one chain.

What the chain proves, and what it does not: editing, deleting or reordering any row (with the triggers
dropped, or with a hex editor) breaks the chain at that row, and ``verify`` reports it. Deleting the *last*
rows leaves a valid shorter chain; an exported head (``head()`` stored elsewhere, or ``verify(anchor=...)``)
catches that. Someone with write access to the file can recompute the whole chain after a change: only a
head kept outside their reach (another machine, a printed hash, a timestamping service) detects that.

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
import io
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sightline.gallery.records import GalleryError
from sightline.gallery.store import GalleryStore

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
_COLS = "seq, ts, actor, action, target, reason, client, outcome, details, prev_hash, hash"
CSV_FIELDS: tuple[str, ...] = tuple(c.strip() for c in _COLS.split(","))


class AuditError(GalleryError, ValueError):
    """An audit entry that cannot be recorded as given (missing reason, bad action, biometric details)."""


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log.

    seq: position in the chain (1, 2, ...); ts: epoch s; actor: a username, ``cli:<OS user>`` or
    ``system:<job>``; action: dotted name (``ACTIONS``); target: ``kind:id`` or None; reason: the
    case reference given; client: IP address or host; outcome: ``ok``, ``denied``, ``failed`` ...;
    details: small JSON object, never biometric; prev_hash / hash: 64 hex chars.
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

    ok: every link holds (and the anchor, if given, matches); entries: rows checked; head: the newest
    row's seq and hash; first_broken_seq: the first row whose hash or link is wrong (None when ok, or
    when only the anchor failed); problem: a sentence for people.
    """

    ok: bool
    entries: int
    head: ChainHead
    first_broken_seq: int | None = None
    problem: str | None = None
    anchor_checked: bool = field(default=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head.to_json(),
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem,
            "anchor_checked": self.anchor_checked,
        }


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
) -> str:
    """sha256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of the entry's fields.

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
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    )


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


class AuditLog:
    """The audit trail in a gallery file. Thread-safe (the store gives each thread its connection).

    ``record`` joins the caller's ``with store.transaction():`` when there is one, so an action and its
    audit entry commit or roll back together; otherwise it commits on its own.
    """

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

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
        ts = time.time()
        with self.store.transaction() as conn:
            last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
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
            )
            conn.execute(
                f"INSERT INTO audit_log({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, ts, actor, action, target, reason, client, outcome, details_text, prev, h),
            )
        if action not in ACTIONS:
            logger.debug("audit action %s is not in the contract list", action)
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
        )

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

    def verify(self, *, anchor: ChainHead | None = None) -> VerifyReport:
        """Walk the whole chain in seq order and report the first broken link.

        A link is broken when a row's seq is not the previous one + 1, its ``prev_hash`` is not the
        previous row's ``hash`` (64 zeros for the first), or its ``hash`` does not match its fields.
        With ``anchor`` (an earlier ``head()``), also checks that the row ``anchor.seq`` still exists with
        that hash: a log cut back to before the anchor, or rewritten up to it, fails. Linear in the log
        size; reads in a snapshot so concurrent appends do not disturb it.
        """
        prev_hash, prev_seq, n = GENESIS_HASH, 0, 0
        anchor_hash: str | None = None
        last_ts: float | None = None
        with self.store.transaction(write=False) as conn:
            cur = conn.execute(f"SELECT {_COLS} FROM audit_log ORDER BY seq")
            while True:
                rows = cur.fetchmany(1000)
                if not rows:
                    break
                for r in rows:
                    seq = int(r[0])
                    problem = self._check_row(r, prev_seq, prev_hash)
                    if problem is not None:
                        logger.warning("audit chain broken at seq %s: %s", seq, problem)
                        return VerifyReport(
                            ok=False,
                            entries=n,
                            head=ChainHead(prev_seq, prev_hash, last_ts),
                            first_broken_seq=seq,
                            problem=problem,
                            anchor_checked=anchor is not None,
                        )
                    prev_seq, prev_hash, last_ts = seq, str(r[10]), float(r[1])
                    if anchor is not None and seq == anchor.seq:
                        anchor_hash = prev_hash
                    n += 1
        head = ChainHead(prev_seq, prev_hash, last_ts)
        if anchor is not None and anchor.seq > 0:
            if anchor_hash is None:
                problem = (
                    f"the log ends at seq {prev_seq}, before the exported head seq {anchor.seq}: "
                    "entries were removed from the tail"
                )
                return VerifyReport(False, n, head, None, problem, anchor_checked=True)
            if anchor_hash != anchor.hash:
                problem = f"entry {anchor.seq} no longer has the exported head's hash: the log was rewritten"
                return VerifyReport(False, n, head, anchor.seq, problem, anchor_checked=True)
        return VerifyReport(True, n, head, anchor_checked=anchor is not None)

    @staticmethod
    def _check_row(r: Sequence[Any], prev_seq: int, prev_hash: str) -> str | None:
        seq = int(r[0])
        if seq != prev_seq + 1:
            return f"entry {seq} follows entry {prev_seq}: entries are missing"
        if r[9] != prev_hash:
            return f"entry {seq} does not link to entry {prev_seq} (prev_hash differs): an entry was changed or removed"
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
            )
        except (TypeError, ValueError) as e:
            return f"entry {seq} cannot be hashed: {e}"
        if expected != r[10]:
            return f"entry {seq} was altered (its hash does not match its content)"
        return None

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
        entry, ``ts`` with full precision and ``details`` as compact JSON, so the hashes can be recomputed
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
            writer.writerow([*(_csv_cell(v) for v in row), e.prev_hash, e.hash])
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
