"""Key rotation: every blob re-sealed in one transaction, old key dropped only when nothing uses it."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from sightline.gallery import Gallery, GalleryStore
from sightline.gallery.store import SEALED_MAGIC
from sightline.governance import crypto
from sightline.governance.audit import AuditLog
from sightline.governance.crypto import KeyringError, SealedBlobError, generate_key, key_id
from sightline.governance.keys import blob_census, count_under, key_status, rotate_key
from tests.gallery.conftest import FakeEngine, fake_embedding, write_photo
from tests.governance.conftest import populate


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)


def snapshot(store: GalleryStore) -> dict:
    """Everything sealed, read back in plain: what rotation must not change."""
    from sightline.events.store import EventStores

    ev = EventStores(store)
    return {
        "descriptors": store.load_descriptors("fake_v1")[2].tobytes(),
        "crops": [store.template_crop(t) for t in range(1, 4)],
        "alerts": [a.alert.crop_jpeg for a in ev.alerts.list()],
        "sightings": [
            (s.sighting.crop_jpeg, None if s.sighting.embedding is None else s.sighting.embedding.tobytes())
            for s in ev.sightings.list()
        ],
    }


def test_rotation_reseals_everything_and_drops_the_old_key(world):
    store = world.store
    old_id = bytes.fromhex(store.cipher.current_id)
    before = snapshot(store)
    n_old = count_under(store, old_id)
    assert n_old == 13  # 3 descriptors, 3 template crops, 3 alert crops, 2 sighting crops, 2 sighting embeddings
    report = rotate_key(store, world.data, audit=world.audit, actor="cli:test")
    new_id = bytes.fromhex(report.new_key_id)
    assert report.dropped and report.old_key_ids == [old_id.hex()]
    assert sum(report.resealed.values()) == n_old and report.stragglers == 0
    assert count_under(store, old_id) == 0 and count_under(store, new_id) == n_old
    ring = crypto.read_key_file(crypto.key_file(world.data))
    assert list(ring.keys) == [new_id]
    assert snapshot(store) == before
    # A fresh process (new store, key file only) reads everything, and search still finds Ada.
    with GalleryStore.open(world.data) as again:
        assert snapshot(again) == before
    hits = world.gallery.identify(fake_embedding(1, 5)[None], top_k=1)
    assert hits[0][0].person_id == world.ada
    entry = world.audit.query(action="key.rotate")[0]
    assert entry.actor == "cli:test" and entry.details["new_key_id"] == new_id.hex()
    assert entry.details["old_key_ids"] == [old_id.hex()]
    assert world.audit.verify().ok


def test_keep_old_keeps_both_keys_readable(world):
    old_id = bytes.fromhex(world.store.cipher.current_id)
    report = rotate_key(world.store, world.data, audit=world.audit, actor="cli:test", keep_old=True)
    ring = crypto.read_key_file(crypto.key_file(world.data))
    assert not report.dropped and set(ring.keys) == {old_id, bytes.fromhex(report.new_key_id)}
    assert ring.current.hex() == report.new_key_id


def test_rotation_seals_a_gallery_written_before_encryption(tmp_path):
    w = populate(tmp_path / "data", encrypt=False)
    census = blob_census(w.store)
    assert census["templates.descriptor"] == {"plain": 3}
    before = snapshot(w.store)
    w.store.set_cipher(crypto.cipher_for(w.data))
    report = rotate_key(w.store, w.data, audit=w.audit, actor="cli:test")
    after = blob_census(w.store)
    assert all(set(c) <= {report.new_key_id} for c in after.values())
    assert snapshot(w.store) == before
    w.gallery.close()


def test_another_process_follows_the_rotation(world):
    """A second store (as a server process would hold) loaded the old key before the rotation: it seals
    with the new key afterwards and reads blobs re-sealed under it."""
    other = GalleryStore.open(world.data)
    try:
        report = rotate_key(world.store, world.data, audit=world.audit, actor="cli:test")
        assert other.template_crop(1) == world.store.template_crop(1)
        tid = other.add_template(
            world.bob,
            model="fake_v1",
            descriptor=np.ones(32),
            quality=0.5,
            photo_sha256="c" * 64,
            crop_jpeg=b"new crop",
        )
        raw = other._conn().execute("SELECT crop_jpeg FROM templates WHERE id = ?", (tid,)).fetchone()[0]
        assert crypto.blob_key_id(raw).hex() == report.new_key_id
    finally:
        other.close()


def test_a_failed_rotation_rolls_back_and_leaves_everything_readable(world):
    """One blob that no key opens (corrupted on disk) stops the re-seal: the transaction rolls back, the key
    file keeps the old key beside the new one, nothing is audited as rotated, and the rest still reads."""
    store = world.store
    old_id = bytes.fromhex(store.cipher.current_id)
    before = snapshot(store)
    good = bytes(store._conn().execute("SELECT crop_jpeg FROM alerts WHERE id = 3").fetchone()[0])
    bad = good[:-1] + bytes([good[-1] ^ 1])
    store._write("UPDATE alerts SET crop_jpeg = ? WHERE id = 3", (bad,))
    with pytest.raises(SealedBlobError):
        rotate_key(store, world.data, audit=world.audit, actor="cli:test")
    assert world.audit.query(action="key.rotate") == []
    ring = crypto.read_key_file(crypto.key_file(world.data))
    assert old_id in ring.keys and len(ring.keys) == 2
    assert count_under(store, old_id) == 13
    store._write("UPDATE alerts SET crop_jpeg = ? WHERE id = 3", (good,))
    with GalleryStore.open(world.data) as again:
        assert snapshot(again) == before
    # Run again: it completes and drops both earlier keys.
    report = rotate_key(store, world.data, audit=world.audit, actor="cli:test")
    assert len(report.old_key_ids) == 2 and list(crypto.read_key_file(crypto.key_file(world.data)).keys) == [
        bytes.fromhex(report.new_key_id)
    ]


def test_rotation_zeroes_the_old_ciphertext_in_the_file(world):
    raw = [bytes(v) for (v,) in world.store._conn().execute("SELECT crop_jpeg FROM alerts")]
    rotate_key(world.store, world.data, audit=world.audit, actor="cli:test")
    world.gallery.close()
    disk = (world.data / "gallery.sqlite3").read_bytes()
    wal = world.data / "gallery.sqlite3-wal"
    disk += wal.read_bytes() if wal.exists() else b""
    assert not [r for r in raw if r[20:52] in disk]


def test_env_keys_need_the_new_key_given(tmp_path, monkeypatch):
    k1 = generate_key()
    monkeypatch.setenv("SIGHTLINE_KEY", crypto.encode_key(k1))
    w = populate(tmp_path / "data")
    with pytest.raises(KeyringError, match="SIGHTLINE_NEW_KEY"):
        rotate_key(w.store, w.data, audit=w.audit, actor="cli:test")
    k2 = generate_key()
    report = rotate_key(w.store, w.data, audit=w.audit, actor="cli:test", new_key=k2)
    assert not report.dropped and report.source == "env" and report.new_key_id == key_id(k2).hex()
    assert count_under(w.store, key_id(k1)) == 0
    w.gallery.close()
    monkeypatch.setenv("SIGHTLINE_KEY", crypto.encode_key(k2))
    with GalleryStore.open(w.data) as s:
        assert s.template_crop(1) is not None
    with pytest.raises(KeyringError, match="already"), GalleryStore.open(w.data) as s:
        rotate_key(s, w.data, audit=AuditLog(s), actor="cli:test", new_key=k2)


def test_key_status_counts_blobs_per_key(world):
    status = key_status(world.store, world.data)
    assert status.current_key_id == world.store.cipher.current_id and status.key_ids == [status.current_key_id]
    assert status.blobs["templates.descriptor"] == {status.current_key_id: 3}
    assert status.blobs["sightings.embedding"] == {status.current_key_id: 2}
    text = str(status.to_json())
    for key in crypto.read_key_file(crypto.key_file(world.data)).keys.values():  # ids, never keys
        assert key.hex() not in text and crypto.encode_key(key) not in text


def test_sealed_blobs_never_hold_a_key(world):
    key = crypto.read_key_file(crypto.key_file(world.data)).keys
    conn = sqlite3.connect(world.data / "gallery.sqlite3")
    dump = b"".join(bytes(v) for (v,) in conn.execute("SELECT crop_jpeg FROM alerts"))
    conn.close()
    assert all(k not in dump for k in key.values())
    assert all(SEALED_MAGIC in dump for _ in key)


def test_gallery_open_is_encrypted_by_default(tmp_path):
    g = Gallery.open(tmp_path / "d", FakeEngine())
    try:
        g.enroll_person("Eve", [write_photo(tmp_path / "e.png", 5)], watchlist=None, create=True)
        raw = g.store._conn().execute("SELECT descriptor, crop_jpeg FROM templates").fetchone()
        assert all(bytes(v).startswith(SEALED_MAGIC) for v in raw)
    finally:
        g.close()
