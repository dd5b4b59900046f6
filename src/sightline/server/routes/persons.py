"""Persons and their photos: list, create, show, delete; enroll photos by upload, remove one, get its crop.

Read: admin, supervisor, operator. Write: admin, supervisor. Creating a person and enrolling photos
require a reason (audited); every change is audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile

from sightline.gallery.records import GalleryError, UnknownPersonError
from sightline.governance.subject import erase_subject
from sightline.imaging import ImageError, LoadedImage, load_image
from sightline.server.auth import READ_GALLERY, WRITE_GALLERY, CurrentUser, require_roles
from sightline.server.deps import RowId, Svc, audit, client_of, crop_response, read_upload, reason_required
from sightline.server.schemas import EnrollOut, PersonCreate, PersonDetail, PersonPublic, PhotoOutcome, PhotoPublic
from sightline.server.services import Services

router = APIRouter(prefix="/api/persons", tags=["persons"])
Reader = Annotated[CurrentUser, Depends(require_roles(*READ_GALLERY))]
Writer = Annotated[CurrentUser, Depends(require_roles(*WRITE_GALLERY))]


def crop_url(person_id: int, template_id: int) -> str:
    return f"/api/persons/{person_id}/photos/{template_id}/crop"


def _info(svc: Services, person_id: int):
    found = svc.gallery.store.person_info([person_id])
    if not found:
        raise UnknownPersonError(f"no person with id {person_id}")
    return found[0]


def best_crops(svc: Services, person_id: int | None = None) -> dict[int, str]:
    """person id -> URL of their best enrolled crop (highest quality, then oldest), for everyone (one query
    over the templates) or one person; persons without a kept crop are absent."""
    sql = (
        "SELECT person_id, id FROM (SELECT person_id, id, row_number() OVER "
        "(PARTITION BY person_id ORDER BY quality DESC, id) AS rank FROM templates WHERE crop_jpeg IS NOT NULL"
        + ("" if person_id is None else " AND person_id = ?")
        + ") WHERE rank = 1"
    )
    rows = svc.gallery.store._conn().execute(sql, () if person_id is None else (person_id,)).fetchall()
    return {int(pid): crop_url(int(pid), int(tid)) for pid, tid in rows}


def _public(p, crops: dict[int, str]) -> PersonPublic:
    return PersonPublic(
        id=p.id,
        name=p.name,
        external_id=p.external_id,
        notes=p.notes,
        created_at=p.created_at.timestamp(),
        template_count=p.template_count,
        watchlists=list(p.watchlists),
        crop_url=crops.get(p.id),
    )


@router.get("")
def list_persons(
    svc: Svc,
    _user: Reader,
    q: Annotated[str | None, Query(max_length=200, description="Part of the name or external id")] = None,
    watchlist: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[PersonPublic]:
    persons = svc.gallery.list_persons(watchlist)
    if q:
        needle = q.strip().casefold()
        persons = [p for p in persons if needle in p.name.casefold() or needle in (p.external_id or "").casefold()]
    crops = best_crops(svc) if persons else {}
    return [_public(p, crops) for p in persons[:limit]]


@router.post("", status_code=201)
def create_person(body: PersonCreate, request: Request, svc: Svc, user: Writer) -> PersonPublic:
    """A person without photos yet (enroll them with POST /api/persons/{id}/photos)."""
    reason = reason_required(body.reason)
    store = svc.gallery.store
    wls = [svc.gallery.get_watchlist(n) for n in body.watchlists]  # 404 naming the existing ones
    if body.external_id is not None and store.find_persons(external_id=body.external_id):
        raise HTTPException(409, f"external id {body.external_id!r} is already used by another person")
    with store.transaction():
        person = store.add_person(body.name, external_id=body.external_id, notes=body.notes)
        for wl in wls:
            store.add_member(wl.id, person.id)
    audit(
        request,
        user,
        "person.create",
        target=f"person:{person.id}",
        reason=reason,
        details={"watchlists": [w.name for w in wls]},
    )
    return _public(_info(svc, person.id), {})


@router.get("/{person_id}")
def get_person(person_id: RowId, svc: Svc, _user: Reader) -> PersonDetail:
    p = _info(svc, person_id)
    photos = [
        PhotoPublic(
            template_id=t.id,
            quality=t.quality,
            source_name=t.source_name,
            created_at=t.created_at.timestamp(),
            crop_url=crop_url(person_id, t.id),
        )
        for t in svc.gallery.store.templates_of(person_id)
    ]
    return PersonDetail(**_public(p, best_crops(svc, person_id)).model_dump(), photos=photos)


@router.delete("/{person_id}", status_code=204)
def delete_person(
    person_id: RowId,
    request: Request,
    svc: Svc,
    user: Writer,
    reason: Annotated[str | None, Query(max_length=500, description="Case reference of the erasure (required)")] = None,
) -> Response:
    """Erase a person: their photos, templates and crops, memberships, alerts (with their deliveries) and
    sightings, with the freed database pages zeroed; audited as ``subject.erase`` with the counts removed
    (``sightline.governance.subject.erase_subject``). 422 without a reason, 404 for an unknown person."""
    why = reason_required(reason)
    _info(svc, person_id)
    erase_subject(
        svc.gallery.store,
        person_id,
        audit=svc.audit,
        actor=user.username,
        reason=why,
        client=client_of(request),
        gallery=svc.gallery,
    )
    return Response(status_code=204)


@router.post("/{person_id}/photos")
def enroll_photos(
    person_id: RowId,
    request: Request,
    svc: Svc,
    user: Writer,
    files: Annotated[list[UploadFile], File(description="Photos of this person (JPEG, PNG, WebP, ...)")],
    reason: Annotated[str, Form(min_length=1, max_length=500, description="Case reference or purpose")],
) -> EnrollOut:
    """Enroll photos: each file is accepted (one template) or skipped with the reason (not a photo,
    too many pixels, no face, several faces, duplicate, ...). The photo's type is found from its
    content, never from its name or the declared content type."""
    reason = reason_required(reason)
    p = _info(svc, person_id)
    if len(files) > svc.config.max_upload_files:
        raise HTTPException(413, f"at most {svc.config.max_upload_files} photos per upload, got {len(files)}")
    outcomes: dict[str, PhotoOutcome] = {}
    loaded: list[LoadedImage] = []
    order: list[str] = []
    for i, f in enumerate(files):
        label = (f.filename or f"photo{i + 1}").replace("/", "_")[-200:]
        while label in outcomes or label in order:
            label = f"{i + 1}-{label}"
        data = read_upload(request, f)
        try:
            img = load_image(data, limits=svc.gallery.imaging, name=label)
        except ImageError as e:
            outcomes[label] = PhotoOutcome(name=label, accepted=False, reason=e.reason, code=e.code)
            order.append(label)
            continue
        loaded.append(img)
        order.append(label)
    if loaded:
        report = svc.gallery.enroll_person(p.name, loaded, watchlist=None, external_id=p.external_id)
        result = report.results[0]
        if result.person_id not in (None, person_id):
            raise GalleryError(f"photos were enrolled as person {result.person_id}, not {person_id}")
        skipped = {s.name: s for s in result.skipped}
        tids = iter(result.template_ids)
        for img in loaded:
            s = skipped.get(img.name)
            if s is not None:
                outcomes[img.name] = PhotoOutcome(name=img.name, accepted=False, reason=s.reason, code=s.code)
            else:
                outcomes[img.name] = PhotoOutcome(name=img.name, accepted=True, template_id=next(tids, None))
    files_out = [outcomes[n] for n in order]
    accepted = sum(1 for o in files_out if o.accepted)
    audit(
        request,
        user,
        "person.enroll",
        target=f"person:{person_id}",
        reason=reason,
        details={"accepted": accepted, "skipped": len(files_out) - accepted},
    )
    return EnrollOut(person_id=person_id, accepted=accepted, skipped=len(files_out) - accepted, files=files_out)


def _template_of(svc: Services, person_id: int, template_id: int):
    t = svc.gallery.store.get_template(template_id)
    if t is None or t.person_id != person_id:
        raise HTTPException(404, f"person {person_id} has no photo {template_id}")
    return t


@router.delete("/{person_id}/photos/{template_id}", status_code=204)
def delete_photo(person_id: RowId, template_id: RowId, request: Request, svc: Svc, user: Writer) -> Response:
    _template_of(svc, person_id, template_id)
    svc.gallery.delete_template(template_id)
    audit(request, user, "photo.delete", target=f"template:{template_id}", details={"person_id": person_id})
    return Response(status_code=204)


@router.get("/{person_id}/photos/{template_id}/crop", response_class=Response)
def photo_crop(person_id: RowId, template_id: RowId, svc: Svc, _user: Reader) -> Response:
    """The enrolled face crop (JPEG)."""
    _template_of(svc, person_id, template_id)
    return crop_response(svc.gallery.store.template_crop(template_id), f"crop kept for photo {template_id}")
