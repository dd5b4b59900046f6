"""``sightline watchlist channel ...`` and ``sightline notify ...`` on a real gallery file and a local receiver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.events import EventStores
from sightline.gallery import GalleryStore
from sightline.types import Alert, Match
from tests.events.receivers import Receiver

runner = CliRunner()


def cli(data: Path, *args: str, code: int = 0, env: dict | None = None) -> dict | list:
    res = runner.invoke(app, ["--data-dir", str(data), *args, "--json"], env=env)
    assert res.exit_code == code, res.output + repr(res.exception)
    return json.loads(res.stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    with GalleryStore.open(d) as s:
        s.add_person("Ada")
        s.create_watchlist("staff")
    return d


def raise_alert(data: Path) -> int:
    with GalleryStore.open(data) as s:
        m = Match(person_id=1, name="Ada", watchlist="staff", similarity=0.95, threshold=0.93, est_fmr=1e-5)
        return EventStores(s).add_alert(Alert("door", 1, m, ts=1.0, frame_ts=0.9, xyxy=(0, 0, 9, 9), crop_jpeg=b"x"))


def test_channel_add_list_remove(data, tmp_path):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("file-secret\n")
    hook = cli(
        data,
        "watchlist",
        "channel",
        "add",
        "staff",
        "webhook",
        "https://hooks.example.org/p/T0KEN",
        "--secret-file",
        str(secret_file),
        "-o",
        "include_crop=true",
    )
    assert (
        hook["target"] == "https://hooks.example.org/…"
        and hook["has_secret"]
        and hook["options"] == {"include_crop": True}
    )
    gen = cli(data, "watchlist", "channel", "add", "staff", "webhook", "https://h.example.org/", "--generate-secret")
    assert len(gen["secret"]) >= 32
    mq = cli(
        data,
        "watchlist",
        "channel",
        "add",
        "staff",
        "mqtt",
        "mqtt://u@broker/t",
        "--secret-env",
        "MQ_PW",
        env={"MQ_PW": "pw"},
    )
    listed = cli(data, "watchlist", "channel", "list", "staff")
    assert [c["id"] for c in listed] == [hook["id"], gen["id"], mq["id"]]
    text = json.dumps(listed)
    assert "T0KEN" not in text and "file-secret" not in text and gen["secret"] not in text and '"pw"' not in text
    with GalleryStore.open(data) as s:
        from sightline.events.notify import ChannelStore

        assert ChannelStore(s).secret(hook["id"]) == b"file-secret" and ChannelStore(s).secret(mq["id"]) == b"pw"
    assert cli(data, "watchlist", "channel", "disable", str(mq["id"]))["enabled"] is False
    assert cli(data, "watchlist", "channel", "remove", str(gen["id"])) == {"removed": gen["id"]}
    assert [c["id"] for c in cli(data, "watchlist", "channel", "list")] == [hook["id"], mq["id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "nope", "webhook", "https://h/"], "no watchlist named 'nope'"),
        (["add", "staff", "pager", "https://h/"], "unknown channel kind 'pager'"),
        (["add", "staff", "webhook", "gopher://h/"], "http:// or https://"),
        (["add", "staff", "webhook", "https://h/", "-o", "novalue"], "--option must be KEY=VALUE"),
        (["add", "staff", "webhook", "https://h/", "--secret-env", "SIGHTLINE_TEST_UNSET_VAR"], "is not set"),
        (["add", "staff", "webhook", "https://h/", "--secret-env", "A", "--generate-secret"], "at most one"),
        (["remove", "42"], "no channel with id 42"),
        (["list", "nope"], "no watchlist named 'nope'"),
    ],
)
def test_channel_errors_are_clear(data, args, message):
    out = cli(data, "watchlist", "channel", *args, code=2)
    assert message in out["error"]


def test_notify_status_retry_and_run(data):
    with Receiver(statuses=[400]) as recv:
        cli(data, "watchlist", "channel", "add", "staff", "webhook", recv.url)
        alert_id = raise_alert(data)
        st = cli(data, "notify", "status")
        assert st["counts"] == {"pending": 1, "delivered": 0, "failed": 0, "due": 1}
        run = cli(data, "notify", "run", "--once")
        assert (run["delivered"], run["failed"]) == (0, 1)
        (d,) = cli(data, "notify", "status", "--status", "failed")["deliveries"]
        assert (d["alert_id"], d["last_error"], d["target"]) == (alert_id, "HTTP 400 Bad Request", recv.url)
        assert "error" in cli(data, "notify", "retry", code=2)
        assert cli(data, "notify", "retry", str(d["id"])) == {"queued": 1}
        assert "has not failed" in cli(data, "notify", "retry", str(d["id"]), code=2)["error"]
        run = cli(data, "notify", "run", "--duration", "0.5", "--poll", "0.05")
        assert run["delivered"] == 1 and run["outbox"]["delivered"] == 1
        assert len(recv.received()) == 2
        assert cli(data, "notify", "retry", "--all-failed") == {"queued": 0}
    assert "must be one of" in cli(data, "notify", "status", "--status", "lost", code=2)["error"]


def test_notify_bench_prints_its_figures(tmp_path):
    res = runner.invoke(app, ["notify", "bench", "--alerts", "10", "--channels", "2", "--concurrency", "1,2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["queued_deliveries"] == 20 and set(out["alert_add_ms"]) == {"0_channels", "2_channels"}
    assert [(d["concurrency"], d["deliveries"], d["failed"]) for d in out["drain"]] == [(1, 20, 0), (2, 20, 0)]
    bad = runner.invoke(app, ["notify", "bench", "--concurrency", "0"])
    assert bad.exit_code == 2 and "must be in [1, 64]" in bad.stdout
