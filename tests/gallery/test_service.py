"""Gallery use-cases: enrolment rules, search, verify, watchlists, persons, index sync across processes.

Most tests use the fake engine of conftest.py (photos are tiny PNGs whose first pixel names the
faces); the ones marked slow run the real engine on the committed fixture photos.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sightline.gallery import (
    AmbiguousPersonError,
    Gallery,
    GalleryError,
    NoFaceError,
    PhotoConflictError,
    UnknownPersonError,
    UnknownWatchlistError,
)
from sightline.imaging import load_image
from tests.gallery.conftest import FakeEngine, fake_embedding, write_photo


def persons(gallery: Gallery) -> list[tuple[str, int]]:
    return [(p.name, p.template_count) for p in gallery.list_persons()]


def top(gallery: Gallery, photo: Path, **kwargs) -> list[tuple[str, bool]]:
    """(name, is_match) of the first face's candidates."""
    (res,) = gallery.search(load_image(photo), **kwargs)
    return [(c.name, c.is_match) for c in res.candidates]


# -- enrolment -------------------------------------------------------------------------------------


def test_enroll_person_writes_person_templates_and_membership(gallery, tmp_path):
    gallery.create_watchlist("staff")
    photos = [write_photo(tmp_path / f"ada{v}.png", seed=1, variant=v) for v in range(3)]
    report = gallery.enroll_person("Ada", photos, watchlist="staff", external_id="E-1", notes="n")
    assert (report.persons_enrolled, report.persons_created, report.templates_added) == (1, 1, 3)
    assert report.skipped == () and report.not_enrolled == ()
    p = gallery.get_person("Ada")
    assert (p.external_id, p.notes, p.template_count, p.watchlists) == ("E-1", "n", 3, ("staff",))
    (result,) = report.results
    templates = gallery.store.templates_of(p.id, with_descriptors=True)
    assert [t.id for t in templates] == list(result.template_ids)
    assert [t.source_name for t in templates] == ["ada0.png", "ada1.png", "ada2.png"]
    assert {t.model for t in templates} == {"fake_v1"} and templates[0].quality == pytest.approx(0.9)
    assert templates[0].photo_sha256 == load_image(photos[0]).sha256
    np.testing.assert_allclose(templates[1].descriptor, fake_embedding(1, 1))
    assert gallery.index_size == 3


@pytest.mark.parametrize(
    ("faces", "multi_face", "templates", "skip_code", "reason"),
    [
        (0, "skip", 0, "no_face", "no face found"),
        (0, "largest", 0, "no_face", "no face found"),
        (2, "skip", 0, "multiple_faces", "2 faces found (use --largest)"),
        (3, "largest", 1, None, None),
        (1, "skip", 1, None, None),
    ],
)
def test_face_count_rules(gallery, tmp_path, faces, multi_face, templates, skip_code, reason):
    photo = write_photo(tmp_path / "p.png", seed=1, faces=faces)
    report = gallery.enroll_person("Ada", [photo], watchlist=None, multi_face=multi_face)
    assert report.templates_added == templates
    if skip_code is None:
        assert report.skipped == ()
        # 'largest' keeps the first (largest) face: seed 1, not its neighbours
        (hit,) = gallery.identify(fake_embedding(1)[None], top_k=1)
        assert hit[0].name == "Ada" and hit[0].similarity > 0.99
    else:
        (s,) = report.skipped
        assert (s.person, s.name, s.code, s.reason) == ("Ada", "p.png", skip_code, reason)
        assert report.not_enrolled == ("Ada",)
        assert gallery.list_persons() == []  # no photo accepted: no person created


