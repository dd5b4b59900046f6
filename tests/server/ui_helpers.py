"""Helpers of the console tests: a real server on a free port, users, and the system Chromium.

    with LiveServer.open(tmp_path / "data", engine=engine) as srv:        # uvicorn in a thread
        srv.add_user("ada", PASSWORD, "admin")
        browser = launch_chromium(playwright)
        ...

The server is the real ``create_app`` over real ``Services`` (SQLite in a temp dir); the browser is
Debian's /usr/bin/chromium driven by Playwright (its own browser download does not work here).
Screenshots go to ``out/test-artifacts/ui/`` (gitignored).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "out" / "test-artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A password that passes the server's strength rule (at least 10 characters).
PASSWORD = "correct-horse-battery"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1366, "height": 900}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium_available() -> bool:
    if not Path(CHROMIUM).exists():
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def launch_chromium(playwright: Any) -> Any:
    """The system Chromium, headless, with no network beyond what the page asks for."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def artifact(name: str) -> Path:
    """Path for a test artifact (screenshot) under out/test-artifacts/ui/, its folder created."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


@dataclass
class LiveServer:
    """A running server: ``base_url`` (http://127.0.0.1:PORT), its ``services`` and ``app``."""

    base_url: str
    services: Any
    app: Any
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        data_dir: Path,
        *,
        engine: Any = None,
        engine_factory: Callable[[], Any] | None = None,
        start_timeout_s: float = 60.0,
        **config: Any,
    ) -> Iterator[LiveServer]:
        """Open services on ``data_dir`` and serve ``create_app`` with uvicorn in a daemon thread;
        stop and close everything on exit. ``config``: more ``ServerConfig`` fields."""
        import uvicorn

        from sightline.config import ServerConfig
        from sightline.server.app import create_app
        from sightline.server.services import Services

        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        cfg = ServerConfig(data_dir=data_dir, host="127.0.0.1", port=port, **config)
        services = Services.open(cfg, engine=engine, engine_factory=engine_factory)
        try:
            app = create_app(cfg, services)
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
            )
            thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
            thread.start()
            deadline = time.monotonic() + start_timeout_s
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("uvicorn exited before it started (see the log above)")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start within {start_timeout_s} s")
                time.sleep(0.05)
            srv = cls(f"http://127.0.0.1:{port}", services, app, server, thread)
            try:
                yield srv
            finally:
                server.should_exit = True
                thread.join(30)
        finally:
            services.close()

    def add_user(self, username: str, password: str = PASSWORD, role: str = "admin") -> Any:
        """A user created through the auth module (argon2 hash, as ``sightline user add`` does)."""
        return self.services.users.add(username, password, role)

    def client(self, username: str | None = None, password: str = PASSWORD) -> httpx.Client:
        """An HTTP client of this server, logged in as ``username`` (cookie + X-CSRF-Token) when given."""
        c = httpx.Client(base_url=self.base_url, timeout=60.0, follow_redirects=False)
        if username is not None:
            r = c.post("/api/auth/login", json={"username": username, "password": password})
            r.raise_for_status()
            c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c


def login_page(page: Any, base_url: str, username: str, password: str = PASSWORD, timeout_ms: int = 30_000) -> None:
    """Sign in through the real login form and wait for the signed-in shell."""
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-btn")
    page.wait_for_selector("#user-chip:not([hidden])", timeout=timeout_ms)


def collect_errors(page: Any) -> list[str]:
    """Record uncaught page errors, console errors and CSP violations of ``page`` into a list."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    return errors


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """The system Chromium under a Playwright session, closed on exit (for a module-scoped ``browser`` fixture)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


def new_page(
    browser: Any, base_url: str, viewport: dict[str, Any], timeout_ms: int = 30_000
) -> tuple[Any, Any, list[str]]:
    """A fresh browser context on ``base_url`` (``viewport``: ``DESKTOP`` or ``PHONE``), its page and the page's
    error list (``collect_errors``); every wait defaults to ``timeout_ms``."""
    ctx = browser.new_context(base_url=base_url, **viewport)
    ctx.set_default_timeout(timeout_ms)
    page = ctx.new_page()
    return ctx, page, collect_errors(page)
