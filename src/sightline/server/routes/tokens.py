"""API tokens for integrations: any logged-in user manages their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from sightline.server.auth import ALL_ROLES, ApiToken, CurrentUser, require_roles
from sightline.server.deps import RowId, Svc, audit
from sightline.server.schemas import TokenCreate, TokenCreated, TokenPublic

router = APIRouter(prefix="/api/tokens", tags=["tokens"])
AnyUser = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]


def _public(t: ApiToken) -> TokenPublic:
    return TokenPublic(
        id=t.id,
        name=t.name,
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )


@router.get("")
def list_tokens(svc: Svc, user: AnyUser) -> list[TokenPublic]:
    return [_public(t) for t in svc.tokens.list(user.id)]


@router.post("", status_code=201)
def create_token(body: TokenCreate, request: Request, svc: Svc, user: AnyUser) -> TokenCreated:
    """A bearer token for ``Authorization: Bearer <token>``, with the caller's role. Shown once."""
    rec, token = svc.tokens.create(user.id, body.name, ttl_s=None if body.ttl_days is None else body.ttl_days * 86400)
    audit(request, user, "token.create", target=f"token:{rec.id}", details={"name": rec.name})
    return TokenCreated(**_public(rec).model_dump(), token=token)


@router.delete("/{token_id}", status_code=204)
def revoke_token(token_id: RowId, request: Request, svc: Svc, user: AnyUser) -> Response:
    if not svc.tokens.revoke(user.id, token_id):
        raise HTTPException(404, f"you have no active token with id {token_id}")
    audit(request, user, "token.revoke", target=f"token:{token_id}")
    return Response(status_code=204)
