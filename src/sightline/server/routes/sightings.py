"""Sightings history (operator, supervisor): filter by camera, time and person; a sighting's crop; and
search the stored sightings by photo (only faces whose crop and descriptor the retention rules kept:
matched faces, and unmatched ones on cameras set to keep them, until they are purged)."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile

from sightline.events import StoredSighting
from sightline.imaging import load_image
from sightline.server.auth import SEARCHERS, CurrentUser, require_roles
from sightline.server.deps import RowId, RowIdQuery, Svc, audit, crop_response, meaning, read_upload, reason_required
from sightline.server.routes.search import check_rate
from sightline.server.schemas import SightingMatch, SightingPublic, SightingSearchOut
from sightline.server.services import Services

router = APIRouter(prefix="/api/sightings", tags=["sightings"])
Searcher = Annotated[CurrentUser, Depends(require_roles(*SEARCHERS))]
#: Most stored sightings compared by one search by photo (newest first).
MAX_SEARCHED = 50_000


def _public(s: StoredSighting) -> dict:
    g = s.sighting
    m = g.match
    return {
        "id": s.id,
        "camera_id": g.camera_id,
        "track_id": g.track_id,
        "start_ts": g.start_ts,
        "end_ts": g.end_ts,
        "frames": g.frames,
        "quality": round(float(g.quality), 4),
        "person_id": m.person_id if m else None,
        "person_name": m.name if m else None,
        "watchlist": m.watchlist if m else None,
        "similarity": None if m is None else round(float(m.similarity), 4),
        "est_fmr": None if m is None else float(m.est_fmr),
        "crop_url": f"/api/sightings/{s.id}/crop" if g.crop_jpeg else None,
    }


@router.get("")
def list_sightings(
    svc: Svc,
    _user: Searcher,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    person_id: RowIdQuery = None,
    matched: bool | None = None,
    since: Annotated[float | None, Query(description="Epoch s, inclusive (track end)")] = None,
    until: Annotated[float | None, Query(description="Epoch s, exclusive (track end)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SightingPublic]:
    rows = svc.stores.sightings.list(
        camera_id=camera, person_id=person_id, matched=matched, since=since, until=until, limit=limit
    )
    return [SightingPublic(**_public(s)) for s in rows]


@router.get("/{sighting_id}/crop")
def sighting_crop(sighting_id: RowId, svc: Svc, _user: Searcher):
    s = svc.stores.sightings.get(sighting_id)
    if s is None:
        raise HTTPException(404, f"no sighting with id {sighting_id}")
    return crop_response(s.sighting.crop_jpeg, f"crop kept for sighting {sighting_id}")


def _compare(svc: Services, probes: np.ndarray, threshold: float, top_k: int) -> tuple[int, list[SightingMatch]]:
    rows = [
        s
        for s in svc.stores.sightings.list(limit=MAX_SEARCHED)
        if s.sighting.embedding is not None and s.model == svc.engine.model
    ]
    if not rows or not len(probes):
        return len(rows), []
    mat = np.stack([np.asarray(s.sighting.embedding, np.float32) for s in rows])
    sims = (probes @ mat.T).max(axis=0)
    order = np.argsort(-sims)
    cal = svc.engine.calibration
    out = []
    for i in order[:top_k]:
        sim = float(sims[i])
        if sim < threshold:
            break
        out.append(
            SightingMatch(
                **_public(rows[i]),
                match_similarity=round(sim, 4),
                match_est_fmr=float(cal.est_fmr(sim)),
                match_meaning=meaning(svc, sim),
            )
        )
    return len(rows), out


@router.post("/search")
def search_sightings(
    request: Request,
    svc: Svc,
    user: Searcher,
    file: Annotated[UploadFile, File(description="A photo of the face to look for")],
    reason: Annotated[str, Form(min_length=1, max_length=500, description="Case reference or purpose (audited)")],
    threshold: Annotated[
        float | None, Form(ge=-1, le=1, description="Similarity threshold (default: the model's)")
    ] = None,
    top_k: Annotated[int, Form(ge=1, le=500)] = 50,
) -> SightingSearchOut:
    """Stored sightings whose face matches a face of the photo, most similar first."""
    reason = reason_required(reason)
    check_rate(svc, user)
    t0 = time.perf_counter()
    img = load_image(read_upload(request, file), limits=svc.gallery.imaging, name=(file.filename or "photo")[-200:])
    faces = svc.gallery.search(img, top_k=1)
    thr = float(svc.engine.calibration.default_threshold) if threshold is None else float(threshold)
    probes = np.stack([f.face.embedding for f in faces if f.face.embedding is not None]) if faces else np.zeros((0, 1))
    searched, matches = _compare(svc, probes, thr, top_k)
    svc.metrics.search_latency.observe(time.perf_counter() - t0)
    svc.metrics.inc("searches_total")
    audit(
        request,
        user,
        "search.sightings",
        reason=reason,
        details={"faces": len(faces), "searched": searched, "matches": len(matches), "threshold": thr},
    )
    return SightingSearchOut(threshold=thr, searched=searched, faces=len(faces), matches=matches)
