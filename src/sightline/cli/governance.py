"""Governance commands: ``sightline audit``, ``retention``, ``subject`` and ``key``.

They open the gallery store only (no face engine), so they are quick. Commands that change or reveal data
(audit list/export, retention purge, subject export/erase, key rotate) are audited with the actor
``cli:<OS user>``. Exit codes: 0 done, 1 the answer is "no" (``audit verify``: the chain is broken),
2 bad input or usage.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sightline.cli.output import console, emit, fail, printable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sightline.gallery.store import GalleryStore

audit_app = typer.Typer(help="The audit trail: verify its hash chain, list and export entries.", no_args_is_help=True)
retention_app = typer.Typer(help="What is kept and for how long; purge what is past its age.", no_args_is_help=True)
subject_app = typer.Typer(
    help="Data-subject requests: export or erase everything about a person.", no_args_is_help=True
)
key_app = typer.Typer(help="Encryption at rest: key status, rotation and generation.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
SinceOpt = Annotated[
    str | None, typer.Option(help="Only entries at or after: epoch s, ISO date/time (UTC if no zone), or 24h / 7d ago.")
]
UntilOpt = Annotated[str | None, typer.Option(help="Only entries before (same forms as --since).")]
ActorOpt = Annotated[str | None, typer.Option(help="Only this actor (username, cli:<user>, system:<job>).")]
ActionOpt = Annotated[str | None, typer.Option(help="Only this action (search.photo) or family (search.*).")]


def register(app: typer.Typer) -> None:
    """Add the governance command groups to the ``sightline`` app."""
    app.add_typer(audit_app, name="audit")
    app.add_typer(retention_app, name="retention")
    app.add_typer(subject_app, name="subject")
    app.add_typer(key_app, name="key")


def cli_actor() -> str:
    """``cli:<OS user>``: who ran the command, for the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def cli_client() -> str:
    """Where the command ran, for the audit log's ``client``: ``host:<hostname>``."""
    return f"host:{socket.gethostname() or 'unknown'}"


def _data_dir(ctx: typer.Context) -> Path:
    return Path(ctx.find_root().obj.settings.data_dir)


@contextmanager
def _store(ctx: typer.Context, as_json: bool) -> Iterator[GalleryStore]:
    from sightline.gallery.records import GalleryError
    from sightline.gallery.store import GalleryStore

    try:
        store = GalleryStore.open(_data_dir(ctx))
    except GalleryError as e:
        fail(str(e), as_json=as_json)
    try:
        yield store
    except GalleryError as e:
        fail(str(e), as_json=as_json)
    finally:
        store.close()


def _times(since: str | None, until: str | None, as_json: bool) -> tuple[float | None, float | None]:
    from sightline.governance.audit import AuditError, parse_when

    try:
        return parse_when(since, name="--since"), parse_when(until, name="--until")
    except AuditError as e:
        fail(str(e), as_json=as_json)
        raise  # unreachable: fail exits


