"""Audit routes (auditor and admin): view and filter the audit log, verify its hash chain, export it.

- ``GET /api/audit?actor=&action=&target=&person_id=&outcome=&since=&until=&limit=`` -> entries, newest first.
  ``action`` may name a family (``search.*``); ``since``/``until`` take epoch s, an ISO date/time or a
  duration ago (``24h``); blank parameters are ignored (the console's filter form sends them).
- ``GET /api/audit/export?format=csv|json`` (same filters) -> a download in chain order, streamed; the JSON
  carries the chain head. Every export is itself audited (``audit.export``) before it is sent.
- ``GET /api/audit/verify[?anchor_seq=&anchor_hash=]`` -> the chain check (``VerifyReport``, the same as
  ``sightline audit verify``): HMAC chain, and the server's signed checkpoint file when it exists; with a chain
  head saved earlier it also detects a truncated or rewritten log.
- ``GET /api/audit/head`` -> the newest entry's seq and hash, to keep outside the server.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from sightline.governance.audit import AuditEntry, AuditError, ChainHead, parse_when
from sightline.server.auth import CurrentUser, require_roles
from sightline.server.deps import Svc, audit
from sightline.server.schemas import MAX_ID

router = APIRouter(prefix="/api/audit", tags=["audit"])
Auditor = Annotated[CurrentUser, Depends(require_roles("auditor", "admin"))]


class AuditEntryPublic(BaseModel):
    """One audit entry. ts: epoch s; details: small JSON object (never biometric); hash/prev_hash: 64 hex chars
    (HMAC-SHA256 under the audit key of ``key_id``; sha256 for entries from before keyed chains, key_id null)."""

    seq: int
    ts: float
    actor: str
    action: str
    target: str | None
    reason: str | None
    client: str | None
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = None


class ChainHeadPublic(BaseModel):
    seq: int = Field(description="Newest entry's position (0: empty log)")
    hash: str = Field(description="Newest entry's sha256 (64 zeros for an empty log)")
    ts: float | None = Field(description="Newest entry's time, epoch s")


class VerifyPublic(BaseModel):
    ok: bool = Field(description="Every link holds (and the anchor, when given, matches)")
    entries: int = Field(description="Entries verified (up to the first broken one)")
    head: ChainHeadPublic
    first_broken_seq: int | None = Field(description="First entry whose link, hash, key or checkpoint is wrong")
    problem: str | None = Field(description="What is wrong, for people")
    anchor_checked: bool
    keyed_entries: int = Field(0, description="Entries checked with their HMAC")
    unkeyed_entries: int = Field(0, description="Entries from before keyed chains, checked with sha256")
    checkpoint_file: str | None = Field(None, description="The signed checkpoint file read (null: none)")
    checkpoints_checked: int = Field(0, description="Checkpoints whose signature held")


class _Filters(BaseModel):
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    person_id: int | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None


def _blank(v: str | None) -> str | None:
    return v.strip() if v is not None and v.strip() else None


def filters(
    actor: Annotated[str | None, Query(max_length=200, description="Exact actor (username, cli:<user>)")] = None,
    action: Annotated[
        str | None, Query(max_length=100, description="Action (search.photo) or family (search.*)")
    ] = None,
    target: Annotated[str | None, Query(max_length=200, description="Exact target, e.g. person:12")] = None,
    person_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Entries naming this person")] = None,
    outcome: Annotated[str | None, Query(max_length=40, description="ok, denied, failed ...")] = None,
    since: Annotated[str | None, Query(max_length=64, description="ts >= this: epoch s, ISO time or 24h / 7d")] = None,
    until: Annotated[str | None, Query(max_length=64, description="ts < this (same forms)")] = None,
) -> _Filters:
    try:
        return _Filters(
            actor=_blank(actor),
            action=_blank(action),
            target=_blank(target),
            person_id=person_id,
            outcome=_blank(outcome),
            since=parse_when(since, name="since"),
            until=parse_when(until, name="until"),
        )
    except AuditError as e:
        raise HTTPException(422, str(e)) from e


Filters = Annotated[_Filters, Depends(filters)]


def _public(e: AuditEntry) -> AuditEntryPublic:
    return AuditEntryPublic(**e.to_json())


@router.get("")
def list_audit(
    svc: Svc,
    _user: Auditor,
    f: Filters,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most entries returned (newest first)")] = 100,
) -> list[AuditEntryPublic]:
    """Audit entries matching every filter given, newest first."""
    return [_public(e) for e in svc.audit.query(**f.model_dump(), limit=limit, order="desc")]


@router.get(
    "/export",
    responses={200: {"content": {"text/csv": {}, "application/json": {}}, "description": "The export file"}},
)
def export_audit(
    request: Request,
    svc: Svc,
    user: Auditor,
    f: Filters,
    fmt: Annotated[Literal["csv", "json"], Query(alias="format", description="csv or json")] = "json",
) -> StreamingResponse:
    """The matching entries in chain order as a CSV or JSON download (audited as ``audit.export``)."""
    args = f.model_dump()
    head = svc.audit.head()  # the export is the log as it is now, without the entry recording the export
    count = svc.audit.count_matching(**args, upto_seq=head.seq)
    chunks = svc.audit.export_chunks(fmt, head=head, upto_seq=head.seq, **args)
    audit(
        request,
        user,
        "audit.export",
        details={
            "format": fmt,
            "entries": count,
            "upto_seq": head.seq,
            **{k: v for k, v in args.items() if v is not None},
        },
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return StreamingResponse(
        chunks,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="sightline-audit-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/verify")
def verify_audit(
    svc: Svc,
    _user: Auditor,
    anchor_seq: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Seq of a chain head saved earlier")] = None,
    anchor_hash: Annotated[
        str | None, Query(pattern="^[0-9a-f]{64}$", description="Hash of that saved chain head")
    ] = None,
) -> VerifyPublic:
    """Walk the hash chain and report the first broken link; check the signed checkpoints (and a saved head,
    when given)."""
    if (anchor_seq is None) != (anchor_hash is None):
        raise HTTPException(422, "give both anchor_seq and anchor_hash, or neither")
    anchor = None if anchor_seq is None else ChainHead(anchor_seq, anchor_hash or "")
    return VerifyPublic(**svc.audit.verify(anchor=anchor).to_json())


@router.get("/head")
def audit_head(svc: Svc, _user: Auditor) -> ChainHeadPublic:
    """The newest entry's seq and hash: keep it outside the server to detect a truncated log later."""
    return ChainHeadPublic(**svc.audit.head().to_json())
