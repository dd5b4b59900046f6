"""The gallery's SQLite file: connections, schema, migrations and CRUD.

One file, ``gallery.sqlite3`` in the data directory, in WAL mode (readers never block the one
writer; other processes may read and write the same file). Foreign keys are ON and deletes
cascade: deleting a person removes their templates and memberships, and (schema 2) their alerts and
sightings, whose tables ``sightline.events.store`` reads and writes through this store's connections.

Schema versions live in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes a file from version i to
i + 1, so every file a past release wrote opens in a later one. A file whose version is newer than
this code knows is refused with ``SchemaVersionError`` rather than guessed at. A change counter
(``meta.templates_generation``, bumped by triggers on every template insert, update and delete,
cascades included) lets an in-memory index notice another process's change with one cheap read.

Threads: one connection per thread (``threading.local``), so the store may be shared by the threads
of one process; SQLite serialises writers, waiting up to ``busy_timeout_s`` for the lock. Connections
live until ``close()``, so share a store between a bounded pool of threads, not one thread per request.
``synchronous=NORMAL``: a commit survives a process crash; a power cut may lose the last few
commits but never corrupts the file (the usual WAL trade-off, several times faster than FULL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sightline.gallery.records import (
    GalleryError,
    Person,
    PersonInfo,
    SchemaVersionError,
    Template,
    Watchlist,
    name_problem,
)
from sightline.types import F32

logger = logging.getLogger(__name__)

GALLERY_FILE = "gallery.sqlite3"
#: ``PRAGMA application_id`` of a Sightline gallery ("SGLY"), so other SQLite files are refused.
APPLICATION_ID = 0x53474C59
_SEP = "\x1f"  # separator for group_concat of watchlist names (ASCII unit separator)

#: Schema version 1. Frozen: never edit a released step; add a new one to ``MIGRATIONS`` instead.
SCHEMA_V1: tuple[str, ...] = (
    """CREATE TABLE persons (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL CHECK (length(trim(name)) > 0),
        external_id TEXT UNIQUE,
        notes       TEXT,
        created_at  REAL NOT NULL
    )""",
    "CREATE INDEX persons_name ON persons(name)",
    """CREATE TABLE templates (
        id           INTEGER PRIMARY KEY,
        person_id    INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        model        TEXT NOT NULL,
        dim          INTEGER NOT NULL CHECK (dim > 0),
        descriptor   BLOB NOT NULL CHECK (length(descriptor) = 4 * dim),
        quality      REAL NOT NULL CHECK (quality BETWEEN 0 AND 1),
        photo_sha256 TEXT NOT NULL CHECK (length(photo_sha256) = 64),
        source_name  TEXT,
        x1 REAL, y1 REAL, x2 REAL, y2 REAL,
        created_at   REAL NOT NULL
    )""",
    "CREATE INDEX templates_person ON templates(person_id)",
    "CREATE UNIQUE INDEX templates_photo_model ON templates(photo_sha256, model)",
    """CREATE TABLE watchlists (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
        description TEXT NOT NULL DEFAULT '',
        threshold   REAL CHECK (threshold IS NULL OR threshold BETWEEN -1 AND 1),
        created_at  REAL NOT NULL
    )""",
    """CREATE TABLE watchlist_members (
        watchlist_id INTEGER NOT NULL REFERENCES watchlists(id) ON DELETE CASCADE,
        person_id    INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        added_at     REAL NOT NULL,
        PRIMARY KEY (watchlist_id, person_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX watchlist_members_person ON watchlist_members(person_id)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta(key, value) VALUES ('templates_generation', 0)",
    """CREATE TRIGGER templates_gen_insert AFTER INSERT ON templates BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END""",
    """CREATE TRIGGER templates_gen_update AFTER UPDATE ON templates BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END""",
    """CREATE TRIGGER templates_gen_delete AFTER DELETE ON templates BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END""",
)

#: Schema version 2: live-video alerts and sightings (``sightline.events.store``), and a watchlist change
#: counter (``meta.watchlists_generation``, bumped by triggers on watchlists and memberships, cascades
#: included) so a live matcher notices a changed watchlist with one cheap read.
#: Deleting a person CASCADES to their alerts and matched sightings: those rows are biometric data
#: about that person (face crops, descriptors, where and when they were seen), so an erasure must
#: take them too; SET NULL would leave identified face crops behind as anonymous rows, and turn a
#: matched sighting into an unmatched one holding a crop the retention rules say is never kept.
#: That an alert happened belongs in the audit log, not here. Frozen once released.
SCHEMA_V2: tuple[str, ...] = (
    """CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY,
        camera_id   TEXT NOT NULL CHECK (length(camera_id) > 0),
        track_id    INTEGER NOT NULL,
        person_id   INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        watchlist   TEXT NOT NULL,
        similarity  REAL NOT NULL CHECK (similarity BETWEEN -1 AND 1),
        threshold   REAL NOT NULL CHECK (threshold BETWEEN -1 AND 1),
        est_fmr     REAL NOT NULL CHECK (est_fmr BETWEEN 0 AND 1),
        ts          REAL NOT NULL,
        frame_ts    REAL NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        quality     REAL NOT NULL DEFAULT 0 CHECK (quality BETWEEN 0 AND 1),
        crop_jpeg   BLOB NOT NULL,
        status      TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'confirmed', 'rejected')),
        decided_by  TEXT,
        decided_at  REAL,
        comment     TEXT,
        CHECK ((status = 'new') = (decided_at IS NULL))
    )""",
    "CREATE INDEX alerts_camera_ts ON alerts(camera_id, ts)",
    "CREATE INDEX alerts_ts ON alerts(ts)",
    "CREATE INDEX alerts_person ON alerts(person_id)",
    "CREATE INDEX alerts_status_ts ON alerts(status, ts)",
    """CREATE TABLE sightings (
        id          INTEGER PRIMARY KEY,
        camera_id   TEXT NOT NULL CHECK (length(camera_id) > 0),
        track_id    INTEGER NOT NULL,
        start_ts    REAL NOT NULL,
        end_ts      REAL NOT NULL CHECK (end_ts >= start_ts),
        frames      INTEGER NOT NULL CHECK (frames >= 1),
        quality     REAL NOT NULL CHECK (quality BETWEEN 0 AND 1),
        person_id   INTEGER REFERENCES persons(id) ON DELETE CASCADE,
        watchlist   TEXT,
        similarity  REAL CHECK (similarity IS NULL OR similarity BETWEEN -1 AND 1),
        threshold   REAL,
        est_fmr     REAL,
        crop_jpeg   BLOB,
        embedding   BLOB,
        model       TEXT,
        CHECK ((person_id IS NULL) = (watchlist IS NULL) AND (person_id IS NULL) = (similarity IS NULL)
               AND (person_id IS NULL) = (threshold IS NULL) AND (person_id IS NULL) = (est_fmr IS NULL)),
        CHECK ((embedding IS NULL) = (model IS NULL))
    )""",
    "CREATE INDEX sightings_camera_end ON sightings(camera_id, end_ts)",
    "CREATE INDEX sightings_end ON sightings(end_ts)",
    "CREATE INDEX sightings_person ON sightings(person_id)",
    "INSERT INTO meta(key, value) VALUES ('watchlists_generation', 0)",
    *(
        f"""CREATE TRIGGER {table}_gen_{op.lower()} AFTER {op} ON {table} BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'watchlists_generation'; END"""
        for table in ("watchlists", "watchlist_members")
        for op in ("INSERT", "UPDATE", "DELETE")
    ),
)

#: Schema version 3: cameras kept in the gallery file for ``sightline watch --all``
#: (``sightline.video.cameras.CameraStore``). ``options`` is the JSON of the ``CameraConfig`` fields
#: other than id and url, as given (defaults are not written, so a later release's defaults apply).
#: Frozen once released.
SCHEMA_V3: tuple[str, ...] = (
    """CREATE TABLE cameras (
        id          TEXT PRIMARY KEY CHECK (length(id) > 0),
        url         TEXT NOT NULL CHECK (length(url) > 0),
        options     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(options)),
        created_at  REAL NOT NULL
    )""",
)

#: Sealed-blob marker: a BLOB column holding bytes that start with ``SEALED_MAGIC`` is encrypted at rest
#: (AES-GCM, ``sightline.governance.crypto``); anything else is plaintext. Schema 4 lets a template
#: descriptor be either a plain little-endian float32 vector (length 4 * dim) or a sealed one.
SEALED_MAGIC = b"SLE1"
#: Every (table, column) whose blobs are written through ``GalleryStore.seal`` and read through ``unseal``:
#: biometric data (descriptors, face crops, sighting embeddings) and notification secrets. Key rotation
#: re-seals all of them; a column added later that is sealed must be listed here, or rotation would leave
#: it under a key that is then dropped.
SEALED_BLOB_COLUMNS: tuple[tuple[str, str], ...] = (
    ("templates", "descriptor"),
    ("templates", "crop_jpeg"),
    ("alerts", "crop_jpeg"),
    ("sightings", "crop_jpeg"),
    ("sightings", "embedding"),
    ("channels", "secret"),
)

#: Schema version 4: the operator console and accountability.
#: - ``alerts`` rebuilt with AUTOINCREMENT ids (never reused: notification payloads carry them).
#: - ``templates`` rebuilt (SQLite cannot alter a CHECK) so a descriptor may be sealed, with ``crop_jpeg``
#:   (the enrolled face crop shown beside an alert's crop, exported and erased with the person).
#: - ``users`` / ``sessions`` / ``api_tokens`` (``sightline.server.auth``): argon2 hashes; a session cookie
#:   or API token is stored only as its sha256, so the file alone cannot be used to log in.
#: - ``channels`` / ``outbox`` (``sightline.events.notify``): per-watchlist notification channels and one
#:   outbox row per (alert, channel), written in the alert's transaction so a delivery is never lost.
#: - ``audit_log`` (``sightline.governance.audit``): append-only (triggers refuse UPDATE and DELETE), each
#:   row carrying the sha256 of the previous one; never holds biometric data.
#: Frozen once released.
_ALERTS_V2 = SCHEMA_V2[0]
assert _ALERTS_V2.startswith("CREATE TABLE alerts (") and "id          INTEGER PRIMARY KEY," in _ALERTS_V2

SCHEMA_V4: tuple[str, ...] = (
    # alerts rebuilt with AUTOINCREMENT: an alert id is never reused after the newest alert is purged or
    # erased, so a notification receiver that de-duplicates by alert id never drops a new alert.
    "ALTER TABLE alerts RENAME TO alerts_v3",
    _ALERTS_V2.replace("id          INTEGER PRIMARY KEY,", "id          INTEGER PRIMARY KEY AUTOINCREMENT,"),
    "INSERT INTO alerts SELECT * FROM alerts_v3",
    "DROP TABLE alerts_v3",
    "CREATE INDEX alerts_camera_ts ON alerts(camera_id, ts)",
    "CREATE INDEX alerts_ts ON alerts(ts)",
    "CREATE INDEX alerts_person ON alerts(person_id)",
    "CREATE INDEX alerts_status_ts ON alerts(status, ts)",
    "ALTER TABLE templates RENAME TO templates_v3",
    """CREATE TABLE templates (
        id           INTEGER PRIMARY KEY,
        person_id    INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        model        TEXT NOT NULL,
        dim          INTEGER NOT NULL CHECK (dim > 0),
        descriptor   BLOB NOT NULL CHECK (length(descriptor) = 4 * dim OR substr(descriptor, 1, 4) = X'534C4531'),
        quality      REAL NOT NULL CHECK (quality BETWEEN 0 AND 1),
        photo_sha256 TEXT NOT NULL CHECK (length(photo_sha256) = 64),
        source_name  TEXT,
        x1 REAL, y1 REAL, x2 REAL, y2 REAL,
        created_at   REAL NOT NULL,
        crop_jpeg    BLOB
    )""",
    """INSERT INTO templates (id, person_id, model, dim, descriptor, quality, photo_sha256, source_name,
                             x1, y1, x2, y2, created_at)
       SELECT id, person_id, model, dim, descriptor, quality, photo_sha256, source_name,
              x1, y1, x2, y2, created_at FROM templates_v3""",
    "DROP TABLE templates_v3",
    "CREATE INDEX templates_person ON templates(person_id)",
    "CREATE UNIQUE INDEX templates_photo_model ON templates(photo_sha256, model)",
    *(
        f"""CREATE TRIGGER templates_gen_{op.lower()} AFTER {op} ON templates BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END"""
        for op in ("INSERT", "UPDATE", "DELETE")
    ),
    """CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(username)) > 0),
        password_hash TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'operator', 'auditor')),
        disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
        created_at    REAL NOT NULL,
        last_login_at REAL
    )""",
    """CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY CHECK (length(token_sha256) = 64),
        user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_token   TEXT NOT NULL,
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        client       TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX sessions_user ON sessions(user_id)",
    "CREATE INDEX sessions_expires ON sessions(expires_at)",
    """CREATE TABLE api_tokens (
        id           INTEGER PRIMARY KEY,
        user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name         TEXT NOT NULL CHECK (length(trim(name)) > 0),
        token_sha256 TEXT NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
        created_at   REAL NOT NULL,
        expires_at   REAL,
        last_used_at REAL,
        revoked_at   REAL
    )""",
    "CREATE INDEX api_tokens_user ON api_tokens(user_id)",
    """CREATE TABLE channels (
        id           INTEGER PRIMARY KEY,
        watchlist_id INTEGER NOT NULL REFERENCES watchlists(id) ON DELETE CASCADE,
        kind         TEXT NOT NULL CHECK (kind IN ('webhook', 'apprise', 'mqtt')),
        target       TEXT NOT NULL CHECK (length(target) > 0),
        secret       BLOB,
        options      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(options)),
        enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        created_at   REAL NOT NULL
    )""",
    "CREATE INDEX channels_watchlist ON channels(watchlist_id)",
    """CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        alert_id        INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
        channel_id      INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        created_at      REAL NOT NULL,
        delivered_at    REAL,
        UNIQUE (alert_id, channel_id)
    )""",
    "CREATE INDEX outbox_due ON outbox(status, next_attempt_at)",
    """CREATE TABLE audit_log (
        seq       INTEGER PRIMARY KEY,
        ts        REAL NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL CHECK (length(action) > 0),
        target    TEXT,
        reason    TEXT,
        client    TEXT,
        outcome   TEXT NOT NULL DEFAULT 'ok',
        details   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
        prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
        hash      TEXT NOT NULL CHECK (length(hash) = 64)
    )""",
    "CREATE INDEX audit_log_ts ON audit_log(ts)",
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
)

#: Schema version 5: ``watchlists.threshold_templates``, the template mode a list's threshold was tuned
#: for ('per-photo' or 'fused', ``sightline watchlist tune --templates``); NULL for a threshold set by
#: hand or none. Live watch warns when it runs a list in the other mode (a fused threshold is stricter
#: than a per-photo one for the same false-alert target). Frozen once released.
SCHEMA_V5: tuple[str, ...] = (
    "ALTER TABLE watchlists ADD COLUMN threshold_templates TEXT "
    "CHECK (threshold_templates IS NULL OR threshold_templates IN ('per-photo', 'fused'))",
)

#: Schema version 6: a keyed audit chain. ``audit_log.key_id`` names the scheme and key of each entry:
#: NULL for the entries written before (``hash`` = sha256 of the canonical JSON, schema 4's recipe), else
#: the 16-hex id of the master key whose HKDF-derived audit key made ``hash`` = HMAC-SHA256 of the
#: canonical JSON including ``key_id`` (``sightline.governance.audit``). The partial index finds the first
#: keyed entry at once (no unkeyed entry may follow it). Frozen once released.
SCHEMA_V6: tuple[str, ...] = (
    "ALTER TABLE audit_log ADD COLUMN key_id TEXT "
    "CHECK (key_id IS NULL OR (length(key_id) = 16 AND key_id NOT GLOB '*[^0-9a-f]*'))",
    "CREATE INDEX audit_log_keyed ON audit_log(seq) WHERE key_id IS NOT NULL",
)

#: ``MIGRATIONS[i]`` takes a file from schema version i to i + 1. Append only.
MIGRATIONS: tuple[tuple[str, ...], ...] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6)
SCHEMA_VERSION = len(MIGRATIONS)


class BlobCipher(Protocol):
    """Seals and opens biometric blobs (``sightline.governance.crypto`` implements it with AES-GCM).

    ``seal`` output must start with ``SEALED_MAGIC``; ``unseal`` must reject a tampered blob."""

    def seal(self, data: bytes) -> bytes: ...

    def unseal(self, blob: bytes) -> bytes: ...


def blob_to_vector(blob: bytes) -> np.ndarray:
    """A stored descriptor (little-endian float32 bytes) -> read-only (D,) float32 array."""
    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    vec.setflags(write=False)
    return vec


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _blob(vec: npt.ArrayLike, dim: int) -> bytes:
    arr = np.asarray(vec, dtype="<f4").reshape(-1)
    if arr.size != dim:
        raise ValueError(f"descriptor must have {dim} values, got {arr.size}")
    return arr.tobytes()


def migrate(conn: sqlite3.Connection, steps: Sequence[Sequence[str]] = MIGRATIONS, *, name: str = "") -> int:
    """Bring the open file to ``len(steps)``; returns the version it had before.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction and re-reads the version under the
    write lock, so two processes opening a new file at once do not both migrate it.
    Raises ``SchemaVersionError`` for a file newer than ``steps`` or one that is not a gallery.
    """
    target = len(steps)
    first = conn.execute("PRAGMA user_version").fetchone()[0]
    _check_file(conn, first, target, name)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            _check_file(conn, version, target, name)
            if version == target:
                conn.execute("COMMIT")
                return first
            if version == 0:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for stmt in steps[version]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
            logger.info("gallery %s: schema migrated from version %s to %s", name, version, version + 1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _check_file(conn: sqlite3.Connection, version: int, target: int, name: str) -> None:
    if version > target:
        raise SchemaVersionError(
            f"gallery {name} has schema version {version}, but this Sightline understands versions up to "
            f"{target}: it was written by a newer release. Upgrade Sightline to open it (the file was "
            "not changed)."
        )
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if version == 0:
        n = conn.execute("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
        if n:
            raise SchemaVersionError(f"{name} is an SQLite file with tables but not a Sightline gallery")
    elif app_id != APPLICATION_ID:
        raise SchemaVersionError(
            f"{name} is not a Sightline gallery (application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
        )


_PERSON_COLS = "p.id, p.name, p.external_id, p.notes, p.created_at"
_TEMPLATE_COLS = (
    "t.id, t.person_id, t.model, t.dim, t.quality, t.photo_sha256, t.source_name, t.x1, t.y1, t.x2, t.y2, t.created_at"
)
_WATCHLIST_COLS = (
    "w.id, w.name, w.description, w.threshold, w.created_at, "
    "(SELECT count(*) FROM watchlist_members m WHERE m.watchlist_id = w.id), w.threshold_templates"
)


def _person(row: Sequence) -> Person:
    return Person(id=row[0], name=row[1], external_id=row[2], notes=row[3], created_at=_ts(row[4]))


def _template(row: Sequence, descriptor: bytes | None = None) -> Template:
    box = None if row[7] is None else (float(row[7]), float(row[8]), float(row[9]), float(row[10]))
    vec = None if descriptor is None else blob_to_vector(descriptor)
    return Template(
        id=row[0],
        person_id=row[1],
        model=row[2],
        dim=row[3],
        quality=row[4],
        photo_sha256=row[5],
        source_name=row[6],
        xyxy=box,
        created_at=_ts(row[11]),
        descriptor=vec,
    )


def _watchlist(row: Sequence) -> Watchlist:
    return Watchlist(
        id=row[0],
        name=row[1],
        description=row[2],
        threshold=row[3],
        created_at=_ts(row[4]),
        member_count=row[5],
        threshold_templates=row[6],
    )


class GalleryStore:
    """Persons, templates and watchlists in one SQLite file.

    Methods that write run in their own transaction, or join the caller's
    ``with store.transaction():`` so several writes commit (or roll back) together.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        if busy_timeout_s < 0:
            raise ValueError(f"busy_timeout_s must be >= 0, got {busy_timeout_s}")
        self.path = Path(path)
        self._cipher: BlobCipher | None = None
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        try:
            # Refuse a newer or foreign file before anything (even the journal mode) is changed in it.
            _check_file(conn, conn.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION, str(self.path))
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]  # persistent, for every connection
            if mode.lower() != "wal":
                logger.warning("gallery %s: journal_mode is %s, not wal", self.path, mode)
            migrate(conn, name=str(self.path))
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls, data_dir: Path, *, encrypt: bool = True, busy_timeout_s: float = 10.0, key_file: Path | None = None
    ) -> GalleryStore:
        """The gallery in ``data_dir`` (``gallery.sqlite3``), created with its parents if missing.

        ``encrypt`` (the default): biometric blobs are sealed with AES-GCM (``sightline.governance.crypto``)
        under the key in ``$SIGHTLINE_KEY`` or ``<data_dir>/sightline.key``, created (mode 0600) at first
        run. A gallery that already holds sealed blobs but whose key is missing is refused rather than
        given a new key (which would silently leave the old faces unreadable), and so is a key that does not
        open its newest sealed descriptor (a wrong ``SIGHTLINE_KEY``). ``encrypt=False`` opens it
        without a cipher: plain blobs read and write, sealed ones raise on read. ``key_file``: a key file
        outside the data directory (else ``SIGHTLINE_KEY_FILE``, a systemd credential ...:
        ``sightline.governance.crypto.key_source``).
        """
        data_dir = Path(data_dir)
        store = cls(data_dir / GALLERY_FILE, busy_timeout_s=busy_timeout_s)
        if not encrypt:
            return store
        try:
            # Imported here: governance builds on the gallery, the gallery only plugs its cipher in.
            from sightline.governance import crypto

            if not crypto.has_key(data_dir, key_file=key_file) and store.sealed_blob_count(limit=1):
                src = crypto.key_source(data_dir, key_file=key_file)
                raise GalleryError(
                    f"gallery {store.path} holds encrypted faces but its key is missing: restore "
                    f"{src.describe()} (or set {crypto.KEY_ENV}); a new key would not open them"
                )
            cipher = crypto.cipher_for(data_dir, key_file=key_file)
            crypto.check_opens(store, cipher)
            store.set_cipher(cipher)
        except BaseException:
            store.close()
            raise
        return store

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection. The store cannot be used afterwards."""
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()

    # -- connections and transactions --------------------------------------------------------------

    # -- encryption at rest -----------------------------------------------------------------------

    def set_cipher(self, cipher: BlobCipher | None) -> None:
        """Seal biometric blobs (descriptors, face crops) written from now on with ``cipher``; ``None``
        stores them in plain. Reading works either way: sealed blobs start with ``SEALED_MAGIC``."""
        self._cipher = cipher

    def seal(self, data: bytes) -> bytes:
        """Bytes to store for a biometric blob: sealed when a cipher is set, else ``data`` unchanged."""
        return data if self._cipher is None else self._cipher.seal(data)

    def unseal(self, blob: bytes) -> bytes:
        """The plain bytes of a stored blob (sealed or not). Raises ``GalleryError`` for a sealed blob
        when no cipher (or the wrong key) is configured."""
        if not blob.startswith(SEALED_MAGIC):
            return blob
        if self._cipher is None:
            raise GalleryError(
                f"gallery {self.path} holds encrypted data but no key is configured "
                "(set SIGHTLINE_KEY or the key file; see sightline key --help)"
            )
        return self._cipher.unseal(blob)

    @property
    def cipher(self) -> BlobCipher | None:
        """The cipher sealing new blobs (None: they are stored in plain)."""
        return self._cipher

    def sealed_blob_count(self, *, limit: int | None = None) -> int:
        """Sealed blobs in the biometric columns (``SEALED_BLOB_COLUMNS``), counting up to ``limit``
        (``limit=1``: "is there any?", which stops at the first)."""
        n = 0
        conn = self._conn()
        for table, col in SEALED_BLOB_COLUMNS:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE substr({col}, 1, 4) = X'534C4531'"
            sql += " LIMIT ?)" if limit is not None else ")"
            n += int(conn.execute(sql, () if limit is None else (limit - n,)).fetchone()[0])
            if limit is not None and n >= limit:
                return n
        return n

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        with self._conns_lock:
            if self._closed:
                raise GalleryError(f"gallery {self.path} is closed")
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conns.append(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """Commit on success, roll back on any exception.

        ``write=True`` takes the write lock at the start (``BEGIN IMMEDIATE``), so what is read inside
        is the latest committed state and nobody else writes until commit; ``write=False`` is a
        read snapshot. Nested use joins the outer transaction through a savepoint.
        """
        conn = self._conn()
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                raise
            conn.execute("RELEASE nested")
            return
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Cursor:
        with self.transaction() as conn:
            return conn.execute(sql, params)

    @property
    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def generation(self) -> int:
        """The template change counter: it changes whenever any template is added, changed or deleted
        (by any process), so an index compares it before searching and reloads when it moved."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'templates_generation'").fetchone()
        return int(row[0])

    def watchlists_generation(self) -> int:
        """The watchlist change counter: it changes whenever a watchlist is created, changed or deleted
        or a membership is added or removed (by any process, cascades included)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'watchlists_generation'").fetchone()
        return int(row[0])

    # -- persons -----------------------------------------------------------------------------------

    def add_person(self, name: str, *, external_id: str | None = None, notes: str | None = None) -> Person:
        name = name.strip()
        if (problem := name_problem(name, "a person")) is not None:
            raise GalleryError(problem)
        try:
            cur = self._write(
                "INSERT INTO persons(name, external_id, notes, created_at) VALUES (?, ?, ?, ?)",
                (name, external_id, notes, time.time()),
            )
        except sqlite3.IntegrityError as e:
            if external_id is not None and "external_id" in str(e):
                raise GalleryError(f"external id {external_id!r} is already used by another person") from e
            raise
        person = self.get_person(int(cur.lastrowid or 0))
        assert person is not None
        return person

    def get_person(self, person_id: int) -> Person | None:
        row = self._conn().execute(f"SELECT {_PERSON_COLS} FROM persons p WHERE p.id = ?", (person_id,)).fetchone()
        return None if row is None else _person(row)

    def find_persons(self, *, name: str | None = None, external_id: str | None = None) -> list[Person]:
        """Persons with exactly this name and/or external id (both given: both must match), by id."""
        where, params = [], []
        if name is not None:
            where.append("p.name = ?")
            params.append(name.strip())
        if external_id is not None:
            where.append("p.external_id = ?")
            params.append(external_id)
        sql = f"SELECT {_PERSON_COLS} FROM persons p"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_person(r) for r in self._conn().execute(sql + " ORDER BY p.id", params)]

    def persons_by_id(self, person_ids: Iterable[int]) -> dict[int, Person]:
        ids = sorted(set(person_ids))
        if not ids:
            return {}
        out: dict[int, Person] = {}
        for i in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._conn().execute(f"SELECT {_PERSON_COLS} FROM persons p WHERE p.id IN ({marks})", chunk):
                out[r[0]] = _person(r)
        return out

    def person_info(
        self, person_ids: Sequence[int] | None = None, *, watchlist_id: int | None = None
    ) -> list[PersonInfo]:
        """Persons with template counts and watchlist names, sorted by name then id.

        person_ids: only these (None: all); watchlist_id: only members of that watchlist.
        """
        sql = (
            f"SELECT {_PERSON_COLS}, "
            "(SELECT count(*) FROM templates t WHERE t.person_id = p.id), "
            "(SELECT group_concat(name, char(31)) FROM (SELECT w.name FROM watchlist_members m "
            " JOIN watchlists w ON w.id = m.watchlist_id WHERE m.person_id = p.id ORDER BY w.name)) "
            "FROM persons p"
        )
        where: list[str] = []
        params: list[int] = []
        if watchlist_id is not None:
            where.append("p.id IN (SELECT person_id FROM watchlist_members WHERE watchlist_id = ?)")
            params.append(watchlist_id)
        if person_ids is not None:
            if not person_ids:
                return []
            where.append(f"p.id IN ({','.join('?' * len(person_ids))})")
            params.extend(person_ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn().execute(sql + " ORDER BY p.name, p.id", params).fetchall()
        return [
            PersonInfo(
                id=r[0],
                name=r[1],
                external_id=r[2],
                notes=r[3],
                created_at=_ts(r[4]),
                template_count=int(r[5]),
                watchlists=tuple(r[6].split(_SEP)) if r[6] else (),
            )
            for r in rows
        ]

    def update_person(self, person_id: int, *, notes: str | None) -> None:
        self._write("UPDATE persons SET notes = ? WHERE id = ?", (notes, person_id))

    def delete_person(self, person_id: int) -> bool:
        """Delete a person; their templates and memberships go with them. False if there was none."""
        return self._write("DELETE FROM persons WHERE id = ?", (person_id,)).rowcount > 0

    # -- templates ---------------------------------------------------------------------------------

    def add_template(
        self,
        person_id: int,
        *,
        model: str,
        descriptor: npt.ArrayLike,
        quality: float,
        photo_sha256: str,
        source_name: str | None = None,
        xyxy: Sequence[float] | None = None,
        crop_jpeg: bytes | None = None,
    ) -> int:
        """Store one descriptor ((D,) float32, L2-normalised) of a person; returns the template id.

        ``crop_jpeg``: the enrolled face crop (JPEG bytes) shown beside alerts; sealed like the descriptor.

        Raises ``sqlite3.IntegrityError`` when the same photo (sha256) already has a template of
        this model, or the person does not exist.
        """
        vec = np.asarray(descriptor, dtype=np.float32).reshape(-1)
        box = (None,) * 4 if xyxy is None else tuple(float(v) for v in xyxy)
        if len(box) != 4:
            raise ValueError(f"xyxy must have 4 values, got {len(box)}")
        cur = self._write(
            "INSERT INTO templates(person_id, model, dim, descriptor, quality, photo_sha256, source_name, "
            "x1, y1, x2, y2, created_at, crop_jpeg) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                person_id,
                model,
                vec.size,
                self.seal(_blob(vec, vec.size)),
                float(quality),
                photo_sha256.lower(),
                source_name,
                *box,
                time.time(),
                None if crop_jpeg is None else self.seal(crop_jpeg),
            ),
        )
        return int(cur.lastrowid or 0)

    def get_template(self, template_id: int, *, with_descriptor: bool = False) -> Template | None:
        row = (
            self._conn()
            .execute(f"SELECT {_TEMPLATE_COLS}, t.descriptor FROM templates t WHERE t.id = ?", (template_id,))
            .fetchone()
        )
        return None if row is None else _template(row, self.unseal(row[12]) if with_descriptor else None)

    def templates_of(self, person_id: int, *, with_descriptors: bool = False) -> list[Template]:
        rows = self._conn().execute(
            f"SELECT {_TEMPLATE_COLS}, t.descriptor FROM templates t WHERE t.person_id = ? ORDER BY t.id",
            (person_id,),
        )
        return [_template(r, self.unseal(r[12]) if with_descriptors else None) for r in rows]

    def template_crop(self, template_id: int) -> bytes | None:
        """The enrolled face crop (JPEG bytes) of a template; None when there is no such template or it
        was enrolled before crops were kept (schema < 4)."""
        row = self._conn().execute("SELECT crop_jpeg FROM templates WHERE id = ?", (template_id,)).fetchone()
        return None if row is None or row[0] is None else self.unseal(row[0])

    def templates_for_photo(self, photo_sha256: str) -> list[Template]:
        """Every template made from the photo with this sha256 (any person, any model)."""
        rows = self._conn().execute(
            f"SELECT {_TEMPLATE_COLS} FROM templates t WHERE t.photo_sha256 = ? ORDER BY t.id",
            (photo_sha256.lower(),),
        )
        return [_template(r) for r in rows]

    def delete_template(self, template_id: int) -> bool:
        return self._write("DELETE FROM templates WHERE id = ?", (template_id,)).rowcount > 0

    def template_counts(self, model: str, watchlist: str | None = None) -> tuple[int, int]:
        """(persons, templates) of ``model`` a search compares a face with: the members of ``watchlist``
        (by name, case-insensitive), or the whole gallery when None. (0, 0) for an unknown list.
        Counted in SQL: no descriptor is read (or unsealed)."""
        if watchlist is None:
            sql, params = "SELECT count(DISTINCT person_id), count(*) FROM templates WHERE model = ?", (model,)
        else:
            sql = (
                "SELECT count(DISTINCT t.person_id), count(*) FROM templates t "
                "JOIN watchlist_members m ON m.person_id = t.person_id "
                "JOIN watchlists w ON w.id = m.watchlist_id WHERE t.model = ? AND w.name = ?"
            )
            params = (model, watchlist)
        persons, templates = self._conn().execute(sql, params).fetchone()
        return int(persons), int(templates)

    def model_counts(self) -> dict[str, int]:
        """Templates per descriptor model."""
        rows = self._conn().execute("SELECT model, count(*) FROM templates GROUP BY model ORDER BY model")
        return {m: int(n) for m, n in rows}

    def load_descriptors(self, model: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], F32]:
        """All templates of ``model``: (N,) template ids, (N,) person ids, (N, D) float32 descriptors,
        sorted by person then template. Raises ``GalleryError`` when the model's templates disagree
        on D (a corrupted or hand-edited file)."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, person_id, dim, descriptor FROM templates WHERE model = ? ORDER BY person_id, id",
                (model,),
            )
            .fetchall()
        )
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        dims = {r[2] for r in rows}
        if len(dims) != 1:
            raise GalleryError(f"templates of model {model!r} have several dimensions {sorted(dims)}")
        dim = dims.pop()
        tids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        pids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        raw = b"".join(self.unseal(r[3]) for r in rows)
        mat = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(-1, dim)
        return tids, pids, mat

    # -- watchlists --------------------------------------------------------------------------------

    def create_watchlist(self, name: str, description: str = "", threshold: float | None = None) -> Watchlist:
        """Create a watchlist; names are unique ignoring case. ``threshold`` None = the model default."""
        name = name.strip()
        if (problem := name_problem(name, "a watchlist")) is not None:
            raise GalleryError(problem)
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise GalleryError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
        try:
            self._write(
                "INSERT INTO watchlists(name, description, threshold, created_at) VALUES (?, ?, ?, ?)",
                (name, description or "", threshold, time.time()),
            )
        except sqlite3.IntegrityError as e:
            raise GalleryError(f"watchlist {name!r} already exists") from e
        wl = self.get_watchlist(name)
        assert wl is not None
        return wl

    def get_watchlist(self, name: str) -> Watchlist | None:
        row = (
            self._conn()
            .execute(f"SELECT {_WATCHLIST_COLS} FROM watchlists w WHERE w.name = ?", (name.strip(),))
            .fetchone()
        )
        return None if row is None else _watchlist(row)

    def list_watchlists(self) -> list[Watchlist]:
        rows = self._conn().execute(f"SELECT {_WATCHLIST_COLS} FROM watchlists w ORDER BY w.name")
        return [_watchlist(r) for r in rows]

    def update_watchlist(
        self,
        watchlist_id: int,
        *,
        description: str,
        threshold: float | None,
        threshold_templates: str | None = None,
    ) -> None:
        """Set a list's description and threshold. ``threshold_templates``: the template mode the threshold
        was tuned for ('per-photo' / 'fused'), None for a threshold set by hand (or none): a new
        threshold always replaces the old one's mode; an unchanged threshold keeps it."""
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise GalleryError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
        if threshold_templates not in (None, "per-photo", "fused"):
            raise GalleryError(f"threshold_templates must be 'per-photo', 'fused' or None, got {threshold_templates!r}")
        self._write(
            "UPDATE watchlists SET description = ?, threshold_templates = CASE "
            "WHEN ? IS NOT NULL THEN ? WHEN threshold IS ? THEN threshold_templates ELSE NULL END, "
            "threshold = ? WHERE id = ?",
            (description, threshold_templates, threshold_templates, threshold, threshold, watchlist_id),
        )

    def delete_watchlist(self, watchlist_id: int) -> bool:
        """Delete a watchlist and its memberships; the persons stay."""
        return self._write("DELETE FROM watchlists WHERE id = ?", (watchlist_id,)).rowcount > 0

    def add_member(self, watchlist_id: int, person_id: int) -> bool:
        """Add a person to a watchlist; False when they already were a member."""
        cur = self._write(
            "INSERT OR IGNORE INTO watchlist_members(watchlist_id, person_id, added_at) VALUES (?, ?, ?)",
            (watchlist_id, person_id, time.time()),
        )
        return cur.rowcount > 0

    def remove_member(self, watchlist_id: int, person_id: int) -> bool:
        cur = self._write(
            "DELETE FROM watchlist_members WHERE watchlist_id = ? AND person_id = ?", (watchlist_id, person_id)
        )
        return cur.rowcount > 0

    def member_ids(self, watchlist_id: int) -> set[int]:
        rows = self._conn().execute("SELECT person_id FROM watchlist_members WHERE watchlist_id = ?", (watchlist_id,))
        return {int(r[0]) for r in rows}