def test_undecodable_photos_are_skipped_with_the_decoder_reason(gallery, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    empty = tmp_path / "empty.png"
    empty.touch()
    good = write_photo(tmp_path / "good.png", seed=1)
    report = gallery.enroll_person("Ada", [text, empty, tmp_path / "missing.png", good], watchlist=None)
    assert report.templates_added == 1
    assert [(s.name, s.code) for s in report.skipped] == [
        ("notes.jpg", "not_an_image"),
        ("empty.png", "empty"),
        ("missing.png", "unreadable"),
    ]


def test_same_photo_twice_is_a_duplicate(gallery, tmp_path):
    a = write_photo(tmp_path / "a.png", seed=1)
    copy = tmp_path / "copy.png"
    copy.write_bytes(a.read_bytes())
    first = gallery.enroll_person("Ada", [a, copy], watchlist=None)
    assert first.templates_added == 1
    assert [(s.name, s.code) for s in first.skipped] == [("copy.png", "duplicate")]
    calls = gallery.engine.calls
    again = gallery.enroll_person("Ada", [copy], watchlist=None)
    assert (again.templates_added, again.persons_created) == (0, 0)
    assert [s.code for s in again.skipped] == ["duplicate"]
    assert gallery.engine.calls == calls  # recognised by hash, not analysed again
    assert persons(gallery) == [("Ada", 1)]


def test_photo_of_another_person_is_refused_and_nothing_is_written(gallery, tmp_path):
    a = write_photo(tmp_path / "a.png", seed=1)
    gallery.enroll_person("Ada", [a], watchlist=None)
    gallery.create_watchlist("staff")
    other = write_photo(tmp_path / "b.png", seed=2)
    with pytest.raises(PhotoConflictError, match=r"a\.png .*already enrolled as person 1 'Ada'.*'Bob'"):
        gallery.enroll_person("Bob", [other, a], watchlist="staff")
    assert persons(gallery) == [("Ada", 1)]
    assert gallery.get_watchlist("staff").member_count == 0


def test_existing_person_gets_new_templates(gallery, tmp_path):
    gallery.enroll_person("Ada", [write_photo(tmp_path / "a0.png", seed=1)], watchlist=None)
    report = gallery.enroll_person(
        "Ada", [write_photo(tmp_path / "a1.png", seed=1, variant=1)], watchlist="vip", create=True
    )
    assert (report.persons_created, report.persons_enrolled, report.templates_added) == (0, 1, 1)
    assert persons(gallery) == [("Ada", 2)]
    assert gallery.get_person("Ada").watchlists == ("vip",)


def test_re_enrolling_known_photos_into_a_watchlist_adds_the_membership(gallery, tmp_path):
    a = write_photo(tmp_path / "a.png", seed=1)
    gallery.enroll_person("Ada", [a], watchlist=None)
    gallery.create_watchlist("vip")
    report = gallery.enroll_person("Ada", [a], watchlist="vip")
    assert report.templates_added == 0 and report.results[0].person_id is not None
    assert gallery.get_person("Ada").watchlists == ("vip",)


@pytest.mark.parametrize(
    ("first_eid", "second_eid", "expected", "error"),
    [
        (None, None, [("Ada", 2)], None),
        ("E-1", "E-1", [("Ada", 2)], None),
        ("E-1", None, [("Ada", 2)], None),  # the only Ada
        (None, "E-2", [("Ada", 1), ("Ada", 1)], None),  # a different Ada
        ("E-1", "E-2", [("Ada", 1), ("Ada", 1)], None),
    ],
)
def test_same_name_and_external_id_decide_who_is_extended(gallery, tmp_path, first_eid, second_eid, expected, error):
    gallery.enroll_person("Ada", [write_photo(tmp_path / "a.png", seed=1)], watchlist=None, external_id=first_eid)
    gallery.enroll_person(
        "Ada", [write_photo(tmp_path / "b.png", seed=1, variant=1)], watchlist=None, external_id=second_eid
    )
    assert persons(gallery) == expected


def test_external_id_of_someone_else_and_ambiguous_names_are_refused(gallery, tmp_path):
    gallery.enroll_person("Ada", [write_photo(tmp_path / "a.png", seed=1)], watchlist=None, external_id="E-1")
    with pytest.raises(GalleryError, match="belongs to person 1 'Ada'"):
        gallery.enroll_person("Bob", [write_photo(tmp_path / "b.png", seed=2)], watchlist=None, external_id="E-1")
    gallery.enroll_person("Ada", [write_photo(tmp_path / "c.png", seed=3)], watchlist=None, external_id="E-2")
    with pytest.raises(AmbiguousPersonError, match="2 persons are named 'Ada'"):
        gallery.enroll_person("Ada", [write_photo(tmp_path / "d.png", seed=1, variant=2)], watchlist=None)
    with pytest.raises(AmbiguousPersonError):
        gallery.get_person("Ada")


def test_unknown_watchlist_lists_the_existing_ones_unless_create(gallery, tmp_path):
    gallery.create_watchlist("staff")
    gallery.create_watchlist("visitors")
    photo = write_photo(tmp_path / "a.png", seed=1)
    with pytest.raises(UnknownWatchlistError, match="no watchlist 'vip'; existing watchlists: 'staff', 'visitors'"):
        gallery.enroll_person("Ada", [photo], watchlist="vip")
    assert gallery.engine.calls == 0 and gallery.list_persons() == []
    gallery.enroll_person("Ada", [photo], watchlist="vip", create=True)
    assert gallery.get_watchlist("vip").member_count == 1


def test_a_failure_inside_the_enrol_transaction_leaves_no_person(tmp_path):
    # variant 1 gets quality 1.5: the store's CHECK refuses that template after the person row and
    # the first template were written in the same transaction.
    engine = FakeEngine(quality={1: 1.5})
    with Gallery.open(tmp_path / "data", engine) as g:
        g.create_watchlist("staff")
        g.enroll_person("Bob", [write_photo(tmp_path / "b.png", seed=2)], watchlist="staff")
        assert g.index_size == 1
        photos = [write_photo(tmp_path / f"a{v}.png", seed=1, variant=v) for v in (0, 1)]
        with pytest.raises(Exception, match="CHECK constraint failed"):
            g.enroll_person("Ada", photos, watchlist="staff")
        assert g.store.find_persons(name="Ada") == []
        assert g.store.templates_for_photo(load_image(photos[0]).sha256) == []
        assert g.get_watchlist("staff").member_count == 1
        assert g.index_size == 1
        assert [c.name for c in g.identify(fake_embedding(1)[None])[0]] == ["Bob"]


def test_enroll_folder(gallery, tmp_path):
    root = tmp_path / "people"
    write_photo(root / "ada" / "1.png", seed=1)
    write_photo(root / "ada" / "2.png", seed=1, variant=1)
    write_photo(root / "bob" / "1.png", seed=2)
    write_photo(root / "bob" / "group.png", seed=5, faces=2)
    (root / "empty").mkdir()
    write_photo(root / "loose.png", seed=9)
    (root / "README.txt").write_text("ignored")
    calls: list[tuple[int, int]] = []
    report = gallery.enroll_folder(root, watchlist="staff", create=True, progress=lambda d, t: calls.append((d, t)))
    assert (report.persons_enrolled, report.templates_added) == (2, 3)
    assert sorted((s.person, s.name, s.code) for s in report.skipped) == [
        ("bob", "group.png", "multiple_faces"),
        ("empty", "empty/", "no_photos"),
        ("people", "loose.png", "not_in_person_folder"),
    ]
    assert calls[-1] == (4, 4) and [d for d, _ in calls] == [1, 2, 3, 4]
    assert [(p.name, p.template_count, p.watchlists) for p in gallery.list_persons()] == [
        ("ada", 2, ("staff",)),
        ("bob", 1, ("staff",)),
    ]


def test_enroll_folder_goes_on_past_a_refused_person(gallery, tmp_path):
    root = tmp_path / "people"
    ada = write_photo(root / "ada" / "1.png", seed=1)
    (root / "bob").mkdir()
    (root / "bob" / "stolen.png").write_bytes(ada.read_bytes())
    write_photo(root / "bob" / "own.png", seed=2)
    write_photo(root / "cy" / "1.png", seed=3)
    report = gallery.enroll_folder(root, watchlist=None)
    assert [p.name for p in gallery.list_persons()] == ["ada", "cy"]
    assert sorted((s.name, s.code) for s in report.skipped) == [
        ("own.png", "photo_conflict"),
        ("stolen.png", "photo_conflict"),
    ]
    assert report.not_enrolled == ("bob",)


# -- search and verify -----------------------------------------------------------------------------


@pytest.fixture
def three(gallery, tmp_path):
    """Ada (seed 1, 2 photos) and Bob (seed 2) in 'staff', Cy (seed 3) in no watchlist."""
    gallery.create_watchlist("staff", "people who work here")
    gallery.create_watchlist("strict", threshold=0.999)
    gallery.enroll_person(
        "Ada", [write_photo(tmp_path / f"a{v}.png", seed=1, variant=v) for v in (0, 1)], watchlist="staff"
    )
    gallery.enroll_person("Bob", [write_photo(tmp_path / "b.png", seed=2)], watchlist="staff")
    gallery.enroll_person("Cy", [write_photo(tmp_path / "c.png", seed=3)], watchlist=None)
    gallery.add_member("strict", "Ada")
    return gallery


@pytest.mark.parametrize(
    ("seed", "watchlist", "searched", "match"),
    [
        (1, None, {"Ada", "Bob", "Cy"}, "Ada"),
        (3, None, {"Ada", "Bob", "Cy"}, "Cy"),
        (3, "staff", {"Ada", "Bob"}, None),  # Cy is not on the watchlist: no match
        (2, "staff", {"Ada", "Bob"}, "Bob"),
        (1, "strict", {"Ada"}, None),  # the watchlist's own threshold (0.999) applies
    ],
)
def test_search(three, tmp_path, seed, watchlist, searched, match):
    probe = write_photo(tmp_path / "probe.png", seed=seed, variant=7)
    got = top(three, probe, watchlist=watchlist, top_k=3)
    assert {n for n, _ in got} == searched
    assert [n for n, m in got if m] == ([match] if match else [])
    if match:
        assert got[0] == (match, True)


def test_search_result_carries_threshold_template_and_calibration(three, tmp_path):
    probe = write_photo(tmp_path / "probe.png", seed=1, variant=1)  # the very photo of Ada's 2nd template
    (res,) = three.search(load_image(probe), watchlist="staff", top_k=1)
    (c,) = res.candidates
    ada = three.store.templates_of(c.person_id)
    assert c.template_id == ada[1].id and c.similarity == pytest.approx(1.0, abs=1e-5)
    assert (c.threshold, res.threshold, res.watchlist) == (0.6, 0.6, "staff")
    assert c.est_fmr == pytest.approx(1e-8, rel=1e-3) and res.best_match == c
    assert res.face.xyxy == (10.0, 10.0, 110.0, 110.0)


def test_every_face_of_a_group_photo_is_searched(three, tmp_path):
    probe = write_photo(tmp_path / "group.png", seed=1, faces=3)  # seeds 1, 2, 3, largest first
    results = three.search(load_image(probe).rgb, top_k=1)
    assert [r.best_match.name for r in results] == ["Ada", "Bob", "Cy"]


def test_search_with_no_face_and_on_an_empty_gallery(gallery, tmp_path):
    assert gallery.search(write_photo(tmp_path / "none.png", seed=1, faces=0)) == []
    (res,) = gallery.search(write_photo(tmp_path / "one.png", seed=1))
    assert res.candidates == () and res.best_match is None
    with pytest.raises(UnknownWatchlistError):
        gallery.search(write_photo(tmp_path / "one.png", seed=1), watchlist="nope")


@pytest.mark.parametrize(("seed_a", "seed_b", "same"), [(1, 1, True), (1, 2, False)])
def test_verify(gallery, tmp_path, seed_a, seed_b, same):
    a = write_photo(tmp_path / "a.png", seed=seed_a, variant=0)
    b = write_photo(tmp_path / "b.png", seed=seed_b, variant=3)
    r = gallery.verify(a, load_image(b))
    assert r.same_person is same and r.threshold == 0.6
    assert r.similarity == pytest.approx(float(fake_embedding(seed_a, 0) @ fake_embedding(seed_b, 3)), abs=1e-6)


def test_verify_names_the_photo_without_a_face(gallery, tmp_path):
    a = write_photo(tmp_path / "a.png", seed=1)
    with pytest.raises(NoFaceError, match=r"second photo .*none\.png"):
        gallery.verify(a, write_photo(tmp_path / "none.png", seed=1, faces=0))


# -- watchlists and persons ------------------------------------------------------------------------


def test_watchlist_crud(three):
    assert [(w.name, w.member_count, w.threshold) for w in three.list_watchlists()] == [
        ("staff", 2, None),
        ("strict", 1, 0.999),
    ]
    assert three.ensure_watchlist("STAFF").name == "staff"
    assert three.ensure_watchlist("new", threshold=0.7).threshold == 0.7
    with pytest.raises(GalleryError, match="already exists"):
        three.create_watchlist("new")
    assert three.add_member("new", "Cy") is True and three.add_member("new", 3) is False
    assert [p.name for p in three.list_persons(watchlist="new")] == ["Cy"]
    assert three.remove_member("new", "Cy") is True
    three.delete_watchlist("staff")
    assert [p.name for p in three.list_persons()] == ["Ada", "Bob", "Cy"]  # persons stay
    with pytest.raises(UnknownWatchlistError):
        three.delete_watchlist("staff")
    with pytest.raises(UnknownPersonError):
        three.add_member("new", "Nobody")


def test_delete_person_updates_search_at_once(three, tmp_path):
    ada = three.get_person("Ada")
    assert ada.template_count == 2 and ada.watchlists == ("staff", "strict")
    assert three.get_person(ada.id) == ada
    three.delete_person(ada.id)
    assert three.index_size == 2
    assert [n for n, _ in top(three, write_photo(tmp_path / "p.png", seed=1))] == ["Bob", "Cy"]
    assert three.get_watchlist("staff").member_count == 1
    with pytest.raises(UnknownPersonError):
        three.delete_person(ada.id)
    with pytest.raises(UnknownPersonError):
        three.get_person("Ada")


def test_delete_template(three, tmp_path):
    ada = three.store.templates_of(three.get_person("Ada").id)
    three.delete_template(ada[0].id)
    (res,) = three.search(write_photo(tmp_path / "p.png", seed=1, variant=0), top_k=1)
    assert res.candidates[0].template_id == ada[1].id


# -- index in sync across Gallery instances and processes ------------------------------------------


def test_changes_through_another_connection_are_seen_before_the_next_search(tmp_path, fake_engine):
    data = tmp_path / "data"
    with Gallery.open(data, fake_engine) as g1, Gallery.open(data, FakeEngine()) as g2:
        probe = write_photo(tmp_path / "probe.png", seed=1, variant=5)
        assert top(g1, probe) == []  # index loaded (empty)
        g2.enroll_person("Ada", [write_photo(tmp_path / "a.png", seed=1)], watchlist=None)
        assert top(g1, probe) == [("Ada", True)]
        g1.enroll_person("Bob", [write_photo(tmp_path / "b.png", seed=2)], watchlist=None)  # own change: incremental
        g2.delete_person(g2.get_person("Ada").id)
        assert [n for n, _ in top(g1, probe)] == ["Bob"]
        assert g1.index_size == g2.index_size == 1


def test_reopened_gallery_finds_what_was_enrolled(tmp_path, fake_engine):
    data = tmp_path / "data"
    with Gallery.open(data, fake_engine) as g:
        g.enroll_person("Ada", [write_photo(tmp_path / "a.png", seed=1)], watchlist="staff", create=True)
    with Gallery.open(data, FakeEngine()) as g:
        assert top(g, write_photo(tmp_path / "p.png", seed=1, variant=2), watchlist="staff") == [("Ada", True)]


def test_templates_of_another_model_are_not_searched(gallery, tmp_path):
    gallery.enroll_person("Ada", [write_photo(tmp_path / "a.png", seed=1)], watchlist=None)
    pid = gallery.store.add_person("Old").id
    gallery.store.add_template(pid, model="other_v0", descriptor=fake_embedding(1), quality=0.5, photo_sha256="f" * 64)
    assert [n for n, _ in top(gallery, write_photo(tmp_path / "p.png", seed=1))] == ["Ada"]


def test_another_process_enrolment_is_seen(tmp_path, fake_engine):
    data = tmp_path / "data"
    with Gallery.open(data, fake_engine) as g:
        probe = write_photo(tmp_path / "probe.png", seed=4, variant=1)
        assert top(g, probe) == []
        np.save(tmp_path / "v.npy", fake_embedding(4))
        script = textwrap.dedent(f"""
            import numpy as np
            from sightline.gallery import GalleryStore
            with GalleryStore.open({str(data)!r}) as s, s.transaction():
                pid = s.add_person("Dee").id
                s.add_template(pid, model="fake_v1", descriptor=np.load({str(tmp_path / "v.npy")!r}),
                               quality=0.8, photo_sha256="d" * 64)
        """)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        assert top(g, probe) == [("Dee", True)]


# -- the real engine on the committed photos -------------------------------------------------------


@pytest.fixture(scope="module")
def real_gallery(tmp_path_factory, engine):
    from tests.conftest import GALLERY

    g = Gallery.open(tmp_path_factory.mktemp("real"), engine)
    report = g.enroll_folder(GALLERY, watchlist="demo", create=True)
    yield g, report
    g.close()


@pytest.mark.slow
def test_real_engine_enrol_and_search(real_gallery):
    from tests.conftest import PROBES

    g, report = real_gallery
    assert report.persons_enrolled == 5 and report.skipped == ()
    for probe, name in [
        ("obama1.jpg", "obama"),
        ("alex_lacamoire1.jpg", "alex_lacamoire"),
        ("johnsnow_test1.jpg", "kit_harington"),
    ]:
        (res,) = g.search(load_image(PROBES / probe), watchlist="demo")
        best, second = res.candidates[:2]
        assert (best.name, best.is_match) == (name, True), probe
        assert best.similarity > second.similarity + 0.05, probe
    # the two main faces (largest first); the photo may hold smaller ones too
    faces = g.search(load_image(PROBES / "obama_and_biden.jpg"))
    assert sorted(r.candidates[0].name for r in faces[:2]) == ["biden", "obama"]
    assert all(r.best_match is not None for r in faces[:2])


@pytest.mark.slow
def test_real_engine_round_trip_across_a_reopen(real_gallery, engine):
    from tests.conftest import PROBES

    g, _ = real_gallery
    with Gallery.open(g.store.path.parent, engine) as again:
        assert again.index_size == g.index_size == 9
        (res,) = again.search(load_image(PROBES / "obama1.jpg"), top_k=1)
        assert res.best_match is not None and res.best_match.name == "obama"
        v = again.verify(PROBES / "obama1.jpg", PROBES / "alex_lacamoire1.jpg")
        assert not v.same_person


@pytest.mark.slow
def test_real_engine_gallery_is_searchable_from_a_new_process(real_gallery):
    from tests.conftest import PROBES

    g, _ = real_gallery
    script = textwrap.dedent(f"""
        import sys
        from sightline.config import EngineConfig
        from sightline.gallery import Gallery
        from sightline.imaging import load_image
        from sightline.vision.engine import FaceEngine

        with Gallery.open({str(g.store.path.parent)!r}, FaceEngine.from_config(EngineConfig())) as g:
            (res,) = g.search(load_image({str(PROBES / "alex_lacamoire1.jpg")!r}), watchlist="demo", top_k=1)
            sys.stdout.write(res.best_match.name if res.best_match else "-")
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, timeout=120, capture_output=True, text=True)
    assert out.stdout == "alex_lacamoire"
