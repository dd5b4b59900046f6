"""``create_app(config, services)``: the FastAPI application of ``sightline serve``.

    services = Services.open(config)
    app = create_app(config, services)
    uvicorn.run(app, host=config.host, port=config.port)

No module-level app: everything the routes need is on ``app.state`` (``services``, ``config``). The
lifespan starts the background work (stored cameras, notifier) and stops it; the caller closes the
services. Around every request:

- an upload limit: a body larger than ``config.max_upload_bytes`` is refused with 413 from its
  ``Content-Length`` before any of it is read, or as soon as a chunked body passes the limit;
- security headers on every response: a Content-Security-Policy without inline script (the API
  docs page allows exactly its one inline script by hash), ``X-Content-Type-Options: nosniff``,
  ``frame-ancestors 'none'`` / ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``;
- errors as ``{"detail": "..."}``: bad input is a 4xx naming the problem, never a 5xx; an unexpected
  error is logged (without the request body) and answered 500 ``internal error``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sightline.config import ServerConfig
from sightline.gallery.records import (
    AmbiguousPersonError,
    GalleryError,
    PhotoConflictError,
)
from sightline.imaging import ImageError
from sightline.server.services import CameraError, Services

logger = logging.getLogger(__name__)

#: The API's Content-Security-Policy: JSON and images need nothing; pages of the console set their own.
API_CSP = "default-src 'none'; img-src 'self' blob: data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class UploadLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (413) before reading them when the length is declared,
    and stop reading a chunked body the moment it passes the limit. ``on_refuse`` counts refusals."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_refuse: Any = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        declared = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length")
                    return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, 413, f"request body of {declared} bytes is over the limit of {self.max_bytes}")
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    if self.on_refuse is not None:
                        self.on_refuse()
                    # An HTTPException passes FastAPI's body parsing as is (other errors become a 400).
                    raise _TooLargeError(413, f"request body is over the limit of {self.max_bytes} bytes")
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLargeError as e:
            if not started:
                await self._refuse(send, 413, str(e.detail), count=False)

    async def _refuse(self, send: Send, status: int, detail: str, *, count: bool = True) -> None:
        if count and self.on_refuse is not None:
            self.on_refuse()
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLargeError(HTTPException):
    """The body passed the limit while it was being read."""


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response (a response's own CSP is kept)."""

    def __init__(self, app: ASGIApp, csp_for: Any) -> None:
        self.app = app
        self.csp_for = csp_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS:
                    if k not in present:
                        headers.append((k, v))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", self.csp_for(path).encode()))
                if path.startswith("/api/") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                if scope.get("scheme") == "https" and b"strict-transport-security" not in present:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, with_headers)


#: Where /docs loads Swagger UI from: this server (the files of the ``fastapi-swagger`` package), so the page
#: works on an air-gapped install. name -> (file in ``fastapi_swagger.resources``, media type).
DOCS_ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "favicon.png": ("favicon-32x32.png", "image/png"),
}
DOCS_ASSET_PREFIX = "/docs/assets/"


def _docs_asset(name: str) -> bytes | None:
    """The bytes of a Swagger UI file shipped by ``fastapi-swagger``; None when that package is missing."""
    try:
        from importlib.resources import files

        return (files("fastapi_swagger.resources") / DOCS_ASSETS[name][0]).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, KeyError):
        return None


