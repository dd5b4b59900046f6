"""Real receivers for the notification tests: a local HTTP server that records what it is sent, a
mosquitto broker in a subprocess, and a reversible test cipher for sealed blobs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sightline.gallery.store import SEALED_MAGIC

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Poll ``cond()`` until it is true or ``timeout`` seconds passed; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > end:
            return bool(cond())
        time.sleep(step)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1:``port`` recording every POST; answers ``statuses`` in order, then 200."""

    def __init__(self, port: int | None = None, statuses: list[int] | None = None, headers: dict | None = None):
        self.port = port or free_port()
        self.statuses = list(statuses or [])
        self.extra_headers = headers or {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with recv._lock:
                    recv.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    code = recv.statuses.pop(0) if recv.statuses else 200
                self.send_response(code)
                for k, v in recv.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:``port`` (anonymous clients allowed), in a subprocess."""

    def __init__(self, tmp: Path, port: int | None = None, users: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.conf = tmp / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:  # as root, mosquitto drops to its own user, which cannot read the test's files
            lines.append("user root")
        if users:  # password-protected: anonymous clients are refused
            pw = tmp / "mosquitto.passwd"
            pw.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        if not wait_until(up, 10):
            self.stop()
            raise RuntimeError("mosquitto did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def have_mosquitto() -> bool:
    return MOSQUITTO.exists() or shutil.which("mosquitto") is not None


class XorCipher:
    """A reversible stand-in for the AES-GCM cipher: enough to see that blobs are sealed on write and
    opened on read (``SEALED_MAGIC`` + bytes xor 0x5A)."""

    def seal(self, data: bytes) -> bytes:
        return SEALED_MAGIC + bytes(b ^ 0x5A for b in data)

    def unseal(self, blob: bytes) -> bytes:
        assert blob.startswith(SEALED_MAGIC)
        return bytes(b ^ 0x5A for b in blob[len(SEALED_MAGIC) :])
