"""Health (no auth) and Prometheus metrics (admin, supervisor; or anyone with ``metrics_public``)."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from sightline.server.auth import CurrentUser, public, require_roles
from sightline.server.deps import Svc
from sightline.server.metrics import render

router = APIRouter(tags=["system"])


@router.get("/healthz", dependencies=[Depends(public)])
def healthz(svc: Svc) -> dict[str, Any]:
    """Liveness and readiness: the database answers. No authentication, no details of the gallery."""
    svc.gallery.store._conn().execute("SELECT 1").fetchone()
    return {"status": "ok", "uptime_s": round(time.time() - svc.started_at, 1)}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(
    svc: Svc,
    _user: Annotated[CurrentUser | None, Depends(require_roles("admin", "supervisor", public_if="metrics_public"))],
) -> PlainTextResponse:
    """Prometheus text: per-camera fps, frames analysed and dropped, alert latency; alerts by status;
    search latency; logins and WebSocket fan-out; notification deliveries (attempt outcomes, outbox by status)."""
    by_status = {s: svc.stores.alerts.count(status=s) for s in ("new", "confirmed", "rejected")}  # type: ignore[arg-type]
    notifier = outbox = None
    if svc.notifier is not None:
        notifier = dataclasses.asdict(svc.notifier.stats)
        outbox = svc.notifier.outbox.counts()
    body = render(svc.metrics, svc.supervisor.samples(), by_status, notifier=notifier, outbox=outbox)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
