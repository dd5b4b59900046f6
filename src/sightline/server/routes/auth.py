"""Login, logout and who am I. Login failures are throttled per username and per client and audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from sightline.server.auth import ALL_ROLES, SESSION_COOKIE, CurrentUser, public, require_roles
from sightline.server.deps import Svc, audit, client_of
from sightline.server.schemas import LoginIn, LoginOut, MeOut, UserPublic

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login", dependencies=[Depends(public)])
def login(body: LoginIn, request: Request, response: Response, svc: Svc) -> LoginOut:
    """Check the password, start a console session: sets the ``sightline_session`` cookie (HttpOnly,
    SameSite=Strict, Secure over https) and returns the CSRF token to echo in ``X-CSRF-Token``."""
    name = body.username.strip()[:64]
    client = client_of(request) or "unknown"
    keys = [f"user:{name.casefold()}", f"client:{client}"]
    wait = svc.login_throttle.retry_after(keys)
    if wait > 0:
        svc.metrics.inc("logins_throttled_total")
        audit(request, name, "auth.login", outcome="throttled", details={"retry_after_s": round(wait)})
        raise HTTPException(429, "too many failed logins; try again later", headers={"Retry-After": str(int(wait) + 1)})
    user = svc.users.authenticate(name, body.password)
    if user is None:
        svc.login_throttle.failed(keys)
        svc.metrics.inc("login_failures_total")
        audit(request, name, "auth.login", outcome="failed")
        raise HTTPException(401, "wrong username or password")
    svc.login_throttle.succeeded(keys[0])
    token, csrf = svc.sessions.create(user.id, client)
    secure = request.url.scheme == "https" or svc.config.secure_cookies
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(svc.config.session_max_s),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    svc.metrics.inc("logins_total")
    audit(request, user.username, "auth.login", target=f"user:{user.id}")
    return LoginOut(user=UserPublic(id=user.id, username=user.username, role=user.role), csrf_token=csrf)


@router.post("/logout", status_code=204)
def logout(request: Request, svc: Svc, user: Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]) -> Response:
    """End the console session (a bearer token stays valid: revoke it with DELETE /api/tokens/{id})."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and user.via == "session":
        svc.sessions.delete(cookie)
    audit(request, user, "auth.logout", target=f"user:{user.id}")
    resp = Response(status_code=204)
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return resp


@router.get("/me")
def me(user: Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]) -> MeOut:
    return MeOut(id=user.id, username=user.username, role=user.role, csrf_token=user.csrf_token, via=user.via)
