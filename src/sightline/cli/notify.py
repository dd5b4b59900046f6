"""``sightline watchlist channel add|list|remove|enable|disable`` and ``sightline notify status|retry|run``.

Channels are per-watchlist notification destinations (webhook, Apprise URL, MQTT topic); alerts of the
watchlist are queued for each enabled channel when they are stored and delivered by a notifier: the
server runs one, ``sightline notify run`` runs one in the foreground.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sightline.cli.output import console, emit, fail, printable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sightline.cli.main import CliState
    from sightline.gallery.store import GalleryStore

channel_app = typer.Typer(
    help="Notification channels of a watchlist: webhooks, Apprise URLs (ntfy, Telegram, e-mail, ...), MQTT topics.",
    no_args_is_help=True,
)
notify_app = typer.Typer(
    help="Alert notifications: delivery status, retries, and a foreground notifier.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]


def _state(ctx: typer.Context) -> CliState:
    return ctx.find_root().obj


@contextmanager
def _store(ctx: typer.Context, as_json: bool) -> Iterator[GalleryStore]:
    from sightline.gallery import GalleryError
    from sightline.gallery.store import GalleryStore

    try:
        store = GalleryStore.open(_state(ctx).settings.data_dir)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    try:
        yield store
    finally:
        store.close()


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--option must be KEY=VALUE, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


# ---- channels -----------------------------------------------------------------------------------------


@channel_app.command("add")
def channel_add(
    ctx: typer.Context,
    watchlist: Annotated[str, typer.Argument(help="Watchlist name.")],
    kind: Annotated[str, typer.Argument(help="webhook, apprise or mqtt.")],
    target: Annotated[
        str,
        typer.Argument(
            help="webhook: https://host/path; apprise: an Apprise URL (ntfy://host/topic, tgram://token/chat, "
            "mailto://..., json://host/path); mqtt: mqtt[s]://[user[:pass]@]host[:port]/topic."
        ),
    ],
    secret_env: Annotated[
        str | None,
        typer.Option(help="Read the channel secret (webhook HMAC key, MQTT password) from this environment variable."),
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="Read the channel secret from this file (trailing newline removed).")
    ] = None,
    generate_secret: Annotated[
        bool, typer.Option("--generate-secret", help="Generate a random webhook secret and print it once.")
    ] = False,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", "-o", help="Channel option KEY=VALUE (repeatable), e.g. include_crop=true, qos=1, retain=true."
        ),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Store the channel paused.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a notification channel to a watchlist: its future alerts are delivered there."""
    from sightline.events.notify import ChannelError, ChannelStore

    given = [secret_env is not None, secret_file is not None, generate_secret]
    if sum(given) > 1:
        fail("give at most one of --secret-env, --secret-file, --generate-secret", as_json=as_json)
    secret: str | None = None
    if secret_env is not None:
        secret = os.environ.get(secret_env)
        if not secret:
            fail(f"environment variable {secret_env} is not set or empty", as_json=as_json)
    elif secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the secret file {secret_file}: {exc}", as_json=as_json)
    elif generate_secret:
        secret = secrets.token_urlsafe(32)
    try:
        options = dict(_parse_option(o) for o in option or [])
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    with _store(ctx, as_json) as store:
        wl = store.get_watchlist(watchlist)
        if wl is None:
            fail(f"no watchlist named {watchlist!r}", as_json=as_json)
        try:
            ch = ChannelStore(store).add(wl.id, kind, target, secret=secret, options=options, enabled=not disabled)
        except ChannelError as exc:
            fail(str(exc), as_json=as_json)
    data = ch.public()
    if generate_secret:
        data["secret"] = secret  # shown once, here only

    def render() -> None:
        console.print(
            f"channel {ch.id} added to watchlist [bold]{escape(ch.watchlist)}[/]: {ch.kind} "
            f"{escape(printable(ch.target_redacted))}{'' if ch.enabled else ' (disabled)'}"
        )
        if generate_secret:
            console.print(
                f"secret (shown once; verify X-Sightline-Signature with it): {secret}", highlight=False, soft_wrap=True
            )

    emit(as_json, data, render)


