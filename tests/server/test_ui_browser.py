"""The console in a real browser (Debian's headless Chromium via Playwright) against the real server
(uvicorn on a free port, real services on a temp gallery): every page for every role without a script
error, a pushed alert appearing live and being confirmed (desktop and phone), and enrollment by
drag-and-drop with upload progress. Screenshots: out/test-artifacts/ui/."""

from __future__ import annotations

import base64
import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from sightline.server.ui import PAGES, ROLES, home_for
from tests.conftest import GALLERY
from tests.server.ui_helpers import (
    DESKTOP,
    PHONE,
    LiveServer,
    artifact,
    chromium,
    chromium_available,
    collect_errors,
    login_page,
    new_page,
)

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")

OBAMA = GALLERY / "obama" / "obama2.jpg"
BIDEN = GALLERY / "biden" / "biden.jpg"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[LiveServer]:
    """A running server with one user per role, a watchlist and one enrolled person (through the API)."""
    data = tmp_path_factory.mktemp("ui-browser")
    with LiveServer.open(data, engine=engine, start_cameras=False) as srv:
        for role in ROLES:
            srv.add_user(f"{role}-user", role=role)
        c = srv.client("supervisor-user")
        try:
            r = c.post("/api/watchlists", json={"name": "wanted", "description": "Test watchlist"})
            assert r.status_code == 201, r.text
            r = c.post("/api/persons", json={"name": "Barack Obama", "watchlists": ["wanted"], "reason": "ui test"})
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            with OBAMA.open("rb") as f:
                r = c.post(
                    f"/api/persons/{pid}/photos",
                    files={"files": ("obama2.jpg", f, "image/jpeg")},
                    data={"reason": "ui test"},
                )
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 1
        finally:
            c.close()
        srv.person_id = pid  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _new_page(browser: Any, live: LiveServer, viewport: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    return new_page(browser, live.base_url, viewport, TIMEOUT_MS)


def _url(page_def: Any, live: LiveServer) -> str:
    return page_def.path.replace("{person_id}", str(live.person_id))  # type: ignore[attr-defined]


def _real_errors(errors: list[str]) -> list[str]:
    # a 403/404 of an optional request logs "Failed to load resource"; those are the API's answer, not a bug
    return [e for e in errors if "Failed to load resource" not in e]


@pytest.mark.slow  # ~20 s for the four roles; test_ui_pages checks the same pages over HTTP in seconds
@pytest.mark.parametrize("role", ROLES)
def test_every_page_works_in_the_browser_for_each_role(browser: Any, live: LiveServer, role: str) -> None:
    ctx, page, errors = _new_page(browser, live, DESKTOP)
    try:
        login_page(page, live.base_url, f"{role}-user")
        assert page.locator("#user-role").text_content() == role
        visible_nav = {a.get_attribute("href") for a in page.locator("#nav a:visible").all()}
        assert visible_nav == {p.path for p in PAGES if p.nav and role in p.roles}
        for p in PAGES:
            if role not in p.roles:
                continue
            page.goto(_url(p, live))
            page.wait_for_selector("body[data-ready='1']")
            if (
                role == "supervisor"
                or (role == "auditor" and p.name == "audit")
                or (role == "admin" and p.name == "users")
            ):
                page.screenshot(path=str(artifact(f"desktop-{p.name}-{role}.png")), full_page=True)
        if role == "supervisor":  # the same pages on a phone, for the screenshots
            phone = browser.new_context(base_url=live.base_url, storage_state=ctx.storage_state(), **PHONE)
            try:
                pp = phone.new_page()
                for p in (p for p in PAGES if role in p.roles):
                    pp.goto(_url(p, live))
                    pp.wait_for_selector("body[data-ready='1']")
                    pp.screenshot(path=str(artifact(f"phone-{p.name}-{role}.png")), full_page=True)
            finally:
                phone.close()
        # a page the role may not open sends it home
        forbidden = [p for p in PAGES if p.nav and role not in p.roles]
        if forbidden:
            page.goto(forbidden[0].path)
            page.wait_for_selector("body[data-ready='1']")
            assert urlsplit(page.url).path == home_for(role)
        assert not _real_errors(errors), errors
    finally:
        ctx.close()


def _push_alert(live: LiveServer, camera: str = "door", similarity: float = 0.97) -> int:
    """Store an alert for the enrolled person and publish it on the bus, as a camera worker does."""
    from sightline.types import Alert, Match

    buf = io.BytesIO()
    with Image.open(OBAMA) as im:
        im.convert("RGB").resize((160, 160)).save(buf, "JPEG")
    now = time.time()
    alert = Alert(
        camera_id=camera,
        track_id=int(now * 1000) % 100000,
        match=Match(
            live.person_id,  # type: ignore[attr-defined]
            "Barack Obama",
            "wanted",
            similarity,
            0.93,
            float(live.services.engine.calibration.est_fmr(similarity)),
        ),
        ts=now,
        frame_ts=now - 0.2,
        xyxy=(10.0, 10.0, 150.0, 150.0),
        crop_jpeg=buf.getvalue(),
        quality=0.9,
    )
    aid = live.services.stores.add_alert(alert)
    live.services.bus.publish(dataclasses.replace(alert, id=aid))
    return aid


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_live_alert_appears_and_is_confirmed(browser: Any, live: LiveServer, viewport: str) -> None:
    ctx, page, errors = _new_page(browser, live, DESKTOP if viewport == "desktop" else PHONE)
    try:
        login_page(page, live.base_url, "operator-user")
        page.wait_for_selector("#live-state[data-state='live']")
        page.click("#sound-btn")  # WebAudio needs a gesture; notifications may be refused headless
        page.wait_for_selector("#sound-btn[aria-pressed='true']")
        aid = _push_alert(live, camera=f"door-{viewport}")
        card = page.locator(f"article.alert-card[data-alert-id='{aid}']")
        card.wait_for()
        assert card.locator(".camera").text_content() == f"door-{viewport}"
        assert "Barack Obama" in card.locator("h3").text_content()
        assert card.locator(".sim").text_content() == "0.97"
        c = live.client("operator-user")
        try:
            public = c.get(f"/api/alerts/{aid}").json()
        finally:
            c.close()
        assert public["meaning"] in card.locator(".meaning").text_content()
        assert "estimated false-match rate" in card.locator(".meaning").text_content()
        assert public["meaning_for_list"] in card.locator(".list-meaning").text_content()
        imgs = card.locator(".shots img")
        assert imgs.count() == 2
        page.wait_for_function(
            "(id) => [...document.querySelectorAll(`article[data-alert-id='${id}'] .shots img`)]"
            ".every((i) => i.complete && i.naturalWidth > 0)",
            arg=aid,
        )
        page.screenshot(path=str(artifact(f"{viewport}-alert-live.png")), full_page=False)
        card.locator("button[data-decision='confirmed']").click()
        card.locator(".status-badge.confirmed").wait_for()
        stored = live.services.stores.alerts.get(aid)
        assert stored.status == "confirmed" and stored.decided_by == "operator-user"
        page.screenshot(path=str(artifact(f"{viewport}-alert-confirmed.png")), full_page=False)
        if viewport == "phone":
            page.click("#menu-btn")
            page.wait_for_selector("#nav a:visible")
            page.screenshot(path=str(artifact("phone-nav-open.png")))
        assert not _real_errors(errors), errors
    finally:
        ctx.close()


def test_review_queue_rejects_an_alert(browser: Any, live: LiveServer) -> None:
    ctx, page, errors = _new_page(browser, live, PHONE)
    try:
        aid = _push_alert(live, camera="lobby", similarity=0.94)
        login_page(page, live.base_url, "supervisor-user")
        page.goto("/review")
        card = page.locator(f"article.alert-card[data-alert-id='{aid}']")
        card.wait_for()
        page.screenshot(path=str(artifact("phone-review.png")), full_page=True)
        card.locator("button[data-decision='rejected']").click()
        card.wait_for(state="detached")
        assert live.services.stores.alerts.get(aid).status == "rejected"
        assert not _real_errors(errors), errors
    finally:
        ctx.close()


def _drop_files(page: Any, selector: str, files: list[Path]) -> None:
    """Drop files on an element the way a user's drag from the desktop does (a DataTransfer in a drop event)."""
    payload = [{"name": f.name, "b64": base64.b64encode(f.read_bytes()).decode(), "type": "image/jpeg"} for f in files]
    dt = page.evaluate_handle(
        """(files) => { const dt = new DataTransfer();
            for (const f of files) {
              const bin = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
              dt.items.add(new File([bin], f.name, { type: f.type }));
            }
            return dt; }""",
        payload,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": dt})
    page.dispatch_event(selector, "drop", {"dataTransfer": dt})


def test_enroll_by_drag_and_drop_with_progress(browser: Any, live: LiveServer, tmp_path: Path) -> None:
    ctx, page, errors = _new_page(browser, live, DESKTOP)
    try:
        login_page(page, live.base_url, "supervisor-user")
        page.goto("/persons")
        page.wait_for_selector("body[data-ready='1']")
        page.click("#add-person-panel summary")
        page.fill("#p-name", "Joe Biden")
        page.select_option("#p-wl", "wanted")
        page.fill("#p-reason", "case 42")
        page.click("#p-create-btn")
        page.wait_for_url("**/persons/*")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#person-name").text_content() == "Joe Biden"
        assert page.locator("#enroll-reason").input_value() == "case 42"  # carried over from the form
        not_a_photo = tmp_path / "notes.jpg"
        not_a_photo.write_bytes(b"this is not an image")
        _drop_files(page, "#dropzone", [BIDEN, not_a_photo])
        page.wait_for_selector("#upload-progress[data-done='1']")
        assert page.locator("#upload-progress").get_attribute("value") == "100"
        page.wait_for_selector("#upload-results li.ok")
        assert page.locator("#upload-results li.ok").count() == 1
        assert page.locator("#upload-results li.bad").count() == 1
        page.locator("#photos figure.photo").first.wait_for()
        page.screenshot(path=str(artifact("desktop-person-enrolled.png")), full_page=True)
        assert not _real_errors(errors), errors
    finally:
        ctx.close()


def test_logout_ends_the_session(browser: Any, live: LiveServer) -> None:
    ctx, page, _errors = _new_page(browser, live, PHONE)
    try:
        login_page(page, live.base_url, "auditor-user")
        assert page.url.endswith("/audit")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#audit tr").count() > 0
        page.click("#verify-btn")
        page.wait_for_selector("#verify-result.ok")
        assert "intact" in page.locator("#verify-result").text_content()
        page.fill("#a-action", "auth.login")
        page.click("#audit-filter button[type=submit]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#audit tr td[data-label=Action]')]"
            ".every((td) => td.textContent === 'auth.login')"
        )
        assert "action=auth.login" in page.locator("#export-csv").get_attribute("href")
        page.screenshot(path=str(artifact("phone-audit.png")), full_page=True)

        # an API token made on the Account page works once, as a bearer, until revoked there
        page.goto("/account")
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#t-name", "siem-export")
        page.click("#add-token button[type=submit]")
        page.wait_for_selector("#token-once:not([hidden])")
        token = page.locator("#token-value").text_content()
        c = live.client()
        try:
            me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json()["role"] == "auditor"
            row = page.locator("#tokens tr:has-text('siem-export')")
            row.locator("button:text-is('Revoke')").click()
            page.click("#ask-ok")
            row.locator(".status-badge.rejected").wait_for()
            assert c.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        finally:
            c.close()
        page.screenshot(path=str(artifact("phone-account.png")), full_page=True)
        page.click("#logout-btn")
        page.wait_for_url("**/login")
        page.goto("/audit")
        page.wait_for_url("**/login?next=/audit")
        page.screenshot(path=str(artifact("phone-login.png")))
    finally:
        ctx.close()


def test_search_by_photo_and_history(browser: Any, live: LiveServer) -> None:
    ctx, page, errors = _new_page(browser, live, PHONE)
    try:
        login_page(page, live.base_url, "operator-user")
        page.goto("/search")
        page.wait_for_selector("body[data-ready='1']")
        page.set_input_files("#file-input", str(GALLERY / "obama" / "obama.jpg"))
        page.wait_for_selector("#preview:not([hidden])")
        page.click("#search-btn")  # no reason yet: refused in the page, nothing sent
        page.wait_for_selector(".toast.error")
        page.fill("#reason", "incident 7")
        page.click("#search-btn")
        first = page.locator("#results .candidate").first
        first.wait_for()
        assert first.locator("a.person-link").text_content() == "Barack Obama"
        assert "false-match rate" in first.text_content()
        page.screenshot(path=str(artifact("phone-search.png")), full_page=True)
        audit = (
            live.services.gallery.store._conn()
            .execute("SELECT reason FROM audit_log WHERE action = 'search.photo' ORDER BY seq DESC LIMIT 1")
            .fetchone()
        )
        assert audit == ("incident 7",)

        aid = _push_alert(live, camera="history-cam")
        page.goto("/history")
        page.wait_for_selector("body[data-ready='1']")
        page.locator(f"#history article[data-alert-id='{aid}']").wait_for()
        page.screenshot(path=str(artifact("phone-history.png")), full_page=True)
        assert not _real_errors(errors), errors
    finally:
        ctx.close()


def test_wrong_password_is_refused_with_a_message(browser: Any, live: LiveServer) -> None:
    ctx, page, _errors = _new_page(browser, live, PHONE)
    try:
        page.goto("/login")
        page.fill("#username", "operator-user")
        page.fill("#password", "not-the-password")
        page.click("#login-btn")
        page.wait_for_selector("#login-error:not([hidden])")
        assert page.locator("#login-error").text_content() == "Wrong username or password."
        assert page.url.endswith("/login")
    finally:
        ctx.close()


def test_service_worker_caches_only_the_app_shell(browser: Any, live: LiveServer) -> None:
    ctx, page, errors = _new_page(browser, live, DESKTOP)
    try:
        login_page(page, live.base_url, "operator-user")
        page.wait_for_selector("body[data-ready='1']")
        scope = page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
        assert scope == f"{live.base_url}/"
        _push_alert(live, camera="sw-cam")
        page.reload()  # now controlled by the worker: API calls and face crops pass through its fetch handler
        page.wait_for_selector("body[data-ready='1']")
        page.locator("article.alert-card .shots img").first.wait_for()
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        page.goto(f"/persons/{live.person_id}")  # type: ignore[attr-defined]
        page.locator("#photos img").first.wait_for()
        cached = page.evaluate(
            """async () => { const out = [];
                for (const name of await caches.keys()) {
                  const c = await caches.open(name);
                  for (const req of await c.keys()) out.push([name, new URL(req.url).pathname]);
                }
                return out; }"""
        )
        assert cached, "the shell was precached"
        assert all(name.startswith("sightline-shell-") for name, _ in cached)
        paths = {p for _, p in cached}
        assert "/static/js/app.js" in paths and "/static/css/app.css" in paths
        assert all(p.startswith("/static/") or p in ("/manifest.webmanifest", "/offline") for p in paths), paths
        # without a network a page is answered with the cached offline page, not a browser error
        ctx.set_offline(True)
        page.goto("/cameras")
        assert page.locator("h1").text_content() == "No connection"
        ctx.set_offline(False)
        assert not _real_errors(errors), errors
    finally:
        ctx.close()


def test_audit_page_names_the_first_broken_entry(browser: Any, tmp_path: Path) -> None:
    """A tampered audit row: the Audit page's Verify names the entry and the API's reason (first_broken_seq,
    problem), not just "BROKEN"."""
    import sqlite3

    from tests.gallery.conftest import FakeEngine

    with LiveServer.open(tmp_path / "tampered", engine=FakeEngine(), start_cameras=False) as srv:
        srv.add_user("auditor-user", role="auditor")
        for i in range(3):
            srv.services.audit.record("alice", "camera.update", target=f"camera:c{i}", client="10.0.0.1")
        conn = sqlite3.connect(srv.services.gallery.store.path)  # what an attacker with the file does
        try:
            conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
            conn.commit()
        finally:
            conn.close()
        ctx = browser.new_context(base_url=srv.base_url, **DESKTOP)
        ctx.set_default_timeout(TIMEOUT_MS)
        try:
            page = ctx.new_page()
            errors = collect_errors(page)
            login_page(page, srv.base_url, "auditor-user")
            page.wait_for_selector("body[data-ready='1']")
            page.click("#verify-btn")
            page.wait_for_selector("#verify-result.bad")
            text = page.locator("#verify-result").text_content()
            problem = srv.services.audit.verify().problem
            assert problem
            assert f"BROKEN at entry 2: {problem}" in text, text
            assert not _real_errors(errors), errors
        finally:
            ctx.close()


def test_api_docs_render_offline(browser: Any, live: LiveServer) -> None:
    """/docs on an air-gapped install: every request to another origin is refused, and Swagger UI still
    renders the API's operations from this server's own files, without a CSP violation."""
    ctx = browser.new_context(base_url=live.base_url, **DESKTOP)
    ctx.set_default_timeout(TIMEOUT_MS)
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(live.base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_this_server)
    try:
        page = ctx.new_page()
        errors = collect_errors(page)
        page.goto("/docs")
        page.locator(".opblock").first.wait_for()
        assert page.locator(".opblock").count() > 20  # the API's operations, rendered
        assert "Sightline" in page.locator(".information-container .title").text_content()
        assert elsewhere == [] and errors == [], (elsewhere, errors)
    finally:
        ctx.close()


def test_failed_delivery_is_retried_from_the_watchlists_page(browser: Any, live: LiveServer) -> None:
    """A webhook that answers 404 leaves a failed delivery; a supervisor sees it in the Deliveries panel and
    retries it once the receiver is fixed; it is then delivered."""
    from tests.server.test_deliveries_api import Receiver

    receiver = Receiver()
    c = live.client("supervisor-user")
    channel_id = None
    try:
        wl = next(w for w in c.get("/api/watchlists").json() if w["name"] == "wanted")
        r = c.post(f"/api/watchlists/{wl['id']}/channels", json={"kind": "webhook", "target": receiver.url})
        assert r.status_code == 201, r.text
        channel_id = r.json()["id"]
        alert_id = _push_alert(live, camera="hook-cam")
        deadline = time.monotonic() + 30
        while not c.get("/api/deliveries", params={"status": "failed", "alert_id": alert_id}).json():
            assert time.monotonic() < deadline, "the delivery did not fail"
            time.sleep(0.1)

        ctx, page, errors = _new_page(browser, live, DESKTOP)
        try:
            login_page(page, live.base_url, "supervisor-user")
            page.goto("/watchlists")
            page.wait_for_selector("body[data-ready='1']")
            page.click("#deliveries-panel summary")
            row = page.locator("#deliveries li[data-status='failed']").filter(has_text=f"alert {alert_id}")
            row.wait_for()
            assert "404" in row.text_content()
            receiver.status = 204
            row.locator("button", has_text="Retry").click()
            page.select_option("#d-status", "delivered")
            page.wait_for_function(
                "(id) => { document.querySelector('#deliveries-filter button').click();"
                " return [...document.querySelectorAll('#deliveries li[data-status=delivered]')]"
                ".some((li) => li.textContent.includes(`alert ${id} `)); }",
                arg=alert_id,
                polling=500,
            )
            page.screenshot(path=str(artifact("desktop-deliveries.png")), full_page=True)
            assert not _real_errors(errors), errors
        finally:
            ctx.close()
        assert receiver.bodies and receiver.bodies[0]["alert_id"] == alert_id
    finally:
        if channel_id is not None:
            c.delete(f"/api/channels/{channel_id}")
        c.close()
        receiver.httpd.shutdown()
