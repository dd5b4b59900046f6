"""``sightline user ...`` / ``token create`` through the CLI, and ``sightline serve`` as a real process on a
real port: log in, call the API with a bearer token, open the live WebSocket, stop with SIGTERM; the log
never shows a password or token."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from sightline.cli.main import app


def _cli(data_dir: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args], input=stdin)


def test_user_and_token_commands(tmp_path):
    d = tmp_path / "data"
    r = _cli(d, "user", "add", "alice", "--role", "admin", "--password-stdin", "--json", stdin="alice-password-1\n")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["role"] == "admin"
    assert _cli(d, "user", "add", "bob", "--role", "admin", "--password-stdin", stdin="short\n").exit_code == 2
    assert _cli(d, "user", "add", "bob", "--role", "king", "--password-stdin", stdin="bob-password-1\n").exit_code == 2
    assert (
        _cli(d, "user", "add", "bob", "--role", "operator", "--password-stdin", stdin="bob-password-1\n").exit_code == 0
    )
    users = json.loads(_cli(d, "user", "list", "--json").stdout)
    assert [(u["username"], u["role"], u["disabled"]) for u in users] == [
        ("alice", "admin", False),
        ("bob", "operator", False),
    ]
    assert _cli(d, "user", "passwd", "bob", "--password-stdin", stdin="bob-password-2\n").exit_code == 0
    assert json.loads(_cli(d, "user", "disable", "bob", "--json").stdout)["disabled"] is True
    assert _cli(d, "user", "disable", "alice").exit_code == 2  # the last admin
    assert _cli(d, "user", "disable", "nobody").exit_code == 2
    r = _cli(d, "token", "create", "alice", "--name", "vms", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["token"].startswith("slt_")
    from sightline.gallery.store import GalleryStore

    with GalleryStore.open(d) as store:
        actions = [r[0] for r in store._conn().execute("SELECT action FROM audit_log ORDER BY seq")]
    assert actions == ["user.create", "user.create", "user.update", "user.update", "token.create"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_runs_a_real_server(tmp_path):
    d = tmp_path / "data"
    assert (
        _cli(d, "user", "add", "ops", "--role", "operator", "--password-stdin", stdin="ops-password-1\n").exit_code == 0
    )
    token = json.loads(_cli(d, "token", "create", "ops", "--name", "t", "--json").stdout)["token"]
    port = _free_port()
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps({"metrics_public": True, "session_idle_s": 600}))
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sightline.cli.main",
                "--data-dir",
                str(d),
                "serve",
                "--port",
                str(port),
                "--config",
                str(cfg),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        with httpx.Client(base_url=base) as c:
            r = c.post("/api/auth/login", json={"username": "ops", "password": "ops-password-1"})
            assert r.status_code == 200
            assert c.get("/api/auth/me").json()["username"] == "ops"
            assert c.post("/api/auth/logout").status_code == 403  # cookie session without CSRF header
        r = httpx.get(f"{base}/api/alerts", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == []
        assert r.headers["x-frame-options"] == "DENY"
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{port}/api/alerts/live?token={token}") as ws:
            ws.ping()
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "Sightline"
        assert "sightline_ws_clients_total 1" in httpx.get(f"{base}/metrics").text  # public by the config file
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "Sightline console: http://localhost:" in text
    assert token not in text and "ops-password-1" not in text
    assert "/api/alerts/live?token=***" in text  # the WebSocket handshake is logged, its token masked


@pytest.mark.slow
def test_demo_prepares_users_camera_and_clip(tmp_path, monkeypatch, capsys):
    from sightline.cli import demo
    from sightline.gallery.store import GalleryStore
    from sightline.server.auth import UserStore
    from sightline.video.cameras import CameraStore

    d = tmp_path / "demo"
    monkeypatch.setenv("SIGHTLINE_DATA_DIR", str(d))
    assert demo.main(["--no-serve", "--skip-tour"]) == 0
    out = capsys.readouterr().out
    creds = dict(line.split() for line in out.splitlines() if line.startswith("  demo-"))
    assert set(creds) == {"demo-admin", "demo-operator"}
    with GalleryStore.open(d) as store:
        users = UserStore(store)
        assert users.authenticate("demo-admin", creds["demo-admin"]).role == "admin"
        assert users.authenticate("demo-operator", "guess") is None
        cam = CameraStore(store).get("demo-cam").config
        assert cam.loop and Path(cam.url).stat().st_size > 10_000
        assert store.get_watchlist("demo").member_count == 5
        reasons = store._conn().execute("SELECT DISTINCT reason FROM audit_log WHERE action = 'person.enroll'")
        assert [r[0] for r in reasons] == ["demo"]  # the demo's enrollment is accounted for like any other


def test_serve_refuses_a_bad_config_file(tmp_path):
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps({"session_idle_s": -1}))
    r = _cli(tmp_path / "data", "serve", "--config", str(cfg))
    assert r.exit_code == 2 and "session_idle_s" in r.output
    cfg.write_text("[1, 2]")
    assert _cli(tmp_path / "data", "serve", "--config", str(cfg)).exit_code == 2
