"""Alert and sighting stores on real SQLite files: the schema-2 migration, round trips, decisions,
cascades on person deletion, retention purge and the watchlist change counter."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from sightline.events.store import EventStores, UnknownAlertError
from sightline.gallery import GALLERY_FILE, GalleryStore
from sightline.gallery.store import MIGRATIONS, migrate
from sightline.types import Alert, Match, Sighting

SHA = "d" * 64


@pytest.fixture
def store(tmp_path: Path):
    s = GalleryStore.open(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def person(store: GalleryStore) -> int:
    return store.add_person("Ada").id


def match(person_id: int, similarity: float = 0.95) -> Match:
    return Match(
        person_id=person_id, name="Ada", watchlist="staff", similarity=similarity, threshold=0.93, est_fmr=2e-5
    )


def alert(person_id: int, ts: float = 100.0, camera: str = "door", track: int = 1) -> Alert:
    return Alert(
        camera,
        track,
        match(person_id),
        ts=ts,
        frame_ts=ts - 0.25,
        xyxy=(10.5, 20.0, 110.0, 130.25),
        crop_jpeg=b"\xff\xd8 jpeg bytes \xff\xd9",
        quality=0.625,
    )


def sighting(
    person_id: int | None, end_ts: float = 50.0, *, crop: bytes | None = None, embedding: np.ndarray | None = None
) -> Sighting:
    return Sighting(
        "door",
        3,
        start_ts=end_ts - 4.0,
        end_ts=end_ts,
        frames=12,
        quality=0.5,
        match=None if person_id is None else match(person_id),
        crop_jpeg=crop,
        embedding=embedding,
    )


def test_a_v1_gallery_migrates_to_v2_and_keeps_its_data(tmp_path):
    path = tmp_path / GALLERY_FILE
    c = sqlite3.connect(path, isolation_level=None)
    migrate(c, MIGRATIONS[:1])  # a file as the first release wrote it
    c.execute("INSERT INTO persons(id, name, created_at) VALUES (1, 'Ada', 1.0)")
    c.execute("INSERT INTO watchlists(id, name, created_at) VALUES (1, 'staff', 1.0)")
    c.execute("INSERT INTO watchlist_members VALUES (1, 1, 1.0)")
    assert c.execute("PRAGMA user_version").fetchone()[0] == 1
    c.close()
    with GalleryStore(path) as s:
        assert s.schema_version == len(MIGRATIONS) >= 2
        assert [p.name for p in s.find_persons()] == ["Ada"]
        assert s.watchlists_generation() == 0  # starts at the migration; old rows did not count
        stores = EventStores(s)
        aid = stores.add_alert(alert(1))
        assert stores.alerts.get(aid) is not None
        tables = {r[0] for r in s._conn().execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert {"alerts", "sightings"} <= tables


def test_alert_round_trip_and_decisions(store, person):
    alerts = EventStores(store).alerts
    a = alert(person)
    aid = alerts.add(a)
    got = alerts.get(aid)
    assert got is not None and got.id == aid and got.status == "new"
    assert (got.decided_by, got.decided_at, got.comment) == (None, None, None)
    b = got.alert
    assert (b.camera_id, b.track_id, b.ts, b.frame_ts, b.xyxy, b.quality) == (
        "door",
        1,
        100.0,
        99.75,
        (10.5, 20.0, 110.0, 130.25),
        0.625,
    )
    assert b.crop_jpeg == a.crop_jpeg
    assert b.match == a.match  # frozen dataclass equality: person, name, watchlist, similarity, threshold, fmr

    decided = alerts.decide(aid, "rejected", decided_by=" ops1 ", comment="not her", at=200.0)
    assert (decided.status, decided.decided_by, decided.decided_at, decided.comment) == (
        "rejected",
        "ops1",
        200.0,
        "not her",
    )
    assert alerts.decide(aid, "confirmed", decided_by="ops2").status == "confirmed"  # a later decision wins
    assert alerts.count(status="confirmed") == 1 and alerts.count(status="new") == 0


@pytest.mark.parametrize(
    ("status", "by", "error", "message"),
    [
        ("new", "ops", ValueError, "status must be 'confirmed' or 'rejected'"),
        ("maybe", "ops", ValueError, "status must be 'confirmed' or 'rejected'"),
        ("confirmed", "  ", ValueError, "decided_by must name who decided"),
    ],
)
def test_decide_checks(store, person, status, by, error, message):
    alerts = EventStores(store).alerts
    aid = alerts.add(alert(person))
    with pytest.raises(error, match=message):
        alerts.decide(aid, status, decided_by=by)
    assert alerts.get(aid).status == "new"  # type: ignore[union-attr]


def test_decide_unknown_alert(store):
    with pytest.raises(UnknownAlertError, match="no alert with id 42"):
        EventStores(store).alerts.decide(42, "confirmed", decided_by="ops")


def test_alert_list_filters_and_orders_newest_first(store, person):
    alerts = EventStores(store).alerts
    ids = [alerts.add(alert(person, ts=t, camera=cam)) for t, cam in [(10.0, "door"), (30.0, "gate"), (20.0, "door")]]
    assert [a.id for a in alerts.list()] == [ids[1], ids[2], ids[0]]
    assert [a.id for a in alerts.list(camera_id="door")] == [ids[2], ids[0]]
    assert [a.id for a in alerts.list(since=15.0, until=30.0)] == [ids[2]]
    assert [a.id for a in alerts.list(limit=1)] == [ids[1]]
    alerts.decide(ids[0], "confirmed", decided_by="ops")
    assert [a.id for a in alerts.list(status="new")] == [ids[1], ids[2]]
    with pytest.raises(ValueError, match="limit must be in"):
        alerts.list(limit=0)


def test_an_alert_for_a_missing_person_is_refused(store):
    with pytest.raises(sqlite3.IntegrityError):
        EventStores(store).alerts.add(alert(999))


def test_sightings_round_trip_with_and_without_match(store, person):
    sightings = EventStores(store).sightings
    emb = np.linspace(-1, 1, 128).astype(np.float32)
    matched = sightings.add(sighting(person, crop=b"jpeg", embedding=emb), model="m1")
    unmatched = sightings.add(sighting(None))
    got = sightings.get(matched)
    assert got is not None and got.model == "m1"
    s = got.sighting
    assert (s.camera_id, s.track_id, s.start_ts, s.end_ts, s.frames, s.quality) == ("door", 3, 46.0, 50.0, 12, 0.5)
    assert s.match == match(person) and s.crop_jpeg == b"jpeg"
    np.testing.assert_array_equal(s.embedding, emb)
    bare = sightings.get(unmatched)
    assert bare is not None and bare.sighting.match is None
    assert (bare.sighting.crop_jpeg, bare.sighting.embedding, bare.model) == (None, None, None)
    assert [x.id for x in sightings.list(matched=True)] == [matched]
    assert [x.id for x in sightings.list(matched=False)] == [unmatched]
    assert sightings.count() == 2 and sightings.count(matched=False) == 1


def test_a_sighting_embedding_needs_its_model(store):
    with pytest.raises(ValueError, match="needs the descriptor model name"):
        EventStores(store).sightings.add(sighting(None, embedding=np.ones(4, np.float32)))


@pytest.mark.parametrize(
    "sql",
    [
        # a match without its watchlist
        "INSERT INTO sightings(camera_id, track_id, start_ts, end_ts, frames, quality, person_id, similarity, "
        "threshold, est_fmr) VALUES ('c', 1, 0, 1, 1, 0.5, {pid}, 0.9, 0.9, 0.001)",
        # an embedding without its model
        "INSERT INTO sightings(camera_id, track_id, start_ts, end_ts, frames, quality, embedding) "
        "VALUES ('c', 1, 0, 1, 1, 0.5, x'00000000')",
        # ends before it starts
        "INSERT INTO sightings(camera_id, track_id, start_ts, end_ts, frames, quality) VALUES ('c', 1, 5, 1, 1, 0.5)",
        # an unknown status, and a decision time on a new alert
        "INSERT INTO alerts(camera_id, track_id, person_id, watchlist, similarity, threshold, est_fmr, ts, frame_ts, "
        "x1, y1, x2, y2, crop_jpeg, status) VALUES ('c', 1, {pid}, 'w', 0.9, 0.9, 0.001, 1, 1, 0, 0, 1, 1, x'', 'x')",
        "INSERT INTO alerts(camera_id, track_id, person_id, watchlist, similarity, threshold, est_fmr, ts, frame_ts, "
        "x1, y1, x2, y2, crop_jpeg, decided_at) VALUES ('c', 1, {pid}, 'w', 0.9, 0.9, 0.001, 1, 1, 0, 0, 1, 1, x'', 5)",
    ],
)
def test_schema_constraints(store, person, sql):
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:
        conn.execute(sql.format(pid=person))


def test_deleting_a_person_deletes_their_alerts_and_matched_sightings(store, person):
    stores = EventStores(store)
    other = store.add_person("Bob").id
    stores.add_alert(alert(person))
    kept_alert = stores.add_alert(alert(other))
    stores.add_sighting(sighting(person, crop=b"a"))
    kept_matched = stores.add_sighting(sighting(other, crop=b"b"))
    kept_unmatched = stores.add_sighting(sighting(None))
    assert store.delete_person(person)
    assert [a.id for a in stores.alerts.list()] == [kept_alert]
    assert sorted(s.id for s in stores.sightings.list()) == sorted([kept_matched, kept_unmatched])


def test_purge_unmatched_removes_only_old_unmatched_sightings(store, person):
    sightings = EventStores(store).sightings
    old_matched = sightings.add(sighting(person, end_ts=10.0))
    sightings.add(sighting(None, end_ts=10.0))
    new_unmatched = sightings.add(sighting(None, end_ts=100.0))
    assert sightings.purge_unmatched(50.0) == 1
    assert sorted(s.id for s in sightings.list()) == sorted([old_matched, new_unmatched])
    assert sightings.purge_unmatched(50.0, camera_id="elsewhere") == 0


def test_watchlist_changes_move_the_watchlist_generation(store, person):
    gens = [store.watchlists_generation()]

    def step() -> None:
        gens.append(store.watchlists_generation())
        assert gens[-1] > gens[-2]

    wl = store.create_watchlist("staff")
    step()
    store.add_member(wl.id, person)
    step()
    store.update_watchlist(wl.id, description="", threshold=0.95)
    step()
    store.delete_person(person)  # the membership goes by cascade
    step()
    before_template = store.watchlists_generation()
    other = store.add_person("Bob").id
    store.add_template(other, model="m", descriptor=np.ones(4, np.float32) / 2, quality=0.5, photo_sha256=SHA)
    assert store.watchlists_generation() == before_template  # templates have their own counter


def test_alert_ids_are_never_reused_after_the_newest_is_deleted(tmp_path):
    """Receivers de-duplicate notifications by alert id: deleting (purging, erasing) the newest alert must
    not hand its id to the next one (schema 4 made the alerts table AUTOINCREMENT)."""
    from sightline.events import EventStores
    from sightline.gallery import GalleryStore
    from sightline.types import Alert, Match

    store = GalleryStore(tmp_path / "g.sqlite3")
    pid = store.add_person("Ada").id
    stores = EventStores(store)
    m = Match(person_id=pid, name="Ada", watchlist="w", similarity=0.9, threshold=0.8, est_fmr=1e-5)

    def add() -> int:
        return stores.add_alert(
            Alert(camera_id="c", track_id=1, match=m, ts=1.0, frame_ts=1.0, xyxy=(0, 0, 1, 1), crop_jpeg=b"x")
        )

    first = add()
    with store.transaction() as conn:
        conn.execute("DELETE FROM alerts WHERE id = ?", (first,))
    assert add() > first
    store.close()
