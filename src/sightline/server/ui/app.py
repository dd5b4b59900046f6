"""Routes of the console: page shells, login, the web app manifest, the service worker and /static."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from sightline.server.auth import public
from sightline.server.ui.pages import PAGES, ROLES, Page, home_for

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: Name of the session cookie set by ``POST /api/auth/login`` (team contract).
SESSION_COOKIE = "sightline_session"

#: The console's Content-Security-Policy. ``'self'`` in connect-src covers same-origin ws:/wss: in
#: current browsers; ``blob:`` images are local previews of photos chosen for upload or search.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "media-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class UiConfig(BaseModel):
    """How the console presents itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_name: str = Field("Sightline", min_length=1, max_length=40, description="Name in the title bar and manifest")
    short_name: str = Field("Sightline", min_length=1, max_length=12, description="Home-screen label (PWA)")
    theme_color: str = Field(
        "#0f1720", pattern=r"^#[0-9a-fA-F]{6}$", description="Browser toolbar colour, #rrggbb (dark theme)"
    )


def static_version(root: Path = STATIC) -> str:
    """A 12-hex-digit digest of every static file's path and bytes: changes whenever the shell changes, so
    asset URLs (``?v=``) and the service worker's cache name change with it."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


#: The page the service worker shows for a navigation that fails (no network); it holds no data.
OFFLINE_PATH = "/offline"


def shell_files(root: Path = STATIC) -> list[str]:
    """URLs of the app shell the service worker precaches: CSS, JS and icons under /static, and the
    offline page."""
    keep = {".css", ".js", ".svg", ".png"}
    return [
        OFFLINE_PATH,
        *(f"/static/{p.relative_to(root).as_posix()}" for p in sorted(root.rglob("*")) if p.suffix in keep),
    ]


def manifest(cfg: UiConfig) -> dict[str, object]:
    """The web app manifest (installable on a phone's home screen)."""
    return {
        "name": cfg.app_name,
        "short_name": cfg.short_name,
        "description": "Face identification console: live alerts, review, cameras, watchlists.",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "any",
        "background_color": cfg.theme_color,
        "theme_color": cfg.theme_color,
        "icons": [
            {"src": "/static/icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": "/static/icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
            {"src": "/static/icons/maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
            {"src": "/static/icons/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
        ],
    }


def _safe_next(path: str) -> str:
    """A local path to come back to after login (never another origin)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _viewer(request: Request) -> tuple[bool, str | None]:
    """(signed in?, role) of the request. With the server's services on ``app.state`` the session is
    checked for real (``sightline.server.auth.authenticate``); on a bare app (no services) only the
    cookie's presence is known and the role is left to the browser (``data-roles``)."""
    if getattr(request.app.state, "services", None) is None:
        return bool(request.cookies.get(SESSION_COOKIE)), None
    from sightline.server.auth import authenticate

    user = authenticate(request)
    return (user is not None), (None if user is None else str(user.role))


def install(app: FastAPI, config: UiConfig | None = None) -> None:
    """Add the console to ``app``: GET routes for every page in ``PAGES`` and ``/login``,
    ``/manifest.webmanifest``, ``/sw.js`` (root scope) and the ``/static`` mount.

    Call it after the API routers so that API paths win over nothing here (no page path starts with /api).
    Every route here declares ``sightline.server.auth.public`` (the authorization matrix covers them by that
    declaration): none serves data. A page shell redirects a visitor who is not signed in to /login and a
    signed-in user without the page's role to their home page; the data comes from the API, which checks roles.
    """
    anyone = [Depends(public)]
    cfg = config or UiConfig()
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html", "js"), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    version = static_version()
    shell = shell_files()
    nav = [p for p in PAGES if p.nav]
    base_ctx = {"cfg": cfg, "v": version, "nav": nav, "roles": ROLES}

    def render(template: str, status: int = 200, role: str | None = None, **ctx: object) -> HTMLResponse:
        def can(*roles: str) -> bool:
            """Template helper: may the viewer use a control meant for ``roles`` (unknown role: yes, and
            the browser hides it by ``data-roles``)."""
            return role is None or role in roles

        html = env.get_template(template).render(**base_ctx, **ctx, role=role, can=can)
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
        return HTMLResponse(html, status_code=status, headers=headers)

    def page_route(page: Page):
        def handler(request: Request) -> Response:
            signed_in, role = _viewer(request)
            if not signed_in:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(_safe_next(target), safe='/')}", status_code=303)
            if role is not None and role not in page.roles:
                return RedirectResponse(home_for(role), status_code=303)
            return render(f"{page.name}.html", page=page, role=role)

        handler.__name__ = f"ui_page_{page.name}"
        return handler

    for page in PAGES:
        app.add_api_route(
            page.path,
            page_route(page),
            methods=["GET"],
            include_in_schema=False,
            response_class=HTMLResponse,
            name=f"ui:{page.name}",
            dependencies=anyone,
        )

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse, name="ui:login", dependencies=anyone)
    async def ui_login() -> Response:
        return render("login.html", page=None)

    @app.get(OFFLINE_PATH, include_in_schema=False, response_class=HTMLResponse, name="ui:offline", dependencies=anyone)
    async def ui_offline() -> Response:
        return render("offline.html", page=None)

    @app.get("/manifest.webmanifest", include_in_schema=False, name="ui:manifest", dependencies=anyone)
    async def ui_manifest() -> Response:
        return Response(
            json.dumps(manifest(cfg), indent=2),
            media_type="application/manifest+json",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    sw_source = env.get_template("sw.js").render(version=version, shell=shell)

    @app.get("/sw.js", include_in_schema=False, name="ui:service_worker", dependencies=anyone)
    async def ui_service_worker() -> Response:
        return Response(
            sw_source,
            media_type="text/javascript",
            headers={**SECURITY_HEADERS, "Service-Worker-Allowed": "/", "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    logger.info("console installed: %d pages, static version %s", len(PAGES), version)