def _fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- audit -----------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    anchor: Annotated[
        Path | None,
        typer.Option(
            help="A chain head saved earlier (audit head --out, or a JSON export): also detects a truncated "
            "or rewritten log."
        ),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            help="The signed checkpoint file to check against (default: $SIGHTLINE_AUDIT_CHECKPOINTS, else "
            "audit-checkpoints.jsonl beside the key file or in the data directory, when it exists)."
        ),
    ] = None,
    no_checkpoints: Annotated[
        bool, typer.Option("--no-checkpoints", help="Check the chain alone, without the checkpoint file.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Walk the HMAC chain and the signed checkpoints; report the first broken link. Exit 1 when the log was
    tampered with (edited, rehashed, truncated) or cannot be verified with the keys at hand."""
    from sightline.governance.audit import AuditError, AuditLog, ChainHead

    if no_checkpoints and checkpoints is not None:
        fail("give --checkpoints or --no-checkpoints, not both", as_json=as_json)
    with _store(ctx, as_json) as store:
        try:
            head = ChainHead.load(anchor) if anchor is not None else None
        except AuditError as e:
            fail(str(e), as_json=as_json)
        report = AuditLog(store).verify(anchor=head, checkpoints=False if no_checkpoints else checkpoints)

    def render() -> None:
        if report.ok:
            extra = f"; matches the saved head (entry {head.seq})" if head is not None else ""
            if report.checkpoint_file is not None:
                extra += (
                    f"; {report.checkpoints_checked} signed checkpoint(s) in {printable(report.checkpoint_file)} match"
                )
            else:
                extra += "; no checkpoint file (a rewrite of the whole log with the old recipe would pass)"
            keyed = f"{report.keyed_entries} keyed, {report.unkeyed_entries} from before keyed chains"
            console.print(
                f"[green]audit log intact[/]: {report.entries} entries ({keyed}), head {report.head.hash}{extra}"
            )
        else:
            where = f" at entry {report.first_broken_seq}" if report.first_broken_seq is not None else ""
            console.print(f"[bold red]audit log BROKEN{where}[/]: {printable(report.problem or '')}")
            console.print(f"{report.entries} entries verified before the break")

    emit(as_json, report.to_json(), render)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("head")
def audit_head(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option(help="Also write the head as JSON to this file (keep it elsewhere).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the chain head (newest seq and hash): store it outside the database to detect truncation."""
    import json

    from sightline.governance.audit import AuditLog

    with _store(ctx, as_json) as store:
        head = AuditLog(store).head()
    if out is not None:
        out.write_text(json.dumps(head.to_json()) + "\n", encoding="utf-8")
    emit(as_json, head.to_json(), lambda: console.print(f"seq {head.seq}  hash {head.hash}  at {_fmt_ts(head.ts)}"))


@audit_app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Append a signed checkpoint of the chain head to the checkpoint file now (e.g. from cron), unless the
    last one already names it."""
    from sightline.governance.audit import AuditLog

    with _store(ctx, as_json) as store:
        log = AuditLog(store)
        path = log.checkpoint_file()
        try:
            cp = log.checkpoint()
        except OSError as e:
            fail(f"cannot write checkpoint file {path}: {type(e).__name__}: {e.strerror}", as_json=as_json)
    doc = {"file": str(path), "written": cp is not None, "checkpoint": None if cp is None else cp.payload()}

    def render() -> None:
        if cp is None:
            console.print(f"nothing new to checkpoint in {printable(str(path))}")
        else:
            console.print(f"checkpoint of entry {cp.seq} ({cp.hash}) appended to {printable(str(path))}")

    emit(as_json, doc, render)


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    person: Annotated[int | None, typer.Option(help="Only entries naming this person id.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="Most entries shown (newest first).")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Show audit entries, newest first (this viewing is itself audited)."""
    from rich.table import Table

    from sightline.governance.audit import AuditError, AuditLog

    t0, t1 = _times(since, until, as_json)
    with _store(ctx, as_json) as store:
        log = AuditLog(store)
        try:
            entries = log.query(
                actor=actor, action=action, person_id=person, since=t0, until=t1, limit=limit, order="desc"
            )
        except AuditError as e:
            fail(str(e), as_json=as_json)
        filters = {"actor": actor, "action": action, "person_id": person, "since": t0, "until": t1}
        log.record(
            cli_actor(),
            "audit.export",
            client=cli_client(),
            details={"format": "list", "entries": len(entries), **{k: v for k, v in filters.items() if v is not None}},
        )

    def render() -> None:
        table = Table("seq", "time (UTC)", "actor", "action", "target", "outcome", "reason", "client")
        for e in entries:
            table.add_row(
                str(e.seq),
                _fmt_ts(e.ts),
                printable(e.actor),
                e.action,
                printable(e.target or ""),
                e.outcome,
                printable(e.reason or ""),
                printable(e.client or ""),
            )
        console.print(table)

    emit(as_json, [e.to_json() for e in entries], render)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "json",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    person: Annotated[int | None, typer.Option(help="Only entries naming this person id.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Export entries in chain order as CSV or JSON (the JSON carries the chain head, to anchor later checks)."""
    from sightline.governance.audit import AuditError, AuditLog

    if fmt not in ("csv", "json"):
        fail(f"--format must be csv or json, got {fmt!r}")
    t0, t1 = _times(since, until, False)
    with _store(ctx, False) as store:
        log = AuditLog(store)
        filters: dict[str, Any] = {"actor": actor, "action": action, "person_id": person, "since": t0, "until": t1}
        try:
            if out is None:
                n = log.export(sys.stdout, fmt, **filters)  # type: ignore[arg-type]
            else:
                with open(out, "w", encoding="utf-8", newline="") as f:
                    n = log.export(f, fmt, **filters)  # type: ignore[arg-type]
        except (AuditError, OSError) as e:
            fail(str(e))
        log.record(
            cli_actor(),
            "audit.export",
            client=cli_client(),
            details={"format": fmt, "entries": n, **{k: v for k, v in filters.items() if v is not None}},
        )
    if out is not None:
        console.print(f"exported {n} entries to {printable(str(out))}", highlight=False)


# -- retention -------------------------------------------------------------------------------------


def _retention_config(alerts_days: float | None, confirmed_days: float | None, as_json: bool) -> Any:
    from pydantic import ValidationError

    from sightline.config import RetentionConfig

    overrides: dict[str, float] = {}
    if alerts_days is not None:
        overrides["alerts_max_age_days"] = alerts_days
    if confirmed_days is not None:
        overrides["confirmed_sightings_max_age_days"] = confirmed_days
    try:
        return RetentionConfig(**overrides)
    except ValidationError as e:
        fail("; ".join(f"{err['loc'][0]}: {err['msg']}" for err in e.errors()), as_json=as_json)


AlertsDaysOpt = Annotated[
    float | None, typer.Option("--alerts-days", help="Maximum age of alerts, days (default 90; as the server's).")
]
ConfirmedDaysOpt = Annotated[
    float | None,
    typer.Option("--confirmed-days", help="Maximum age of matched sightings, days (default 30; as the server's)."),
]


@retention_app.command("status")
def retention_status_cmd(
    ctx: typer.Context,
    alerts_days: AlertsDaysOpt = None,
    confirmed_days: ConfirmedDaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What is kept, how much, the oldest of each kind and when it will be purged."""
    from rich.table import Table

    from sightline.governance.retention import retention_status

    cfg = _retention_config(alerts_days, confirmed_days, as_json)
    with _store(ctx, as_json) as store:
        status = retention_status(store, cfg)

    def render() -> None:
        table = Table("kind", "rows", "with faces", "oldest (UTC)", "oldest purged at (UTC)", "rule")
        for c in status.classes:
            table.add_row(
                printable(c.name),
                str(c.rows),
                "-" if c.with_biometrics is None else str(c.with_biometrics),
                _fmt_ts(c.oldest_ts),
                _fmt_ts(c.oldest_until) if c.max_age_s is not None else "kept",
                printable(c.rule),
            )
        console.print(table)

    emit(as_json, status.to_json(), render)


@retention_app.command("purge")
def retention_purge_cmd(
    ctx: typer.Context,
    alerts_days: AlertsDaysOpt = None,
    confirmed_days: ConfirmedDaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete now everything past its maximum age (the server's retention job does this continuously)."""
    from sightline.governance.audit import AuditLog
    from sightline.governance.retention import purge

    cfg = _retention_config(alerts_days, confirmed_days, as_json)
    with _store(ctx, as_json) as store:
        report = purge(store, cfg, audit=AuditLog(store), actor=cli_actor(), client=cli_client())

    def render() -> None:
        console.print(
            f"purged {report.alerts} alert(s), {report.confirmed_sightings} confirmed sighting(s), "
            f"{report.unmatched_sightings} unmatched sighting(s)"
        )

    emit(as_json, report.to_json(), render)


@retention_app.command("run")
def retention_run_cmd(
    ctx: typer.Context,
    interval: Annotated[
        float | None, typer.Option(min=1, max=86400, help="Seconds between passes (default 300).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM).")
    ] = None,
    alerts_days: AlertsDaysOpt = None,
    confirmed_days: ConfirmedDaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the retention job in the foreground (for a host without `sightline serve`, e.g. beside
    `sightline watch`): a pass now, then one every --interval seconds. Prints one line per pass that purged."""
    import signal
    import threading

    from sightline.cli.output import emit_json
    from sightline.governance.audit import AuditLog
    from sightline.governance.retention import RetentionJob

    cfg = _retention_config(alerts_days, confirmed_days, as_json)
    if interval is not None:
        cfg = cfg.model_copy(update={"purge_interval_s": interval})
    done = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: done.set())
    shown = 0

    def show() -> None:
        nonlocal shown
        if job.runs > shown:
            shown = job.runs
            report = job.last
            if report is not None and report.total:
                if as_json:
                    emit_json(report.to_json())
                else:
                    console.print(
                        f"purged {report.alerts} alert(s), {report.confirmed_sightings} confirmed and "
                        f"{report.unmatched_sightings} unmatched sighting(s)"
                    )

    with _store(ctx, as_json) as store:
        job = RetentionJob(store, cfg, audit=AuditLog(store))
        job.start()
        try:
            end = None if duration is None else time.monotonic() + duration
            while not done.is_set() and (end is None or time.monotonic() < end):
                done.wait(0.2 if end is None else max(0.0, min(0.2, end - time.monotonic())))
                show()
        except KeyboardInterrupt:
            pass
        finally:
            job.stop()
            show()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
    if job.errors:
        console.print(f"{job.errors} pass(es) failed; see the log", style="yellow")


# -- subject ---------------------------------------------------------------------------------------


def _person_id(store: GalleryStore, ref: str, as_json: bool) -> int:
    ref = ref.strip()
    if ref.isdigit():
        if int(ref) > 2**63 - 1 or store.get_person(int(ref)) is None:
            fail(f"no person with id {ref}", as_json=as_json)
        return int(ref)
    found = store.find_persons(name=ref)
    if not found:
        fail(f"no person named {ref!r}", as_json=as_json)
    if len(found) > 1:
        ids = ", ".join(str(p.id) for p in found)
        fail(f"{len(found)} persons are named {ref!r} (ids {ids}); use the id", as_json=as_json)
    return found[0].id


ReasonOpt = Annotated[str, typer.Option("--reason", help="Case reference or legal basis (recorded in the audit log).")]


@subject_app.command("export")
def subject_export_cmd(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(metavar="PERSON", help="Person id or exact name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The zip to write (mode 0600; it holds faces).")],
    reason: ReasonOpt,
    as_json: JsonOpt = False,
) -> None:
    """Everything held about a person (crops, templates, alerts, sightings, audit entries) as one zip."""
    from sightline.governance.audit import AuditLog
    from sightline.governance.subject import export_subject

    if not reason.strip():
        fail("--reason must not be empty", as_json=as_json)
    with _store(ctx, as_json) as store:
        pid = _person_id(store, person, as_json)
        try:
            report = export_subject(
                store, pid, out, audit=AuditLog(store), actor=cli_actor(), reason=reason, client=cli_client()
            )
        except OSError as e:
            fail(f"cannot write {out}: {e}", as_json=as_json)

    def render() -> None:
        console.print(
            f"person {pid}: {report.templates} template(s), {report.alerts} alert(s), {report.sightings} "
            f"sighting(s), {report.audit_entries} audit entries -> {printable(report.path)} ({report.bytes} bytes)",
            highlight=False,
        )

    emit(as_json, report.to_json(), render)


@subject_app.command("erase")
def subject_erase_cmd(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(metavar="PERSON", help="Person id or exact name.")],
    reason: ReasonOpt,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the erasure cannot be undone.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Erase a person and everything about them (templates, crops, alerts, sightings, index entries).
    The audit log keeps a record that the erasure happened, with no biometric data."""
    from sightline.governance.audit import AuditLog
    from sightline.governance.subject import erase_subject

    if not reason.strip():
        fail("--reason must not be empty", as_json=as_json)
    if not yes:
        fail("erasure cannot be undone: add --yes to confirm", as_json=as_json)
    with _store(ctx, as_json) as store:
        pid = _person_id(store, person, as_json)
        report = erase_subject(store, pid, audit=AuditLog(store), actor=cli_actor(), reason=reason, client=cli_client())

    def render() -> None:
        console.print(
            f"erased person {pid}: {report.templates} template(s), {report.alerts} alert(s), "
            f"{report.sightings} sighting(s), {report.memberships} membership(s); audit entry {report.audit_seq}"
        )

    emit(as_json, report.to_json(), render)


# -- keys ------------------------------------------------------------------------------------------


@key_app.command("status")
def key_status_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Where the key comes from, the key ids (never the keys) and how many blobs each seals."""
    from sightline.governance.keys import key_status

    with _store(ctx, as_json) as store:
        status = key_status(store, _data_dir(ctx))

    def render() -> None:
        console.print(f"key source: {printable(status.source)}; current key {status.current_key_id}")
        for col, counts in status.blobs.items():
            if counts:
                parts = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
                console.print(f"  {col}: {parts}")

    emit(as_json, status.to_json(), render)


@key_app.command("rotate")
def key_rotate_cmd(
    ctx: typer.Context,
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="Keep the old key in the key file (to read older backups).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """New key; every sealed blob re-sealed in one transaction; the old key dropped once none uses it.
    With SIGHTLINE_KEY, give the new key in SIGHTLINE_NEW_KEY (see `sightline key generate`)."""
    from sightline.governance.audit import AuditLog
    from sightline.governance.crypto import KeyringError, parse_key
    from sightline.governance.keys import rotate_key

    new_text = os.environ.get("SIGHTLINE_NEW_KEY", "").strip()
    with _store(ctx, as_json) as store:
        try:
            new_key = parse_key(new_text) if new_text else None
            report = rotate_key(
                store,
                _data_dir(ctx),
                audit=AuditLog(store),
                actor=cli_actor(),
                new_key=new_key,
                keep_old=keep_old,
                client=cli_client(),
            )
        except KeyringError as e:
            fail(str(e), as_json=as_json)

    def render() -> None:
        n = sum(report.resealed.values())
        console.print(f"new key {report.new_key_id}: re-sealed {n} blob(s) in {report.seconds:.2f} s")
        if report.dropped:
            console.print(f"old key(s) {', '.join(report.old_key_ids)} removed from the key file")
        elif report.source == "env":
            console.print("now set SIGHTLINE_KEY to the new key (SIGHTLINE_NEW_KEY) and restart other processes")
        elif not keep_old:
            console.print(
                f"{printable(report.source)} is read-only here: put the new key (SIGHTLINE_NEW_KEY) there, keeping the "
                "old one after it while older audit entries must verify, and restart other processes"
            )

    emit(as_json, report.to_json(), render)


@key_app.command("generate")
def key_generate_cmd() -> None:
    """Print a new random key (base64) for SIGHTLINE_KEY / SIGHTLINE_NEW_KEY. Treat it as a secret."""
    from sightline.governance.crypto import encode_key, generate_key

    sys.stdout.write(encode_key(generate_key()) + "\n")


__all__ = ["audit_app", "cli_actor", "cli_client", "key_app", "register", "retention_app", "subject_app"]