def _docs_page(app: FastAPI) -> tuple[HTMLResponse, str]:
    """The Swagger UI page over files served by this server, and a CSP that allows only 'self' and the
    page's one inline script (by sha256). Without the ``fastapi-swagger`` package: a plain page linking
    /openapi.json (no script at all)."""
    openapi_url = app.openapi_url or "/openapi.json"
    if _docs_asset("swagger-ui-bundle.js") is None:
        html = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{app.title} - API</title></head><body>"
            f"<h1>{app.title} API</h1><p>The interactive documentation needs the <code>fastapi-swagger</code> "
            f"package. The OpenAPI document: <a href='{openapi_url}'>{openapi_url}</a></p></body></html>"
        )
        csp = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
        return HTMLResponse(html, headers={"Content-Security-Policy": csp}), csp
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - API",
        swagger_js_url=DOCS_ASSET_PREFIX + "swagger-ui-bundle.js",
        swagger_css_url=DOCS_ASSET_PREFIX + "swagger-ui.css",
        swagger_favicon_url=DOCS_ASSET_PREFIX + "favicon.png",
    )
    html = bytes(page.body).decode()
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    ]
    csp = (
        f"default-src 'none'; script-src 'self' {' '.join(hashes)}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp}), csp


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImageError)
    async def image_error(_request: Request, exc: ImageError) -> JSONResponse:
        status = 413 if exc.code in ("too_large", "too_many_pixels") else 422
        return _error(status, str(exc))

    @app.exception_handler(CameraError)
    async def camera_error(_request: Request, exc: CameraError) -> JSONResponse:
        return _error(404 if str(exc).startswith("no camera") else 503, str(exc))

    @app.exception_handler(GalleryError)
    async def gallery_error(_request: Request, exc: GalleryError) -> JSONResponse:
        if isinstance(exc, PhotoConflictError | AmbiguousPersonError):
            return _error(409, str(exc))
        if isinstance(exc, LookupError):
            return _error(404, str(exc))
        if "already exist" in str(exc):
            return _error(409, str(exc))
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form"))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(OverflowError)
    async def overflow(_request: Request, exc: OverflowError) -> JSONResponse:
        return _error(422, "a number in the request is out of range")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
        return _error(500, "internal error")


def create_app(config: ServerConfig, services: Services) -> FastAPI:
    """The application over ``services`` (which the caller opens and closes)."""
    from sightline.server.routes import ROUTERS

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(services.start)
        try:
            yield
        finally:
            await run_in_threadpool(services.stop)

    app = FastAPI(
        title="Sightline",
        summary="Accountable face identification: watchlists, live cameras, search by photo, review and audit.",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.config = config
    _document_security(app)
    for router in ROUTERS:
        app.include_router(router)
    try:
        from sightline.server.routes.audit import router as audit_router
    except ImportError:
        logger.warning("audit routes are not available (sightline.server.routes.audit missing)")
    else:
        app.include_router(audit_router)

    @app.get("/docs", include_in_schema=False, dependencies=[_public_dep()])
    async def docs() -> HTMLResponse:
        return _docs_page(app)[0]

    @app.get(DOCS_ASSET_PREFIX + "{name}", include_in_schema=False, dependencies=[_public_dep()])
    async def docs_asset(name: str) -> Response:
        """Swagger UI's script, stylesheet and icon, from the installed ``fastapi-swagger`` package."""
        data = _docs_asset(name)
        if data is None:
            raise HTTPException(404, f"no documentation asset {name!r}")
        return Response(data, media_type=DOCS_ASSETS[name][1], headers={"Cache-Control": "public, max-age=86400"})

    try:
        from sightline.server import ui
    except ImportError:
        logger.info("console UI not installed (sightline.server.ui missing)")
    else:
        ui.install(app)

    _install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware, csp_for=lambda _path: API_CSP)
    app.add_middleware(
        UploadLimitMiddleware,
        max_bytes=config.max_upload_bytes,
        on_refuse=lambda: services.metrics.inc("uploads_refused_total"),
    )
    return app


#: What every error answer looks like (``_error``), as documented in the OpenAPI document.
ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "properties": {"detail": {"title": "Detail", "type": "string", "description": "What was wrong, in words"}},
    "required": ["detail"],
}


def _document_security(app: FastAPI) -> None:
    """Describe the two ways to authenticate in the OpenAPI document, so /docs offers "Authorize"
    (the role checks themselves are the routes' ``require_roles`` dependencies)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API token (POST /api/tokens)"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sightline_session",
                    "description": "Console session (POST /api/auth/login); unsafe methods need X-CSRF-Token",
                },
            }
            doc["security"] = [{"bearer": []}, {"session": []}]
            schemas = doc["components"].get("schemas", {})
            if "HTTPValidationError" in schemas:
                # the error handlers answer every 4xx, 422 included, as {"detail": "<sentence>"}
                schemas["HTTPValidationError"] = ERROR_SCHEMA
                schemas.pop("ValidationError", None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _public_dep() -> Any:
    from fastapi import Depends

    from sightline.server.auth import public

    return Depends(public)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sightline")
    except Exception:
        return "0"
