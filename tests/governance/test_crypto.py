"""Encryption at rest: AES-GCM sealing, the key file and SIGHTLINE_KEY, and a database file that reveals no face."""

from __future__ import annotations

import base64
import sqlite3
import stat

import numpy as np
import pytest

from sightline.gallery import GalleryError, GalleryStore
from sightline.gallery.store import SEALED_MAGIC
from sightline.governance import crypto
from sightline.governance.crypto import (
    OVERHEAD_BYTES,
    AesGcmCipher,
    Keyring,
    KeyringError,
    SealedBlobError,
    generate_key,
    key_id,
    parse_key,
)
from tests.governance.conftest import populate, raw_bytes


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)


@pytest.fixture
def cipher():
    return AesGcmCipher(Keyring.single(generate_key()))


def test_seal_round_trips_with_a_fresh_nonce_each_time(cipher):
    data = b"\xff\xd8\xff\xe0 a face crop"
    a, b = cipher.seal(data), cipher.seal(data)
    assert a.startswith(SEALED_MAGIC) and len(a) == len(data) + OVERHEAD_BYTES
    assert a != b  # random nonce: equal crops do not give equal blobs
    assert cipher.unseal(a) == data and cipher.unseal(b) == data
    assert data not in a
    assert cipher.unseal(cipher.seal(b"")) == b""


@pytest.mark.parametrize("where", [4, 8, 12, 14, 20, 30, -1])  # key id, nonce, ciphertext, tag
def test_a_flipped_bit_anywhere_is_refused(cipher, where):
    blob = bytearray(cipher.seal(b"x" * 16))
    blob[where] ^= 0x01
    with pytest.raises(SealedBlobError):
        cipher.unseal(bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"SLE1", b"SLE1" + b"\0" * 20, b"plain bytes"])
def test_truncated_or_foreign_blobs_are_refused(cipher, blob):
    with pytest.raises(SealedBlobError):
        cipher.unseal(blob)


def test_a_blob_of_another_key_names_the_missing_key(cipher):
    other = AesGcmCipher(Keyring.single(generate_key()))
    blob = other.seal(b"secret")
    with pytest.raises(SealedBlobError, match=key_id(other.keyring.keys[other.keyring.current]).hex()):
        cipher.unseal(blob)


def test_a_keyring_unseals_with_every_key_and_seals_with_the_current():
    old, new = generate_key(), generate_key()
    sealed_old = AesGcmCipher(Keyring.single(old)).seal(b"old")
    both = AesGcmCipher(Keyring(keys={key_id(new): new, key_id(old): old}, current=key_id(new)))
    assert both.unseal(sealed_old) == b"old"
    assert crypto.blob_key_id(both.seal(b"n")) == key_id(new)


@pytest.mark.parametrize("encode", [bytes.hex, lambda k: base64.b64encode(k).decode(), crypto.encode_key])
def test_parse_key_accepts_hex_and_base64(encode):
    k = generate_key()
    assert parse_key(encode(k)) == k
    assert parse_key(base64.urlsafe_b64encode(k).decode().rstrip("=")) == k


@pytest.mark.parametrize("text", ["", "abc", "zz" * 32, base64.b64encode(b"short").decode(), "!" * 44])
def test_parse_key_refuses_what_is_not_a_32_byte_key(text):
    with pytest.raises(KeyringError, match="32 bytes"):
        parse_key(text)


def test_first_open_creates_a_private_key_file_and_reuses_it(tmp_path):
    data = tmp_path / "data"
    with GalleryStore.open(data) as s:
        first = s.cipher.current_id
        pid = s.add_person("Ada")
        s.add_template(pid.id, model="m", descriptor=np.ones(4), quality=0.5, photo_sha256="a" * 64, crop_jpeg=b"jpg")
    path = data / crypto.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with GalleryStore.open(data) as s:
        assert s.cipher.current_id == first
        assert s.template_crop(1) == b"jpg"


def test_the_environment_key_is_used_and_no_key_file_is_written(tmp_path, monkeypatch):
    k = generate_key()
    monkeypatch.setenv("SIGHTLINE_KEY", k.hex())
    with GalleryStore.open(tmp_path) as s:
        assert s.cipher.current_id == key_id(k).hex()
        assert crypto.blob_key_id(s.seal(b"x")) == key_id(k)
    assert not (tmp_path / crypto.KEY_FILE).exists()


def test_a_bad_environment_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGHTLINE_KEY", "not-a-key")
    with pytest.raises(KeyringError, match="32 bytes"):
        GalleryStore.open(tmp_path)


def test_a_corrupt_key_file_is_a_clear_error(tmp_path):
    tmp_path.joinpath(crypto.KEY_FILE).write_text("{not json")
    with pytest.raises(KeyringError, match="not a Sightline key file"):
        GalleryStore.open(tmp_path)


def test_encrypted_gallery_without_its_key_is_refused_not_rekeyed(tmp_path):
    w = populate(tmp_path / "data")
    w.gallery.close()
    (tmp_path / "data" / crypto.KEY_FILE).unlink()
    with pytest.raises(GalleryError, match="key is missing"):
        GalleryStore.open(tmp_path / "data")
    assert not (tmp_path / "data" / crypto.KEY_FILE).exists()
    # Without a cipher the plain columns still read; a sealed blob is a clear error, not garbage.
    with GalleryStore.open(tmp_path / "data", encrypt=False) as s:
        assert [p.name for p in s.find_persons()] == ["Ada", "Bob"]
        with pytest.raises(GalleryError, match="no key is configured"):
            s.template_crop(1)


