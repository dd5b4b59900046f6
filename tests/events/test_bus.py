"""EventBus: typed fan-out, bounded per-subscriber queues that drop the oldest and count, no blocking."""

from __future__ import annotations

import threading
import time

import pytest

from sightline.events.bus import EventBus
from sightline.types import Alert, Match, Sighting

MATCH = Match(person_id=1, name="Ada", watchlist="staff", similarity=0.95, threshold=0.93, est_fmr=1e-5)


def alert(track_id: int) -> Alert:
    return Alert("cam", track_id, MATCH, ts=2.0, frame_ts=1.0, xyxy=(0, 0, 10, 10), crop_jpeg=b"\xff\xd8")


def sighting(track_id: int) -> Sighting:
    return Sighting("cam", track_id, start_ts=0.0, end_ts=1.0, frames=3, quality=0.5)


def test_subscribers_get_the_kinds_they_asked_for_in_order():
    bus = EventBus()
    alerts, sightings, everything = bus.subscribe(Alert), bus.subscribe(Sighting), bus.subscribe()
    records = [alert(1), sighting(1), alert(2), "not a record"]
    assert [bus.publish(r) for r in records] == [2, 2, 2, 1]
    assert alerts.drain() == [records[0], records[2]]
    assert sightings.drain() == [records[1]]
    assert everything.drain() == records
    assert bus.published == 4


@pytest.mark.parametrize(
    ("maxsize", "published", "kept", "dropped"), [(3, 5, [2, 3, 4], 2), (3, 3, [0, 1, 2], 0), (1, 4, [3], 3)]
)
def test_a_full_queue_drops_the_oldest_and_counts(maxsize, published, kept, dropped):
    bus = EventBus()
    sub = bus.subscribe(Alert, maxsize=maxsize)
    for i in range(published):
        bus.publish(alert(i))
    assert [a.track_id for a in sub.drain()] == kept
    assert (sub.dropped, sub.delivered) == (dropped, published)


def test_a_slow_subscriber_neither_blocks_the_publisher_nor_starves_the_others():
    bus = EventBus()
    stuck = bus.subscribe(maxsize=10)  # never read
    fast = bus.subscribe(maxsize=100_000)
    t0 = time.perf_counter()
    for i in range(20_000):
        bus.publish(alert(i))
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0  # ~20 us per publish to two subscribers; a blocking put would hang here
    assert len(stuck) == 10 and stuck.dropped == 19_990
    assert [a.track_id for a in stuck.drain()] == list(range(19_990, 20_000))
    assert len(fast.drain()) == 20_000 and fast.dropped == 0


def test_get_waits_up_to_the_timeout_and_wakes_on_publish():
    bus = EventBus()
    sub = bus.subscribe(Alert)
    t0 = time.perf_counter()
    assert sub.get(timeout=0.05) is None
    assert time.perf_counter() - t0 >= 0.04
    assert sub.get(timeout=0) is None
    threading.Timer(0.05, bus.publish, args=(alert(7),)).start()
    got = sub.get(timeout=5.0)
    assert got is not None and got.track_id == 7


def test_close_unsubscribes_and_wakes_a_waiting_reader():
    bus = EventBus()
    sub = bus.subscribe()
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(sub.get(timeout=10.0)))
    reader.start()
    time.sleep(0.05)
    sub.close()
    reader.join(timeout=2.0)
    assert not reader.is_alive() and result == [None]
    assert bus.subscribers == 0 and sub.closed
    assert bus.publish(alert(1)) == 0


def test_concurrent_publishers_lose_nothing_but_counted_drops():
    bus = EventBus()
    sub = bus.subscribe(Alert, maxsize=500)
    n_threads, per_thread = 4, 2_000

    def publish_many(base: int) -> None:
        for i in range(per_thread):
            bus.publish(alert(base + i))

    threads = [threading.Thread(target=publish_many, args=(k * per_thread,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sub.drain()
    assert len(got) == 500
    assert sub.dropped + len(got) == sub.delivered == bus.published == n_threads * per_thread
    assert len({a.track_id for a in got}) == 500


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"maxsize": 0}, ValueError, r"maxsize must be in \[1, 1000000\] records, got 0"),
        ({"kind": "Alert"}, TypeError, "kind must be a class"),
    ],
)
def test_subscribe_checks(kwargs, error, message):
    with pytest.raises(error, match=message):
        EventBus().subscribe(**kwargs)
