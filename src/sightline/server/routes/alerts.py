"""Alerts: list with filters, one alert, its crop, the operator's decision; live over a WebSocket.

Read: operator, supervisor, admin. Decide: operator, supervisor (audited, with the comment).
WebSocket ``/api/alerts/live``: ``{"type": "alert", "alert": AlertPublic}`` per new alert and
``{"type": "camera", "camera_id", "state", "since", "last_error"}`` per camera status change. Each
client has its own bounded queue on the event bus: a slow client loses its oldest events (counted in
``sightline_ws_events_dropped_total``), never slows the cameras or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from sightline.events import StoredAlert
from sightline.server.auth import ALERT_DECIDERS, ALERT_READERS, CurrentUser, require_roles, ws_require_roles
from sightline.server.deps import (
    RowId,
    RowIdQuery,
    Svc,
    alert_list_meaning,
    alert_list_photos,
    audit,
    crop_response,
    list_size,
    meaning,
)
from sightline.server.routes.persons import best_crops
from sightline.server.schemas import AlertPublic, DecisionIn
from sightline.server.services import Services
from sightline.types import Alert

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALERT_READERS))]
Decider = Annotated[CurrentUser, Depends(require_roles(*ALERT_DECIDERS))]
#: How often a live socket looks at its queue, s (the latency an alert may wait on the server).
WS_POLL_S = 0.1


def enrolled_crop(svc: Services, person_id: int, cache: dict[int, str | None] | None = None) -> str | None:
    """URL of the person's best enrolled crop (highest quality), None when no crop is kept."""
    if cache is not None and person_id in cache:
        return cache[person_id]
    url = best_crops(svc, person_id).get(person_id)
    if cache is not None:
        cache[person_id] = url
    return url


def alert_public(
    svc: Services,
    alert: Alert,
    alert_id: int,
    *,
    stored: StoredAlert | None = None,
    cache: dict[int, str | None] | None = None,
    lists: dict[str, tuple[int, dict[int, int] | None]] | None = None,
) -> AlertPublic:
    """``cache``: enrolled-crop URLs by person; ``lists``: by watchlist, its templates and (fused matching)
    photos per person — pass dicts shared by the alerts of one response so each is looked up once."""
    m = alert.match
    facts = None if lists is None else lists.get(m.watchlist)
    if facts is None:
        facts = (list_size(svc, m.watchlist), alert_list_photos(svc, m.watchlist))
        if lists is not None:
            lists[m.watchlist] = facts
    n, photos = facts
    rate, words = alert_list_meaning(svc, m.similarity, n, photos)
    return AlertPublic(
        id=alert_id,
        camera_id=alert.camera_id,
        track_id=alert.track_id,
        person_id=m.person_id,
        person_name=m.name,
        watchlist=m.watchlist,
        similarity=round(float(m.similarity), 4),
        threshold=round(float(m.threshold), 4),
        est_fmr=float(m.est_fmr),
        meaning=meaning(svc, m.similarity),
        list_templates=n,
        stranger_rate=rate,
        meaning_for_list=words,
        ts=float(alert.ts),
        xyxy=[round(float(v), 1) for v in alert.xyxy],
        quality=round(float(alert.quality), 4),
        status=stored.status if stored else "new",
        decided_by=stored.decided_by if stored else None,
        decided_at=stored.decided_at if stored else None,
        comment=stored.comment if stored else None,
        crop_url=f"/api/alerts/{alert_id}/crop",
        enrolled_crop_url=enrolled_crop(svc, m.person_id, cache),
    )


def _stored_public(
    svc: Services,
    s: StoredAlert,
    cache: dict[int, str | None] | None = None,
    lists: dict[str, tuple[int, dict[int, int] | None]] | None = None,
) -> AlertPublic:
    return alert_public(svc, s.alert, s.id, stored=s, cache=cache, lists=lists)