@channel_app.command("list")
def channel_list(
    ctx: typer.Context,
    watchlist: Annotated[str | None, typer.Argument(help="Watchlist name (default: every watchlist).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Channels with their redacted targets (secrets are never shown)."""
    from sightline.events.notify import ChannelStore

    with _store(ctx, as_json) as store:
        wl_id = None
        if watchlist is not None:
            wl = store.get_watchlist(watchlist)
            if wl is None:
                fail(f"no watchlist named {watchlist!r}", as_json=as_json)
            wl_id = wl.id
        chans = ChannelStore(store).list(wl_id)
    data = [c.public() for c in chans]

    def render() -> None:
        t = Table("id", "watchlist", "kind", "target", "options", "secret", "enabled", title=f"{len(data)} channel(s)")
        for c in chans:
            t.add_row(
                str(c.id),
                escape(c.watchlist),
                c.kind,
                escape(printable(c.target_redacted)),
                escape(json.dumps(dict(c.options))) if c.options else "",
                "yes" if c.has_secret else "no",
                "yes" if c.enabled else "no",
            )
        console.print(t)

    emit(as_json, data, render)


@channel_app.command("remove")
def channel_remove(
    ctx: typer.Context,
    channel_id: Annotated[int, typer.Argument(metavar="ID", help="Channel id (see `channel list`).")],
    as_json: JsonOpt = False,
) -> None:
    """Delete a channel; its queued and past deliveries go with it."""
    from sightline.events.notify import ChannelStore

    with _store(ctx, as_json) as store:
        if not ChannelStore(store).delete(channel_id):
            fail(f"no channel with id {channel_id}", as_json=as_json)
    emit(as_json, {"removed": channel_id}, lambda: console.print(f"channel {channel_id} removed"))


def _set_enabled(ctx: typer.Context, channel_id: int, enabled: bool, as_json: bool) -> None:
    from sightline.events.notify import ChannelStore, UnknownChannelError

    with _store(ctx, as_json) as store:
        try:
            ch = ChannelStore(store).set_enabled(channel_id, enabled)
        except UnknownChannelError as exc:
            fail(str(exc), as_json=as_json)
    emit(as_json, ch.public(), lambda: console.print(f"channel {ch.id} {'enabled' if enabled else 'disabled'}"))


@channel_app.command("enable")
def channel_enable(
    ctx: typer.Context, channel_id: Annotated[int, typer.Argument(metavar="ID")], as_json: JsonOpt = False
) -> None:
    """Resume a paused channel (its waiting deliveries are sent)."""
    _set_enabled(ctx, channel_id, True, as_json)


@channel_app.command("disable")
def channel_disable(
    ctx: typer.Context, channel_id: Annotated[int, typer.Argument(metavar="ID")], as_json: JsonOpt = False
) -> None:
    """Pause a channel: new alerts queue nothing for it; queued deliveries wait."""
    _set_enabled(ctx, channel_id, False, as_json)


# ---- notify --------------------------------------------------------------------------------------------


def _delivery_json(d: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(d)


@notify_app.command("status")
def notify_status(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only deliveries with this status: pending, delivered or failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most deliveries listed, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Delivery counts per status and the latest deliveries (failed ones say why)."""
    from sightline.events.notify import DELIVERY_STATUSES, Outbox

    if status is not None and status not in DELIVERY_STATUSES:
        fail(f"--status must be one of {', '.join(DELIVERY_STATUSES)}, got {status!r}", as_json=as_json)
    with _store(ctx, as_json) as store:
        outbox = Outbox(store)
        counts = outbox.counts()
        rows = outbox.list_deliveries(status=status, limit=limit)  # type: ignore[arg-type]
    data = {"counts": counts, "deliveries": [_delivery_json(d) for d in rows]}

    def render() -> None:
        console.print(
            f"pending {counts['pending']} (due now {counts['due']}), delivered {counts['delivered']}, "
            f"failed {counts['failed']}"
        )
        t = Table("id", "alert", "channel", "status", "attempts", "next / delivered (UTC)", "last error")
        for d in rows:
            when = _when(d.delivered_at) if d.status == "delivered" else _when(d.next_attempt_at)
            t.add_row(
                str(d.id),
                str(d.alert_id),
                f"{d.channel_id} {d.kind} {escape(printable(d.target))}",
                d.status,
                str(d.attempts),
                when if d.status != "failed" else "-",
                escape(printable(d.last_error or "")),
            )
        if rows:
            console.print(t)

    emit(as_json, data, render)


@notify_app.command("retry")
def notify_retry(
    ctx: typer.Context,
    delivery_id: Annotated[int | None, typer.Argument(metavar="[ID]", help="A failed delivery's id.")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Queue every failed delivery again.")] = False,
    channel: Annotated[int | None, typer.Option(help="With --all-failed: only this channel's deliveries.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue failed deliveries again (a running notifier sends them within its poll interval)."""
    from sightline.events.notify import Outbox

    if (delivery_id is None) == (not all_failed):
        fail("give a delivery ID or --all-failed (not both)", as_json=as_json)
    with _store(ctx, as_json) as store:
        outbox = Outbox(store)
        if delivery_id is not None:
            if not outbox.retry(delivery_id):
                fail(f"delivery {delivery_id} does not exist or has not failed", as_json=as_json)
            n = 1
        else:
            n = outbox.retry_failed(channel_id=channel)
    emit(as_json, {"queued": n}, lambda: console.print(f"{n} deliver{'y' if n == 1 else 'ies'} queued again"))


@notify_app.command("run")
def notify_run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")] = False,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM).")
    ] = None,
    poll: Annotated[float, typer.Option(min=0.05, max=60, help="Seconds between looks for due deliveries.")] = 1.0,
    timeout: Annotated[float, typer.Option(min=0.1, max=120, help="Network timeout per delivery, s.")] = 10.0,
    max_attempts: Annotated[int, typer.Option(min=1, max=100, help="Attempts before a delivery is failed.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Run a notifier in the foreground: deliver queued alerts with retries (several may run at once)."""
    from pydantic import ValidationError

    from sightline.config import NotifyConfig
    from sightline.events.notify import Notifier

    try:
        cfg = NotifyConfig(
            poll_interval_s=poll, timeout_s=timeout, max_attempts=max_attempts, lease_s=max(60.0, timeout * 3)
        )
    except ValidationError as exc:
        fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()), as_json=as_json)
    with _store(ctx, as_json) as store:
        notifier = Notifier(store, cfg)
        t0 = time.monotonic()
        if once:
            notifier.deliver_due()
        else:
            stop = threading.Event()

            def on_signal(_sig: int, _frame: FrameType | None) -> None:
                stop.set()

            old = (
                signal.signal(signal.SIGTERM, on_signal)
                if threading.current_thread() is threading.main_thread()
                else None
            )
            notifier.start()
            try:
                stop.wait(duration)
            except KeyboardInterrupt:
                pass
            finally:
                notifier.stop()
                if old is not None:
                    signal.signal(signal.SIGTERM, old)
        s = notifier.stats
        counts = notifier.outbox.counts()
    data = {
        "seconds": round(time.monotonic() - t0, 3),
        "attempts": s.claimed,
        "delivered": s.delivered,
        "retried": s.retried,
        "failed": s.failed,
        "outbox": counts,
    }
    emit(
        as_json,
        data,
        lambda: console.print(
            f"{s.delivered} delivered, {s.retried} to retry, {s.failed} failed; "
            f"outbox: {counts['pending']} pending, {counts['failed']} failed"
        ),
    )


@notify_app.command("bench")
def notify_bench(
    alerts: Annotated[int, typer.Option(min=10, max=100_000, help="Alerts stored per measurement.")] = 300,
    channels: Annotated[int, typer.Option(min=1, max=50, help="Webhook channels on the alerting watchlist.")] = 3,
    concurrency: Annotated[str, typer.Option(help="Notifier concurrencies to measure, comma separated.")] = "1,4",
    encrypted: Annotated[
        bool, typer.Option("--encrypted", help="Seal crops with the AES-GCM cipher, as with a key configured.")
    ] = False,
) -> None:
    """Speed of the outbox (JSON): alert insert cost with queued deliveries, and deliveries/s to a local receiver."""
    from sightline.cli.output import emit_json
    from sightline.events.notify.bench import run

    try:
        conc = tuple(int(x) for x in concurrency.split(",") if x.strip())
    except ValueError:
        fail(f"--concurrency must be integers separated by commas, got {concurrency!r}", as_json=True)
    if not conc or not all(1 <= c <= 64 for c in conc):
        fail("--concurrency values must be in [1, 64]", as_json=True)
    emit_json(run(alerts=alerts, channels=channels, concurrency=conc, cipher=encrypted))
