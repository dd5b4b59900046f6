"""``sightline serve`` (the console and HTTP API), ``sightline user add|list|passwd|disable`` and
``sightline token create``.

There is no default password anywhere: the first admin is created with
``sightline user add --role admin NAME`` (the password is asked twice, or read from stdin with
``--password-stdin``). Passwords and tokens are never logged; a token is printed once.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sightline.cli.output import console, emit, err_console, fail

if TYPE_CHECKING:
    from sightline.cli.main import CliState
    from sightline.server.auth import User

user_app = typer.Typer(
    help="Console and API users (argon2 password hashes; no default password).", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens for integrations (Authorization: Bearer ...).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
_TOKEN_RE = re.compile(r"(token=)[^&\s\"]+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Mask ``token=...`` query values (WebSocket bearer tokens) in log records, e.g. uvicorn's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(_TOKEN_RE.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _TOKEN_RE.sub(r"\1***", record.msg)
        return True


def _state(ctx: typer.Context) -> CliState:
    return ctx.find_root().obj


def _users(state: CliState):
    from sightline.gallery.store import GalleryStore
    from sightline.server.auth import TokenStore, UserStore

    store = GalleryStore.open(state.settings.data_dir)
    return store, UserStore(store), TokenStore(store)


def _audit(store: Any, action: str, target: str, details: dict[str, Any] | None = None) -> None:
    import getpass

    from sightline.governance.audit import AuditLog

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    AuditLog(store).record(f"cli:{who}", action, target=target, client="cli", details=details)


def _read_password(password_stdin: bool, as_json: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        pw = line.rstrip("\r\n")
        if not pw:
            fail("no password on stdin", as_json=as_json)
        return pw
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: use --password-stdin", as_json=as_json)
    pw = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return pw


def _user_json(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "role": u.role,
        "disabled": u.disabled,
        "created_at": u.created_at,
        "last_login_at": u.last_login_at,
    }


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name (no spaces).")],
    role: Annotated[str, typer.Option(help="admin, supervisor, operator or auditor.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (the first admin is made this way)."""
    from sightline.server.auth import UserError

    store, users, _ = _users(_state(ctx))
    try:
        pw = _read_password(password_stdin, as_json)
        try:
            u = users.add(username, pw, role)
        except UserError as e:
            fail(str(e), as_json=as_json)
        _audit(store, "user.create", f"user:{u.id}", {"username": u.username, "role": u.role})
    finally:
        store.close()
    emit(as_json, _user_json(u), lambda: console.print(f"user [bold]{u.username}[/] ({u.role}) created, id {u.id}"))


@user_app.command("list")
def user_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every user with their role and state."""
    store, users, _ = _users(_state(ctx))
    try:
        data = [_user_json(u) for u in users.list()]
    finally:
        store.close()

    def render() -> None:
        from rich.table import Table

        t = Table("id", "username", "role", "state", title=f"{len(data)} user(s)")
        for d in data:
            t.add_row(str(d["id"]), d["username"], d["role"], "disabled" if d["disabled"] else "enabled")
        console.print(t)

    emit(as_json, data, render)


def _find(users: Any, username: str, as_json: bool) -> User:
    u = users.by_name(username)
    if u is None:
        fail(f"no user named {username!r}", as_json=as_json)
    return u


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from stdin.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set a user's password (their console sessions end)."""
    from sightline.server.auth import UserError

    store, users, _ = _users(_state(ctx))
    try:
        u = _find(users, username, as_json)
        pw = _read_password(password_stdin, as_json)
        try:
            users.update(u.id, password=pw)
        except UserError as e:
            fail(str(e), as_json=as_json)
        _audit(store, "user.update", f"user:{u.id}", {"password": "changed"})
    finally:
        store.close()
    emit(as_json, {"id": u.id, "password": "changed"}, lambda: console.print(f"password of {u.username} changed"))


@user_app.command("disable")
def user_disable(
    ctx: typer.Context,
    username: str,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Disable a user (sessions end, tokens stop working) or, with --enable, enable them again."""
    from sightline.server.auth import UserError

    store, users, _ = _users(_state(ctx))
    try:
        u = _find(users, username, as_json)
        try:
            u = users.update(u.id, disabled=not enable)
        except UserError as e:
            fail(str(e), as_json=as_json)
        _audit(store, "user.update", f"user:{u.id}", {"disabled": u.disabled})
    finally:
        store.close()
    word = "disabled" if u.disabled else "enabled"
    emit(as_json, _user_json(u), lambda: console.print(f"user {u.username} {word}"))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The user the token acts as (their role applies).")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. 'vms-integration'.")],
    ttl_days: Annotated[float | None, typer.Option(min=0.001, help="Expire after this many days.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token and print it once (it is stored only as a hash)."""
    from sightline.server.auth import UserError

    store, users, tokens = _users(_state(ctx))
    try:
        u = _find(users, username, as_json)
        try:
            rec, token = tokens.create(u.id, name, ttl_s=None if ttl_days is None else ttl_days * 86400)
        except UserError as e:
            fail(str(e), as_json=as_json)
        _audit(store, "token.create", f"token:{rec.id}", {"name": rec.name, "user_id": u.id})
    finally:
        store.close()
    data = {"id": rec.id, "name": rec.name, "user": u.username, "role": u.role, "token": token}
    emit(
        as_json,
        data,
        lambda: console.print(f"token {rec.id} ({rec.name}) for {u.username}; shown once:\n{token}", highlight=False),
    )


def serve_cmd(
    state: CliState,
    host: str,
    port: int,
    start_cameras: bool,
    metrics_public: bool,
    secure_cookies: bool,
    on_ready: Any = None,
    duration_s: float | None = None,
    config_file: Path | None = None,
) -> None:
    """Run the server until Ctrl-C / SIGTERM (or for ``duration_s`` seconds). ``on_ready(url)`` is called
    once it listens."""
    import uvicorn
    from pydantic import ValidationError

    from sightline.config import ServerConfig
    from sightline.server.app import create_app
    from sightline.server.services import Services

    fields: dict[str, Any] = {}
    if config_file is not None:
        try:
            fields = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"--config {config_file}: {exc}")
        if not isinstance(fields, dict):
            fail(f"--config {config_file}: expected a JSON object of ServerConfig fields")
    fields.update(
        host=host,
        port=port,
        data_dir=state.settings.data_dir,
        engine=state.settings.engine,
        imaging=state.settings.imaging,
        start_cameras=start_cameras,
    )
    if metrics_public:
        fields["metrics_public"] = True
    if secure_cookies:
        fields["secure_cookies"] = True
    try:
        config = ServerConfig(**fields)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    services = Services.open(config)
    if services.users.count(role="admin") == 0:
        err_console.print(
            "[yellow]no admin yet[/]: create one with `sightline user add --role admin NAME` (nobody can log in before)"
        )
    app = create_app(config, services)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="info", proxy_headers=False, ws="auto")
    )

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
            bound = sockets[0].getsockname()[1] if sockets else config.port
            shown = "localhost" if config.host in ("127.0.0.1", "0.0.0.0", "::") else config.host
            url = f"http://{shown}:{bound}/"
            err_console.print(f"Sightline console: {url}  (API docs: {url}docs)", highlight=False, soft_wrap=True)
            if on_ready is not None:
                on_ready(url)
            if duration_s is not None:
                time.sleep(duration_s)
                server.should_exit = True

    threading.Thread(target=announce, name="serve-announce", daemon=True).start()
    try:
        server.run()
    finally:
        services.close()
