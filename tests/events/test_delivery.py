"""End-to-end deliveries to real receivers started by the tests: webhooks and Apprise json:// to a local
HTTP server, MQTT to a real mosquitto broker; a receiver that is down at first gets the alert once it is
back; pending deliveries survive a restart and are sent by the next process; two notifiers on one file
deliver each alert once."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from sightline.config import NotifyConfig
from sightline.events import EventStores
from sightline.events.notify import ChannelStore, Notifier
from sightline.events.notify.webhook import verify_signature
from sightline.gallery import GalleryStore
from sightline.types import Alert, Match
from tests.events.receivers import Mosquitto, Receiver, free_port, have_mosquitto, wait_until

FAST = NotifyConfig(
    poll_interval_s=0.05, timeout_s=3, lease_s=10, backoff_initial_s=0.1, backoff_max_s=0.3, max_attempts=50
)
CROP = b"\xff\xd8\xff\xe0 face crop \xff\xd9"


@pytest.fixture
def env(tmp_path: Path):
    store = GalleryStore.open(tmp_path / "data")
    person = store.add_person("Ada Lovelace").id
    staff = store.create_watchlist("staff").id
    yield SimpleNamespace(
        store=store, person=person, staff=staff, channels=ChannelStore(store), stores=EventStores(store), tmp=tmp_path
    )
    store.close()


def raise_alert(env: SimpleNamespace, ts: float = 1_700_000_000.0, track: int = 7) -> int:
    m = Match(
        person_id=env.person, name="Ada Lovelace", watchlist="staff", similarity=0.953, threshold=0.93, est_fmr=2e-5
    )
    a = Alert("door", track, m, ts=ts, frame_ts=ts - 0.2, xyxy=(10.0, 20.0, 110.0, 140.0), crop_jpeg=CROP, quality=0.8)
    return env.stores.add_alert(a)


def statuses(n: Notifier) -> list[str]:
    return [d.status for d in n.list_deliveries()]


# ---- webhook --------------------------------------------------------------------------------------------


def test_webhook_posts_signed_json(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "webhook", f"{recv.url}/hook?token=abc", secret="k3y")
        alert_id = raise_alert(env)
        n = Notifier(env.store, FAST)
        assert n.deliver_due() == 1
        (req,) = recv.received()
    assert req.path == "/hook?token=abc"
    expected = "sha256=" + hmac.new(b"k3y", req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-sightline-signature"] == expected
    assert verify_signature(b"k3y", req.body, expected)
    assert not verify_signature(b"other", req.body, expected) and not verify_signature(
        b"k3y", req.body + b" ", expected
    )
    assert not verify_signature(b"k3y", req.body, None)
    doc = req.json()
    (d,) = n.list_deliveries()
    assert req.headers["x-sightline-delivery"] == str(d.id) == str(doc["delivery_id"])
    assert abs(int(req.headers["x-sightline-timestamp"]) - doc["sent_at"]) <= 1
    assert doc["alert_id"] == alert_id and doc["attempt"] == 1 and doc["event"] == "alert"
    assert (doc["person_name"], doc["watchlist"], doc["camera_id"], doc["similarity"]) == (
        "Ada Lovelace",
        "staff",
        "door",
        0.953,
    )
    assert doc["meaning"] == "about 1 in 50,000 strangers score this high"
    assert "crop_jpeg_b64" not in doc  # no face crop unless asked for
    assert (d.status, d.attempts, d.last_error) == ("delivered", 1, None)


def test_webhook_sends_the_crop_when_asked_and_no_signature_without_secret(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "webhook", recv.url, options={"include_crop": True})
        raise_alert(env)
        Notifier(env.store, FAST).deliver_due()
        (req,) = recv.received()
    assert base64.b64decode(req.json()["crop_jpeg_b64"]) == CROP
    assert "x-sightline-signature" not in req.headers


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (404, "failed", "HTTP 404 Not Found"),
        (401, "failed", "HTTP 401 Unauthorized"),
        (500, "pending", "HTTP 500 Internal Server Error"),
        (429, "pending", "HTTP 429 Too Many Requests"),
        (408, "pending", "HTTP 408 Request Timeout"),
        (302, "pending", "HTTP 302 Found"),
    ],
)
def test_webhook_answers_decide_between_retry_and_permanent_failure(env, code, status, error):
    with Receiver(statuses=[code]) as recv:
        env.channels.add(env.staff, "webhook", recv.url)
        raise_alert(env)
        n = Notifier(env.store, FAST)
        n.deliver_due()
    (d,) = n.list_deliveries()
    assert (d.status, d.attempts, d.last_error) == (status, 1, error)


def test_retry_after_is_honoured(env):
    with Receiver(statuses=[429], headers={"Retry-After": "120"}) as recv:
        env.channels.add(env.staff, "webhook", recv.url)
        raise_alert(env)
        n = Notifier(env.store, FAST)
        n.deliver_due()
    (d,) = n.list_deliveries()
    assert d.status == "pending" and d.next_attempt_at - d.created_at >= 119


def test_a_receiver_that_is_down_gets_the_alert_when_it_comes_back(env):
    port = free_port()
    env.channels.add(env.staff, "webhook", f"http://127.0.0.1:{port}/hook", secret="k")
    alert_id = raise_alert(env)
    with Notifier(env.store, FAST) as n:
        assert wait_until(lambda: n.stats.retried >= 2)  # refused twice, retried with backoff
        d = n.list_deliveries()[0]
        assert d.status == "pending" and "ConnectError" in (d.last_error or "")
        with Receiver(port=port) as recv:
            assert wait_until(lambda: statuses(n) == ["delivered"])
            reqs = recv.received()
    assert [r.json()["alert_id"] for r in reqs] == [alert_id]
    assert reqs[0].json()["attempt"] == n.list_deliveries()[0].attempts >= 3
    assert n.stats.delivered == 1 and n.stats.retried >= 2 and not n.running


def test_pending_deliveries_survive_a_restart_and_are_sent_by_the_next_process(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "webhook", recv.url, secret="k")
        alert_id = raise_alert(env)  # stored and queued; this "process" ends without notifying
        env.store.close()
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "sightline.cli.main",
                "--data-dir",
                str(env.tmp / "data"),
                "notify",
                "run",
                "--once",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["delivered"] == 1 and out["outbox"]["pending"] == 0
        assert [r.json()["alert_id"] for r in recv.received()] == [alert_id]


def test_two_notifiers_on_one_file_deliver_each_alert_once(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "webhook", recv.url)
        ids = [raise_alert(env, ts=1_700_000_000.0 + i, track=i) for i in range(30)]
        other = GalleryStore.open(env.tmp / "data")
        cfg = FAST.model_copy(update={"concurrency": 3})
        try:
            with Notifier(env.store, cfg) as a, Notifier(other, cfg) as b:
                assert wait_until(lambda: a.outbox.counts()["delivered"] == 30)
            assert a.stats.delivered + b.stats.delivered == 30
        finally:
            other.close()
        got = sorted(r.json()["alert_id"] for r in recv.received())
    assert got == ids  # every alert exactly once


def test_a_running_notifier_delivers_new_alerts_and_retried_failures(env):
    with Receiver(statuses=[410]) as recv, Notifier(env.store, FAST) as n:
        env.channels.add(env.staff, "webhook", recv.url)
        raise_alert(env)
        n.wake()
        assert wait_until(lambda: statuses(n) == ["failed"])
        assert n.retry_failed() == 1
        assert wait_until(lambda: statuses(n) == ["delivered"])
        assert len(recv.received()) == 2


# ---- apprise ------------------------------------------------------------------------------------------


def test_apprise_json_posts_title_and_body(env, caplog):
    with Receiver() as recv:
        target = f"json://127.0.0.1:{recv.port}/apprise/SECRETTOKEN123"
        ch = env.channels.add(env.staff, "apprise", target)
        alert_id = raise_alert(env)
        caplog.set_level("DEBUG", logger="sightline")
        Notifier(env.store, FAST).deliver_due()
        (req,) = recv.received()
    doc = req.json()
    assert req.path == "/apprise/SECRETTOKEN123"
    assert doc["title"] == "Sightline: Ada Lovelace on door"
    assert "Ada Lovelace (watchlist staff) seen on camera door at 2023-11-14 22:13:20 UTC" in doc["message"]
    assert "Similarity 0.953 (threshold 0.930): about 1 in 50,000 strangers score this high" in doc["message"]
    assert f"Alert #{alert_id}" in doc["message"]
    assert "SECRETTOKEN123" not in ch.target_redacted and "SECRETTOKEN123" not in caplog.text
    assert "delivered via channel" in caplog.text


def test_apprise_attaches_the_crop_when_asked(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "apprise", f"json://127.0.0.1:{recv.port}/x", options={"include_crop": True})
        raise_alert(env)
        Notifier(env.store, FAST).deliver_due()
        (req,) = recv.received()
    (att,) = req.json()["attachments"]
    assert (att["filename"], att["mimetype"], base64.b64decode(att["base64"])) == ("face.jpg", "image/jpeg", CROP)


def test_apprise_ntfy_to_a_local_server(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "apprise", f"ntfy://127.0.0.1:{recv.port}/door-alerts")
        raise_alert(env)
        n = Notifier(env.store, FAST)
        n.deliver_due()
        (req,) = recv.received()
    doc = req.json()
    assert doc["topic"] == "door-alerts" and doc["title"] == "Sightline: Ada Lovelace on door"
    assert "Ada Lovelace (watchlist staff)" in doc["message"] and statuses(n) == ["delivered"]


def test_apprise_failures_retry(env):
    with Receiver(statuses=[500]) as recv:
        env.channels.add(env.staff, "apprise", f"json://127.0.0.1:{recv.port}/x")
        raise_alert(env)
        n = Notifier(env.store, FAST)
        n.deliver_due()
    (d,) = n.list_deliveries()
    assert d.status == "pending" and d.last_error.startswith("Apprise reported a failed notification")


# ---- mqtt ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def mqtt_subscriber(port: int, topic: str, auth: tuple[str, str] | None = None) -> Iterator[list[bytes]]:
    """A real MQTT client subscribed (QoS 1) to ``topic`` on the local broker at ``port``; yields the list of
    payloads it receives, once the broker has confirmed the subscription."""
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    if auth is not None:
        sub.username_pw_set(*auth)
    sub.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, msg: got.append(msg.payload)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        yield got
    finally:
        sub.disconnect()
        sub.loop_stop()


@pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")
def test_mqtt_publishes_json_to_a_real_broker(env):
    with Mosquitto(env.tmp) as broker, mqtt_subscriber(broker.port, "home/sightline/#") as got:
        env.channels.add(env.staff, "mqtt", f"mqtt://127.0.0.1:{broker.port}/home/sightline/alerts")
        alert_id = raise_alert(env)
        n = Notifier(env.store, FAST)
        n.deliver_due()
        assert statuses(n) == ["delivered"]
        assert wait_until(lambda: len(got) == 1, 10)
    doc = json.loads(got[0])
    assert (doc["alert_id"], doc["person_name"], doc["delivery_id"]) == (
        alert_id,
        "Ada Lovelace",
        n.list_deliveries()[0].id,
    )


@pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")
def test_mqtt_password_from_the_sealed_secret_and_a_refused_login(env):
    with (
        Mosquitto(env.tmp, users={"ha": "s3cret"}) as broker,
        mqtt_subscriber(broker.port, "alerts", auth=("ha", "s3cret")) as got,
    ):
        good = env.channels.add(env.staff, "mqtt", f"mqtt://ha@127.0.0.1:{broker.port}/alerts", secret="s3cret")
        bad = env.channels.add(env.staff, "mqtt", f"mqtt://ha:wrong@127.0.0.1:{broker.port}/alerts")
        raise_alert(env)
        n = Notifier(env.store, FAST)
        n.deliver_due()
        assert wait_until(lambda: len(got) == 1, 10)
    by_channel = {d.channel_id: d for d in n.list_deliveries()}
    assert by_channel[good.id].status == "delivered"
    assert by_channel[bad.id].status == "pending" and "refused the connection" in by_channel[bad.id].last_error
    assert "wrong" not in by_channel[bad.id].target


def test_mqtt_broker_down_is_retried(env):
    env.channels.add(env.staff, "mqtt", f"mqtt://127.0.0.1:{free_port()}/alerts")
    raise_alert(env)
    n = Notifier(env.store, FAST)
    n.deliver_due()
    (d,) = n.list_deliveries()
    assert d.status == "pending" and "cannot connect to the broker" in (d.last_error or "")


def test_a_published_alert_wakes_the_notifier_without_waiting_for_the_poll(env):
    from dataclasses import replace

    from sightline.events import EventBus

    bus = EventBus()
    slow_poll = FAST.model_copy(update={"poll_interval_s": 60.0})
    with Receiver() as recv, Notifier(env.store, slow_poll, bus=bus) as n:
        env.channels.add(env.staff, "webhook", recv.url)
        assert wait_until(lambda: bus.subscribers == 1)
        alert_id = raise_alert(env)  # stored and queued, as the camera worker does before publishing
        stored = env.stores.alerts.get(alert_id)
        bus.publish(replace(stored.alert, id=alert_id))
        assert wait_until(lambda: statuses(n) == ["delivered"], timeout=20)  # well before the 60 s poll
    assert bus.subscribers == 0 and len(recv.received()) == 1


def test_a_notifier_can_be_stopped_and_started_again(env):
    with Receiver() as recv:
        env.channels.add(env.staff, "webhook", recv.url)
        n = Notifier(env.store, FAST)
        n.start()
        n.start()  # no-op while running
        n.stop()
        n.stop()  # idempotent
        assert not n.running
        raise_alert(env)
        with n:
            assert n.running and wait_until(lambda: statuses(n) == ["delivered"])
        assert not n.running and len(recv.received()) == 1
