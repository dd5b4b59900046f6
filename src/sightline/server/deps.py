"""Shared FastAPI dependencies and small helpers of the routes: services, the client address, auditing,
bounded upload reading and the error mapping of the gallery's exceptions."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, UploadFile

from sightline.server.auth import CurrentUser
from sightline.server.schemas import MAX_ID
from sightline.server.services import Services

logger = logging.getLogger(__name__)


def get_services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]
#: A row id in the URL path: 0..2**63-1 (a larger number is a 422, never an overflow deep in SQLite).
RowId = Annotated[int, Path(ge=0, le=MAX_ID, description="Row id")]
#: An optional row id filter in the query string, same range.
RowIdQuery = Annotated[int | None, Query(ge=0, le=MAX_ID, description="Row id")]


def client_of(request: Request) -> str | None:
    """The peer address of the request (a proxy's own address when behind one)."""
    return request.client.host if request.client else None


def audit(
    request: Request,
    user: CurrentUser | str | None,
    action: str,
    *,
    target: str | None = None,
    reason: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Record one audit entry for this request (actor: the user's name). A failing audit write is an
    error of the request: an action that cannot be accounted for is not silently done."""
    actor = user.username if isinstance(user, CurrentUser) else (user or "anonymous")
    request.app.state.services.audit.record(
        actor, action, target=target, reason=reason, client=client_of(request), outcome=outcome, details=details
    )


def read_upload(request: Request, upload: UploadFile) -> bytes:
    """The bytes of one uploaded file, at most ``config.max_upload_bytes`` (413 beyond).

    The whole request body was already bounded by the upload-limit middleware before it was parsed;
    this reads the spooled part in one bounded read."""
    limit = request.app.state.config.max_upload_bytes
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        request.app.state.services.metrics.inc("uploads_refused_total")
        raise HTTPException(413, f"{upload.filename or 'file'}: more than the limit of {limit} bytes")
    return data


def reason_required(reason: str | None) -> str:
    """A stripped, non-empty reason (case reference) or 422."""
    text = (reason or "").strip()
    if not text:
        raise HTTPException(422, "a reason (case reference or purpose) is required")
    if len(text) > 500:
        raise HTTPException(422, "reason must be at most 500 characters")
    return text


def meaning(services: Services, similarity: float) -> str:
    """What a similarity means, in words, from the engine's calibration ("about 1 in 20,000 strangers...")."""
    cal = services.engine.calibration
    describe = getattr(cal, "describe", None)
    if describe is not None:
        return str(describe(similarity))
    return f"about {cal.est_fmr(similarity):.2g} of strangers score this high"


def list_size(services: Services, watchlist: str | None) -> int:
    """Templates a search of ``watchlist`` (None: the whole gallery) compares a face with, at least 1:
    the N of the list-aware meaning below. One SQL count; compute it once per list and request."""
    return max(1, services.gallery.store.template_counts(services.engine.model, watchlist)[1])


def list_meaning(services: Services, similarity: float, n: int) -> tuple[float, str]:
    """(estimated chance that a stranger scores ``similarity`` or more against a list of ``n``
    templates (``list_size``), that chance in words). A list of N templates gives a stranger N
    chances: FPIR = 1 - (1 - FMR)^N (``Calibration.est_fpir``; measured to over-state the open-set
    FPIR 1.3-2.4x, docs/BENCHMARKS.md §6)."""
    cal = services.engine.calibration
    if hasattr(cal, "est_fpir") and hasattr(cal, "describe_for_list"):
        return float(cal.est_fpir(similarity, n)), str(cal.describe_for_list(similarity, n))
    # a calibration that only knows the per-comparison rate (the CalibrationLike minimum)
    rate = 1.0 - (1.0 - float(cal.est_fmr(similarity))) ** n
    return rate, f"about {rate:.2g} of strangers score this high against {n:,} enrolled photos"


def alert_list_photos(services: Services, watchlist: str) -> dict[int, int] | None:
    """Photos per person -> persons of ``watchlist`` when the cameras match it by fused templates
    (``watch.templates = "fused"``), else None (per-photo: :func:`list_size` is what counts). One SQL
    count; look it up once per list and response. None too for a list deleted since its alerts."""
    if getattr(services.config.watch, "templates", "per-photo") != "fused":
        return None
    from sightline.gallery.tuning import list_photo_counts

    try:
        return list_photo_counts(services.gallery, watchlist) or {1: 1}  # type: ignore[arg-type]
    except LookupError:
        return None


def alert_list_meaning(
    services: Services, similarity: float, n: int, photos: dict[int, int] | None
) -> tuple[float, str]:
    """Like :func:`list_meaning`, for a live alert: with the list's ``photos`` per person
    (:func:`alert_list_photos`; the cameras match each listed person by ONE fused template) the chance
    is read from the fused-template calibrations (``sightline.gallery.tuning.score_meaning``); without,
    ``list_meaning(services, similarity, n)``, which is also the fallback when the model has no fused
    calibrations."""
    if photos is not None:
        from sightline.gallery.tuning import TuningError, score_meaning

        try:
            m = score_meaning(services.engine.calibration, similarity, 0, templates="fused", photos_per_person=photos)
            return m.est_fpir, m.text
        except TuningError:
            logger.debug("fused meaning unavailable; per-photo meaning used", exc_info=True)
    return list_meaning(services, similarity, n)


def crop_response(data: bytes | None, what: str) -> Any:
    """A JPEG response that no cache keeps (face crops are biometric data); 404 when there is none."""
    from fastapi.responses import Response

    if not data:
        raise HTTPException(404, f"no {what}")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store, private"})
