"""Command bodies of ``sightline watch`` and ``sightline camera add|list|remove``."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from rich.markup import escape
from rich.table import Table

from sightline.cli.output import console, emit, err_console, fail, printable, to_jsonable

if TYPE_CHECKING:
    from sightline.cli.main import CliState
    from sightline.config import CameraConfig
    from sightline.types import Alert
    from sightline.video.supervisor import CameraReport

_BAD_ID = re.compile(r"[^A-Za-z0-9_.:-]+")


# ---- cameras ----------------------------------------------------------------------------------------


def _camera_store(state: CliState):
    from sightline.gallery.store import GalleryStore
    from sightline.video.cameras import CameraStore

    return CameraStore(GalleryStore.open(state.settings.data_dir))


def _camera_json(cfg: CameraConfig, created_at: Any = None) -> dict[str, Any]:
    from sightline.video.sources import redact_url

    data = cfg.model_dump(mode="json")
    data["url"] = redact_url(cfg.url)
    if created_at is not None:
        data["created_at"] = created_at
    return data


def camera_add_cmd(
    state: CliState,
    camera_id: str,
    url: str,
    transport: Literal["tcp", "udp"],
    loop: bool,
    keep_unmatched: bool,
    as_json: bool,
) -> None:
    from pydantic import ValidationError

    from sightline.config import CameraConfig
    from sightline.gallery import GalleryError

    given: dict[str, Any] = {"id": camera_id, "url": url}
    if transport != "tcp":
        given["rtsp_transport"] = transport
    if loop:
        given["loop"] = True
    if keep_unmatched:
        given["keep_unmatched_sightings"] = True
    try:
        cfg = CameraConfig(**given)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), as_json=as_json)
    from sightline.cli.commands import cli_audit

    store = _camera_store(state)
    try:
        stored = store.add(cfg)
        data = _camera_json(stored.config, stored.created_at)
        cli_audit(
            store.store,
            "camera.create",
            target=f"camera:{cfg.id}",
            details={"url": data["url"], "keep_unmatched_sightings": cfg.keep_unmatched_sightings},
        )
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    finally:
        store.store.close()
    emit(as_json, data, lambda: console.print(f"camera [bold]{escape(cfg.id)}[/] added ({escape(data['url'])})"))


def camera_list_cmd(state: CliState, as_json: bool) -> None:
    from sightline.gallery import GalleryError

    store = _camera_store(state)
    try:
        cams = store.list()
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    finally:
        store.store.close()
    data = [_camera_json(c.config, c.created_at) for c in cams]

    def render() -> None:
        t = Table("id", "url", "transport", "loop", "keep unmatched", "added", title=f"{len(data)} camera(s)")
        for d in data:
            t.add_row(
                escape(d["id"]),
                escape(printable(d["url"])),
                d["rtsp_transport"],
                "yes" if d["loop"] else "no",
                "yes" if d["keep_unmatched_sightings"] else "no",
                d["created_at"].strftime("%Y-%m-%d %H:%M"),
            )
        console.print(t)

    emit(as_json, data, render)


def camera_remove_cmd(state: CliState, camera_id: str, as_json: bool) -> None:
    from sightline.cli.commands import cli_audit
    from sightline.gallery import GalleryError

    store = _camera_store(state)
    try:
        store.remove(camera_id)
        cli_audit(store.store, "camera.delete", target=f"camera:{camera_id}")
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    finally:
        store.store.close()
    emit(as_json, {"removed": camera_id}, lambda: console.print(f"camera [bold]{escape(camera_id)}[/] removed"))


# ---- watch ------------------------------------------------------------------------------------------


def source_id(source: str) -> str:
    """A camera id for a source given on the command line: a file's stem, else the URL's last path
    segment or host, with characters outside ``[A-Za-z0-9_.:-]`` replaced by ``_`` (at most 64)."""
    if "://" in source and not source.startswith("file://"):
        parts = urlsplit(source)
        name = parts.path.rstrip("/").rsplit("/", 1)[-1] or (parts.hostname or "camera")
    else:
        name = Path(urlsplit(source).path if source.startswith("file://") else source).stem or "camera"
    return (_BAD_ID.sub("_", name).strip("_") or "camera")[:64]


def resolve_cameras(
    state: CliState, sources: Sequence[str], all_cameras: bool, analysis_fps: float | None, as_json: bool
) -> list[CameraConfig]:
    """CameraConfigs for the sources (a stored camera's id, or a URL/path), plus every stored camera
    with ``all_cameras``; ``analysis_fps`` overrides each camera's rate."""
    from pydantic import ValidationError

    from sightline.config import CameraConfig
    from sightline.gallery import GalleryError

    store = _camera_store(state)
    try:
        stored = {c.id: c.config for c in store.list()}
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    finally:
        store.store.close()
    cams: list[CameraConfig] = list(stored.values()) if all_cameras else []
    used = {c.id for c in cams}
    for src in sources:
        if src in stored:
            if src not in used:
                cams.append(stored[src])
                used.add(src)
            continue
        base = source_id(src)
        cid, n = base, 2
        while cid in used:
            cid, n = f"{base[:60]}-{n}", n + 1
        try:
            cams.append(CameraConfig(id=cid, url=src))
        except ValidationError as exc:
            fail(f"{src}: " + "; ".join(e["msg"] for e in exc.errors()), as_json=as_json)
        used.add(cid)
    if not cams:
        fail(
            "name at least one SOURCE (URL, file or stored camera id), or --all for the stored cameras", as_json=as_json
        )
    if analysis_fps is not None:
        cams = [c.model_copy(update={"analysis_fps": analysis_fps}) for c in cams]
    return cams


def alert_json(alert: Alert, meaning: str) -> dict[str, Any]:
    """The JSON line printed for an alert (``latency_s``: alert time minus the frame's capture time)."""
    m = alert.match
    return {
        "camera": alert.camera_id,
        "ts": round(alert.ts, 3),
        "latency_s": round(alert.ts - alert.frame_ts, 3),
        "track_id": alert.track_id,
        "person": m.name,
        "person_id": m.person_id,
        "watchlist": m.watchlist,
        "similarity": round(m.similarity, 4),
        "threshold": round(m.threshold, 4),
        "est_fmr": m.est_fmr,
        "meaning": meaning,
        "xyxy": [round(float(v), 1) for v in alert.xyxy],
    }


def report_json(r: CameraReport) -> dict[str, Any]:
    """Per-camera stats as printed on stderr with --json."""
    w, c = r.worker, r.capture
    return {
        "camera": r.camera_id,
        "state": r.status.state,
        "last_error": r.status.last_error,
        "reconnects": r.status.reconnects,
        "decode_fps": round(c.fps, 2),
        "decoded": c.decoded,
        "analysed": w.frames,
        "dropped": c.dropped,
        "corrupt_packets": c.corrupt_packets,
        "faces": w.faces,
        "tracks": w.tracks_started,
        "alerts": w.alerts,
        "alerts_suppressed": w.alerts_suppressed,
        "embeds": w.embeds,
        "identity_checks": w.identity_checks,
        "identity_splits": w.identity_splits,
        "detections_gated": w.detections_gated,
        "worker_restarts": r.worker_restarts,
        "alert_latency_max_s": None if w.alert_latency_max_s is None else round(w.alert_latency_max_s, 3),
    }


def _print_stats(reports: list[CameraReport], as_json: bool) -> None:
    for r in reports:
        d = report_json(r)
        if as_json:
            sys.stderr.write(json.dumps({"stats": to_jsonable(d)}) + "\n")
            sys.stderr.flush()
        else:
            err_console.print(
                f"[dim]{escape(d['camera'])}: {d['state']}, {d['decode_fps']:.1f} fps decoded, "
                f"{d['analysed']} analysed, {d['dropped']} dropped, {d['faces']} faces, {d['alerts']} alerts"
                + (f", last error: {escape(d['last_error'])}" if d["last_error"] else "")
                + "[/]",
                highlight=False,
            )


def watch_cmd(
    state: CliState,
    sources: Sequence[str],
    watchlists: Sequence[str] | None,
    all_cameras: bool,
    analysis_fps: float | None,
    duration: float | None,
    as_json: bool,
    *,
    templates: str = "per-photo",
) -> None:
    from sightline.cli.commands import check_templates_option
    from sightline.config import NotifyConfig, RetentionConfig, WatchConfig
    from sightline.events import EventBus, EventStores
    from sightline.events.notify import Notifier
    from sightline.gallery import GalleryError
    from sightline.governance.audit import AuditLog
    from sightline.governance.retention import RetentionJob
    from sightline.types import Alert
    from sightline.video.supervisor import Supervisor
    from sightline.vision.engine import FaceEngine

    cams = resolve_cameras(state, sources, all_cameras, analysis_fps, as_json)
    gallery = state.gallery()
    try:
        for name in watchlists or ():
            gallery.get_watchlist(name)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    engine_cfg = state.settings.engine
    if engine_cfg.threads == 0:  # one engine per camera: share the cores instead of each taking all
        engine_cfg = engine_cfg.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // len(cams))})
    engine_cfg = engine_cfg.model_copy(update={"fallback_detector": "none"})
    check_templates_option(templates, as_json)
    watch = WatchConfig(templates=templates)  # type: ignore[arg-type]
    bus = EventBus()
    alerts = bus.subscribe(Alert, maxsize=1000)
    try:
        sup = Supervisor(
            cams,
            lambda: FaceEngine.from_config(engine_cfg),
            gallery,
            bus,
            watch,
            EventStores(gallery.store),
            watchlists=list(watchlists) if watchlists else None,
        )
    except ValueError as exc:  # e.g. templates = "fused" for a model without fused calibrations
        fail(str(exc), as_json=as_json)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    old = signal.signal(signal.SIGTERM, on_signal) if threading.current_thread() is threading.main_thread() else None

    def show(a: Alert) -> None:
        # What the score means against the whole list (FPIR), not one comparison (FMR), with the
        # calibration of the matcher's template mode (per-photo or fused).
        meaning = sup.matcher.score_meaning(a.match.similarity)
        d = alert_json(a, meaning.text)
        d["est_stranger_alert_rate"] = meaning.est_fpir
        d["templates"] = meaning.templates
        if as_json:
            sys.stdout.write(json.dumps(to_jsonable(d), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            console.print(
                f"[bold red]ALERT[/] {time.strftime('%H:%M:%S', time.localtime(a.ts))} "
                f"[bold]{escape(d['camera'])}[/] track {d['track_id']}: [bold]{escape(d['person'])}[/] "
                f"(watchlist {escape(d['watchlist'])}) similarity {d['similarity']:.3f} >= {d['threshold']:.3f}, "
                f"{escape(d['meaning'])}; latency {d['latency_s']:.2f} s",
                highlight=False,
            )

    if not as_json:
        err_console.print(
            f"watching {len(cams)} camera(s): {', '.join(escape(c.id) for c in cams)}; Ctrl-C stops", highlight=False
        )
    t_end = None if duration is None else time.monotonic() + duration
    next_stats = time.monotonic() + watch.stats_interval_s
    # Deliveries to the watchlists' notification channels (webhook, Apprise, MQTT) go through the
    # outbox the alert store fills; this worker sends them while the watch runs, and what is still
    # pending at exit is sent by the next `sightline watch`, `sightline serve` or `sightline notify run`.
    notifier = Notifier(gallery.store, NotifyConfig(), bus=bus)
    # The retention limits hold while only `sightline watch` runs (no server): alerts, matched sightings
    # and kept unmatched sightings past their maximum age are purged at start and every purge interval.
    retention = RetentionJob(gallery.store, RetentionConfig(), audit=AuditLog(gallery.store))
    try:
        retention.start()
        notifier.start()
        sup.start()
        while not stop.is_set():
            a = alerts.get(timeout=0.2)
            if a is not None:
                show(a)
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + watch.stats_interval_s
                _print_stats(sup.status(), as_json)
            if t_end is not None and now >= t_end:
                break
            if sup.wait(0):  # every camera ended (files) or failed for good
                break
    except KeyboardInterrupt:
        pass
    finally:
        sup.stop()
        notifier.stop()
        retention.stop()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    for a in alerts.drain():
        show(a)
    _print_stats(sup.status(), as_json)
    gallery.close()
