"""Retention: every maximum age enforced continuously, and a report of what is kept and until when.

    job = RetentionJob(store, RetentionConfig(), audit=AuditLog(store))
    job.start()                       # purges now, then every purge_interval_s, until job.stop()
    report = purge(store, cfg)        # one pass (``sightline retention purge``)
    status = retention_status(store, cfg)

The limits (``sightline.config.RetentionConfig`` and each stored camera's ``CameraConfig``):
- alerts older than ``alerts_max_age_days`` (by alert time) go, with their crops and outbox rows;
- sightings that matched a person go after ``confirmed_sightings_max_age_days`` (by end time);
- sightings that matched nobody go after the camera's ``unmatched_retention_h`` (``unmatched_default_h``
  for a camera not stored in the database); on a camera whose ``keep_unmatched_sightings`` is off, any
  such sighting still holding a crop or descriptor goes at once (the option was switched off later);
- enrolled persons and templates are kept until deleted or erased; the audit log is kept for ever.

Deletes run in batches of ``batch_rows`` (one short transaction each, so live cameras never wait long for
the write lock) with ``PRAGMA secure_delete`` on, so the freed pages are zeroed rather than left holding
the deleted (sealed) crops. A pass that deleted something is audited as ``retention.purge`` with the counts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sightline.config import CameraConfig, RetentionConfig
from sightline.gallery.store import GalleryStore

logger = logging.getLogger(__name__)

DAY_S = 86400.0
HOUR_S = 3600.0
_DEFAULT_CAMERA = CameraConfig(id="default", url="none")


@dataclass(frozen=True)
class CameraRetention:
    """A stored camera's rule for non-matching faces: keep them (crop and descriptor) or not, and how long."""

    camera_id: str
    keep_unmatched: bool
    unmatched_retention_h: float


@dataclass(frozen=True)
class PurgeReport:
    """Rows deleted by one pass. at: epoch s of the pass; unmatched_by_camera: camera id -> rows."""

    at: float
    alerts: int = 0
    confirmed_sightings: int = 0
    unmatched_sightings: int = 0
    unmatched_by_camera: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.alerts + self.confirmed_sightings + self.unmatched_sightings

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class KeptClass:
    """One kind of data held: how many rows, the oldest one's time, the maximum age, and when the oldest will
    be purged (``oldest_ts + max_age_s``; None when nothing is held or it is kept until deleted)."""

    name: str
    rows: int
    oldest_ts: float | None
    max_age_s: float | None
    rule: str
    with_biometrics: int | None = None

    @property
    def oldest_until(self) -> float | None:
        if self.oldest_ts is None or self.max_age_s is None:
            return None
        return self.oldest_ts + self.max_age_s

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "oldest_until": self.oldest_until}


@dataclass(frozen=True)
class RetentionStatus:
    at: float
    classes: list[KeptClass]

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "classes": [c.to_json() for c in self.classes]}


def camera_rules(store: GalleryStore) -> list[CameraRetention]:
    """The retention rule of every stored camera. A camera whose stored options do not parse gets the
    defaults (which keep no unmatched faces): a broken row must not stop the purge."""
    out: list[CameraRetention] = []
    for cam_id, options in store._conn().execute("SELECT id, options FROM cameras ORDER BY id").fetchall():
        keep, hours = _DEFAULT_CAMERA.keep_unmatched_sightings, _DEFAULT_CAMERA.unmatched_retention_h
        try:
            opts = json.loads(options)
            picked = {k: opts[k] for k in ("keep_unmatched_sightings", "unmatched_retention_h") if k in opts}
            cfg = CameraConfig(id="x", url="x", **picked)
            keep, hours = cfg.keep_unmatched_sightings, cfg.unmatched_retention_h
        except (ValueError, TypeError, AttributeError) as e:
            logger.warning("camera %s: unreadable options (%s); applying the default retention", cam_id, e)
        out.append(CameraRetention(str(cam_id), bool(keep), float(hours)))
    return out


def _delete_batched(
    conn: sqlite3.Connection, store: GalleryStore, table: str, where: str, params: list[Any], batch: int
) -> int:
    total = 0
    while True:
        with store.transaction():
            n = conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} LIMIT ?)", [*params, batch]
            ).rowcount
        total += n
        if n < batch:
            return total


