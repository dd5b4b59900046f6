"""Real servers for the video tests: RTSP (rtsp-server-perl, the test relay), HTTP MJPEG/HLS, ffmpeg publishers.

RTSP servers (both expose ``url(name)``, ``publish(clip, name)``, ``kill()``, ``start()``, ``close()``):

* :class:`PerlRtspServer`: Debian's rtsp-server-perl (``/usr/bin/rtsp-server-perl``), a separate source
  port where ffmpeg publishes and a client port for readers. It only speaks RTP over UDP (a
  TCP-interleaved SETUP gets 400 Bad Request).
* :class:`RelayRtspServer`: tests/video/rtsp_relay.py, a small asyncio RTSP server run as a process,
  for RTP over TCP (interleaved) and UDP; ffmpeg publishes to it over TCP on the port readers use.

:func:`publish` starts ``ffmpeg -re -stream_loop -1 -i clip -c copy -f rtsp URL`` (any RTSP server).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import GALLERY
from tests.video.clips import Clip, ffmpeg_exe

OBAMA = GALLERY / "obama" / "obama.jpg"
BIDEN = GALLERY / "biden" / "biden.jpg"
RTSP_PERL = "/usr/bin/rtsp-server-perl"
RELAY_SCRIPT = Path(__file__).with_name("rtsp_relay.py")
OBAMA = GALLERY / "obama" / "obama.jpg"
BIDEN = GALLERY / "biden" / "biden.jpg"


def _require(exe: str) -> str:
    path = shutil.which(exe) or (exe if os.path.exists(exe) else None)
    if path is None:
        raise RuntimeError(f"{exe} not found: run scripts/install-system-deps.sh")
    return path


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_range(n: int = 200) -> int:
    """An even port p with p .. p+n-1 bindable for UDP now (for the server's RTP sockets)."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(30000, 60000 - n) & ~1
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def rtsp_describe_status(url: str, port: int) -> int:
    """The status code of an RTSP DESCRIBE for ``url`` (0 when the server does not answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
            line = s.makefile("rb").readline().decode("latin-1")
            return int(line.split()[1]) if line.startswith("RTSP/1.0") else 0
    except (OSError, ValueError, IndexError):
        return 0


def stop_process(p: subprocess.Popen, timeout: float = 3.0) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGCONT)  # in case a test paused it
            p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)


@dataclass
class Publisher:
    """An ffmpeg process publishing a clip in a loop at its native rate (-re)."""

    proc: subprocess.Popen
    url: str

    def pause(self) -> None:
        """SIGSTOP: the stream stalls without the connection closing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        stop_process(self.proc)


def publish(clip: Clip | Path, url: str, *, transport: str = "udp", log_dir: Path | None = None) -> Publisher:
    """Start ``ffmpeg -re -stream_loop -1 -i clip -c copy -f rtsp url``: the clip, looped forever at its
    native rate, published to an RTSP server (``transport``: how ffmpeg sends RTP to the server)."""
    path = clip.path if isinstance(clip, Clip) else Path(clip)
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(path),
        "-c",
        "copy",
        "-rtsp_transport",
        transport,
        "-f",
        "rtsp",
        url,
    ]
    log_path = (log_dir or Path(os.devnull)) / f"publish-{url.rsplit('/', 1)[-1]}.log" if log_dir else os.devnull
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return Publisher(proc, url)


