"""Data-subject requests: export everything held about a person, or erase all of it.

    report = export_subject(store, person_id, Path("ada.zip"), audit=audit, actor="cli:root", reason="DSAR-17")
    report = erase_subject(store, person_id, audit=audit, actor="alice", reason="court order 5/24", gallery=g)

Export writes one zip (mode 0600; it holds the faces in the clear, hand it over through a secure channel):
``manifest.json`` (format ``sightline-subject-export-1``: the person, watchlists, templates, alerts,
sightings and the audit entries naming them, each file listed with its sha256), ``templates/<id>.jpg``
(enrolled face crop), ``templates/<id>.f32`` (descriptor, little-endian float32, ``dim`` values),
``alerts/<id>.jpg``, ``sightings/<id>.jpg`` and ``sightings/<id>.f32``. Original photos are not held
(enrollment keeps the face crop and the photo's sha256 only), so there are none to export.

Erasure deletes the person in one transaction with its audit entry: templates (and so the vector index
entries: ``Gallery.delete_person`` updates this process's index, other processes reload on the template
change counter), watchlist memberships, alerts with their crops and outbox rows, and matched sightings —
all by ``ON DELETE CASCADE``. The audit log keeps the erasure (``subject.erase``: who, when, why, the person
id and how many rows of each kind went) and the earlier entries naming the person, none of them holding
biometric data. Deleted pages are zeroed (``secure_delete``) and the WAL is checkpointed and truncated,
so the erased (sealed) blobs do not linger in the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sightline.events.store import EventStores
from sightline.gallery.records import UnknownPersonError
from sightline.gallery.store import GalleryStore

if TYPE_CHECKING:
    from sightline.gallery.service import Gallery
    from sightline.governance.audit import AuditLog

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "sightline-subject-export-1"
_MAX_ROWS = 100_000


@dataclass(frozen=True)
class SubjectExportReport:
    """What an export wrote: path, counts per kind, bytes of the zip."""

    person_id: int
    path: str
    templates: int
    alerts: int
    sightings: int
    audit_entries: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure removed (rows per kind), the seq of its audit entry, and whether the WAL was
    checkpointed at once (False: a reader held it; the erased pages' old images leave the disk at the next
    checkpoint, which SQLite runs automatically)."""

    person_id: int
    templates: int
    crops: int
    memberships: int
    alerts: int
    sightings: int
    deliveries: int
    audit_seq: int | None
    wal_checkpointed: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ts: float | None) -> float | None:
    return None if ts is None else float(ts)


def _counts(store: GalleryStore, person_id: int) -> dict[str, int]:
    conn = store._conn()

    def one(sql: str) -> int:
        return int(conn.execute(sql, (person_id,)).fetchone()[0])

    return {
        "templates": one("SELECT count(*) FROM templates WHERE person_id = ?"),
        "crops": one("SELECT count(*) FROM templates WHERE person_id = ? AND crop_jpeg IS NOT NULL"),
        "memberships": one("SELECT count(*) FROM watchlist_members WHERE person_id = ?"),
        "alerts": one("SELECT count(*) FROM alerts WHERE person_id = ?"),
        "sightings": one("SELECT count(*) FROM sightings WHERE person_id = ?"),
        "deliveries": one("SELECT count(*) FROM outbox WHERE alert_id IN (SELECT id FROM alerts WHERE person_id = ?)"),
    }


def export_subject(
    store: GalleryStore,
    person_id: int,
    dest: Path,
    *,
    audit: AuditLog,
    actor: str,
    reason: str | None = None,
    client: str | None = None,
) -> SubjectExportReport:
    """Write everything held about ``person_id`` to the zip ``dest`` (replaced atomically, mode 0600) and
    audit it as ``subject.export``. Raises ``UnknownPersonError``. Reads one snapshot, so the export is
    consistent even while cameras add alerts."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    files = _ZipOut(tmp)
    try:
        manifest, counts = _write_export(store, person_id, files, audit=audit, actor=actor, reason=reason)
        files.add("manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
        files.close()
        os.replace(tmp, dest)
    except BaseException:
        files.close()
        tmp.unlink(missing_ok=True)
        raise
    report = SubjectExportReport(person_id=person_id, path=str(dest), bytes=dest.stat().st_size, **counts)
    details = {k: v for k, v in report.to_json().items() if k not in ("path", "person_id")}
    audit.record(actor, "subject.export", target=f"person:{person_id}", reason=reason, client=client, details=details)
    logger.info("exported person %s: %s", person_id, details)
    return report


class _ZipOut:
    """A zip written as it is filled (mode 0600), remembering each member's sha256 for the manifest."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_DEFLATED)
        self.hashes: dict[str, str] = {}

    def add(self, name: str, data: bytes) -> None:
        self.hashes[name] = hashlib.sha256(data).hexdigest()
        self._zip.writestr(name, data, compress_type=zipfile.ZIP_STORED if name.endswith(".jpg") else None)

    __setitem__ = add

    def close(self) -> None:
        if not self._file.closed:
            self._zip.close()
            self._file.close()


