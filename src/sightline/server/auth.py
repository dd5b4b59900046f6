"""Users, console sessions, API tokens and the role checks every route declares.

    users = UserStore(gallery.store)
    users.add("ada", "correct horse battery staple", "admin")     # argon2id hash, never the password
    @router.get("/api/persons")
    def persons(user: Annotated[CurrentUser, Depends(require_roles("admin", "supervisor", "operator"))]): ...

Roles (each route lists the roles it allows; admin is NOT implicitly allowed everywhere):
- admin: users and settings; supervisor: watchlists, persons, cameras; operator: live alerts, review,
  searches; auditor: the read-only audit view.

Credentials: a console login gets a random session token in an HttpOnly, SameSite=Strict cookie plus a
CSRF token that every cookie-authenticated unsafe request (POST/PUT/PATCH/DELETE) must echo in
``X-CSRF-Token``; an integration uses ``Authorization: Bearer <token>`` (no CSRF: a browser never adds
that header by itself). Only the sha256 of a session or API token is stored, so the database file alone
cannot be used to log in. Sessions expire after ``session_idle_s`` without use and ``session_max_s``
after login, whichever comes first. Passwords and tokens are never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import HTTPException, Request, WebSocket

from sightline.gallery.records import GalleryError, name_problem

if TYPE_CHECKING:
    from sightline.gallery.store import GalleryStore

logger = logging.getLogger(__name__)

Role = Literal["admin", "supervisor", "operator", "auditor"]
ROLES: tuple[Role, ...] = get_args(Role)
SESSION_COOKIE = "sightline_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Shortest accepted password, characters.
MIN_PASSWORD_LEN = 10

_hasher = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory profile


class UserError(GalleryError):
    """A user request that cannot be carried out (taken name, weak password, unknown role)."""


class UnknownUserError(UserError, LookupError):
    """A user id or name that does not exist."""


@dataclass(frozen=True)
class User:
    """A console or API user. created_at / last_login_at: epoch s."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: float
    last_login_at: float | None


@dataclass(frozen=True)
class CurrentUser:
    """Who is making a request. via: 'session' (cookie) or 'token' (bearer)."""

    id: int
    username: str
    role: Role
    via: Literal["session", "token"] = "session"
    csrf_token: str | None = None


@dataclass(frozen=True)
class ApiToken:
    """An API token's public record (the token itself is shown once, at creation). Times: epoch s."""

    id: int
    user_id: int
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """The argon2id hash of ``password`` (tens of ms and tens of MiB by design: slow for attackers)."""
    return (hasher or _hasher).hash(password)


def check_password_strength(password: str, username: str = "") -> None:
    """Raise ``UserError`` for a password shorter than ``MIN_PASSWORD_LEN`` or equal to the username."""
    if len(password) < MIN_PASSWORD_LEN:
        raise UserError(f"password must have at least {MIN_PASSWORD_LEN} characters")
    if username and password.strip().casefold() == username.strip().casefold():
        raise UserError("password must not be the username")


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role  # type: ignore[return-value]


_USER_COLS = "id, username, role, disabled, created_at, last_login_at"
_U_COLS = ", ".join("u." + c for c in _USER_COLS.split(", "))


def _user(r: tuple) -> User:
    return User(int(r[0]), str(r[1]), r[2], bool(r[3]), float(r[4]), r[5])


