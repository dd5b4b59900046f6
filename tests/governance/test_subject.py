"""Subject export (everything about a person, as a zip) and erasure (all of it, index included)."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from sightline.gallery import GalleryStore, UnknownPersonError
from sightline.governance.audit import AuditError
from sightline.governance.subject import EXPORT_FORMAT, erase_subject, export_subject
from tests.gallery.conftest import fake_embedding
from tests.governance.conftest import populate, raw_bytes


def test_export_holds_everything_about_the_person_and_nothing_else(world, tmp_path):
    dest = tmp_path / "out" / "ada.zip"
    report = export_subject(world.store, world.ada, dest, audit=world.audit, actor="alice", reason="DSAR-1")
    assert (report.templates, report.alerts, report.sightings) == (2, 2, 1)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with zipfile.ZipFile(dest) as zf:
        m = json.loads(zf.read("manifest.json"))
        assert m["format"] == EXPORT_FORMAT and m["person"]["name"] == "Ada" and m["person"]["watchlists"] == ["wanted"]
        assert m["reason"] == "DSAR-1" and m["exported_by"] == "alice"
        # every listed file is there with its hash
        for name, sha in m["files"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == sha
        assert set(zf.namelist()) == {"manifest.json", *m["files"]}
        # enrolled crops are JPEG, descriptors equal the stored ones
        stored = {t.id: t.descriptor for t in world.store.templates_of(world.ada, with_descriptors=True)}
        for t in m["templates"]:
            vec = np.frombuffer(zf.read(t["descriptor_file"]), "<f4")
            np.testing.assert_array_equal(vec, stored[t["id"]])
            with PILImage.open(io.BytesIO(zf.read(t["crop_file"]))) as im:
                assert im.format == "JPEG"
        # alerts: Ada's two, with their crops, not Bob's
        assert sorted(zf.read(a["crop_file"]) for a in m["alerts"]) == sorted(
            c for aid, c in world.alert_crops.items() if aid in {a["id"] for a in m["alerts"]}
        )
        assert {a["id"] for a in m["alerts"]} == {1, 2}
        s = m["sightings"][0]
        assert zf.read(s["crop_file"]) == world.sighting_crop
        np.testing.assert_array_equal(np.frombuffer(zf.read(s["embedding_file"]), "<f4"), world.sighting_embedding)
        # audit entries naming her (by target or details.person_id), not Bob's
        assert [e["action"] for e in m["audit_entries"]] == ["person.create", "search.photo"]
    entry = world.audit.query(action="subject.export")[0]
    assert entry.target == f"person:{world.ada}" and entry.reason == "DSAR-1" and entry.details["alerts"] == 2


def test_export_of_an_unknown_person_fails_and_writes_nothing(world, tmp_path):
    with pytest.raises(UnknownPersonError):
        export_subject(world.store, 999, tmp_path / "x.zip", audit=world.audit, actor="alice")
    assert not (tmp_path / "x.zip").exists()
    assert world.audit.query(action="subject.export") == []


def test_erase_removes_everything_including_the_index_entry(world):
    g = world.gallery
    probe = fake_embedding(1, 9)[None]
    assert g.identify(probe, top_k=1)[0][0].person_id == world.ada  # index loaded, Ada found
    report = erase_subject(world.store, world.ada, audit=world.audit, actor="alice", reason="court order 7", gallery=g)
    assert (report.templates, report.crops, report.memberships, report.alerts, report.sightings) == (2, 2, 1, 2, 1)
    conn = world.store._conn()
    for table in ("templates", "alerts", "sightings", "watchlist_members"):
        n = conn.execute(f"SELECT count(*) FROM {table} WHERE person_id = ?", (world.ada,)).fetchone()[0]
        assert n == 0, table
    assert world.store.get_person(world.ada) is None
    assert [c.person_id for c in g.identify(probe, top_k=5)[0]] == [world.bob]  # gone from the index
    assert g.index_size == 1
    # Bob is untouched
    assert len(world.store.templates_of(world.bob)) == 1 and world.events.alerts.count() == 1
    entry = world.audit.query(action="subject.erase")[0]
    assert entry.seq == report.audit_seq and entry.reason == "court order 7" and entry.actor == "alice"
    removed = {"templates": 2, "crops": 2, "memberships": 1, "alerts": 2, "sightings": 1, "deliveries": 0}
    assert entry.details == {"person_id": world.ada, "removed": removed}
    assert "Ada" not in json.dumps(entry.details)
    assert world.audit.verify().ok
    # The audit entries naming her are kept (they hold no biometric data).
    assert len(world.audit.query(person_id=world.ada)) == 3


def test_another_process_index_forgets_the_erased_person(world):
    other_store = GalleryStore.open(world.data)
    from sightline.gallery import Gallery
    from tests.gallery.conftest import FakeEngine

    other = Gallery(other_store, FakeEngine())
    try:
        probe = fake_embedding(1, 9)[None]
        assert other.identify(probe, top_k=1)[0][0].person_id == world.ada
        erase_subject(world.store, world.ada, audit=world.audit, actor="alice", reason="r")  # no gallery here
        assert [c.person_id for c in other.identify(probe, top_k=5)[0]] == [world.bob]
    finally:
        other.close()


def test_erase_without_a_reason_or_of_an_unknown_person_changes_nothing(world):
    with pytest.raises(AuditError, match="reason"):
        erase_subject(world.store, world.ada, audit=world.audit, actor="alice", reason="  ")
    assert world.store.get_person(world.ada) is not None and len(world.store.templates_of(world.ada)) == 2
    with pytest.raises(UnknownPersonError):
        erase_subject(world.store, 999, audit=world.audit, actor="alice", reason="r")
    assert world.audit.query(action="subject.erase") == []


def test_erased_faces_do_not_linger_in_the_file(tmp_path, monkeypatch):
    """Unencrypted on purpose: erasure must not rely on encryption to make the deleted crops unreadable."""
    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)
    w = populate(tmp_path / "data", encrypt=False)
    try:
        ada_crops = [c for aid, c in w.alert_crops.items() if aid in (1, 2)] + [w.sighting_crop]
        # (the fake engine's template crops are near-identical grey squares, so descriptors stand for them)
        vecs = [w.sighting_embedding] + [t.descriptor for t in w.store.templates_of(w.ada, with_descriptors=True)]
        vec = b"".join(np.asarray(v, "<f4").tobytes()[:16] for v in vecs)
        w.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        disk = raw_bytes(w.data)
        assert all(c[-40:-8] in disk for c in ada_crops) and all(vec[i : i + 16] in disk for i in (0, 16, 32))
        report = erase_subject(w.store, w.ada, audit=w.audit, actor="alice", reason="r", gallery=w.gallery)
        assert report.wal_checkpointed
        disk = raw_bytes(w.data)
        assert [c for c in ada_crops if c[-40:-8] in disk] == []
        assert not any(vec[i : i + 16] in disk for i in (0, 16, 32))
        bob_crop = w.alert_crops[3]
        assert bob_crop[-40:-8] in disk  # the control: what was not erased is still there
    finally:
        w.gallery.close()
