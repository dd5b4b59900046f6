"""The authorization matrix: every route of the app x every role (and anonymous) -> allowed or denied
exactly as the route declares.

Table-driven from the app's own route list: a route that declares neither ``require_roles(...)`` nor
``public`` FAILS ``test_every_route_declares_its_roles``, the console's page shells included (they declare
``public``: they carry no data, and their roles live in ``sightline.server.ui.PAGES``; they are also
checked to never serve data to anyone not logged in). ``CONTRACT`` pins the roles of the team contract's
routes, so a changed declaration fails too, not only a broken check.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount, Route
from starlette.websockets import WebSocketDisconnect

from sightline.server.auth import ROLES, RoleGuard, public

#: Framework routes with no dependency system (OpenAPI JSON is public by design: it describes the API,
#: it holds no data).
FRAMEWORK_PUBLIC = {"/openapi.json"}

R, S, OP, A = "admin", "supervisor", "operator", "auditor"
#: The team contract's roles per route (method, path template) -> allowed roles ("public": anyone).
CONTRACT: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/healthz"): "public",
    ("GET", "/metrics"): {R, S},
    ("POST", "/api/auth/login"): "public",
    ("POST", "/api/auth/logout"): {R, S, OP, A},
    ("GET", "/api/auth/me"): {R, S, OP, A},
    ("GET", "/api/tokens"): {R, S, OP, A},
    ("POST", "/api/tokens"): {R, S, OP, A},
    ("DELETE", "/api/tokens/{token_id}"): {R, S, OP, A},
    ("GET", "/api/users"): {R},
    ("POST", "/api/users"): {R},
    ("PATCH", "/api/users/{user_id}"): {R},
    ("DELETE", "/api/users/{user_id}"): {R},
    ("GET", "/api/cameras"): {R, S, OP},
    ("POST", "/api/cameras"): {R, S},
    ("PATCH", "/api/cameras/{camera_id}"): {R, S},
    ("DELETE", "/api/cameras/{camera_id}"): {R, S},
    ("POST", "/api/cameras/{camera_id}/start"): {R, S},
    ("POST", "/api/cameras/{camera_id}/stop"): {R, S},
    ("GET", "/api/cameras/{camera_id}/snapshot"): {R, S, OP},
    ("GET", "/api/watchlists"): {R, S, OP},
    ("POST", "/api/watchlists"): {R, S},
    ("GET", "/api/watchlists/{watchlist_id}"): {R, S, OP},
    ("PATCH", "/api/watchlists/{watchlist_id}"): {R, S},
    ("DELETE", "/api/watchlists/{watchlist_id}"): {R, S},
    ("POST", "/api/watchlists/{watchlist_id}/members"): {R, S},
    ("DELETE", "/api/watchlists/{watchlist_id}/members/{person_id}"): {R, S},
    ("GET", "/api/watchlists/{watchlist_id}/channels"): {R, S, OP},
    ("POST", "/api/watchlists/{watchlist_id}/channels"): {R, S},
    ("DELETE", "/api/channels/{channel_id}"): {R, S},
    ("GET", "/api/persons"): {R, S, OP},
    ("POST", "/api/persons"): {R, S},
    ("GET", "/api/persons/{person_id}"): {R, S, OP},
    ("DELETE", "/api/persons/{person_id}"): {R, S},
    ("POST", "/api/persons/{person_id}/photos"): {R, S},
    ("DELETE", "/api/persons/{person_id}/photos/{template_id}"): {R, S},
    ("GET", "/api/persons/{person_id}/photos/{template_id}/crop"): {R, S, OP},
    ("POST", "/api/search"): {OP, S},
    ("GET", "/api/alerts"): {OP, S, R},
    ("GET", "/api/alerts/{alert_id}"): {OP, S, R},
    ("GET", "/api/alerts/{alert_id}/crop"): {OP, S, R},
    ("POST", "/api/alerts/{alert_id}/decision"): {OP, S},
    ("WS", "/api/alerts/live"): {OP, S, R},
    ("GET", "/api/sightings"): {OP, S},
    ("GET", "/api/sightings/{sighting_id}/crop"): {OP, S},
    ("POST", "/api/sightings/search"): {OP, S},
    ("GET", "/api/cameras/{camera_id}"): {R, S, OP},
    ("GET", "/api/audit"): {A, R},
    ("GET", "/api/audit/export"): {A, R},
    ("GET", "/api/audit/verify"): {A, R},
    ("GET", "/api/audit/head"): {A, R},
    ("GET", "/api/deliveries"): {S, R},
    ("POST", "/api/deliveries/{delivery_id}/retry"): {S, R},
}


def app_routes(app) -> list:
    """Every route of the app, routers flattened (FastAPI >= 0.160 includes routers lazily)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return list(app.routes)
    return [ctx.original_route for ctx in iter_route_contexts(app.routes)]


