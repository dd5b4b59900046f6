"""Fixtures for the server tests: the real app over a real SQLite file, one user per role.

``server`` builds ``Services`` on a fresh data dir (the fake engine of the gallery tests unless a test
asks for the real one), runs ``create_app`` inside Starlette's ``TestClient`` (lifespan included) and
creates a user and an API token for every role. ``Server.client(role)`` is a client logged in with a
cookie session (its CSRF token is sent on unsafe requests); ``Server.bearer(role)`` the headers of that
role's API token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from sightline.config import ServerConfig
from sightline.server.app import create_app
from sightline.server.auth import ROLES
from sightline.server.services import Services
from tests.gallery.conftest import FakeEngine

PASSWORD = "pw-for-tests-{role}-123"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class Server:
    """A running app and its users. ``tokens[role]``: that role's bearer token."""

    config: ServerConfig
    services: Services
    app: Any
    anon: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    _clients: list[TestClient] = field(default_factory=list)

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def client(self, role: str | None = None, *, csrf: bool = True) -> TestClient:
        """A new client; logged in as ``role``'s user with a cookie session when given."""
        c = TestClient(self.app, base_url="http://testserver")
        self._clients.append(c)
        if role is not None:
            r = c.post("/api/auth/login", json={"username": role, "password": PASSWORD.format(role=role)})
            assert r.status_code == 200, r.text
            if csrf:
                c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def audit_rows(self, action: str | None = None) -> list[dict[str, Any]]:
        """Audit entries (oldest first), read with SQL from the gallery file."""
        conn = self.services.gallery.store._conn()
        sql = "SELECT actor, action, target, reason, client, outcome, details FROM audit_log"
        rows = conn.execute(
            sql + (" WHERE action = ?" if action else "") + " ORDER BY seq", (action,) if action else ()
        )
        keys = ("actor", "action", "target", "reason", "client", "outcome", "details")
        return [dict(zip(keys, r, strict=True)) for r in rows]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``make_server(engine=None, **ServerConfig fields)``."""
    started: list[tuple[TestClient, Server]] = []

    def make(engine: Any = None, **overrides: Any) -> Server:
        overrides.setdefault("start_cameras", False)
        cfg = ServerConfig(data_dir=tmp_path / f"data{len(started)}", **overrides)
        services = Services.open(cfg, engine=engine if engine is not None else FakeEngine())
        services.users.hasher = CHEAP_HASHER  # argon2id still, with test-sized cost: the suite stays fast
        app = create_app(cfg, services)
        anon = TestClient(app, base_url="http://testserver")
        anon.__enter__()  # runs the lifespan (background work) until the fixture ends
        srv = Server(cfg, services, app, anon)
        for role in ROLES:
            u = services.users.add(role, PASSWORD.format(role=role), role)
            srv.user_ids[role] = u.id
            srv.tokens[role] = services.tokens.create(u.id, f"{role}-token")[1]
        started.append((anon, srv))
        return srv

    yield make
    for anon, srv in started:
        for c in srv._clients:
            c.close()
        anon.__exit__(None, None, None)
        srv.services.close()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()
