"""The API routers, one module per resource; ``create_app`` includes ``ROUTERS`` (and the governance
colleague's ``routes.audit.router``). Every route declares its roles with ``require_roles`` (or
``public`` for login and health)."""

from __future__ import annotations

from sightline.server.routes import (
    alerts,
    auth,
    cameras,
    deliveries,
    persons,
    search,
    sightings,
    system,
    tokens,
    users,
    watchlists,
)

ROUTERS = (
    system.router,
    auth.router,
    tokens.router,
    users.router,
    cameras.router,
    watchlists.router,
    deliveries.router,
    persons.router,
    search.router,
    alerts.router,
    sightings.router,
)
