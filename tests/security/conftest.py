"""Fixtures of the hardening tests: the bad-input corpus written to disk, and helpers to start a real
``sightline serve`` process on a free port over a temp data dir (used by the crash-safety tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.badinputs import full_corpus

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every corpus entry written as a file (names as in the corpus, undecodable bytes included)."""
    d = tmp_path_factory.mktemp("badinputs")
    for e in full_corpus():
        (d / e.name).write_bytes(e.data)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(data_dir: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``sightline ARGS`` in a new process over ``data_dir``."""
    env = {**os.environ, "SIGHTLINE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sightline.cli.main", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@dataclass
class ServeProcess:
    """A ``sightline serve`` subprocess. ``url``: its base URL; ``log``: where its output goes."""

    proc: subprocess.Popen
    url: str
    log: Path

    def client(self, token: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs (no lifespan exit, no atexit, no SQLite close)."""
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_serve(data_dir: Path, log: Path, *, cameras: bool = True, ready_timeout: float = 90) -> ServeProcess:
    """Start ``sightline serve`` on a free port and wait until /healthz answers."""
    port = free_port()
    env = {**os.environ, "SIGHTLINE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "sightline.cli.main", "serve", "--port", str(port)]
    args.append("--cameras" if cameras else "--no-cameras")
    fh = log.open("ab")
    proc = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    fh.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"sightline serve exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return ServeProcess(proc, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"sightline serve did not answer within {ready_timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator:
    """``serve_factory(data_dir, cameras=True)`` -> a started ServeProcess; every one is stopped at the end."""
    started: list[ServeProcess] = []

    def make(data_dir: Path, *, cameras: bool = True) -> ServeProcess:
        sp = start_serve(data_dir, tmp_path / f"serve{len(started)}.log", cameras=cameras)
        started.append(sp)
        return sp

    yield make
    for sp in started:
        sp.stop()


# -- in-process app (real create_app over a real SQLite file) ------------------------------------------

PASSWORD = "pw-for-security-tests-{role}-123"


@dataclass
class Api:
    """``create_app`` over a fresh data dir inside Starlette's TestClient (lifespan run), one user and one
    bearer token per role. ``client`` does not raise server exceptions: a crash shows as a 500 response."""

    services: object
    app: object
    client: object
    tokens: dict[str, str]

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def open_api(data_dir: Path, engine: object, **overrides: object) -> Api:
    from fastapi.testclient import TestClient

    from sightline.config import ServerConfig
    from sightline.server.app import create_app
    from sightline.server.auth import ROLES
    from sightline.server.services import Services

    overrides.setdefault("start_cameras", False)
    overrides.setdefault("search_rate_per_min", 100_000)
    overrides.setdefault("search_burst", 10_000)
    cfg = ServerConfig(data_dir=data_dir, **overrides)
    services = Services.open(cfg, engine=engine)
    app = create_app(cfg, services)
    client = TestClient(app, base_url="http://testserver", raise_server_exceptions=False)
    client.__enter__()
    tokens = {}
    for role in ROLES:
        u = services.users.add(role, PASSWORD.format(role=role), role)
        tokens[role] = services.tokens.create(u.id, f"{role}-token")[1]
    return Api(services, app, client, tokens)


def close_api(api: Api) -> None:
    api.client.__exit__(None, None, None)
    api.services.close()
