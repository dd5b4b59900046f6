"""Cameras stored in the gallery: list with live status, add / edit / remove, start / stop, snapshot.

Read and snapshot: admin, supervisor, operator. Change, start, stop: admin, supervisor (audited).
URLs are shown with their password masked; a new or changed camera starts at once when the server
starts stored cameras (``ServerConfig.start_cameras``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import ValidationError

from sightline.config import CameraConfig
from sightline.server.auth import READ_GALLERY, WRITE_GALLERY, CurrentUser, require_roles
from sightline.server.deps import Svc, audit
from sightline.server.schemas import CameraCreate, CameraPublic, CameraStatusPublic, CameraUpdate
from sightline.server.services import CameraError, Services

router = APIRouter(prefix="/api/cameras", tags=["cameras"])
Reader = Annotated[CurrentUser, Depends(require_roles(*READ_GALLERY))]
Writer = Annotated[CurrentUser, Depends(require_roles(*WRITE_GALLERY))]


def _config(camera_id: str, url: str, options: dict[str, Any]) -> CameraConfig:
    bad = {"id", "url"} & set(options)
    if bad:
        raise HTTPException(422, f"options must not contain {', '.join(sorted(bad))}")
    try:
        return CameraConfig(id=camera_id, url=url, **options)
    except ValidationError as e:
        msg = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'camera'}: {x['msg']}" for x in e.errors())
        raise HTTPException(422, msg) from None


def _public(svc: Services, cfg: CameraConfig, created_at: float | None) -> CameraPublic:
    from sightline.video.sources import redact_url

    st = svc.supervisor.state(cfg.id)
    return CameraPublic(
        id=cfg.id,
        url=redact_url(cfg.url),
        options=cfg.model_dump(mode="json", exclude={"id", "url"}, exclude_unset=True),
        created_at=created_at,
        status=CameraStatusPublic(
            state=st.state,
            running=st.running,
            last_error=st.last_error,
            since=st.since,
            fps=st.fps,
            dropped=st.dropped,
            analysed=st.analysed,
            alerts=st.alerts,
        ),
    )


def _stored(svc: Services, camera_id: str):
    s = svc.supervisor.cameras.get(camera_id)
    if s is None:
        raise HTTPException(404, f"no camera with id {camera_id!r}")
    return s


@router.get("")
def list_cameras(svc: Svc, _user: Reader) -> list[CameraPublic]:
    return [_public(svc, c.config, c.created_at.timestamp()) for c in svc.supervisor.cameras.list()]


@router.get("/{camera_id}")
def get_camera(camera_id: str, svc: Svc, _user: Reader) -> CameraPublic:
    s = _stored(svc, camera_id)
    return _public(svc, s.config, s.created_at.timestamp())


@router.post("", status_code=201)
def create_camera(body: CameraCreate, request: Request, svc: Svc, user: Writer) -> CameraPublic:
    cfg = _config(body.id, body.url, body.options)
    stored = svc.supervisor.cameras.add(cfg)
    audit(request, user, "camera.create", target=f"camera:{cfg.id}")
    if svc.config.start_cameras:
        svc.supervisor.start(cfg.id)
    return _public(svc, stored.config, stored.created_at.timestamp())


@router.patch("/{camera_id}")
def update_camera(camera_id: str, body: CameraUpdate, request: Request, svc: Svc, user: Writer) -> CameraPublic:
    """Change the URL and/or replace the options; a running camera is restarted with them."""
    old = _stored(svc, camera_id).config
    options = old.model_dump(mode="json", exclude={"id", "url"}, exclude_unset=True)
    cfg = _config(camera_id, body.url or old.url, options if body.options is None else body.options)
    was_running = svc.supervisor.stop(camera_id)
    cams = svc.supervisor.cameras
    with cams.store.transaction():
        cams.remove(camera_id)
        stored = cams.add(cfg)
    audit(
        request,
        user,
        "camera.update",
        target=f"camera:{camera_id}",
        details={"url_changed": cfg.url != old.url, "options": sorted(body.options or {})},
    )
    if was_running:
        svc.supervisor.start(camera_id)
    return _public(svc, stored.config, stored.created_at.timestamp())


@router.delete("/{camera_id}", status_code=204)
def delete_camera(camera_id: str, request: Request, svc: Svc, user: Writer) -> Response:
    """Stop and remove the camera; its past alerts and sightings stay."""
    _stored(svc, camera_id)
    svc.supervisor.stop(camera_id)
    svc.supervisor.cameras.remove(camera_id)
    audit(request, user, "camera.delete", target=f"camera:{camera_id}")
    return Response(status_code=204)


@router.post("/{camera_id}/start")
def start_camera(camera_id: str, request: Request, svc: Svc, user: Writer) -> CameraPublic:
    s = _stored(svc, camera_id)
    started = svc.supervisor.start(camera_id)
    audit(request, user, "camera.start", target=f"camera:{camera_id}", details={"was_running": not started})
    return _public(svc, s.config, s.created_at.timestamp())


@router.post("/{camera_id}/stop")
def stop_camera(camera_id: str, request: Request, svc: Svc, user: Writer) -> CameraPublic:
    s = _stored(svc, camera_id)
    stopped = svc.supervisor.stop(camera_id)
    audit(request, user, "camera.stop", target=f"camera:{camera_id}", details={"was_running": stopped})
    return _public(svc, s.config, s.created_at.timestamp())


@router.get("/{camera_id}/snapshot", response_class=Response)
def snapshot(camera_id: str, svc: Svc, _user: Reader) -> Response:
    """A current frame (JPEG), read from the camera's input for this request."""
    _stored(svc, camera_id)
    try:
        data = svc.supervisor.snapshot(camera_id)
    except CameraError as e:
        raise HTTPException(503, str(e)) from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store, private"})
