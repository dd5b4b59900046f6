"""Alerts and sightings in the gallery's SQLite file (tables from schema version 2).

    stores = EventStores(gallery.store)
    alert_id = stores.alerts.add(alert)
    stores.alerts.decide(alert_id, "confirmed", decided_by="ops1", comment="at gate 3")
    recent = stores.sightings.list(camera_id="door", since=time.time() - 3600)

The stores use the ``GalleryStore``'s connections and transactions (one connection per thread, WAL,
foreign keys on), so an alert insert can join a caller's ``with store.transaction():``. Rows refer
to persons by id with ``ON DELETE CASCADE``: deleting a person deletes their alerts and matched
sightings (see ``SCHEMA_V2`` in ``sightline.gallery.store`` for why). Times are epoch seconds.

What is stored is what the caller gives: the retention rule "no crop or descriptor for a face that
matched nothing unless the camera keeps them" is applied by the camera worker before ``add``, so
such data never reaches the file; ``purge_unmatched`` removes kept ones past their retention age.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from sightline.gallery.records import GalleryError
from sightline.gallery.store import GalleryStore, blob_to_vector
from sightline.types import Alert, Match, Sighting

logger = logging.getLogger(__name__)

AlertStatus = Literal["new", "confirmed", "rejected"]
ALERT_STATUSES: tuple[str, ...] = get_args(AlertStatus)


class UnknownAlertError(GalleryError, LookupError):
    """An alert id that does not exist (never did, or its person was deleted)."""


@dataclass(frozen=True, eq=False)
class StoredAlert:
    """An alert as stored, with the operator's decision.

    status: 'new' until someone decides; then 'confirmed' (it was the person) or 'rejected'
    (a false match). decided_at: epoch s, None while 'new'.
    """

    id: int
    alert: Alert
    status: AlertStatus
    decided_by: str | None
    decided_at: float | None
    comment: str | None


@dataclass(frozen=True, eq=False)
class StoredSighting:
    """A sighting as stored. model: the descriptor model of ``sighting.embedding`` (None without one)."""

    id: int
    sighting: Sighting
    model: str | None = field(default=None)


_ALERT_COLS = (
    "a.id, a.camera_id, a.track_id, a.person_id, p.name, a.watchlist, a.similarity, a.threshold, a.est_fmr, "
    "a.ts, a.frame_ts, a.x1, a.y1, a.x2, a.y2, a.quality, a.crop_jpeg, a.status, a.decided_by, a.decided_at, "
    "a.comment"
)
_SIGHTING_COLS = (
    "s.id, s.camera_id, s.track_id, s.start_ts, s.end_ts, s.frames, s.quality, s.person_id, p.name, s.watchlist, "
    "s.similarity, s.threshold, s.est_fmr, s.crop_jpeg, s.embedding, s.model"
)


def _stored_alert(r: Sequence, unseal: Callable[[bytes], bytes]) -> StoredAlert:
    match = Match(person_id=r[3], name=r[4], watchlist=r[5], similarity=r[6], threshold=r[7], est_fmr=r[8])
    alert = Alert(
        camera_id=r[1],
        track_id=r[2],
        match=match,
        ts=r[9],
        frame_ts=r[10],
        xyxy=(r[11], r[12], r[13], r[14]),
        crop_jpeg=unseal(bytes(r[16])),
        quality=r[15],
        id=r[0],
    )
    return StoredAlert(id=r[0], alert=alert, status=r[17], decided_by=r[18], decided_at=r[19], comment=r[20])


def _stored_sighting(r: Sequence, unseal: Callable[[bytes], bytes]) -> StoredSighting:
    match = None
    if r[7] is not None:
        match = Match(
            person_id=r[7],
            name=r[8],
            watchlist=r[9],
            similarity=r[10],
            threshold=r[11],
            est_fmr=r[12],
        )
    emb = None if r[14] is None else blob_to_vector(unseal(bytes(r[14])))
    sighting = Sighting(
        camera_id=r[1],
        track_id=r[2],
        start_ts=r[3],
        end_ts=r[4],
        frames=r[5],
        quality=r[6],
        match=match,
        crop_jpeg=None if r[13] is None else unseal(bytes(r[13])),
        embedding=emb,
        id=r[0],
    )
    return StoredSighting(id=r[0], sighting=sighting, model=r[15])


def _where(clauses: list[tuple[str, object]]) -> tuple[str, list[object]]:
    used = [(sql, v) for sql, v in clauses if v is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in used), [v for _, v in used]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit must be in [1, 100000] rows, got {limit}")


class AlertStore:
    """The ``alerts`` table: add, read, list and decide alerts."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

    def add(self, alert: Alert) -> int:
        """Store one alert with status 'new'; returns its id. Raises ``sqlite3.IntegrityError`` when
        the person does not exist (e.g. deleted since the match).

        In the same transaction, one ``outbox`` row (status 'pending', due now) is written per enabled
        notification channel of the alert's watchlist (``sightline.events.notify``), so a crash between
        storing the alert and notifying loses no notification: the ``Notifier`` of this or a later
        process delivers it. The crop is sealed (``GalleryStore.seal``: encrypted when a key is set).
        """
        m = alert.match
        x1, y1, x2, y2 = (float(v) for v in alert.xyxy)
        now = time.time()
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO alerts(camera_id, track_id, person_id, watchlist, similarity, threshold, est_fmr, "
                "ts, frame_ts, x1, y1, x2, y2, quality, crop_jpeg) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.camera_id,
                    int(alert.track_id),
                    int(m.person_id),
                    m.watchlist,
                    float(m.similarity),
                    float(m.threshold),
                    float(m.est_fmr),
                    float(alert.ts),
                    float(alert.frame_ts),
                    x1,
                    y1,
                    x2,
                    y2,
                    float(alert.quality),
                    sqlite3.Binary(self.store.seal(bytes(alert.crop_jpeg))),
                ),
            )
            alert_id = int(cur.lastrowid or 0)
            queued = conn.execute(
                "INSERT INTO outbox(alert_id, channel_id, status, attempts, next_attempt_at, created_at) "
                "SELECT ?, c.id, 'pending', 0, ?, ? FROM channels c JOIN watchlists w ON w.id = c.watchlist_id "
                "WHERE w.name = ? AND c.enabled = 1",
                (alert_id, now, now, m.watchlist),
            ).rowcount
        if queued > 0:
            logger.debug("alert %s: %s notification(s) queued", alert_id, queued)
        return alert_id

    def get(self, alert_id: int) -> StoredAlert | None:
        with self.store.transaction(write=False) as conn:
            row = conn.execute(
                f"SELECT {_ALERT_COLS} FROM alerts a JOIN persons p ON p.id = a.person_id WHERE a.id = ?", (alert_id,)
            ).fetchone()
        return None if row is None else _stored_alert(row, self.store.unseal)

    def list(
        self,
        *,
        camera_id: str | None = None,
        status: AlertStatus | None = None,
        person_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[StoredAlert]:
        """Alerts newest first (by ``ts``, then id), filtered by what is given; since/until: epoch s,
        ``since <= ts < until``."""
        _check_limit(limit)
        if status is not None and status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {ALERT_STATUSES}, got {status!r}")
        where, params = _where(
            [
                ("a.camera_id = ?", camera_id),
                ("a.status = ?", status),
                ("a.person_id = ?", person_id),
                ("a.ts >= ?", since),
                ("a.ts < ?", until),
            ]
        )
        with self.store.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {_ALERT_COLS} FROM alerts a JOIN persons p ON p.id = a.person_id{where} "
                "ORDER BY a.ts DESC, a.id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_stored_alert(r, self.store.unseal) for r in rows]

    def last_frame_ts(self, camera_id: str, since: float) -> dict[int, float]:
        """person id -> frame time (epoch s) of that person's newest alert on ``camera_id`` among the
        alerts raised at ``ts >= since``: what a restarted camera worker needs to keep its cooldown."""
        with self.store.transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT person_id, MAX(frame_ts) FROM alerts WHERE camera_id = ? AND ts >= ? GROUP BY person_id",
                (camera_id, float(since)),
            ).fetchall()
        return {int(p): float(t) for p, t in rows}

    def count(self, *, status: AlertStatus | None = None, camera_id: str | None = None) -> int:
        where, params = _where([("status = ?", status), ("camera_id = ?", camera_id)])
        with self.store.transaction(write=False) as conn:
            return int(conn.execute(f"SELECT count(*) FROM alerts{where}", params).fetchone()[0])

    def decide(
        self,
        alert_id: int,
        status: Literal["confirmed", "rejected"],
        *,
        decided_by: str,
        comment: str | None = None,
        at: float | None = None,
    ) -> StoredAlert:
        """Record an operator's decision (a later decision replaces an earlier one); returns the alert.

        Raises ``ValueError`` for a status other than 'confirmed'/'rejected' or an empty
        ``decided_by``, and ``UnknownAlertError`` for an unknown id.
        """
        if status not in ("confirmed", "rejected"):
            raise ValueError(f"status must be 'confirmed' or 'rejected', got {status!r}")
        if not decided_by or not decided_by.strip():
            raise ValueError("decided_by must name who decided")
        when = time.time() if at is None else float(at)
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE alerts SET status = ?, decided_by = ?, decided_at = ?, comment = ? WHERE id = ?",
                (status, decided_by.strip(), when, comment, alert_id),
            )
            if cur.rowcount == 0:
                raise UnknownAlertError(f"no alert with id {alert_id}")
        logger.info("alert %s %s by %s", alert_id, status, decided_by)
        stored = self.get(alert_id)
        if stored is None:  # deleted by another process in between
            raise UnknownAlertError(f"no alert with id {alert_id}")
        return stored