class UserStore:
    """The ``users`` table (schema 4): add, list, change and check users."""

    def __init__(self, store: GalleryStore, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        #: argon2id hasher; the default is the library's RFC 9106 profile. Hashes of other parameters
        #: still verify and are re-hashed with these at the next login.
        self.hasher = hasher or _hasher
        self._dummy_hash: str | None = None

    def add(self, username: str, password: str, role: str) -> User:
        """A new user; raises ``UserError`` for a taken name, a weak password or an unknown role."""
        username = username.strip()
        if not username or len(username) > 64 or any(c.isspace() or not c.isprintable() for c in username):
            raise UserError("username must be 1-64 printable characters without spaces")
        role = _check_role(role)
        check_password_strength(password, username)
        try:
            with self.store.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO users(username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                    (username, hash_password(password, self.hasher), role, time.time()),
                )
        except sqlite3.IntegrityError as e:
            raise UserError(f"user {username!r} already exists") from e
        logger.info("user %s added with role %s", username, role)
        user = self.get(int(cur.lastrowid or 0))
        assert user is not None
        return user

    def get(self, user_id: int) -> User | None:
        r = self.store._conn().execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if r is None else _user(r)

    def by_name(self, username: str) -> User | None:
        r = (
            self.store._conn()
            .execute(f"SELECT {_USER_COLS} FROM users WHERE username = ?", (username.strip(),))
            .fetchone()
        )
        return None if r is None else _user(r)

    def list(self) -> list[User]:
        return [_user(r) for r in self.store._conn().execute(f"SELECT {_USER_COLS} FROM users ORDER BY username")]

    def count(self, *, role: str | None = None, enabled_only: bool = True) -> int:
        sql, params = "SELECT count(*) FROM users WHERE 1", []
        if role is not None:
            sql += " AND role = ?"
            params.append(role)
        if enabled_only:
            sql += " AND disabled = 0"
        return int(self.store._conn().execute(sql, params).fetchone()[0])

    def update(
        self, user_id: int, *, role: str | None = None, disabled: bool | None = None, password: str | None = None
    ) -> User:
        """Change a user's role, disabled flag and/or password. Disabling a user or changing their password
        ends their sessions and revokes nothing else (their API tokens stop working while disabled).
        Refuses to leave the gallery without an enabled admin."""
        user = self.get(user_id)
        if user is None:
            raise UnknownUserError(f"no user with id {user_id}")
        if role is not None:
            role = _check_role(role)
        if password is not None:
            check_password_strength(password, user.username)
        with self.store.transaction() as conn:
            if role is not None:
                conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
            if disabled is not None:
                conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            if password is not None:
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(password, self.hasher), user_id)
                )
            if disabled or password is not None:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            if user.role == "admin" and self.count(role="admin") == 0:
                raise UserError("refused: this would leave no enabled admin")
        updated = self.get(user_id)
        assert updated is not None
        return updated

    def delete(self, user_id: int) -> None:
        """Delete a user with their sessions and tokens (the audit log keeps their name)."""
        with self.store.transaction() as conn:
            n = conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount
            if n == 0:
                raise UnknownUserError(f"no user with id {user_id}")
            if self.count(role="admin") == 0:
                raise UserError("refused: this would leave no enabled admin")

    def authenticate(self, username: str, password: str) -> User | None:
        """The enabled user with this name and password, else None. An unknown name costs one hash too,
        so the time taken does not tell which usernames exist."""
        row = (
            self.store._conn()
            .execute(f"SELECT {_USER_COLS}, password_hash FROM users WHERE username = ?", (username.strip(),))
            .fetchone()
        )
        if row is None:
            if self._dummy_hash is None:
                self._dummy_hash = hash_password(secrets.token_hex(16), self.hasher)
            with contextlib.suppress(VerificationError):
                self.hasher.verify(self._dummy_hash, password)
            return None
        user, stored = _user(row[:6]), str(row[6])
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user.disabled:
            return None
        with self.store.transaction() as conn:
            conn.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (time.time(), user.id))
            if self.hasher.check_needs_rehash(stored):
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(password, self.hasher), user.id)
                )
        return user


