"""Watchlists, their members and notification channels.

Read: admin, supervisor, operator. Write: admin, supervisor. Thresholds are given as a similarity or
as the false-match rate to aim for (converted with the engine's calibration); every change is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from sightline.gallery.records import UnknownWatchlistError, Watchlist
from sightline.server.auth import READ_GALLERY, WRITE_GALLERY, CurrentUser, require_roles
from sightline.server.deps import RowId, Svc, audit, meaning
from sightline.server.schemas import ChannelCreate, MemberAdd, WatchlistCreate, WatchlistPublic, WatchlistUpdate
from sightline.server.services import Services

router = APIRouter(prefix="/api", tags=["watchlists"])
Reader = Annotated[CurrentUser, Depends(require_roles(*READ_GALLERY))]
Writer = Annotated[CurrentUser, Depends(require_roles(*WRITE_GALLERY))]


def _by_id(svc: Services, watchlist_id: int) -> Watchlist:
    for wl in svc.gallery.list_watchlists():
        if wl.id == watchlist_id:
            return wl
    raise UnknownWatchlistError(f"no watchlist with id {watchlist_id}")


def _public(svc: Services, wl: Watchlist) -> WatchlistPublic:
    cal = svc.engine.calibration
    eff = float(wl.threshold) if wl.threshold is not None else float(cal.default_threshold)
    return WatchlistPublic(
        id=wl.id,
        name=wl.name,
        description=wl.description,
        threshold=wl.threshold,
        effective_threshold=eff,
        est_fmr=float(cal.est_fmr(eff)),
        meaning=meaning(svc, eff),
        member_count=wl.member_count,
        created_at=wl.created_at.timestamp(),
        threshold_tuned_for=wl.threshold_templates,
    )


def _threshold(svc: Services, threshold: float | None, fmr: float | None) -> float | None:
    if threshold is not None and fmr is not None:
        raise HTTPException(422, "give threshold or fmr, not both")
    if fmr is not None:
        to = getattr(svc.engine.calibration, "threshold_for_fmr", None)
        if to is None:
            raise HTTPException(422, "this engine's calibration cannot convert a false-match rate; give threshold")
        return float(to(fmr))
    return threshold


def _channels(svc: Services) -> Any:
    try:
        from sightline.events.notify import ChannelStore
    except ImportError:
        raise HTTPException(503, "notification channels are not available in this build") from None
    return ChannelStore(svc.gallery.store)


@router.get("/watchlists")
def list_watchlists(svc: Svc, _user: Reader) -> list[WatchlistPublic]:
    return [_public(svc, wl) for wl in svc.gallery.list_watchlists()]


@router.post("/watchlists", status_code=201)
def create_watchlist(body: WatchlistCreate, request: Request, svc: Svc, user: Writer) -> WatchlistPublic:
    thr = _threshold(svc, body.threshold, body.fmr)
    wl = svc.gallery.create_watchlist(body.name, body.description, thr)
    audit(request, user, "watchlist.create", target=f"watchlist:{wl.id}", details={"name": wl.name, "threshold": thr})
    return _public(svc, wl)


@router.get("/watchlists/{watchlist_id}")
def get_watchlist(watchlist_id: RowId, svc: Svc, _user: Reader) -> dict[str, Any]:
    """The watchlist with its members (id, name, external id, photo count)."""
    wl = _by_id(svc, watchlist_id)
    members = svc.gallery.store.person_info(watchlist_id=wl.id)
    return {
        **_public(svc, wl).model_dump(),
        "members": [
            {"id": p.id, "name": p.name, "external_id": p.external_id, "template_count": p.template_count}
            for p in members
        ],
    }


@router.patch("/watchlists/{watchlist_id}")
def update_watchlist(
    watchlist_id: RowId, body: WatchlistUpdate, request: Request, svc: Svc, user: Writer
) -> WatchlistPublic:
    wl = _by_id(svc, watchlist_id)
    thr = _threshold(svc, body.threshold, body.fmr)
    if body.default_threshold and thr is not None:
        raise HTTPException(422, "default_threshold cannot be combined with threshold or fmr")
    new_thr = None if body.default_threshold else (thr if thr is not None else wl.threshold)
    desc = wl.description if body.description is None else body.description
    svc.gallery.store.update_watchlist(wl.id, description=desc, threshold=new_thr)
    audit(
        request,
        user,
        "watchlist.update",
        target=f"watchlist:{wl.id}",
        details={
            "threshold": new_thr,
            "previous_threshold": wl.threshold,
            "description_changed": desc != wl.description,
        },
    )
    return _public(svc, _by_id(svc, wl.id))


@router.delete("/watchlists/{watchlist_id}", status_code=204)
def delete_watchlist(watchlist_id: RowId, request: Request, svc: Svc, user: Writer) -> Response:
    """Delete the watchlist, its memberships and channels; the persons stay enrolled."""
    wl = _by_id(svc, watchlist_id)
    svc.gallery.store.delete_watchlist(wl.id)
    audit(request, user, "watchlist.delete", target=f"watchlist:{wl.id}", details={"name": wl.name})
    return Response(status_code=204)


@router.post("/watchlists/{watchlist_id}/members", status_code=201)
def add_member(watchlist_id: RowId, body: MemberAdd, request: Request, svc: Svc, user: Writer) -> dict[str, Any]:
    wl = _by_id(svc, watchlist_id)
    person = svc.gallery.get_person(body.person_id)
    added = svc.gallery.store.add_member(wl.id, person.id)
    audit(request, user, "watchlist.member_add", target=f"watchlist:{wl.id}", details={"person_id": person.id})
    return {"watchlist_id": wl.id, "person_id": person.id, "added": added}


@router.delete("/watchlists/{watchlist_id}/members/{person_id}", status_code=204)
def remove_member(watchlist_id: RowId, person_id: RowId, request: Request, svc: Svc, user: Writer) -> Response:
    wl = _by_id(svc, watchlist_id)
    if not svc.gallery.store.remove_member(wl.id, person_id):
        raise HTTPException(404, f"person {person_id} is not on watchlist {wl.name!r}")
    audit(request, user, "watchlist.member_remove", target=f"watchlist:{wl.id}", details={"person_id": person_id})
    return Response(status_code=204)


@router.get("/watchlists/{watchlist_id}/channels")
def list_channels(watchlist_id: RowId, svc: Svc, _user: Reader) -> list[dict[str, Any]]:
    """The watchlist's notification channels (targets redacted, secrets never shown)."""
    wl = _by_id(svc, watchlist_id)
    return [c.public() for c in _channels(svc).list(wl.id)]


@router.post("/watchlists/{watchlist_id}/channels", status_code=201)
def create_channel(
    watchlist_id: RowId, body: ChannelCreate, request: Request, svc: Svc, user: Writer
) -> dict[str, Any]:
    wl = _by_id(svc, watchlist_id)
    ch = _channels(svc).add(wl.id, body.kind, body.target, body.secret, body.options)
    audit(
        request,
        user,
        "channel.create",
        target=f"channel:{ch.id}",
        details={"watchlist_id": wl.id, "kind": ch.kind, "target": ch.target_redacted},
    )
    return ch.public()


@router.delete("/channels/{channel_id}", status_code=204)
def delete_channel(channel_id: RowId, request: Request, svc: Svc, user: Writer) -> Response:
    if not _channels(svc).delete(channel_id):
        raise HTTPException(404, f"no channel with id {channel_id}")
    audit(request, user, "channel.delete", target=f"channel:{channel_id}")
    return Response(status_code=204)
