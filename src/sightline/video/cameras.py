"""Cameras kept in the gallery file (the ``cameras`` table, schema version 3), for ``sightline watch --all``.

    cams = CameraStore(gallery.store)
    cams.add(CameraConfig(id="door", url="rtsp://10.0.0.5/stream", rtsp_transport="udp"))
    for stored in cams.list(): stored.config          # CameraConfig, validated again on read
    cams.remove("door")

A row holds the id, the URL, ``options`` (JSON of the other ``CameraConfig`` fields that were set
explicitly; fields left at their defaults are not written, so they follow the release's defaults) and
``created_at`` (epoch s). The store uses the ``GalleryStore``'s connections and transactions.
URLs may contain credentials: they are stored as given (the file is the gallery's, with the same
protection); show them through ``sightline.video.sources.redact_url``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from sightline.config import CameraConfig
from sightline.gallery.records import GalleryError
from sightline.gallery.store import GalleryStore

logger = logging.getLogger(__name__)


class CameraExistsError(GalleryError, ValueError):
    """A camera id that is already stored."""


class UnknownCameraError(GalleryError, LookupError):
    """A camera id that is not stored."""


@dataclass(frozen=True)
class StoredCamera:
    """A stored camera: its validated config and when it was added (UTC)."""

    config: CameraConfig
    created_at: datetime

    @property
    def id(self) -> str:
        return self.config.id


def _options(cfg: CameraConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json", exclude={"id", "url"}, exclude_unset=True), sort_keys=True)


def _row(r: tuple[str, str, str, float]) -> StoredCamera:
    try:
        cfg = CameraConfig(id=r[0], url=r[1], **json.loads(r[2]))
    except (ValidationError, ValueError, TypeError) as e:
        raise GalleryError(f"camera {r[0]!r} in the gallery has invalid options: {e}") from e
    return StoredCamera(cfg, datetime.fromtimestamp(r[3], UTC))


class CameraStore:
    """The ``cameras`` table: add, get, list and remove cameras."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

    def add(self, cfg: CameraConfig) -> StoredCamera:
        """Store ``cfg``; raises ``CameraExistsError`` when its id is taken."""
        now = time.time()
        try:
            with self.store.transaction() as conn:
                conn.execute(
                    "INSERT INTO cameras(id, url, options, created_at) VALUES (?, ?, ?, ?)",
                    (cfg.id, cfg.url, _options(cfg), now),
                )
        except sqlite3.IntegrityError as e:
            raise CameraExistsError(f"a camera with id {cfg.id!r} already exists") from e
        logger.info("camera %s added", cfg.id)
        return StoredCamera(cfg, datetime.fromtimestamp(now, UTC))

    def get(self, camera_id: str) -> StoredCamera | None:
        with self.store.transaction(write=False) as conn:
            r = conn.execute("SELECT id, url, options, created_at FROM cameras WHERE id = ?", (camera_id,)).fetchone()
        return None if r is None else _row(r)

    def list(self) -> list[StoredCamera]:
        """Every stored camera, by id."""
        with self.store.transaction(write=False) as conn:
            rows = conn.execute("SELECT id, url, options, created_at FROM cameras ORDER BY id").fetchall()
        return [_row(r) for r in rows]

    def remove(self, camera_id: str) -> None:
        """Delete a camera (its past alerts and sightings stay); raises ``UnknownCameraError``."""
        with self.store.transaction() as conn:
            n = conn.execute("DELETE FROM cameras WHERE id = ?", (camera_id,)).rowcount
        if n == 0:
            raise UnknownCameraError(f"no camera with id {camera_id!r}")
        logger.info("camera %s removed", camera_id)