def test_the_wrong_key_cannot_read_the_faces(tmp_path, monkeypatch):
    w = populate(tmp_path / "data")
    w.gallery.close()
    wrong = generate_key()
    monkeypatch.setenv("SIGHTLINE_KEY", wrong.hex())
    with pytest.raises(KeyringError, match="not in the keyring"):
        GalleryStore.open(tmp_path / "data")  # refused at once, not at the first search
    # A cipher holding the wrong key, set by hand, still refuses each blob.
    with GalleryStore.open(tmp_path / "data", encrypt=False) as s:
        s.set_cipher(AesGcmCipher(Keyring.single(wrong)))
        with pytest.raises(SealedBlobError, match="not in the keyring"):
            s.template_crop(1)


def _needles(w) -> list[bytes]:
    """Byte strings that would betray a face: JPEG starts, every crop's body, every descriptor's bytes."""
    needles = [b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"JFIF"]
    crops = [*w.alert_crops.values(), w.sighting_crop, w.unmatched_crop]
    crops += [w.store.template_crop(t.id) for p in (w.ada, w.bob) for t in w.store.templates_of(p)]
    needles += [c[-40:-8] for c in crops]  # 32 bytes of each crop's entropy-coded data
    vecs = [w.sighting_embedding] + [
        t.descriptor for p in (w.ada, w.bob) for t in w.store.templates_of(p, with_descriptors=True)
    ]
    needles += [np.asarray(v, "<f4").tobytes()[:16] for v in vecs]
    return needles


@pytest.mark.parametrize("encrypt", [True, False])
def test_the_database_file_alone_reveals_no_face(tmp_path, encrypt):
    """Enroll photos and store alerts and sightings, then scan the raw file bytes (main file and WAL) for
    JPEG markers, crop bodies and descriptor bytes. With encryption (the default) none is found; the
    unencrypted control shows the scan does find them."""
    w = populate(tmp_path / "data", encrypt=encrypt)
    try:
        needles = _needles(w)
        found = [n for n in needles if n in raw_bytes(w.data)]
        w.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found += [n for n in needles if n in raw_bytes(w.data)]
    finally:
        w.gallery.close()
    if encrypt:
        assert found == []
    else:  # the control: every crop body and every descriptor is in the plain file
        assert set(needles[3:]) <= set(found)


def test_every_biometric_column_is_sealed(tmp_path):
    w = populate(tmp_path / "data")
    w.gallery.close()
    conn = sqlite3.connect(tmp_path / "data" / "gallery.sqlite3")
    for table, col in [
        ("templates", "descriptor"),
        ("templates", "crop_jpeg"),
        ("alerts", "crop_jpeg"),
        ("sightings", "crop_jpeg"),
        ("sightings", "embedding"),
    ]:
        values = [bytes(v) for (v,) in conn.execute(f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL")]
        assert values and all(v.startswith(SEALED_MAGIC) for v in values), (table, col)
    conn.close()


def test_a_cipher_follows_a_key_file_rewritten_by_another_process(tmp_path):
    data = tmp_path / "data"
    c1 = crypto.cipher_for(data)
    blob = c1.seal(b"before")
    new = generate_key()
    ring = crypto.read_key_file(crypto.key_file(data))
    crypto.write_key_file(
        crypto.key_file(data), Keyring(keys={key_id(new): new, **ring.keys}, current=key_id(new), source="x")
    )
    assert crypto.blob_key_id(c1.seal(b"after")) == key_id(new)  # reloaded before sealing
    assert c1.unseal(blob) == b"before"
    c2 = AesGcmCipher(crypto.load_keyring(data))
    assert c2.unseal(blob) == b"before"


def test_a_real_enrollment_and_alert_leave_no_face_in_the_file(tmp_path, engine):
    """The same scan with the real engine: a real photo enrolled, its crop stored as an alert crop."""
    from sightline.events.store import EventStores
    from sightline.gallery import Gallery
    from sightline.types import Alert, Match
    from tests.conftest import GALLERY

    with Gallery.open(tmp_path / "data", engine) as g:
        report = g.enroll_person("obama", [GALLERY / "obama" / "obama2.jpg"], watchlist="wanted", create=True)
        tid = report.results[0].template_ids[0]
        crop = g.store.template_crop(tid)
        desc = g.store.get_template(tid, with_descriptor=True).descriptor
        pid = g.get_person("obama").id
        m = Match(person_id=pid, name="obama", watchlist="wanted", similarity=0.9, threshold=0.6, est_fmr=1e-9)
        EventStores(g.store).add_alert(Alert("door", 1, m, 1.0, 1.0, (0, 0, 10, 10), crop, 0.9))
        assert crop[:3] == b"\xff\xd8\xff" and len(crop) > 1000
        for checkpoint in (False, True):
            if checkpoint:
                g.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            disk = raw_bytes(tmp_path / "data")
            assert b"\xff\xd8\xff" + crop[3:4] not in disk
            assert all(crop[i : i + 32] not in disk for i in range(0, len(crop) - 32, 256))
            assert np.asarray(desc, "<f4").tobytes()[:16] not in disk
