"""Login, sessions, CSRF, bearer tokens, throttling, users and their audit trail, through the real app."""

from __future__ import annotations

import logging
import time

import pytest

from sightline.server.auth import SESSION_COOKIE, LoginThrottle, RateLimiter, SessionStore, UserError
from tests.server.conftest import PASSWORD


def test_login_sets_a_strict_httponly_cookie_and_me_answers(server):
    c = server.client()
    r = c.post("/api/auth/login", json={"username": "operator", "password": PASSWORD.format(role="operator")})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["role"] == "operator" and body["csrf_token"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain http in the test; https or secure_cookies turn it on
    me = c.get("/api/auth/me").json()
    assert me == {
        "id": server.user_ids["operator"],
        "username": "operator",
        "role": "operator",
        "csrf_token": body["csrf_token"],
        "via": "session",
    }


def test_secure_cookie_when_configured(make_server):
    srv = make_server(secure_cookies=True)
    r = srv.anon.post("/api/auth/login", json={"username": "admin", "password": PASSWORD.format(role="admin")})
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_password_is_401_audited_and_never_logged(server, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Wr0ng-but-secret-password"
    r = server.anon.post("/api/auth/login", json={"username": "admin", "password": secret})
    assert r.status_code == 401 and r.json() == {"detail": "wrong username or password"}
    r = server.anon.post("/api/auth/login", json={"username": "nobody", "password": secret})
    assert r.status_code == 401
    ok = server.anon.post("/api/auth/login", json={"username": "admin", "password": PASSWORD.format(role="admin")})
    assert ok.status_code == 200
    rows = server.audit_rows("auth.login")
    assert [(r["actor"], r["outcome"]) for r in rows] == [("admin", "failed"), ("nobody", "failed"), ("admin", "ok")]
    assert all(r["client"] for r in rows)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert secret not in logged and PASSWORD.format(role="admin") not in logged
    token = ok.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert token not in logged
    # nothing secret is stored either: the session row holds the token's sha256, not the token
    stored = server.services.gallery.store._conn().execute("SELECT token_sha256 FROM sessions").fetchall()
    assert stored and all(token not in r[0] for r in stored)


def test_login_throttled_after_repeated_failures(make_server):
    srv = make_server(login_max_failures=3, login_window_s=600)
    for _ in range(3):
        assert (
            srv.anon.post("/api/auth/login", json={"username": "admin", "password": "nope-nope-nope"}).status_code
            == 401
        )
    r = srv.anon.post("/api/auth/login", json={"username": "admin", "password": PASSWORD.format(role="admin")})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert srv.audit_rows("auth.login")[-1]["outcome"] == "throttled"


def test_throttle_and_rate_limiter_units():
    t = LoginThrottle(2, 10.0)
    keys = ["user:a", "client:x"]
    t.failed(keys, now=0.0)
    assert t.retry_after(keys, now=1.0) == 0
    t.failed(keys, now=1.0)
    assert t.retry_after(keys, now=2.0) == pytest.approx(8.0)  # the older failure leaves the window at 10
    assert t.retry_after(["client:x"], now=11.5) == 0  # the window passed
    t.failed(keys, now=20.0)
    t.succeeded("user:a")
    assert t.retry_after(["user:a"], now=20.0) == 0
    rl = RateLimiter(per_min=60, burst=2)
    assert rl.take("u", now=0.0) == 0 and rl.take("u", now=0.0) == 0
    assert rl.take("u", now=0.0) == pytest.approx(1.0)
    assert rl.take("u", now=1.0) == 0  # one token refilled after 1 s at 60/min
    assert rl.take("other", now=1.0) == 0  # per key


def test_cookie_requests_need_the_csrf_token_bearer_requests_do_not(server):
    no_csrf = server.client("supervisor", csrf=False)
    r = no_csrf.post("/api/watchlists", json={"name": "w1"})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    r = no_csrf.post("/api/watchlists", json={"name": "w1"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert no_csrf.get("/api/watchlists").status_code == 200  # safe methods need none
    assert server.client("supervisor").post("/api/watchlists", json={"name": "w1"}).status_code == 201
    r = server.anon.post("/api/watchlists", json={"name": "w2"}, headers=server.bearer("supervisor"))
    assert r.status_code == 201


def test_logout_ends_the_session(server):
    c = server.client("operator")
    assert c.post("/api/auth/logout").status_code == 204
    assert server.audit_rows("auth.logout")[-1]["actor"] == "operator"
    c.cookies.clear()
    assert c.get("/api/auth/me").status_code == 401


def test_sessions_expire_idle_and_absolute(server):
    users = server.services.users
    store = server.services.gallery.store
    sessions = SessionStore(store, idle_s=60, max_s=300)
    uid = server.user_ids["operator"]
    token, _csrf = sessions.create(uid)
    t0 = time.time()
    assert sessions.lookup(token, now=t0 + 30) is not None
    assert sessions.lookup(token, now=t0 + 85) is not None  # used at +30: idle timer restarted
    assert sessions.lookup(token, now=t0 + 85 + 61) is None  # idle too long
    token2, _ = sessions.create(uid)
    t1 = time.time()
    for dt in range(50, 300, 50):
        assert sessions.lookup(token2, now=t1 + dt) is not None
    assert sessions.lookup(token2, now=t1 + 301) is None  # absolute lifetime
    assert users.get(uid) is not None


def test_bad_bearer_token_is_401_and_revoked_token_stops_working(server):
    assert server.anon.get("/api/auth/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    c = server.client("operator")
    r = c.post("/api/tokens", json={"name": "integration"})
    assert r.status_code == 201
    tok = r.json()
    assert tok["token"].startswith("slt_")
    hdr = {"Authorization": f"Bearer {tok['token']}"}
    assert server.anon.get("/api/auth/me", headers=hdr).json()["via"] == "token"
    assert [t["name"] for t in c.get("/api/tokens").json()] == ["operator-token", "integration"]
    assert all("token" not in t for t in c.get("/api/tokens").json())
    # another user cannot revoke it
    assert server.client("supervisor").delete(f"/api/tokens/{tok['id']}").status_code == 404
    assert c.delete(f"/api/tokens/{tok['id']}").status_code == 204
    assert server.anon.get("/api/auth/me", headers=hdr).status_code == 401
    assert {r["action"] for r in server.audit_rows()} >= {"token.create", "token.revoke"}


def test_admin_manages_users_and_disabled_users_cannot_log_in(server):
    admin = server.client("admin")
    r = admin.post("/api/users", json={"username": "bob", "password": "short", "role": "operator"})
    assert r.status_code == 400 and "at least" in r.json()["detail"]
    r = admin.post("/api/users", json={"username": "bob", "password": "bob-password-1", "role": "wizard"})
    assert r.status_code == 422
    r = admin.post("/api/users", json={"username": "bob", "password": "bob-password-1", "role": "operator"})
    assert r.status_code == 201
    bob = r.json()
    assert "password" not in str(bob) and "hash" not in str(bob)
    assert (
        admin.post("/api/users", json={"username": "BOB", "password": "bob-password-1", "role": "operator"}).status_code
        == 409
    )
    assert (
        server.anon.post("/api/auth/login", json={"username": "bob", "password": "bob-password-1"}).status_code == 200
    )
    assert admin.patch(f"/api/users/{bob['id']}", json={"disabled": True}).json()["disabled"] is True
    assert (
        server.anon.post("/api/auth/login", json={"username": "bob", "password": "bob-password-1"}).status_code == 401
    )
    assert (
        admin.patch(f"/api/users/{bob['id']}", json={"role": "auditor", "disabled": False}).json()["role"] == "auditor"
    )
    assert admin.delete(f"/api/users/{bob['id']}").status_code == 204
    assert admin.delete(f"/api/users/{server.user_ids['admin']}").status_code == 409  # not yourself
    # the last enabled admin cannot be demoted
    r = admin.patch(f"/api/users/{server.user_ids['admin']}", json={"role": "operator"})
    assert r.status_code == 400 and "no enabled admin" in r.json()["detail"]
    actions = [r["action"] for r in server.audit_rows() if r["action"].startswith("user.")]
    assert actions == ["user.create", "user.update", "user.update", "user.delete"]


def test_password_rules():
    from sightline.server.auth import check_password_strength

    with pytest.raises(UserError):
        check_password_strength("123456789")
    with pytest.raises(UserError):
        check_password_strength("administrator", "Administrator")
    check_password_strength("long enough pass")


def test_passwords_are_stored_as_argon2id_hashes(server):
    rows = server.services.gallery.store._conn().execute("SELECT username, password_hash FROM users").fetchall()
    assert rows and all(h.startswith("$argon2id$") and PASSWORD.format(role=u) not in h for u, h in rows)
