"""The operator console: server-rendered page shells (Jinja2) with vanilla JS and CSS, installable as a PWA.

    app = FastAPI()
    install(app)        # pages, /manifest.webmanifest, /sw.js and /static

Nothing here needs a build step or a download at run time: templates and static files are committed.
Pages carry no data; their scripts read the JSON API (cookie session, ``X-CSRF-Token`` on unsafe
requests) and hide what the user's role cannot do, while the API enforces it. A page asked for without
a session cookie redirects to ``/login?next=<path>``.

Pages (``pages.PAGES``): / live alerts (WebSocket feed, WebAudio beep, system notifications, confirm /
reject), /review, /cameras (status, snapshot, start/stop, add), /watchlists (members, threshold by
false-match rate, notification channels), /persons and /persons/{id} (drag-and-drop enrollment with XHR
upload progress), /search (by photo, reason required), /history (alerts, sightings), /users (admin),
/audit (auditor, admin: filter, verify the chain, export), /account (own API tokens), plus /login and
/offline. The page routes check the session with ``sightline.server.auth.authenticate`` when the app has
the server's services: no session -> 303 to /login; a role the page is not for -> 303 to its home page;
controls a role cannot use are not rendered.

Scripts live in ``static/js`` as ES modules (no build step): ``api.js`` (fetch/XHR with the CSRF header),
``dom.js`` (elements from text only, never innerHTML), ``app.js`` (the shell: user, nav, dialogs,
toasts), ``alertcard.js``, ``sound.js`` and one ``pages/<name>.js`` per page. Icons are drawn with Pillow
by ``python -m sightline.server.ui.icons``.

Every response built here carries a strict Content-Security-Policy (no inline script or style, no
third-party origin, ``frame-ancestors 'none'``); the server may add its own, and browsers enforce both.
The service worker caches the app shell only (``/static/...`` and the manifest), never API responses or
face images.
"""

from __future__ import annotations

from sightline.server.ui.app import CSP, SESSION_COOKIE, UiConfig, install
from sightline.server.ui.pages import PAGES, ROLES, Page, home_for

__all__ = ["CSP", "PAGES", "ROLES", "SESSION_COOKIE", "Page", "UiConfig", "home_for", "install"]