class SessionStore:
    """The ``sessions`` table: console logins. ``idle_s`` / ``max_s``: expiry after no use / after login, s."""

    def __init__(self, store: GalleryStore, *, idle_s: float, max_s: float) -> None:
        if idle_s <= 0 or max_s <= 0:
            raise ValueError(f"idle_s and max_s must be > 0 s, got {idle_s} and {max_s}")
        self.store = store
        self.idle_s = idle_s
        self.max_s = max_s

    def create(self, user_id: int, client: str | None = None) -> tuple[str, str]:
        """A new session; returns (session token for the cookie, CSRF token). Expired sessions are purged."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?", (now, now - self.idle_s))
            conn.execute(
                "INSERT INTO sessions(token_sha256, user_id, csrf_token, created_at, expires_at, last_seen_at, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_sha(token), user_id, csrf, now, now + self.max_s, now, client),
            )
        return token, csrf

    def lookup(self, token: str, *, now: float | None = None) -> tuple[User, str] | None:
        """(user, CSRF token) of a live session of an enabled user, refreshing its idle timer; else None
        (an expired session is deleted)."""
        now = time.time() if now is None else now
        key = _sha(token)
        with self.store.transaction() as conn:
            r = conn.execute(
                f"SELECT s.csrf_token, s.expires_at, s.last_seen_at, {_U_COLS} "
                "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = ?",
                (key,),
            ).fetchone()
            if r is None:
                return None
            csrf, expires_at, last_seen = r[0], float(r[1]), float(r[2])
            user = _user(r[3:])
            if now >= expires_at or now - last_seen >= self.idle_s or user.disabled:
                conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (key,))
                return None
            if now - last_seen > 5.0:  # spare the write lock on every request of a busy page
                conn.execute("UPDATE sessions SET last_seen_at = ? WHERE token_sha256 = ?", (now, key))
        return user, csrf

    def delete(self, token: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha(token),))


_TOKEN_COLS = "id, user_id, name, created_at, expires_at, last_used_at, revoked_at"


class TokenStore:
    """The ``api_tokens`` table: bearer tokens for integrations, owned by a user, revocable."""

    PREFIX = "slt_"

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

    def create(self, user_id: int, name: str, *, ttl_s: float | None = None) -> tuple[ApiToken, str]:
        """A new token for ``user_id``; returns (its record, the token). The token is not kept: show it once."""
        name = name.strip()
        if not name or len(name) > 100:
            raise UserError("a token needs a name of 1-100 characters")
        if (problem := name_problem(name, "a token")) is not None:
            raise UserError(problem)
        if ttl_s is not None and ttl_s <= 0:
            raise UserError(f"ttl_s must be > 0 s, got {ttl_s}")
        token = self.PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self.store.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise UnknownUserError(f"no user with id {user_id}")
            cur = conn.execute(
                "INSERT INTO api_tokens(user_id, name, token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (user_id, name, _sha(token), now, None if ttl_s is None else now + ttl_s),
            )
        rec = self.get(int(cur.lastrowid or 0))
        assert rec is not None
        return rec, token

    def get(self, token_id: int) -> ApiToken | None:
        r = self.store._conn().execute(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        return None if r is None else ApiToken(*r)

    def list(self, user_id: int) -> list[ApiToken]:
        rows = self.store._conn().execute(
            f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [ApiToken(*r) for r in rows]

    def revoke(self, user_id: int, token_id: int) -> bool:
        """Revoke one of ``user_id``'s tokens; False when they have no such (unrevoked) token."""
        with self.store.transaction() as conn:
            n = conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                (time.time(), token_id, user_id),
            ).rowcount
        return n > 0

    def lookup(self, token: str, *, now: float | None = None) -> User | None:
        """The enabled user owning this live (unrevoked, unexpired) token, else None."""
        now = time.time() if now is None else now
        r = (
            self.store._conn()
            .execute(
                f"SELECT t.id, t.expires_at, t.revoked_at, {_U_COLS} "
                "FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_sha256 = ?",
                (_sha(token),),
            )
            .fetchone()
        )
        if r is None or r[2] is not None or (r[1] is not None and now >= float(r[1])):
            return None
        user = _user(r[3:])
        if user.disabled:
            return None
        with self.store.transaction() as conn:
            conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, r[0]))
        return user


# ---- throttling -----------------------------------------------------------------------------------


