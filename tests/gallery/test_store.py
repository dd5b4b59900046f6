"""GalleryStore on real SQLite files: schema, migrations, cascades, transactions, change counter."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from sightline.gallery import GALLERY_FILE, SCHEMA_VERSION, GalleryError, GalleryStore, SchemaVersionError
from sightline.gallery.store import APPLICATION_ID, MIGRATIONS, migrate

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64

# A literal copy of the version-1 schema as released, kept here (not imported) so that an edit
# to the released migration step is caught by test_opens_a_v1_file_written_by_hand.
V1_DDL = """
CREATE TABLE persons (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(trim(name)) > 0),
    external_id TEXT UNIQUE,
    notes       TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX persons_name ON persons(name);
CREATE TABLE templates (
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
);
CREATE INDEX templates_person ON templates(person_id);
CREATE UNIQUE INDEX templates_photo_model ON templates(photo_sha256, model);
CREATE TABLE watchlists (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
    description TEXT NOT NULL DEFAULT '',
    threshold   REAL CHECK (threshold IS NULL OR threshold BETWEEN -1 AND 1),
    created_at  REAL NOT NULL
);
CREATE TABLE watchlist_members (
    watchlist_id INTEGER NOT NULL REFERENCES watchlists(id) ON DELETE CASCADE,
    person_id    INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    added_at     REAL NOT NULL,
    PRIMARY KEY (watchlist_id, person_id)
) WITHOUT ROWID;
CREATE INDEX watchlist_members_person ON watchlist_members(person_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('templates_generation', 0);
CREATE TRIGGER templates_gen_insert AFTER INSERT ON templates BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END;
CREATE TRIGGER templates_gen_update AFTER UPDATE ON templates BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END;
CREATE TRIGGER templates_gen_delete AFTER DELETE ON templates BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'templates_generation'; END;
"""


def vec(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def write_v1_file(path: Path) -> np.ndarray:
    """A version-1 gallery made with plain sqlite3: one person, template, watchlist, membership."""
    descriptor = vec(1, 2, 3, 4)
    c = raw(path)
    c.executescript(V1_DDL)
    c.execute("INSERT INTO persons VALUES (1, 'Ada', 'E-1', 'note', 1700000000.5)")
    c.execute(
        "INSERT INTO templates VALUES (1, 1, 'dlib_resnet_v1', 4, ?, 0.75, ?, 'ada.jpg', 1, 2, 30, 40, 1700000001)",
        (descriptor.astype("<f4").tobytes(), SHA_A),
    )
    c.execute("INSERT INTO watchlists VALUES (1, 'staff', 'people who work here', NULL, 1700000002)")
    c.execute("INSERT INTO watchlist_members VALUES (1, 1, 1700000003)")
    c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    c.execute("PRAGMA user_version = 1")
    c.close()
    return descriptor


def test_new_file_is_wal_with_foreign_keys_and_current_schema(tmp_path):
    with GalleryStore.open(tmp_path / "new" / "dir") as s:
        assert s.path == tmp_path / "new" / "dir" / GALLERY_FILE
        assert s.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        conn = s._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    # reopening an up-to-date file changes nothing
    with GalleryStore.open(tmp_path / "new" / "dir") as s:
        assert s.schema_version == SCHEMA_VERSION


def test_opens_a_v1_file_written_by_hand(tmp_path):
    path = tmp_path / GALLERY_FILE
    descriptor = write_v1_file(path)
    with GalleryStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        (info,) = s.person_info()
        assert (info.id, info.name, info.external_id, info.notes) == (1, "Ada", "E-1", "note")
        assert info.created_at.timestamp() == 1700000000.5
        assert (info.template_count, info.watchlists) == (1, ("staff",))
        t = s.get_template(1, with_descriptor=True)
        assert t is not None
        assert (t.model, t.dim, t.quality, t.photo_sha256, t.source_name) == (
            "dlib_resnet_v1",
            4,
            0.75,
            SHA_A,
            "ada.jpg",
        )
        assert t.xyxy == (1, 2, 30, 40)
        np.testing.assert_array_equal(t.descriptor, descriptor)
        wl = s.get_watchlist("staff")
        assert wl is not None and wl.threshold is None and wl.member_count == 1
        # and it is writable with today's code
        pid = s.add_person("Bob").id
        before = s.generation()
        s.add_template(pid, model="dlib_resnet_v1", descriptor=vec(4, 3, 2, 1), quality=0.5, photo_sha256=SHA_B)
        assert s.generation() == before + 1


def test_migration_steps_run_in_order_and_keep_data(tmp_path):
    path = tmp_path / GALLERY_FILE
    write_v1_file(path)
    v2 = (
        "ALTER TABLE persons ADD COLUMN nickname TEXT",
        "UPDATE persons SET nickname = upper(name)",
    )
    n = len(MIGRATIONS)  # the v1 file goes through every released step, then the made-up one
    c = raw(path)
    assert migrate(c, (*MIGRATIONS, v2)) == 1
    assert c.execute("PRAGMA user_version").fetchone()[0] == n + 1
    assert c.execute("SELECT name, nickname FROM persons").fetchall() == [("Ada", "ADA")]
    assert migrate(c, (*MIGRATIONS, v2)) == n + 1  # idempotent
    c.close()
    # today's code did not know the made-up step: the file is now from a "newer release"
    with pytest.raises(SchemaVersionError, match=rf"version {n + 1}.*versions up to {n}.*newer release"):
        GalleryStore(path)


def test_a_failed_migration_step_rolls_back(tmp_path):
    path = tmp_path / GALLERY_FILE
    write_v1_file(path)
    c = raw(path)
    bad = ("ALTER TABLE persons ADD COLUMN x TEXT", "THIS IS NOT SQL")
    with pytest.raises(sqlite3.OperationalError):
        migrate(c, (*MIGRATIONS, bad))
    # the released steps committed one by one; the failing one left nothing behind
    assert c.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert "x" not in [r[1] for r in c.execute("PRAGMA table_info(persons)")]
    c.close()


def test_refuses_a_file_from_a_newer_release_and_leaves_it_alone(tmp_path):
    path = tmp_path / GALLERY_FILE
    write_v1_file(path)
    c = raw(path)
    c.execute("PRAGMA user_version = 99")
    c.close()
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError, match="newer release"):
        GalleryStore(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("user_version", [0, 1])
def test_refuses_an_sqlite_file_that_is_not_a_gallery(tmp_path, user_version):
    path = tmp_path / GALLERY_FILE
    c = raw(path)
    c.execute("CREATE TABLE notes (x)")
    c.execute(f"PRAGMA user_version = {user_version}")
    c.close()
    with pytest.raises(SchemaVersionError, match="not a Sightline gallery"):
        GalleryStore(path)


def test_deleting_a_person_cascades_and_bumps_the_generation(store):
    a, b = store.add_person("Ada").id, store.add_person("Bob").id
    t1 = store.add_template(a, model="m", descriptor=vec(1, 0), quality=0.9, photo_sha256=SHA_A)
    store.add_template(a, model="m", descriptor=vec(0, 1), quality=0.9, photo_sha256=SHA_B)
    store.add_template(b, model="m", descriptor=vec(1, 1), quality=0.9, photo_sha256=SHA_C)
    wl = store.create_watchlist("staff")
    store.add_member(wl.id, a)
    store.add_member(wl.id, b)
    assert store.generation() == 3
    assert store.delete_person(a) is True
    assert store.delete_person(a) is False
    assert store.generation() == 5  # both of Ada's templates, deleted by the cascade
    assert store.get_template(t1) is None and store.templates_of(a) == []
    assert store.member_ids(wl.id) == {b}
    tids, pids, _ = store.load_descriptors("m")
    assert pids.tolist() == [b] and len(tids) == 1
    # deleting a watchlist keeps its persons
    assert store.delete_watchlist(wl.id) is True
    assert [p.id for p in store.person_info()] == [b]


def test_a_failing_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        pid = store.add_person("Ada").id
        store.add_template(pid, model="m", descriptor=vec(1, 0), quality=0.9, photo_sha256=SHA_A)
        raise RuntimeError("boom")
    assert store.find_persons(name="Ada") == []
    assert store.templates_for_photo(SHA_A) == []
    assert store.generation() == 0


def test_nested_transaction_rolls_back_only_its_part(store):
    with store.transaction():
        store.add_person("Ada")
        with pytest.raises(RuntimeError), store.transaction():
            store.add_person("Bob")
            raise RuntimeError
    assert [p.name for p in store.find_persons()] == ["Ada"]


def test_another_connection_sees_commits_and_moves_the_generation(store):
    pid = store.add_person("Ada").id
    other = raw(store.path)
    other.execute("PRAGMA foreign_keys = ON")
    other.execute(
        "INSERT INTO templates(person_id, model, dim, descriptor, quality, photo_sha256, created_at) "
        "VALUES (?, 'm', 2, ?, 0.5, ?, 0)",
        (pid, vec(1, 0).astype("<f4").tobytes(), SHA_A),
    )
    assert store.generation() == 1
    other.execute("DELETE FROM persons")
    other.close()
    assert store.generation() == 2 and store.find_persons() == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (dict(photo_sha256=SHA_A), sqlite3.IntegrityError),  # same photo, same model
        (dict(quality=1.5), sqlite3.IntegrityError),
        (dict(photo_sha256="abc"), sqlite3.IntegrityError),
        (dict(person_id=999, photo_sha256=SHA_C), sqlite3.IntegrityError),  # no such person
        (dict(xyxy=(1, 2, 3)), ValueError),
    ],
)
def test_template_constraints(store, change, error):
    pid = store.add_person("Ada").id
    store.add_template(pid, model="m", descriptor=vec(1, 0), quality=0.9, photo_sha256=SHA_A)
    kwargs = dict(person_id=pid, model="m", descriptor=vec(0, 1), quality=0.9, photo_sha256=SHA_B)
    kwargs.update(change)
    with pytest.raises(error):
        store.add_template(kwargs.pop("person_id"), **kwargs)
    assert len(store.templates_of(pid)) == 1


def test_same_photo_under_another_model_is_allowed(store):
    pid = store.add_person("Ada").id
    store.add_template(pid, model="m1", descriptor=vec(1, 0), quality=0.9, photo_sha256=SHA_A)
    store.add_template(pid, model="m2", descriptor=vec(1, 0, 0), quality=0.9, photo_sha256=SHA_A)
    assert {t.model for t in store.templates_for_photo(SHA_A)} == {"m1", "m2"}
    assert store.model_counts() == {"m1": 1, "m2": 1}
    assert store.load_descriptors("m2")[2].shape == (1, 3)
    assert store.load_descriptors("nope")[0].size == 0


def test_descriptors_round_trip_exactly(store):
    rng = np.random.default_rng(0)
    mat = rng.normal(size=(5, 128)).astype(np.float32)
    ids = []
    for i, v in enumerate(mat):
        pid = store.add_person(f"p{i % 2}").id
        ids.append(store.add_template(pid, model="m", descriptor=v, quality=0.5, photo_sha256=f"{i:064x}"))
    tids, pids, loaded = store.load_descriptors("m")
    order = [ids.index(t) for t in tids]
    np.testing.assert_array_equal(loaded, mat[order])
    assert list(pids) == sorted(pids)


@pytest.mark.parametrize(
    ("name", "threshold", "message"),
    [
        ("", None, "non-empty"),
        ("  ", 0.5, "non-empty"),
        ("x", 1.5, r"\[-1, 1\]"),
        ("x", -1.01, r"\[-1, 1\]"),
        ("STAFF", None, "already exists"),  # names are unique ignoring case
    ],
)
def test_watchlist_validation(store, name, threshold, message):
    store.create_watchlist("staff")
    with pytest.raises(GalleryError, match=message):
        store.create_watchlist(name, threshold=threshold)


def test_external_id_is_unique(store):
    store.add_person("Ada", external_id="E-1")
    with pytest.raises(GalleryError, match="E-1"):
        store.add_person("Bob", external_id="E-1")
    store.add_person("Ada")  # names need not be unique
    assert len(store.find_persons(name="Ada")) == 2
    assert [p.name for p in store.find_persons(external_id="E-1")] == ["Ada"]


def test_membership_and_person_info(store):
    a, b = store.add_person("Ada").id, store.add_person("Bob").id
    w1, w2 = store.create_watchlist("zeta", "z", 0.7), store.create_watchlist("alpha")
    assert store.add_member(w1.id, a) is True
    assert store.add_member(w1.id, a) is False
    store.add_member(w2.id, a)
    store.add_member(w2.id, b)
    info = {p.name: p for p in store.person_info()}
    assert info["Ada"].watchlists == ("alpha", "zeta") and info["Bob"].watchlists == ("alpha",)
    assert [p.name for p in store.person_info(watchlist_id=w1.id)] == ["Ada"]
    assert [(w.name, w.member_count, w.threshold) for w in store.list_watchlists()] == [
        ("alpha", 2, None),
        ("zeta", 1, 0.7),
    ]
    assert store.remove_member(w2.id, a) is True and store.remove_member(w2.id, a) is False
    assert store.member_ids(w2.id) == {b}


def test_threads_each_get_a_connection_and_writes_serialise(store):
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                pid = store.add_person(f"t{i}-{j}").id
                store.add_template(pid, model="m", descriptor=vec(1, j), quality=0.5, photo_sha256=f"{i:032x}{j:032x}")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.find_persons()) == 40 and store.generation() == 40


def test_closed_store_refuses_use(tmp_path):
    s = GalleryStore.open(tmp_path)
    s.close()
    with pytest.raises(GalleryError, match="closed"):
        s.add_person("Ada")


def test_template_counts_per_model_and_watchlist(store):
    a = store.add_person("Ada").id
    b = store.add_person("Bob").id
    store.add_template(a, model="m", descriptor=vec(1, 0), quality=0.9, photo_sha256=SHA_A)
    store.add_template(a, model="m", descriptor=vec(0, 1), quality=0.9, photo_sha256=SHA_B)
    store.add_template(b, model="m", descriptor=vec(1, 1), quality=0.9, photo_sha256=SHA_C)
    store.add_template(b, model="other", descriptor=vec(1, 1), quality=0.9, photo_sha256=SHA_C)
    wl = store.create_watchlist("Staff")
    store.add_member(wl.id, a)
    assert store.template_counts("m") == (2, 3)
    assert store.template_counts("other") == (1, 1)
    assert store.template_counts("m", "staff") == (1, 2)  # names are case-insensitive
    assert store.template_counts("other", "Staff") == (0, 0)
    assert store.template_counts("m", "no such list") == (0, 0)
