"""The whole console flow in headless Chromium against the real server, with a real camera pipeline:

an admin made with the real CLI (``sightline user add --password-stdin``) creates a supervisor on the Users
page; the supervisor creates a watchlist, enrolls a person by uploading a photo, adds a file camera playing
an ffmpeg clip in which that person appears (a different photo than the enrolled one), sees the alert card
arrive live over the WebSocket and confirms it. Then the same at a phone viewport (390x844, touch) with a
second camera. Screenshots: out/test-artifacts/ui/e2e-*.png.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sightline.config import EngineConfig
from sightline.eval.clips import Clip, make_face_clip
from sightline.vision.engine import FaceEngine
from tests.conftest import GALLERY
from tests.server.ui_helpers import (
    DESKTOP,
    PASSWORD,
    PHONE,
    LiveServer,
    artifact,
    chromium,
    chromium_available,
    login_page,
    new_page,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright"),
]

ENROLL_PHOTO = GALLERY / "obama" / "obama2.jpg"
CLIP_PHOTO = GALLERY / "obama" / "obama.jpg"  # the same person, another photo
ALERT_TIMEOUT_MS = 120_000  # decode + detect + embed on 2 shared cores


def engine_factory() -> FaceEngine:
    """One engine per camera worker, one onnx thread (as ``sightline watch`` does)."""
    return FaceEngine.from_config(EngineConfig(threads=1, fallback_detector="none"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """6 s, 640x360 @ 25 fps: 1 s grey, 4 s of the person, 1 s grey (played in a loop by the camera)."""
    out = tmp_path_factory.mktemp("ui-clip") / "door.mp4"
    return make_face_clip(out, [(None, 1.0), (CLIP_PHOTO, 4.0), (None, 1.0)], size=(640, 360), fps=25)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("ui-e2e") / "data"
    data.mkdir()
    cli = Path(sys.executable).with_name("sightline")
    res = subprocess.run(
        [str(cli), "--data-dir", str(data), "user", "add", "chief", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    with LiveServer.open(data, engine=engine, engine_factory=engine_factory) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _context(browser: Any, server: LiveServer, viewport: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    return new_page(browser, server.base_url, viewport, 30_000)


def _add_camera(page: Any, camera_id: str, url: str) -> None:
    page.goto("/cameras")
    page.wait_for_selector("body[data-ready='1']")
    page.click("#add-camera-panel summary")
    page.fill("#cam-id", camera_id)
    page.fill("#cam-url", url)
    page.check("#cam-loop")
    page.click("#cam-add-btn")
    page.locator(f"article.camera[data-camera-id='{camera_id}']").wait_for()


def _wait_confirm_alert(page: Any, camera_id: str, name: str, shot: str) -> None:
    """On the live page: wait for the first alert of ``camera_id``, check it, confirm it."""
    card = page.locator(f"article.alert-card:has(dd.camera:text-is('{camera_id}'))").first
    card.wait_for(timeout=ALERT_TIMEOUT_MS)
    assert name in card.locator("h3").text_content()
    assert "false-match rate" in card.locator(".meaning").text_content()
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(artifact(f"{shot}-alert.png")))
    card.locator("button[data-decision='confirmed']").click()
    card.locator(".status-badge.confirmed").wait_for()
    page.screenshot(path=str(artifact(f"{shot}-confirmed.png")))


def _real_errors(errors: list[str]) -> list[str]:
    return [e for e in errors if "Failed to load resource" not in e]


def test_console_end_to_end(browser: Any, server: LiveServer, clip: Clip) -> None:
    # -- desktop: admin creates the supervisor through the Users page
    ctx, page, errors = _context(browser, server, DESKTOP)
    try:
        login_page(page, server.base_url, "chief")
        page.goto("/users")
        page.wait_for_selector("body[data-ready='1']")
        page.click("#add-user-panel summary")
        page.fill("#u-name", "sam")
        page.fill("#u-pass", PASSWORD)
        page.select_option("#u-role", "supervisor")
        page.click("#add-user button[type=submit]")
        page.locator("#users tr[data-user-id]:has-text('sam')").wait_for()
        page.click("#logout-btn")
        page.wait_for_url("**/login")

        # -- the supervisor: watchlist, person, photo upload, camera, live alert, confirm
        login_page(page, server.base_url, "sam")
        page.goto("/watchlists")
        page.wait_for_selector("body[data-ready='1']")
        page.click("#add-wl-panel summary")
        page.fill("#wl-name", "wanted")
        page.fill("#wl-desc", "Persons of interest")
        page.click("#add-wl button[type=submit]")
        page.locator("article[data-watchlist-id]:has-text('wanted')").wait_for()

        page.goto("/persons")
        page.wait_for_selector("body[data-ready='1']")
        page.click("#add-person-panel summary")
        page.fill("#p-name", "Barack Obama")
        page.select_option("#p-wl", "wanted")
        page.fill("#p-reason", "e2e case 1")
        page.click("#p-create-btn")
        page.wait_for_url("**/persons/*")
        page.wait_for_selector("body[data-ready='1']")
        page.set_input_files("#file-input", str(ENROLL_PHOTO))
        page.wait_for_selector("#upload-progress[data-done='1']")
        page.wait_for_selector("#upload-results li.ok")
        page.locator("#photos figure.photo").first.wait_for()
        page.screenshot(path=str(artifact("e2e-desktop-person.png")), full_page=True)

        _add_camera(page, "door", str(clip.path))
        page.locator("article.camera[data-camera-id='door'] .state-pill").wait_for()
        page.goto("/")
        page.wait_for_selector("#live-state[data-state='live']")
        _wait_confirm_alert(page, "door", "Barack Obama", "e2e-desktop")
        stored = server.services.stores.alerts.list(camera_id="door", limit=10)
        assert any(a.status == "confirmed" and a.decided_by == "sam" for a in stored)
        page.goto("/cameras")
        cam = page.locator("article.camera[data-camera-id='door']")
        cam.locator("button:text-is('Snapshot')").click()
        page.wait_for_function(
            "() => { const i = document.querySelector(\"article[data-camera-id='door'] img.snapshot\");"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=60_000,
        )
        page.screenshot(path=str(artifact("e2e-desktop-cameras.png")), full_page=True)
        assert not _real_errors(errors), errors
    finally:
        ctx.close()

    # -- phone: the same supervisor adds a second camera and confirms its alert on a 390x844 touch screen
    ctx, page, errors = _context(browser, server, PHONE)
    try:
        login_page(page, server.base_url, "sam")
        page.click("#menu-btn")
        page.click("#nav a[href='/cameras']")
        page.wait_for_url("**/cameras")
        _add_camera(page, "gate", str(clip.path))
        page.click("#menu-btn")
        page.click("#nav a[href='/']")
        page.wait_for_selector("#live-state[data-state='live']")
        _wait_confirm_alert(page, "gate", "Barack Obama", "e2e-phone")
        assert not _real_errors(errors), errors
    finally:
        ctx.close()