class LoginThrottle:
    """Refuse logins for a key (a username, a client address) after ``max_failures`` failures within
    ``window_s`` seconds; a success clears the username's failures. In memory, per process."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError(f"max_failures must be >= 1 and window_s > 0 s, got {max_failures}, {window_s}")
        self.max_failures = max_failures
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        return q

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until a login for these keys is accepted again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = 0.0
            for k in keys:
                q = self._recent(k, now)
                if len(q) >= self.max_failures:
                    wait = max(wait, self.window_s - (now - q[-self.max_failures]))
            return wait

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._fails) > 100_000:  # bounded memory under a spray of usernames
                self._fails.clear()
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``per_min`` per minute."""

    def __init__(self, per_min: float, burst: int) -> None:
        if per_min <= 0 or burst < 1:
            raise ValueError(f"per_min must be > 0 and burst >= 1, got {per_min}, {burst}")
        self.rate_per_s = per_min / 60.0
        self.burst = float(burst)
        self._buckets: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: object, now: float | None = None) -> float:
        """Take one request for ``key``; returns 0 when allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s


# ---- request authentication and role checks --------------------------------------------------------


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def authenticate(conn: Request | WebSocket) -> CurrentUser | None:
    """Who sent this request or WebSocket handshake: a bearer token (header, or ``?token=`` for a
    WebSocket), else the session cookie; None when neither is valid. Cached on ``conn.state``."""
    if hasattr(conn.state, "user"):
        return conn.state.user
    services = conn.app.state.services
    user: CurrentUser | None = None
    token = _bearer(conn.headers.get("authorization"))
    if token is None and isinstance(conn, WebSocket):
        token = conn.query_params.get("token")
    if token is not None:
        u = services.tokens.lookup(token)
        if u is not None:
            user = CurrentUser(u.id, u.username, u.role, "token")
    else:
        cookie = conn.cookies.get(SESSION_COOKIE)
        if cookie:
            found = services.sessions.lookup(cookie)
            if found is not None:
                u, csrf = found
                user = CurrentUser(u.id, u.username, u.role, "session", csrf)
    conn.state.user = user
    return user


class RoleGuard:
    """The dependency ``require_roles`` returns: 401 without valid credentials, 403 for a role not in
    ``roles`` or (cookie sessions) an unsafe method without the right ``X-CSRF-Token``.

    ``public_if``: a ``ServerConfig`` flag name; when that flag is set, anonymous requests pass too
    (``CurrentUser`` is then None), e.g. ``metrics_public``."""

    def __init__(self, roles: tuple[Role, ...], public_if: str | None = None) -> None:
        self.roles = roles
        self.public_if = public_if

    def __call__(self, request: Request) -> CurrentUser:
        if self.public_if is not None and getattr(request.app.state.config, self.public_if, False):
            return authenticate(request)  # type: ignore[return-value]
        user = authenticate(request)
        if user is None:
            raise HTTPException(401, "not logged in", headers={"WWW-Authenticate": "Bearer"})
        if user.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not user.csrf_token or not hmac.compare_digest(sent.encode(), user.csrf_token.encode()):
                raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        if user.role not in self.roles:
            raise HTTPException(403, f"role {user.role!r} may not do this (allowed: {', '.join(self.roles)})")
        return user

    def __repr__(self) -> str:
        return f"require_roles{self.roles}"


def require_roles(*roles: Role, public_if: str | None = None) -> RoleGuard:
    """A FastAPI dependency returning the ``CurrentUser`` when their role is one of ``roles``."""
    if not roles or any(r not in ROLES for r in roles):
        raise ValueError(f"roles must be a non-empty subset of {ROLES}, got {roles}")
    return RoleGuard(tuple(roles), public_if)


def public() -> None:
    """The dependency of routes anyone may call (login, health): declares them public on purpose."""


#: Role sets used by the routes, named after the contract.
ALL_ROLES: tuple[Role, ...] = ROLES
READ_GALLERY: tuple[Role, ...] = ("admin", "supervisor", "operator")
WRITE_GALLERY: tuple[Role, ...] = ("admin", "supervisor")
SEARCHERS: tuple[Role, ...] = ("operator", "supervisor")
ALERT_READERS: tuple[Role, ...] = ("operator", "supervisor", "admin")
ALERT_DECIDERS: tuple[Role, ...] = ("operator", "supervisor")


class WsRoleGuard(RoleGuard):
    """``RoleGuard`` for WebSocket routes: credentials from the session cookie or a bearer token (header or
    ``?token=``); a cookie session must come from a page of this origin (``Origin`` host = ``Host``), so
    another site cannot open the socket with the user's cookie. Refuses the handshake with close code
    4401 (not logged in) or 4403 (role not allowed, foreign origin)."""

    def __call__(self, websocket: WebSocket) -> CurrentUser:  # type: ignore[override]
        from urllib.parse import urlsplit

        from fastapi import WebSocketException

        user = authenticate(websocket)
        if user is None:
            raise WebSocketException(4401, "not logged in")
        if user.via == "session":
            origin = websocket.headers.get("origin")
            if origin and urlsplit(origin).netloc != websocket.headers.get("host", ""):
                raise WebSocketException(4403, "cross-origin WebSocket refused")
        if user.role not in self.roles:
            raise WebSocketException(4403, f"role {user.role!r} may not do this")
        return user


def ws_require_roles(*roles: Role) -> WsRoleGuard:
    """``require_roles`` for WebSocket routes."""
    if not roles or any(r not in ROLES for r in roles):
        raise ValueError(f"roles must be a non-empty subset of {ROLES}, got {roles}")
    return WsRoleGuard(tuple(roles))