@router.get("")
def list_alerts(
    svc: Svc,
    _user: Reader,
    status: Annotated[str | None, Query(pattern="^(new|confirmed|rejected)$")] = None,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    person_id: RowIdQuery = None,
    since: Annotated[float | None, Query(description="Epoch s, inclusive")] = None,
    until: Annotated[float | None, Query(description="Epoch s, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    """Alerts newest first."""
    rows = svc.stores.alerts.list(
        camera_id=camera,
        status=status,  # type: ignore[arg-type]
        person_id=person_id,
        since=since,
        until=until,
        limit=limit,
    )
    cache: dict[int, str | None] = {}
    lists: dict[str, tuple[int, dict[int, int] | None]] = {}
    return [_stored_public(svc, s, cache, lists) for s in rows]


def _get(svc: Services, alert_id: int) -> StoredAlert:
    s = svc.stores.alerts.get(alert_id)
    if s is None:
        raise HTTPException(404, f"no alert with id {alert_id}")
    return s


@router.get("/{alert_id}")
def get_alert(alert_id: RowId, svc: Svc, _user: Reader) -> AlertPublic:
    return _stored_public(svc, _get(svc, alert_id))


@router.get("/{alert_id}/crop", response_class=Response)
def alert_crop(alert_id: RowId, svc: Svc, _user: Reader) -> Response:
    """The face crop of the alert's best shot (JPEG)."""
    return crop_response(_get(svc, alert_id).alert.crop_jpeg, f"crop for alert {alert_id}")


@router.post("/{alert_id}/decision")
def decide(alert_id: RowId, body: DecisionIn, request: Request, svc: Svc, user: Decider) -> AlertPublic:
    """Confirm (it was the person) or reject (a false match) an alert; a later decision replaces it."""
    _get(svc, alert_id)
    stored = svc.stores.alerts.decide(alert_id, body.decision, decided_by=user.username, comment=body.comment)
    svc.metrics.inc("alert_decisions_total")
    audit(
        request,
        user,
        "alert.decision",
        target=f"alert:{alert_id}",
        details={"decision": body.decision, "person_id": stored.alert.match.person_id, "comment": body.comment},
    )
    return _stored_public(svc, stored)


def _event(svc: Services, record: object, cache: dict[int, str | None]) -> dict[str, Any] | None:
    if isinstance(record, Alert):
        alert_id = getattr(record, "id", None)
        if alert_id is None:  # not stored (a store error): nothing to link to
            return None
        return {"type": "alert", "alert": alert_public(svc, record, int(alert_id), cache=cache).model_dump()}
    state = getattr(record, "state", None)
    camera_id = getattr(record, "camera_id", None)
    if state is not None and camera_id is not None and hasattr(record, "since"):
        return {
            "type": "camera",
            "camera_id": camera_id,
            "state": state,
            "since": record.since,  # type: ignore[attr-defined]
            "last_error": getattr(record, "last_error", None),
        }
    return None


@router.websocket("/live")
async def live(websocket: WebSocket, user: Annotated[CurrentUser, Depends(ws_require_roles(*ALERT_READERS))]) -> None:
    """New alerts and camera status changes as they happen (see the module docstring)."""
    svc: Services = websocket.app.state.services
    await websocket.accept()
    sub = svc.bus.subscribe(None, maxsize=svc.config.ws_queue)
    svc.metrics.ws_connected(1)
    logger.info("live socket opened by %s", user.username)
    gone = asyncio.Event()

    async def watch_close() -> None:
        try:
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        gone.set()

    watcher = asyncio.create_task(watch_close())
    dropped_seen = 0
    cache: dict[int, str | None] = {}
    try:
        while not gone.is_set():
            records = sub.drain()
            if sub.dropped > dropped_seen:
                svc.metrics.inc("ws_events_dropped_total", sub.dropped - dropped_seen)
                dropped_seen = sub.dropped
            if not records:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), WS_POLL_S)
                continue
            events = await run_in_threadpool(lambda rs=records: [e for r in rs if (e := _event(svc, r, cache))])
            for e in events:
                await websocket.send_json(e)
                svc.metrics.inc("ws_events_sent_total")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()
        watcher.cancel()
        svc.metrics.ws_connected(-1)
        logger.info("live socket of %s closed", user.username)