def purge(
    store: GalleryStore,
    config: RetentionConfig,
    *,
    now: float | None = None,
    audit: Any | None = None,
    actor: str = "system:retention",
    client: str | None = None,
) -> PurgeReport:
    """Delete everything past its maximum age (one pass); returns the counts.

    ``audit`` (an ``AuditLog``): a pass that deleted rows is recorded as ``retention.purge`` by ``actor``.
    ``now``: epoch s (tests pass a future time instead of waiting).
    """
    now = time.time() if now is None else float(now)
    conn = store._conn()
    conn.execute("PRAGMA secure_delete = ON")
    batch = config.batch_rows
    alerts = _delete_batched(conn, store, "alerts", "ts < ?", [now - config.alerts_max_age_days * DAY_S], batch)
    confirmed = _delete_batched(
        conn,
        store,
        "sightings",
        "person_id IS NOT NULL AND end_ts < ?",
        [now - config.confirmed_sightings_max_age_days * DAY_S],
        batch,
    )
    by_camera: dict[str, int] = {}
    for rule in camera_rules(store):
        cond = "person_id IS NULL AND camera_id = ? AND (end_ts < ?"
        params: list[Any] = [rule.camera_id, now - rule.unmatched_retention_h * HOUR_S]
        if not rule.keep_unmatched:
            cond += " OR crop_jpeg IS NOT NULL OR embedding IS NOT NULL"
        n = _delete_batched(conn, store, "sightings", cond + ")", params, batch)
        if n:
            by_camera[rule.camera_id] = n
    rows = conn.execute(
        "SELECT camera_id, count(*) FROM sightings WHERE person_id IS NULL AND end_ts < ? "
        "AND camera_id NOT IN (SELECT id FROM cameras) GROUP BY camera_id",
        (now - config.unmatched_default_h * HOUR_S,),
    ).fetchall()
    if rows:
        _delete_batched(
            conn,
            store,
            "sightings",
            "person_id IS NULL AND end_ts < ? AND camera_id NOT IN (SELECT id FROM cameras)",
            [now - config.unmatched_default_h * HOUR_S],
            batch,
        )
        for cam, n in rows:
            by_camera[str(cam)] = by_camera.get(str(cam), 0) + int(n)
    report = PurgeReport(
        at=now,
        alerts=alerts,
        confirmed_sightings=confirmed,
        unmatched_sightings=sum(by_camera.values()),
        unmatched_by_camera=by_camera,
    )
    if report.total:
        logger.info(
            "retention: purged %s alert(s), %s confirmed and %s unmatched sighting(s)",
            alerts,
            confirmed,
            report.unmatched_sightings,
        )
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    if audit is not None and (report.total or not actor.startswith("system:")):
        audit.record(actor, "retention.purge", client=client, details=report.to_json())
    return report


def retention_status(store: GalleryStore, config: RetentionConfig, *, now: float | None = None) -> RetentionStatus:
    """What is held, the oldest of each kind and when it will be purged."""
    now = time.time() if now is None else float(now)
    conn = store._conn()
    classes: list[KeptClass] = []
    n, oldest = conn.execute("SELECT count(*), min(ts) FROM alerts").fetchone()
    classes.append(
        KeptClass(
            "alerts",
            int(n),
            oldest,
            config.alerts_max_age_days * DAY_S,
            f"{config.alerts_max_age_days:g} days after the alert",
            int(n),
        )
    )
    n, oldest = conn.execute("SELECT count(*), min(end_ts) FROM sightings WHERE person_id IS NOT NULL").fetchone()
    bio = conn.execute(
        "SELECT count(*) FROM sightings WHERE person_id IS NOT NULL "
        "AND (crop_jpeg IS NOT NULL OR embedding IS NOT NULL)"
    ).fetchone()[0]
    classes.append(
        KeptClass(
            "confirmed_sightings",
            int(n),
            oldest,
            config.confirmed_sightings_max_age_days * DAY_S,
            f"{config.confirmed_sightings_max_age_days:g} days after the sighting ended",
            int(bio),
        )
    )
    rules = {r.camera_id: r for r in camera_rules(store)}
    rows = conn.execute(
        "SELECT camera_id, count(*), min(end_ts), sum(crop_jpeg IS NOT NULL OR embedding IS NOT NULL) "
        "FROM sightings WHERE person_id IS NULL GROUP BY camera_id ORDER BY camera_id"
    ).fetchall()
    seen = set()
    for cam, n, oldest, bio in rows:
        seen.add(cam)
        rule = rules.get(cam)
        if rule is None:
            hours, text = config.unmatched_default_h, f"{config.unmatched_default_h:g} h (camera not stored)"
        else:
            hours = rule.unmatched_retention_h
            text = f"{hours:g} h" + ("" if rule.keep_unmatched else "; faces not kept (keep_unmatched_sightings off)")
        classes.append(KeptClass(f"unmatched_sightings:{cam}", int(n), oldest, hours * HOUR_S, text, int(bio or 0)))
    for cam, rule in rules.items():
        if cam not in seen:
            text = (
                f"{rule.unmatched_retention_h:g} h"
                if rule.keep_unmatched
                else "faces not kept (keep_unmatched_sightings off)"
            )
            classes.append(
                KeptClass(f"unmatched_sightings:{cam}", 0, None, rule.unmatched_retention_h * HOUR_S, text, 0)
            )
    n, oldest = conn.execute("SELECT count(*), min(created_at) FROM templates").fetchone()
    classes.append(
        KeptClass("templates", int(n), oldest, None, "until the person or photo is deleted or erased", int(n))
    )
    n, oldest = conn.execute("SELECT count(*), min(ts) FROM audit_log").fetchone()
    classes.append(KeptClass("audit_log", int(n), oldest, None, "kept for ever (append-only, no biometric data)", 0))
    return RetentionStatus(at=now, classes=classes)


class RetentionJob:
    """A thread that runs ``purge`` at start and then every ``config.purge_interval_s`` until ``stop()``.

    A failing pass (database locked for too long, disk full) is logged and counted in ``errors``; the
    next pass tries again, so the job never dies. ``last``: the latest report; ``runs``: passes done.
    """

    def __init__(
        self,
        store: GalleryStore,
        config: RetentionConfig,
        *,
        audit: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.audit = audit
        self.clock = clock
        self.runs = 0
        self.errors = 0
        self.last: PurgeReport | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the pass in progress (if any); waits up to ``timeout_s``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("retention job did not stop within %.1f s", timeout_s)
            self._thread = None

    def run_now(self) -> None:
        """Wake the thread for a pass now (e.g. after a camera's retention was lowered)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> PurgeReport | None:
        try:
            report = purge(self.store, self.config, now=self.clock(), audit=self.audit)
        except Exception:
            self.errors += 1
            logger.exception("retention pass failed; retrying in %.0f s", self.config.purge_interval_s)
            return None
        finally:
            self.runs += 1
        self.last = report
        return report

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.config.purge_interval_s)
            self._wake.clear()
