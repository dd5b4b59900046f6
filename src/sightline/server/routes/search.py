"""Search by photo (operator, supervisor): every face in an uploaded photo -> its gallery candidates,
with scores and what they mean. A reason is required and audited; each user is rate limited."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile

from sightline.imaging import ImageError, load_image
from sightline.server.auth import SEARCHERS, CurrentUser, require_roles
from sightline.server.deps import Svc, audit, list_meaning, list_size, meaning, read_upload, reason_required
from sightline.server.routes.persons import crop_url
from sightline.server.schemas import CandidatePublic, FacePublic, SearchOut
from sightline.server.services import Services
from sightline.types import Candidate

router = APIRouter(prefix="/api", tags=["search"])
Searcher = Annotated[CurrentUser, Depends(require_roles(*SEARCHERS))]


def check_rate(svc: Services, user: CurrentUser) -> None:
    """429 with Retry-After when the user is over ``search_rate_per_min`` (burst ``search_burst``)."""
    wait = svc.search_limiter.take(user.id)
    if wait > 0:
        svc.metrics.inc("searches_rate_limited_total")
        raise HTTPException(
            429, f"search rate limit reached; try again in {wait:.0f} s", headers={"Retry-After": str(int(wait) + 1)}
        )


@router.post("/search")
def search(
    request: Request,
    svc: Svc,
    user: Searcher,
    file: Annotated[UploadFile, File(description="The photo to search with (every face in it is searched)")],
    reason: Annotated[str, Form(min_length=1, max_length=500, description="Case reference or purpose (audited)")],
    watchlist: Annotated[str | None, Form(max_length=100, description="Search only this watchlist")] = None,
    top_k: Annotated[int, Form(ge=1, le=50, description="Candidates per face")] = 5,
) -> SearchOut:
    reason = reason_required(reason)
    check_rate(svc, user)
    t0 = time.perf_counter()
    data = read_upload(request, file)
    wl = svc.gallery.get_watchlist(watchlist) if watchlist else None
    details: dict[str, object] = {"watchlist": wl.name if wl else None, "top_k": top_k}
    try:
        img = load_image(data, limits=svc.gallery.imaging, name=(file.filename or "photo")[-200:])
    except ImageError as e:
        audit(request, user, "search.photo", reason=reason, outcome="failed", details={**details, "error": e.code})
        raise
    results = svc.gallery.search(img, watchlist=wl.name if wl else None, top_k=top_k)
    threshold = results[0].threshold if results else svc.gallery._threshold(wl)
    n = list_size(svc, wl.name if wl else None)  # the same list for every candidate

    def candidate(c: Candidate) -> CandidatePublic:
        rate, words = list_meaning(svc, c.similarity, n)
        return CandidatePublic(
            person_id=c.person_id,
            name=c.name,
            external_id=c.external_id,
            similarity=round(float(c.similarity), 4),
            threshold=round(float(c.threshold), 4),
            is_match=c.is_match,
            est_fmr=c.est_fmr,
            meaning=meaning(svc, c.similarity),
            list_templates=n,
            stranger_rate=rate,
            meaning_for_list=words,
            crop_url=None if c.template_id is None else crop_url(c.person_id, c.template_id),
        )

    faces = [
        FacePublic(
            xyxy=[round(float(v), 1) for v in r.face.xyxy],
            quality=round(float(r.face.quality.score), 4),
            candidates=[candidate(c) for c in r.candidates],
        )
        for r in results
    ]
    svc.metrics.search_latency.observe(time.perf_counter() - t0)
    svc.metrics.inc("searches_total")
    audit(
        request,
        user,
        "search.photo",
        reason=reason,
        details={**details, "faces": len(faces), "matches": sum(1 for r in results if r.best_match is not None)},
    )
    return SearchOut(watchlist=wl.name if wl else None, threshold=float(threshold), faces=faces)
