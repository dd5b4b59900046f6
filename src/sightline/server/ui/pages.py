"""The console's pages: which path renders which template, for which roles, in which nav slot.

The HTML pages are shells: they hold no data. Each page's script (``static/js/pages/<name>.js``)
asks the JSON API for what it shows, so a page never leaks more than the API lets its user read;
the roles here only decide which nav entries and controls the browser shows (the server's API
still enforces every permission).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: tuple[str, ...] = ("admin", "supervisor", "operator", "auditor")


@dataclass(frozen=True)
class Page:
    """One console page.

    path: the route (FastAPI syntax); name: template ``templates/<name>.html`` and script
    ``static/js/pages/<name>.js``; title: heading and nav label; roles: who may open it (others are
    sent to their home page by the browser; the API refuses them anyway); nav: listed in the nav bar;
    icon: the ``<symbol>`` id in ``templates/icons.html``.
    """

    path: str
    name: str
    title: str
    roles: frozenset[str]
    nav: bool = True
    icon: str = "i-dot"

    def __post_init__(self) -> None:
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"page {self.path}: unknown roles {sorted(unknown)}; valid roles: {ROLES}")

    @property
    def roles_attr(self) -> str:
        """Space-separated roles in a fixed order, for ``data-roles`` attributes."""
        return " ".join(r for r in ROLES if r in self.roles)


def _roles(*names: str) -> frozenset[str]:
    return frozenset(names)


WATCH = _roles("operator", "supervisor", "admin")

PAGES: tuple[Page, ...] = (
    Page("/", "alerts", "Live alerts", WATCH, icon="i-bell"),
    Page("/review", "review", "Review queue", WATCH, icon="i-check"),
    Page("/cameras", "cameras", "Cameras", WATCH, icon="i-camera"),
    Page("/watchlists", "watchlists", "Watchlists", WATCH, icon="i-list"),
    Page("/persons", "persons", "Persons", WATCH, icon="i-person"),
    Page("/persons/{person_id}", "person", "Person", WATCH, nav=False, icon="i-person"),
    Page("/search", "search", "Search by photo", _roles("operator", "supervisor"), icon="i-search"),
    Page("/history", "history", "History", WATCH, icon="i-clock"),
    Page("/users", "users", "Users", _roles("admin"), icon="i-users"),
    Page("/audit", "audit", "Audit", _roles("auditor", "admin"), icon="i-shield"),
    Page("/account", "account", "Account", frozenset(ROLES), icon="i-key"),
)


def home_for(role: str) -> str:
    """The first nav page ``role`` may open ("/" for the watch roles, "/audit" for auditors)."""
    for p in PAGES:
        if p.nav and role in p.roles:
            return p.path
    return "/login"
