"""A populated data directory for governance tests: real SQLite file, real key file, the fake face engine.

Person "Ada" (seed 1, two photos, watchlist "wanted") has two alerts and one matched sighting (crop and
descriptor); person "Bob" (seed 2) has one photo and one alert; camera "door" keeps unmatched faces, and
there is one unmatched sighting on it and one on camera "yard" (not stored).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from sightline.config import CameraConfig
from sightline.events.store import EventStores
from sightline.gallery import Gallery
from sightline.governance.audit import AuditLog
from sightline.types import Alert, Match, Sighting
from sightline.video.cameras import CameraStore
from tests.gallery.conftest import FakeEngine, fake_embedding, write_photo


def jpeg(seed: int, size: int = 48) -> bytes:
    """A real JPEG (noise, so its bytes are distinctive) of ``size`` x ``size`` pixels."""
    arr = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def raw_bytes(data_dir: Path) -> bytes:
    """Everything SQLite has on disk for the gallery: the main file and the WAL."""
    out = b""
    for name in ("gallery.sqlite3", "gallery.sqlite3-wal"):
        p = data_dir / name
        if p.exists():
            out += p.read_bytes()
    return out


@dataclass
class World:
    data: Path
    gallery: Gallery
    audit: AuditLog
    events: EventStores
    ada: int
    bob: int
    alert_crops: dict[int, bytes]
    sighting_crop: bytes
    sighting_embedding: np.ndarray
    unmatched_crop: bytes
    ts: float

    @property
    def store(self):
        return self.gallery.store


def match(person_id: int, name: str) -> Match:
    return Match(person_id=person_id, name=name, watchlist="wanted", similarity=0.8, threshold=0.6, est_fmr=1e-6)


def populate(data: Path, *, encrypt: bool = True, ts: float = 1_700_000_000.0, key_file: Path | None = None) -> World:
    from sightline.gallery.store import GalleryStore

    photos = data.parent / f"{data.name}-photos"
    store = GalleryStore.open(data, encrypt=encrypt, key_file=key_file)
    g = Gallery(store, FakeEngine())
    g.enroll_person(
        "Ada",
        [write_photo(photos / "a1.png", 1, 0), write_photo(photos / "a2.png", 1, 1)],
        watchlist="wanted",
        create=True,
    )
    g.enroll_person("Bob", [write_photo(photos / "b1.png", 2, 0)], watchlist="wanted", create=True)
    ada = g.get_person("Ada").id
    bob = g.get_person("Bob").id
    ev = EventStores(store)
    crops: dict[int, bytes] = {}
    for i, (pid, name) in enumerate([(ada, "Ada"), (ada, "Ada"), (bob, "Bob")]):
        crop = jpeg(100 + i)
        aid = ev.add_alert(Alert("door", i, match(pid, name), ts + i, ts + i, (1, 2, 30, 40), crop, 0.8))
        crops[aid] = crop
    s_crop, emb = jpeg(200), fake_embedding(1, 7)
    ev.add_sighting(Sighting("door", 1, ts, ts + 2, 5, 0.8, match(ada, "Ada"), s_crop, emb), model="fake_v1")
    u_crop = jpeg(300)
    CameraStore(store).add(
        CameraConfig(id="door", url="door.mp4", keep_unmatched_sightings=True, unmatched_retention_h=1.0)
    )
    ev.add_sighting(Sighting("door", 9, ts, ts + 1, 3, 0.5, None, u_crop, fake_embedding(30)), model="fake_v1")
    ev.add_sighting(Sighting("yard", 3, ts, ts + 1, 3, 0.5, None, None, None))
    audit = AuditLog(store)
    audit.record("alice", "person.create", target=f"person:{ada}", reason="case 1", details={"name": "Ada"})
    audit.record("alice", "search.photo", reason="case 1", client="10.0.0.7", details={"person_id": ada, "faces": 1})
    audit.record("bob", "person.create", target=f"person:{bob}", reason="case 2")
    return World(data, g, audit, ev, ada, bob, crops, s_crop, emb, u_crop, ts)


@pytest.fixture(autouse=True)
def _no_outside_key_settings(monkeypatch):
    """Key and checkpoint locations come only from what a test sets (never from the machine's environment)."""
    for name in ("SIGHTLINE_KEY_FILE", "CREDENTIALS_DIRECTORY", "SIGHTLINE_AUDIT_CHECKPOINTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)
    w = populate(tmp_path / "data")
    yield w
    w.gallery.close()
