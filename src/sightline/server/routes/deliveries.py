"""Notification deliveries (the outbox of ``sightline.events.notify``): list them and retry failed ones.

Supervisor and admin only (a delivery names a channel's redacted target and its last error). Retrying a
failed delivery queues it again, due now, with a fresh attempt budget, and wakes the notifier; it is
audited (``delivery.retry``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from sightline.events.notify import Delivery, Notifier
from sightline.server.auth import CurrentUser, require_roles
from sightline.server.deps import RowId, RowIdQuery, Svc, audit
from sightline.server.schemas import DeliveryPublic
from sightline.server.services import Services

router = APIRouter(prefix="/api/deliveries", tags=["notifications"])
Operator = Annotated[CurrentUser, Depends(require_roles("supervisor", "admin"))]


def _notifier(svc: Services) -> Notifier:
    if svc.notifier is None:
        raise HTTPException(503, "notifications are not available in this server (the notifier did not start)")
    return svc.notifier


def delivery_public(d: Delivery) -> DeliveryPublic:
    return DeliveryPublic(
        id=d.id,
        alert_id=d.alert_id,
        channel_id=d.channel_id,
        kind=d.kind,
        target=d.target,
        watchlist=d.watchlist,
        camera_id=d.camera_id,
        person_id=d.person_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
    )


@router.get("")
def list_deliveries(
    svc: Svc,
    _user: Operator,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query(description="Only this status")] = None,
    alert_id: RowIdQuery = None,
    channel_id: RowIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most deliveries returned (newest first)")] = 100,
) -> list[DeliveryPublic]:
    """Deliveries newest first: 'pending' (waiting for their next attempt or in flight), 'delivered', or
    'failed' (given up after the configured attempts or refused for good; retry them by hand)."""
    rows = _notifier(svc).list_deliveries(status=status, alert_id=alert_id, channel_id=channel_id, limit=limit)
    return [delivery_public(d) for d in rows]


@router.post("/{delivery_id}/retry")
def retry_delivery(delivery_id: RowId, request: Request, svc: Svc, user: Operator) -> DeliveryPublic:
    """Queue a failed delivery again now. 404 when there is no such delivery, 409 when it is not failed
    (a pending one retries on its own; a delivered one is done)."""
    notifier = _notifier(svc)
    found = _one(notifier, delivery_id)
    if not found:
        raise HTTPException(404, f"no delivery with id {delivery_id}")
    before = found[0]
    if not notifier.retry(delivery_id):
        raise HTTPException(409, f"delivery {delivery_id} is {before.status}, not failed: nothing to retry")
    audit(
        request,
        user,
        "delivery.retry",
        target=f"delivery:{delivery_id}",
        details={"alert_id": before.alert_id, "channel_id": before.channel_id, "attempts": before.attempts},
    )
    after = _one(notifier, delivery_id)
    return delivery_public(after[0] if after else before)


def _one(notifier: Notifier, delivery_id: int) -> list[Delivery]:
    """The delivery ``delivery_id`` (a one-element list) or []."""
    conn = notifier.store._conn()
    row = conn.execute("SELECT alert_id, channel_id FROM outbox WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        return []
    rows = notifier.list_deliveries(alert_id=int(row[0]), channel_id=int(row[1]), limit=1000)
    return [d for d in rows if d.id == delivery_id]
