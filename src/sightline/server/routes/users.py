"""Users (admin only). Passwords are hashed with argon2; the last enabled admin cannot be removed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from sightline.server.auth import CurrentUser, User, require_roles
from sightline.server.deps import RowId, Svc, audit
from sightline.server.schemas import UserCreate, UserPublic, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"])
Admin = Annotated[CurrentUser, Depends(require_roles("admin"))]


def _public(u: User) -> UserPublic:
    return UserPublic(
        id=u.id,
        username=u.username,
        role=u.role,
        disabled=u.disabled,
        created_at=u.created_at,
        last_login_at=u.last_login_at,
    )


@router.get("")
def list_users(svc: Svc, _admin: Admin) -> list[UserPublic]:
    return [_public(u) for u in svc.users.list()]


@router.post("", status_code=201)
def create_user(body: UserCreate, request: Request, svc: Svc, admin: Admin) -> UserPublic:
    user = svc.users.add(body.username, body.password, body.role)
    audit(
        request, admin, "user.create", target=f"user:{user.id}", details={"username": user.username, "role": user.role}
    )
    return _public(user)


@router.patch("/{user_id}")
def update_user(user_id: RowId, body: UserUpdate, request: Request, svc: Svc, admin: Admin) -> UserPublic:
    user = svc.users.update(user_id, role=body.role, disabled=body.disabled, password=body.password)
    changed = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "password"}
    if body.password is not None:
        changed["password"] = "changed"
    audit(request, admin, "user.update", target=f"user:{user_id}", details=changed)
    return _public(user)


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: RowId, request: Request, svc: Svc, admin: Admin) -> Response:
    if user_id == admin.id:
        raise HTTPException(409, "you cannot delete yourself; ask another admin")
    svc.users.delete(user_id)
    audit(request, admin, "user.delete", target=f"user:{user_id}")
    return Response(status_code=204)