def _write_export(
    store: GalleryStore, person_id: int, files: _ZipOut, *, audit: AuditLog, actor: str, reason: str | None
) -> tuple[dict[str, Any], dict[str, int]]:
    """Write the person's files into ``files`` from one read snapshot; returns the manifest and counts."""
    with store.transaction(write=False):
        info = store.person_info([person_id])
        if not info:
            raise UnknownPersonError(f"no person with id {person_id}")
        person = info[0]
        templates = []
        for t in store.templates_of(person_id, with_descriptors=True):
            entry: dict[str, Any] = {
                "id": t.id,
                "model": t.model,
                "dim": t.dim,
                "quality": t.quality,
                "photo_sha256": t.photo_sha256,
                "source_name": t.source_name,
                "xyxy": None if t.xyxy is None else list(t.xyxy),
                "created_at": t.created_at.timestamp(),
                "descriptor_file": f"templates/{t.id}.f32",
                "crop_file": None,
            }
            assert t.descriptor is not None
            files[f"templates/{t.id}.f32"] = t.descriptor.astype("<f4").tobytes()
            crop = store.template_crop(t.id)
            if crop is not None:
                files[f"templates/{t.id}.jpg"] = crop
                entry["crop_file"] = f"templates/{t.id}.jpg"
            templates.append(entry)
        events = EventStores(store)
        alerts = []
        for a in events.alerts.list(person_id=person_id, limit=_MAX_ROWS):
            al = a.alert
            files[f"alerts/{a.id}.jpg"] = al.crop_jpeg
            alerts.append(
                {
                    "id": a.id,
                    "camera_id": al.camera_id,
                    "track_id": al.track_id,
                    "watchlist": al.match.watchlist,
                    "similarity": al.match.similarity,
                    "threshold": al.match.threshold,
                    "est_fmr": al.match.est_fmr,
                    "ts": al.ts,
                    "frame_ts": al.frame_ts,
                    "xyxy": [float(v) for v in al.xyxy],
                    "quality": al.quality,
                    "status": a.status,
                    "decided_by": a.decided_by,
                    "decided_at": _iso(a.decided_at),
                    "comment": a.comment,
                    "crop_file": f"alerts/{a.id}.jpg",
                }
            )
        sightings = []
        for s in events.sightings.list(person_id=person_id, limit=_MAX_ROWS):
            si = s.sighting
            row: dict[str, Any] = {
                "id": s.id,
                "camera_id": si.camera_id,
                "track_id": si.track_id,
                "start_ts": si.start_ts,
                "end_ts": si.end_ts,
                "frames": si.frames,
                "quality": si.quality,
                "watchlist": None if si.match is None else si.match.watchlist,
                "similarity": None if si.match is None else si.match.similarity,
                "crop_file": None,
                "embedding_file": None,
                "model": s.model,
            }
            if si.crop_jpeg is not None:
                files[f"sightings/{s.id}.jpg"] = si.crop_jpeg
                row["crop_file"] = f"sightings/{s.id}.jpg"
            if si.embedding is not None:
                files[f"sightings/{s.id}.f32"] = si.embedding.astype("<f4").tobytes()
                row["embedding_file"] = f"sightings/{s.id}.f32"
            sightings.append(row)
        entries = [e.to_json() for e in audit.iter(person_id=person_id)]
    manifest = {
        "format": EXPORT_FORMAT,
        "exported_at": time.time(),
        "exported_by": actor,
        "reason": reason,
        "person": {
            "id": person.id,
            "name": person.name,
            "external_id": person.external_id,
            "notes": person.notes,
            "created_at": person.created_at.timestamp(),
            "watchlists": list(person.watchlists),
        },
        "templates": templates,
        "alerts": alerts,
        "sightings": sightings,
        "audit_entries": entries,
        "files": dict(sorted(files.hashes.items())),
        "notes": "Original photos are not kept by Sightline (only the face crop and the photo's sha256). "
        "Descriptors (.f32) are little-endian float32 vectors of 'dim' values.",
    }
    counts = {
        "templates": len(templates),
        "alerts": len(alerts),
        "sightings": len(sightings),
        "audit_entries": len(entries),
    }
    return manifest, counts


def erase_subject(
    store: GalleryStore,
    person_id: int,
    *,
    audit: AuditLog,
    actor: str,
    reason: str,
    client: str | None = None,
    gallery: Gallery | None = None,
) -> ErasureReport:
    """Delete ``person_id`` and everything about them, and audit it (``subject.erase``) in the same
    transaction; raises ``UnknownPersonError`` (nothing is recorded then) and ``AuditError`` without a
    reason. ``gallery``: the process's ``Gallery`` over ``store`` (its index forgets the person at once)."""
    if gallery is not None and gallery.store is not store:
        raise ValueError("gallery must be the Gallery over the same store")
    conn = store._conn()
    conn.execute("PRAGMA secure_delete = ON")  # zero the freed pages: no erased blob left in the file
    with store.transaction():
        counts = _counts(store, person_id)
        if gallery is not None:
            gallery.delete_person(person_id)  # joins this transaction; raises UnknownPersonError
        elif not store.delete_person(person_id):
            raise UnknownPersonError(f"no person with id {person_id}")
        entry = audit.record(
            actor,
            "subject.erase",
            target=f"person:{person_id}",
            reason=reason,
            client=client,
            details={"person_id": person_id, "removed": counts},
        )
    flushed = checkpoint(store)
    if not flushed:
        logger.warning(
            "erasure of person %s: readers kept the WAL from being checkpointed; the old pages leave the "
            "file at the next checkpoint",
            person_id,
        )
    logger.info("erased person %s: %s", person_id, counts)
    return ErasureReport(person_id=person_id, audit_seq=entry.seq, wal_checkpointed=flushed, **counts)


def checkpoint(store: GalleryStore) -> bool:
    """Copy the WAL into the main file and truncate it (so deleted pages' old images leave the disk);
    False when a reader prevented a complete checkpoint (SQLite finishes it at a later checkpoint)."""
    try:
        busy, _log, _done = store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except Exception as e:
        logger.warning("WAL checkpoint failed: %s", e)
        return False
    return int(busy) == 0
