"""The console's pages over the real app (create_app, real SQLite users and sessions): who sees which page
and which nav entries, the login redirect, the security headers, the PWA manifest and service worker,
and static checks of the templates and scripts (no inline script, no innerHTML with data)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from sightline.server.ui import CSP, PAGES, ROLES, UiConfig, install
from sightline.server.ui.app import STATIC, TEMPLATES, manifest, shell_files
from sightline.server.ui.pages import Page, home_for
from tests.server.ui_helpers import PASSWORD

PAGE_SCRIPTS = STATIC / "js" / "pages"


def _path(page: Page) -> str:
    return page.path.replace("{person_id}", "1")


class _Scan(HTMLParser):
    """Collects what the checks need from a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_handlers: list[str] = []
        self.style_attrs: list[str] = []
        self.style_tags = 0
        self.nav_links: list[str] = []
        self.ids: set[str] = set()
        self._in_nav = False
        self._in_script = False
        self.inline_script_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for name, _ in attrs:
            if name.startswith("on"):
                self.inline_handlers.append(f"<{tag} {name}>")
            if name == "style":
                self.style_attrs.append(tag)
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        if tag == "style":
            self.style_tags += 1
        if tag == "nav":
            self._in_nav = True
        if tag == "a" and self._in_nav and a.get("href"):
            self.nav_links.append(str(a["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script_text += data.strip()


def scan(html: str) -> _Scan:
    s = _Scan()
    s.feed(html)
    return s


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[TestClient]:
    """The real app over real services on a temp gallery, with one user per role."""
    from sightline.config import ServerConfig
    from sightline.server.app import create_app
    from sightline.server.services import Services

    data = tmp_path_factory.mktemp("ui-pages")
    cfg = ServerConfig(data_dir=data, start_cameras=False)
    services = Services.open(cfg, engine=engine)
    try:
        for role in ROLES:
            services.users.add(f"{role}-user", PASSWORD, role)
        with TestClient(create_app(cfg, services), follow_redirects=False) as c:
            yield c
    finally:
        services.close()


def login(client: TestClient, role: str) -> None:
    client.cookies.clear()
    r = client.post("/api/auth/login", json={"username": f"{role}-user", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert client.cookies.get("sightline_session")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_redirect_to_login_without_a_session(client: TestClient, page: Page) -> None:
    client.cookies.clear()
    r = client.get(_path(page))
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next={_path(page)}"


def test_a_forged_session_cookie_is_not_signed_in(client: TestClient) -> None:
    client.cookies.clear()
    client.cookies.set("sightline_session", "not-a-session")
    r = client.get("/cameras")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    client.cookies.clear()


def test_offline_page_is_public_and_holds_no_data(client: TestClient) -> None:
    client.cookies.clear()
    r = client.get("/offline")
    assert r.status_code == 200 and r.headers["content-security-policy"] == CSP
    s = scan(r.text)
    assert not s.scripts and not s.nav_links


def test_login_page_renders_without_session(client: TestClient) -> None:
    client.cookies.clear()
    r = client.get("/login?next=/cameras")
    assert r.status_code == 200
    s = scan(r.text)
    assert {"login-form", "username", "password", "login-btn"} <= s.ids
    assert [x.get("src", "").split("?")[0] for x in s.scripts] == ["/static/js/pages/login.js"]
    assert not s.nav_links


@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_for_its_roles_and_nav_matches(client: TestClient, role: str) -> None:
    login(client, role)
    allowed_nav = {p.path for p in PAGES if p.nav and role in p.roles}
    for page in PAGES:
        r = client.get(_path(page))
        if role not in page.roles:
            assert r.status_code == 303, f"{role} got {r.status_code} for {page.path}"
            assert r.headers["location"] == home_for(role)
            continue
        assert r.status_code == 200, f"{role} {page.path}: {r.status_code}"
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["cache-control"] == "no-store"
        s = scan(r.text)
        assert set(s.nav_links) == allowed_nav, f"{role} {page.path}: nav {s.nav_links}"
        assert [x.get("src", "").split("?")[0] for x in s.scripts] == [f"/static/js/pages/{page.name}.js"]
        assert all(x.get("type") == "module" for x in s.scripts)
        assert {"page-body", "toasts", "logout-btn", "ask-dialog"} <= s.ids
        writer = role in ("supervisor", "admin")
        if page.name == "cameras":
            assert ("add-camera" in s.ids) == writer
        if page.name == "persons":
            assert ("add-person" in s.ids) == writer
        if page.name == "person":
            assert ("dropzone" in s.ids) == writer
            assert ("delete-person" in s.ids) == writer
        if page.name == "watchlists":
            assert ("add-wl" in s.ids) == writer
        if page.name == "history":
            assert ("tab-sightings" in s.ids) == (role in ("operator", "supervisor"))


def test_home_page_of_each_role() -> None:
    assert home_for("operator") == "/"
    assert home_for("admin") == "/"
    assert home_for("auditor") == "/audit"


def test_rendered_pages_have_no_inline_script_style_or_handlers(client: TestClient) -> None:
    login(client, "admin")
    for path in [*(_path(p) for p in PAGES if "admin" in p.roles), "/login", "/offline"]:
        r = client.get(path)
        assert r.status_code == 200, path
        s = scan(r.text)
        assert not s.inline_handlers, s.inline_handlers
        assert not s.style_attrs, s.style_attrs
        assert s.style_tags == 0
        assert s.inline_script_text == ""
        assert all(x.get("src") for x in s.scripts)


def test_csp_is_strict() -> None:
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert "frame-ancestors 'none'" in CSP and "object-src 'none'" in CSP


def test_manifest_is_installable(client: TestClient) -> None:
    r = client.get("/manifest.webmanifest")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/manifest+json")
    m = json.loads(r.text)
    assert m == manifest(UiConfig())
    for key in ("name", "short_name", "start_url", "scope", "display", "icons", "theme_color", "background_color"):
        assert m.get(key), key
    assert m["display"] in ("standalone", "fullscreen", "minimal-ui")
    assert m["start_url"] == "/" and m["scope"] == "/"
    sizes = set()
    for icon in m["icons"]:
        res = client.get(icon["src"])
        assert res.status_code == 200, icon["src"]
        if icon["type"] == "image/png":
            with Image.open(io.BytesIO(res.content)) as im:
                w, h = im.size
            assert icon["sizes"] == f"{w}x{h}"
            sizes.add((w, icon.get("purpose", "any")))
    assert (192, "any") in sizes and (512, "any") in sizes and (512, "maskable") in sizes


def test_service_worker_caches_the_shell_only(client: TestClient) -> None:
    r = client.get("/sw.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["service-worker-allowed"] == "/"
    assert r.headers["cache-control"] == "no-cache"
    src = r.text
    shell = json.loads(re.search(r"const SHELL = (\[.*?\]);", src, re.S).group(1))
    assert shell == shell_files()
    assert shell and all(u.startswith("/static/") or u == "/offline" for u in shell)
    assert "/offline" in shell and "/static/js/app.js" in shell
    assert not any("/api/" in u or u.endswith((".jpg", ".jpeg")) for u in shell)
    for u in shell:
        assert client.get(u).status_code == 200, u
    # only /static and the manifest are ever served from the cache
    assert (
        'url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest" || url.pathname === "/offline"'
        in src
    )
    assert "if (!isShell(url)) return;" in src
    version = re.search(r'const VERSION = "([0-9a-f]{12})";', src)
    assert version, "the cache name carries the shell version"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_service_worker_and_scripts_parse(client: TestClient, tmp_path: Path) -> None:
    sw = tmp_path / "sw.js"
    sw.write_text(client.get("/sw.js").text)
    subprocess.run(["node", "--check", str(sw)], check=True, capture_output=True, timeout=60)
    for js in sorted((STATIC / "js").rglob("*.js")):
        res = subprocess.run(
            ["node", "--input-type=module", "--check"], input=js.read_bytes(), capture_output=True, timeout=60
        )
        assert res.returncode == 0, f"{js.name}: {res.stderr.decode()}"


def test_every_page_has_its_script_and_imports_resolve() -> None:
    for page in PAGES:
        assert (PAGE_SCRIPTS / f"{page.name}.js").is_file(), page.name
        assert (TEMPLATES / f"{page.name}.html").is_file(), page.name
    for js in (STATIC / "js").rglob("*.js"):
        for spec in re.findall(r'^import .*? from "(\.{1,2}/[^"]+)";', js.read_text(), re.M):
            assert (js.parent / spec).resolve().is_file(), f"{js.name} imports missing {spec}"


def test_scripts_never_write_html() -> None:
    """Data reaches the DOM only as text (textContent / text nodes), never as markup."""
    banned = re.compile(r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    for js in (STATIC / "js").rglob("*.js"):
        hits = banned.findall(js.read_text())
        assert not hits, f"{js.name}: {hits}"
    assert not banned.findall((TEMPLATES / "sw.js").read_text())


def test_unsafe_requests_send_the_csrf_header() -> None:
    api = (STATIC / "js" / "api.js").read_text()
    assert 'headers["X-CSRF-Token"] = csrfToken' in api
    assert 'xhr.setRequestHeader("X-CSRF-Token", csrfToken)' in api
    # every other script talks to the API through api()/upload(), never fetch() or XHR directly
    for js in (STATIC / "js").rglob("*.js"):
        if js.name != "api.js":
            text = js.read_text()
            assert "fetch(" not in text and "XMLHttpRequest" not in text, js.name


def test_install_on_a_bare_app_checks_the_cookie_only() -> None:
    """Without the server's services (no sessions to check), install() still serves the shell, and the
    browser hides controls by data-roles."""
    app = FastAPI()
    install(app)
    with TestClient(app, follow_redirects=False) as c:
        assert c.get("/review").status_code == 303
        c.cookies.set("sightline_session", "x")
        r = c.get("/review")
        assert r.status_code == 200
        s = scan(r.text)
        assert set(s.nav_links) == {p.path for p in PAGES if p.nav}
        assert 'data-roles="admin"' in r.text
        assert c.get("/static/css/app.css").status_code == 200


def test_static_icons_are_the_generated_ones(tmp_path: Path) -> None:
    from sightline.server.ui.icons import write_icons

    for p in write_icons(tmp_path):
        committed = STATIC / "icons" / p.name
        assert committed.is_file(), p.name
        if p.suffix == ".png":
            with Image.open(p) as a, Image.open(committed) as b:
                assert a.size == b.size and a.mode == b.mode