class SightingStore:
    """The ``sightings`` table: faces seen on a camera from track start to end."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

    def add(self, sighting: Sighting, *, model: str | None = None) -> int:
        """Store one sighting; returns its id. ``model`` names the descriptor model of
        ``sighting.embedding`` and is required with one (descriptors of different models never mix).
        The crop and the descriptor are sealed (``GalleryStore.seal``: encrypted when a key is set)."""
        emb = None
        if sighting.embedding is not None:
            if not model:
                raise ValueError("a sighting with an embedding needs the descriptor model name (model=...)")
            emb = self.store.seal(np.asarray(sighting.embedding, dtype="<f4").reshape(-1).tobytes())
        m = sighting.match
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO sightings(camera_id, track_id, start_ts, end_ts, frames, quality, person_id, "
                "watchlist, similarity, threshold, est_fmr, crop_jpeg, embedding, model) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sighting.camera_id,
                    int(sighting.track_id),
                    float(sighting.start_ts),
                    float(sighting.end_ts),
                    int(sighting.frames),
                    float(sighting.quality),
                    None if m is None else int(m.person_id),
                    None if m is None else m.watchlist,
                    None if m is None else float(m.similarity),
                    None if m is None else float(m.threshold),
                    None if m is None else float(m.est_fmr),
                    None if sighting.crop_jpeg is None else sqlite3.Binary(self.store.seal(bytes(sighting.crop_jpeg))),
                    emb,
                    model if emb is not None else None,
                ),
            )
        return int(cur.lastrowid or 0)

    def get(self, sighting_id: int) -> StoredSighting | None:
        with self.store.transaction(write=False) as conn:
            row = conn.execute(
                f"SELECT {_SIGHTING_COLS} FROM sightings s LEFT JOIN persons p ON p.id = s.person_id WHERE s.id = ?",
                (sighting_id,),
            ).fetchone()
        return None if row is None else _stored_sighting(row, self.store.unseal)

    def list(
        self,
        *,
        camera_id: str | None = None,
        person_id: int | None = None,
        matched: bool | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[StoredSighting]:
        """Sightings newest first (by ``end_ts``, then id); ``since <= end_ts < until`` (epoch s);
        matched: True only sightings with a match, False only those without."""
        _check_limit(limit)
        clauses: list[tuple[str, object]] = [
            ("s.camera_id = ?", camera_id),
            ("s.person_id = ?", person_id),
            ("s.end_ts >= ?", since),
            ("s.end_ts < ?", until),
        ]
        where, params = _where(clauses)
        if matched is not None:
            cond = "s.person_id IS NOT NULL" if matched else "s.person_id IS NULL"
            where = f"{where} AND {cond}" if where else f" WHERE {cond}"
        with self.store.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {_SIGHTING_COLS} FROM sightings s LEFT JOIN persons p ON p.id = s.person_id{where} "
                "ORDER BY s.end_ts DESC, s.id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_stored_sighting(r, self.store.unseal) for r in rows]

    def count(self, *, camera_id: str | None = None, matched: bool | None = None) -> int:
        where, params = _where([("camera_id = ?", camera_id)])
        if matched is not None:
            cond = "person_id IS NOT NULL" if matched else "person_id IS NULL"
            where = f"{where} AND {cond}" if where else f" WHERE {cond}"
        with self.store.transaction(write=False) as conn:
            return int(conn.execute(f"SELECT count(*) FROM sightings{where}", params).fetchone()[0])

    def purge_unmatched(self, before_ts: float, *, camera_id: str | None = None) -> int:
        """Delete sightings without a match that ended before ``before_ts`` (epoch s), on one camera
        or all; returns how many. The retention step for ``CameraConfig.unmatched_retention_h``."""
        where, params = _where([("camera_id = ?", camera_id)])
        cond = "person_id IS NULL AND end_ts < ?"
        where = f"{where} AND {cond}" if where else f" WHERE {cond}"
        with self.store.transaction() as conn:
            n = conn.execute(f"DELETE FROM sightings{where}", [*params, float(before_ts)]).rowcount
        if n:
            logger.info("purged %s unmatched sighting(s) that ended before %s", n, before_ts)
        return int(n)


class EventStores:
    """Both stores over one gallery file; what a camera worker records into."""

    def __init__(self, store: GalleryStore) -> None:
        self.alerts = AlertStore(store)
        self.sightings = SightingStore(store)

    def add_alert(self, alert: Alert) -> int:
        """Store ``alert`` (and queue its notifications); returns its row id."""
        return self.alerts.add(alert)

    def add_sighting(self, sighting: Sighting, *, model: str | None = None) -> int:
        """Store ``sighting``; returns its row id."""
        return self.sightings.add(sighting, model=model)

    def recent_alerts(self, camera_id: str, since: float) -> dict[int, float]:
        """person id -> frame time of their newest alert on ``camera_id`` raised since ``since`` (epoch s)."""
        return self.alerts.last_frame_ts(camera_id, since)
