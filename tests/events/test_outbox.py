"""Channels and the outbox on real SQLite files: rows queued in the alert's transaction, channel
validation and sealed secrets, claiming with leases between two stores of one file (as two processes
would), backoff, failure, retry; alert ids and sealed crops/embeddings in the event stores; the camera
worker publishing stored records with their ids."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sightline.config import CameraConfig, NotifyConfig
from sightline.events import EventBus, EventStores
from sightline.events.notify import (
    ChannelError,
    ChannelStore,
    DeliveryResult,
    Notifier,
    Outbox,
    backoff_delay,
)
from sightline.events.notify.outbox import _Job
from sightline.gallery import GalleryStore
from sightline.gallery.store import SEALED_MAGIC
from sightline.types import Alert, Match, Sighting
from tests.events.receivers import XorCipher

HOOK = "https://hooks.example.org/sightline/T0KEN-abcdef"


@pytest.fixture
def store(tmp_path: Path):
    s = GalleryStore.open(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def setup(store: GalleryStore) -> SimpleNamespace:
    person = store.add_person("Ada").id
    staff = store.create_watchlist("staff").id
    other = store.create_watchlist("other").id
    return SimpleNamespace(person=person, staff=staff, other=other, channels=ChannelStore(store))


def alert(person_id: int, watchlist: str = "staff", ts: float = 100.0) -> Alert:
    m = Match(person_id=person_id, name="Ada", watchlist=watchlist, similarity=0.95, threshold=0.93, est_fmr=2e-5)
    return Alert("door", 1, m, ts=ts, frame_ts=ts - 0.25, xyxy=(1.0, 2.0, 30.0, 40.0), crop_jpeg=b"\xff\xd8crop")


def outbox_rows(store: GalleryStore) -> list[tuple]:
    return store._conn().execute("SELECT alert_id, channel_id, status, attempts FROM outbox ORDER BY id").fetchall()


# ---- queueing ---------------------------------------------------------------------------------------


def test_an_alert_queues_one_delivery_per_enabled_channel_of_its_watchlist(store, setup):
    a = setup.channels.add(setup.staff, "webhook", HOOK)
    b = setup.channels.add(setup.staff, "apprise", "json://127.0.0.1:9/hook")
    setup.channels.add(setup.staff, "mqtt", "mqtt://127.0.0.1:1883/x", enabled=False)
    setup.channels.add(setup.other, "webhook", HOOK)
    alert_id = EventStores(store).add_alert(alert(setup.person, watchlist="STAFF"))  # names are case-insensitive
    assert outbox_rows(store) == [(alert_id, a.id, "pending", 0), (alert_id, b.id, "pending", 0)]


def test_no_delivery_is_queued_when_the_alert_is_not_stored(store, setup):
    setup.channels.add(setup.staff, "webhook", HOOK)
    with pytest.raises(sqlite3.IntegrityError):
        EventStores(store).add_alert(alert(setup.person + 99))  # no such person: the whole transaction rolls back
    assert outbox_rows(store) == []


def test_a_failing_caller_transaction_takes_the_alert_and_its_deliveries_with_it(store, setup):
    setup.channels.add(setup.staff, "webhook", HOOK)
    with pytest.raises(RuntimeError), store.transaction():
        EventStores(store).add_alert(alert(setup.person))
        raise RuntimeError("crash before commit")
    assert outbox_rows(store) == [] and EventStores(store).alerts.count() == 0


def test_deleting_a_channel_or_the_person_deletes_their_deliveries(store, setup):
    ch = setup.channels.add(setup.staff, "webhook", HOOK)
    setup.channels.add(setup.staff, "apprise", "json://127.0.0.1:9/hook")
    EventStores(store).add_alert(alert(setup.person))
    assert setup.channels.delete(ch.id) and len(outbox_rows(store)) == 1
    assert not setup.channels.delete(ch.id)
    store.delete_person(setup.person)
    assert outbox_rows(store) == []


# ---- channels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "target", "secret", "options", "message"),
    [
        ("sms", "x", None, None, "unknown channel kind 'sms'; valid kinds: webhook, apprise, mqtt"),
        ("webhook", "ftp://host/x", None, None, "http:// or https://"),
        ("webhook", "https:///nohost", None, None, "no host"),
        ("webhook", "http://host:99999/x", None, None, "not a valid URL"),
        ("webhook", "   ", None, None, "non-empty URL"),
        ("webhook", "https://h/" + "x" * 5000, None, None, "too long"),
        ("webhook", HOOK, None, {"include_crop": "maybe"}, "include_crop"),
        ("webhook", HOOK, None, {"colour": "red"}, "colour"),
        ("webhook", HOOK, None, ["not", "a", "dict"], "JSON object"),
        ("webhook", HOOK, "", None, "secret must be 1 to"),
        ("apprise", "no-scheme", None, None, "Apprise URL"),
        ("apprise", "nosuchservice://x/y", None, None, "Apprise does not understand"),
        ("apprise", "json://127.0.0.1/hook", "s", None, "takes no secret"),
        ("mqtt", "http://broker/topic", None, None, "mqtt:// or mqtts://"),
        ("mqtt", "mqtt://broker", None, None, "no topic"),
        ("mqtt", "mqtt://broker/a/#", None, None, "wildcards"),
        ("mqtt", "mqtt://broker/a?x=1", None, None, "no query"),
        ("mqtt", "mqtt://broker/a", None, {"qos": 3}, "qos"),
    ],
)
def test_bad_channels_are_refused_with_a_clear_error(store, setup, kind, target, secret, options, message):
    with pytest.raises(ChannelError) as exc:
        setup.channels.add(setup.staff, kind, target, secret=secret, options=options)
    assert message in str(exc.value)
    assert setup.channels.list() == []


def test_an_unknown_watchlist_is_refused(store, setup):
    with pytest.raises(ChannelError, match="no watchlist with id 999"):
        setup.channels.add(999, "webhook", HOOK)


def test_secrets_are_sealed_and_targets_redacted(store, setup):
    store.set_cipher(XorCipher())
    ch = setup.channels.add(setup.staff, "webhook", HOOK, secret="hmac-key", options={"include_crop": True})
    mq = setup.channels.add(setup.staff, "mqtt", "mqtt://bob:pa55word@broker:1884/home/alerts")
    raw = store._conn().execute("SELECT secret FROM channels WHERE id = ?", (ch.id,)).fetchone()[0]
    assert raw.startswith(SEALED_MAGIC) and b"hmac-key" not in raw
    assert setup.channels.secret(ch.id) == b"hmac-key" and setup.channels.secret(mq.id) is None
    listed = {c.id: c for c in setup.channels.list(setup.staff)}
    assert listed[ch.id].has_secret and listed[ch.id].options == {"include_crop": True}
    assert listed[ch.id].target_redacted == "https://hooks.example.org/…"
    assert listed[mq.id].target_redacted == "mqtt://bob:***@broker:1884/home/alerts"
    for c in listed.values():
        public = repr(c.public()) + repr(c)
        assert "T0KEN" not in public and "pa55word" not in public and "hmac-key" not in public
    assert setup.channels.list(setup.other) == []


def test_channels_can_be_paused(store, setup):
    ch = setup.channels.add(setup.staff, "webhook", HOOK)
    assert not setup.channels.set_enabled(ch.id, False).enabled
    EventStores(store).add_alert(alert(setup.person))
    assert outbox_rows(store) == []
    assert setup.channels.set_enabled(ch.id, True).enabled


# ---- claiming -----------------------------------------------------------------------------------------


def queue_alerts(store: GalleryStore, setup: SimpleNamespace, n: int) -> None:
    setup.channels.add(setup.staff, "webhook", HOOK)
    stores = EventStores(store)
    for i in range(n):
        stores.add_alert(alert(setup.person, ts=100.0 + i))


def test_two_stores_of_one_file_never_claim_the_same_delivery(tmp_path, store, setup):
    queue_alerts(store, setup, 40)
    other = GalleryStore.open(tmp_path / "data")  # a second process's view of the file
    got: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def claim_all(i: int, s: GalleryStore) -> None:
        ob = Outbox(s)
        barrier.wait()
        while claims := ob.claim(3, lease_s=60):
            got[i].extend(c.delivery_id for c in claims)

    try:
        threads = [threading.Thread(target=claim_all, args=(i, s)) for i, s in enumerate((store, other))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        other.close()
    assert len(got[0]) + len(got[1]) == 40
    assert set(got[0]).isdisjoint(got[1]) and len(set(got[0]) | set(got[1])) == 40


def test_a_lapsed_lease_is_claimed_again_and_the_stale_outcome_is_ignored(store, setup):
    queue_alerts(store, setup, 1)
    ob = Outbox(store)
    (first,) = ob.claim(5, lease_s=30, now=1e10)
    assert ob.claim(5, lease_s=30, now=1e10 + 29) == []  # leased
    (second,) = ob.claim(5, lease_s=30, now=1e10 + 31)  # the first worker died or stalled
    assert (first.delivery_id, first.attempt, second.attempt) == (second.delivery_id, 1, 2)
    assert not ob.mark_delivered(first)  # the stale worker cannot overwrite the current claim
    assert ob.mark_delivered(second)
    (d,) = ob.list_deliveries()
    assert (d.status, d.attempts, d.target) == ("delivered", 2, "https://hooks.example.org/…")


def test_failed_attempts_back_off_then_fail_and_can_be_retried(store, setup):
    queue_alerts(store, setup, 2)
    cfg = NotifyConfig(max_attempts=3, backoff_initial_s=10, backoff_max_s=15, backoff_jitter=0.0)
    n = Notifier(store, cfg)
    outcomes = []
    for attempt in range(1, 4):
        claims = n.outbox.claim(10, lease_s=60, now=1e10 + 1000 * attempt)  # far future: whatever is pending is due
        assert [c.attempt for c in claims] == [attempt, attempt]
        t0 = time.time()
        for c in claims:
            n._record(_Job(c, n.channels.get(c.channel_id)), DeliveryResult.retry("HTTP 503"))
        outcomes.append({(d.status, round(d.next_attempt_at - t0)) for d in n.list_deliveries()})
    # delays 10 s, then 20 s capped to 15 s; after the 3rd attempt: failed (the lease time stays)
    assert outcomes[:2] == [{("pending", 10)}, {("pending", 15)}]
    assert {status for status, _ in outcomes[2]} == {"failed"}
    failed = n.list_deliveries(status="failed")
    assert len(failed) == 2 and failed[0].last_error == "HTTP 503 (gave up after 3 attempts)"
    assert n.outbox.counts() == {"pending": 0, "delivered": 0, "failed": 2, "due": 0}
    assert n.retry(failed[0].id) and not n.retry(failed[0].id)  # only failed ones
    assert n.retry_failed() == 1
    assert n.outbox.counts()["pending"] == 2 and n.list_deliveries(status="pending")[0].attempts == 0


def test_a_permanent_answer_fails_at_once(store, setup):
    queue_alerts(store, setup, 1)
    n = Notifier(store, NotifyConfig())
    (c,) = n.outbox.claim(1, lease_s=60)
    n._record(_Job(c, n.channels.get(c.channel_id)), DeliveryResult.permanent("HTTP 404 Not Found"))
    (d,) = n.list_deliveries()
    assert (d.status, d.attempts, d.last_error) == ("failed", 1, "HTTP 404 Not Found")


def test_backoff_is_capped_exponential_with_bounded_jitter():
    cfg = NotifyConfig(backoff_initial_s=2, backoff_max_s=60, backoff_jitter=0.5)
    rng = random.Random(1)
    for attempt, full in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (50, 60)]:
        ds = [backoff_delay(attempt, cfg, rng) for _ in range(200)]
        assert full / 2 <= min(ds) and max(ds) <= full and max(ds) - min(ds) > full / 4


def test_list_deliveries_filters_and_checks_its_arguments(store, setup):
    queue_alerts(store, setup, 3)
    ob = Outbox(store)
    assert len(ob.list_deliveries(limit=2)) == 2
    first = ob.list_deliveries()[-1]
    assert [d.id for d in ob.list_deliveries(alert_id=first.alert_id)] == [first.id]
    assert ob.list_deliveries(status="delivered") == []
    with pytest.raises(ValueError, match="status must be one of"):
        ob.list_deliveries(status="lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be in"):
        ob.list_deliveries(limit=0)


def test_the_lease_must_outlast_the_timeout(store):
    with pytest.raises(ValueError, match=r"lease_s .* must exceed timeout_s"):
        Notifier(store, NotifyConfig(timeout_s=30, lease_s=20))


# ---- alert ids and sealed blobs in the event stores ---------------------------------------------------


def test_stored_records_carry_their_ids_and_blobs_are_sealed(store, setup):
    store.set_cipher(XorCipher())
    stores = EventStores(store)
    alert_id = stores.add_alert(alert(setup.person))
    emb = np.linspace(-1, 1, 8, dtype=np.float32)
    s = Sighting("door", 2, 1.0, 2.0, 3, 0.5, crop_jpeg=b"\xff\xd8face", embedding=emb)
    sighting_id = stores.add_sighting(s, model="m1")
    raw = store._conn().execute("SELECT crop_jpeg FROM alerts").fetchone()[0]
    raw_s = store._conn().execute("SELECT crop_jpeg, embedding FROM sightings").fetchone()
    assert raw.startswith(SEALED_MAGIC) and all(bytes(b).startswith(SEALED_MAGIC) for b in raw_s)
    got = stores.alerts.get(alert_id)
    assert got is not None and got.alert.id == alert_id and got.alert.crop_jpeg == b"\xff\xd8crop"
    assert stores.alerts.list()[0].alert.id == alert_id
    gs = stores.sightings.get(sighting_id)
    assert gs is not None and gs.sighting.id == sighting_id and gs.sighting.crop_jpeg == b"\xff\xd8face"
    np.testing.assert_array_equal(gs.sighting.embedding, emb)
    store.set_cipher(None)  # plain again for new rows; old ones still need the key
    with pytest.raises(Exception, match="no key is configured"):
        stores.alerts.get(alert_id)


def test_the_camera_worker_publishes_stored_records_with_their_ids(store, setup, engine):
    from sightline.video.worker import CameraWorker

    bus = EventBus()
    sub = bus.subscribe(maxsize=10)
    worker = CameraWorker(CameraConfig(id="door", url="x"), engine, None, bus, None, EventStores(store))  # type: ignore[arg-type]
    published = worker._emit(alert(setup.person))
    worker._emit(Sighting("door", 1, 1.0, 2.0, 3, 0.5))
    a, s = sub.drain()
    assert a is published and isinstance(a, Alert) and a.id == EventStores(store).alerts.list()[0].id
    assert isinstance(s, Sighting) and s.id == EventStores(store).sightings.list()[0].id
    # a record that could not be stored is still published, without an id
    bad = worker._emit(alert(setup.person + 99))
    assert bad.id is None and sub.drain() == [bad]


@pytest.mark.parametrize(
    ("kind", "target", "shown", "hidden"),
    [
        ("apprise", "tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ/12345", "tgram://", "ABCdefGHI"),
        ("apprise", "mailto://user:pa55word@example.org", "example.org", "pa55word"),
        ("apprise", "json://127.0.0.1:8080/hooks/T0KEN123?key=abc", "json://127.0.0.1:8080/…", "T0KEN123"),
        ("apprise", "ntfy://ntfy.example.org/secret-topic-name", "ntfy://ntfy.example.org/…", "secret-topic"),
        (
            "webhook",
            "https://user:pw@hooks.example.org:8443/a/T0KEN?sig=1",
            "https://hooks.example.org:8443/…",
            "T0KEN",
        ),
        ("mqtt", "mqtts://ha:pa55word@broker.lan/home/alerts", "mqtts://ha:***@broker.lan:8883/home/alerts", "pa55"),
    ],
)
def test_targets_are_redacted_for_display(store, setup, kind, target, shown, hidden):
    ch = setup.channels.add(setup.staff, kind, target)
    assert shown in ch.target_redacted and hidden not in ch.target_redacted
    assert hidden not in repr(ch) and hidden not in repr(ch.public())


def test_an_unparseable_apprise_url_is_not_logged(store, setup, caplog):
    caplog.set_level("DEBUG")
    with pytest.raises(ChannelError, match="Apprise does not understand"):
        setup.channels.add(setup.staff, "apprise", "tgram://bad/T0KEN-SECRET-123")
    assert "apprise" in caplog.text.lower() and "T0KEN-SECRET-123" not in caplog.text