@dataclass
class RtspServerBase:
    """Common process handling; subclasses set ``client_port``, ``source_port`` and ``_command()``."""

    workdir: Path
    client_port: int = 0
    source_port: int = 0
    transport_in: str = "udp"
    proc: subprocess.Popen | None = None
    publishers: list[Publisher] = field(default_factory=list)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server already running")
        log = open(self.workdir / f"{type(self).__name__}.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self._env())
        log.close()
        try:
            wait_port(self.client_port)
            if self.source_port != self.client_port:
                wait_port(self.source_port)
        except TimeoutError:
            stop_process(self.proc)
            raise

    def kill(self) -> None:
        """SIGKILL the server (as a crash would) and the publishers feeding it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for p in self.publishers:
            p.stop()
        self.publishers.clear()

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/{name}"

    def publish(self, clip: Clip | Path, name: str = "cam", wait: bool = True) -> Publisher:
        """Publish ``clip`` in a loop as ``name``; waits until readers can DESCRIBE it. Returns the
        Publisher; ``.url`` is the reader URL."""
        src_url = f"rtsp://127.0.0.1:{self.source_port}/{name}"
        pub = publish(clip, src_url, transport=self.transport_in, log_dir=self.workdir)
        pub.url = self.url(name)
        self.publishers.append(pub)
        if wait:
            deadline = time.monotonic() + 10
            while rtsp_describe_status(pub.url, self.client_port) != 200:
                if pub.proc.poll() is not None or time.monotonic() > deadline:
                    pub.stop()
                    raise RuntimeError(f"publishing to {src_url} failed (see {self.workdir})")
                time.sleep(0.05)
        return pub

    def close(self) -> None:
        self.kill()


# /usr/bin/rtsp-server-perl, with one fix: RTSP::Server 0.06 resets its RTP port counter to the
# package variable $RTP_START_PORT (20000) whenever it has no mount (housekeeping() runs when any
# connection closes, e.g. a readiness probe or a DESCRIBE before the publisher arrived), so
# --rtp_start_port only holds until then and two servers on one machine end up fighting over UDP
# 20000+ (their publishers' packets then go to the wrong server). Setting the variable fixes it.
PERL_LAUNCHER = r"""
use strict; use warnings; use AnyEvent; use RTSP::Server;
$RTSP::Server::RTP_START_PORT = $ENV{SIGHTLINE_RTP_START_PORT};
my $srv = RTSP::Server->new_with_options();
$srv->listen;
my $cv = AnyEvent->condvar;
$SIG{INT} = $SIG{TERM} = sub { $cv->send };
$cv->recv;
"""


@dataclass
class PerlRtspServer(RtspServerBase):
    """Debian's RTSP::Server (rtsp-server-perl): UDP only; RTP ports from ``rtp_start_port`` up."""

    rtp_start_port: int = 0

    def _command(self) -> list[str]:
        _require(RTSP_PERL)  # the Debian package provides the RTSP::Server library used below
        return [
            "perl", "-e", PERL_LAUNCHER, "--",
            "--clientport", str(self.client_port), "--serverport", str(self.source_port),
            "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
            "--rtp_start_port", str(self.rtp_start_port), "--loglevel", "2",
        ]  # fmt: skip

    def _env(self) -> dict[str, str] | None:
        return {**os.environ, "SIGHTLINE_RTP_START_PORT": str(self.rtp_start_port)}


@dataclass
class RelayRtspServer(RtspServerBase):
    def _command(self) -> list[str]:
        return [sys.executable, str(RELAY_SCRIPT), "--port", str(self.client_port)]


# ---- HTTP: MJPEG (multipart/x-mixed-replace) and static files (HLS, progressive MP4) ------------------


def jpeg_frames(size: tuple[int, int] = (320, 240)) -> list[bytes]:
    """Grey, obama and biden frames as JPEG bytes, letterboxed to ``size``."""
    from PIL import Image, ImageOps

    out = []
    grey = Image.new("RGB", size, (128, 128, 128))
    for im in (grey, Image.open(OBAMA), Image.open(BIDEN)):
        fitted = ImageOps.pad(im.convert("RGB"), size, color=(128, 128, 128))
        buf = io.BytesIO()
        fitted.save(buf, format="JPEG", quality=80)
        out.append(buf.getvalue())
    return out


@dataclass
class HttpVideoServer:
    """A threaded HTTP server: ``/mjpeg`` streams JPEG parts at ``mjpeg_fps``; other paths serve
    files from ``root``. ``/stall`` sends one JPEG part and then nothing (to test read timeouts)."""

    root: Path
    mjpeg_fps: float = 25.0
    frames: list[bytes] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    mjpeg_parts_sent: int = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self, port: int = 0) -> None:
        """Serve on ``port`` (0: a free one)."""
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(outer.root), **kw)

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/mjpeg") or self.path.startswith("/stall"):
                    self.stream_mjpeg(stall=self.path.startswith("/stall"))
                else:
                    super().do_GET()

            def stream_mjpeg(self, stall: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=sightlineframe")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                period = 1.0 / outer.mjpeg_fps
                i = 0
                t0 = time.monotonic()
                try:
                    while not outer.stopping.is_set():
                        jpg = outer.frames[(i // int(outer.mjpeg_fps)) % len(outer.frames)]
                        self.wfile.write(
                            b"--sightlineframe\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(jpg)}\r\n\r\n".encode()
                            + jpg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        outer.mjpeg_parts_sent += 1
                        i += 1
                        if stall and i >= 3:
                            outer.stopping.wait(60)
                            return
                        outer.stopping.wait(max(0.0, t0 + i * period - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(5)