def _dependencies(dependant):
    for d in dependant.dependencies:
        yield d
        yield from _dependencies(d)


def declaration(route) -> RoleGuard | str | None:
    """The route's RoleGuard, "public", or None when it declares nothing."""
    for d in _dependencies(route.dependant):
        if isinstance(d.call, RoleGuard):
            return d.call
        if d.call is public:
            return "public"
    return None


def _is_ui_shell(route) -> bool:
    return isinstance(route, APIRoute) and (route.name or "").startswith("ui:") and route.methods <= {"GET", "HEAD"}


def _concrete(route) -> str:
    """The path with every parameter filled with an id that does not exist."""
    types = {p.name: p.field_info.annotation for p in route.dependant.path_params}

    def fill(m: re.Match) -> str:
        name = m.group(1).split(":")[0]
        return "999999" if types.get(name) is int else "no-such-thing"

    return re.sub(r"\{([^}]+)\}", fill, route.path)


def _cases(app):
    """(method, path template, concrete path, declaration) for every API route and method."""
    out = []
    for route in app_routes(app):
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                out.append((method, route.path, _concrete(route), declaration(route)))
        elif isinstance(route, APIWebSocketRoute):
            out.append(("WS", route.path, _concrete(route), declaration(route)))
    return out


def test_every_route_declares_its_roles(server):
    undeclared = []
    for route in app_routes(server.app):
        if isinstance(route, Mount):
            continue
        if isinstance(route, APIRoute | APIWebSocketRoute):
            if declaration(route) is None:
                undeclared.append(route.path)
        elif isinstance(route, Route) and route.path not in FRAMEWORK_PUBLIC:
            undeclared.append(route.path)  # a plain Starlette route cannot declare roles: use the API router
    assert undeclared == [], f"routes without require_roles(...) or public: {undeclared}"
    assert len(_cases(server.app)) >= len(CONTRACT)


def test_contract_routes_declare_the_contract_roles(server):
    declared = {(m, p): d for m, p, _, d in _cases(server.app)}
    missing = sorted(set(CONTRACT) - set(declared))
    assert missing == [], f"contract routes missing from the app: {missing}"
    for key, roles in CONTRACT.items():
        d = declared[key]
        got = d if isinstance(d, str) else set(d.roles)
        assert got == roles, f"{key}: declared {got}, contract says {roles}"


def test_matrix_http(server):
    """Every HTTP route x anonymous and each role (bearer tokens; CSRF is tested in test_auth)."""
    failures = []
    for method, template, path, decl in _cases(server.app):
        if method == "WS":
            continue
        for role in (None, *ROLES):
            headers = server.bearer(role) if role else {}
            status = server.anon.request(method, path, headers=headers).status_code
            if decl == "public":
                ok = status not in (401, 403)
            elif role is None:
                ok = status == 401 or (decl.public_if and getattr(server.config, decl.public_if))
            elif role in decl.roles:
                ok = status not in (401, 403)
            else:
                ok = status == 403
            assert status < 500, f"{method} {path} as {role}: {status}"
            if not ok:
                failures.append(f"{method} {template} as {role or 'anonymous'} -> {status} (declared {decl!r})")
    assert failures == []


def test_matrix_websockets(server):
    for method, template, path, decl in _cases(server.app):
        if method != "WS":
            continue
        for role in (None, *ROLES):
            url = path + (f"?token={server.tokens[role]}" if role else "")
            if role is not None and role in decl.roles:
                with server.anon.websocket_connect(url) as ws:
                    ws.close()
            else:
                with pytest.raises(WebSocketDisconnect) as exc, server.anon.websocket_connect(url) as ws:
                    ws.receive_json()
                assert exc.value.code == (4401 if role is None else 4403), f"{template} as {role}"


def test_metrics_public_flag_opens_metrics_only(make_server):
    srv = make_server(metrics_public=True)
    assert srv.anon.get("/metrics").status_code == 200
    assert srv.anon.get("/api/persons").status_code == 401


def test_console_pages_never_serve_data_to_anonymous(server):
    shells = [r for r in app_routes(server.app) if _is_ui_shell(r)]
    assert shells  # the console is installed
    for route in shells:
        assert declaration(route) == "public", route.path  # by declaration, not by a name exemption
        r = server.anon.get(_concrete(route), follow_redirects=False)
        assert r.status_code in (200, 303), route.path
        if r.status_code == 303:
            assert r.headers["location"].startswith("/login")
        assert not r.headers.get("content-type", "").startswith("application/json"), route.path
