"""Real media servers for tests and benchmarks: RTSP servers, ffmpeg publishers, an HTTP MJPEG/HLS server.

RTSP servers (both expose ``url(name)``, ``publish(clip, name)``, ``kill()``, ``start()``, ``close()``,
``cpu_s()``):

* :class:`PerlRtspServer`: Debian's rtsp-server-perl (RTSP::Server), a separate source port where ffmpeg
  publishes and a client port for readers. It only speaks RTP over UDP (a TCP-interleaved SETUP gets
  400 Bad Request). :meth:`PerlRtspServer.on_free_ports` picks free TCP ports and a free UDP range.
* :class:`RelayRtspServer`: the small asyncio relay in tests/video/rtsp_relay.py (source checkouts),
  run as a process, for RTP over TCP (interleaved) and UDP; ffmpeg publishes to it over TCP on the port
  readers use.

:func:`publish` starts ``ffmpeg -re -stream_loop -1 -i clip -c copy -f rtsp URL`` (any RTSP server).
:class:`HttpVideoServer` serves MJPEG (multipart/x-mixed-replace) from JPEG bytes and static files
(HLS playlists, progressive MP4) from a folder.

Every process started here is stopped by ``close()``/``stop()``; ports are chosen free at run time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

from sightline.eval.clips import Clip, ffmpeg_exe

__all__ = [
    "RTSP_PERL",
    "HttpVideoServer",
    "PerlRtspServer",
    "Publisher",
    "RelayRtspServer",
    "RtspServerBase",
    "free_tcp_port",
    "free_udp_range",
    "jpeg_frames",
    "process_cpu_s",
    "publish",
    "rtsp_describe_status",
    "stop_process",
    "wait_port",
]

logger = logging.getLogger(__name__)

RTSP_PERL = "/usr/bin/rtsp-server-perl"
#: The test relay script in a source checkout (not shipped in wheels).
RELAY_SCRIPT = Path(__file__).resolve().parents[3] / "tests" / "video" / "rtsp_relay.py"


def _require(exe: str) -> str:
    path = shutil.which(exe) or (exe if os.path.exists(exe) else None)
    if path is None:
        raise RuntimeError(f"{exe} not found: run scripts/install-system-deps.sh")
    return path


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_range(n: int = 200) -> int:
    """An even port p with p .. p+n-1 bindable for UDP now (for an RTSP server's RTP sockets)."""
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
    """Block until something accepts TCP connections on 127.0.0.1:port; TimeoutError after ``timeout`` s."""
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
    """SIGTERM (after SIGCONT, in case it was paused), then SIGKILL after ``timeout`` s."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGCONT)
            p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)


def process_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by these processes, from /proc (0 for gone ones)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
    return total


@dataclass
class Publisher:
    """An ffmpeg process publishing a clip in a loop at its native rate (-re); ``url`` is the reader URL."""

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
    native rate, published to an RTSP server (``transport``: how ffmpeg sends RTP to the server).
    ffmpeg's errors go to ``log_dir/publish-<name>.log`` when ``log_dir`` is given."""
    path = clip.path if isinstance(clip, Clip) else Path(clip)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1"]
    cmd += ["-i", str(path), "-c", "copy", "-rtsp_transport", transport, "-f", "rtsp", url]
    log_path = log_dir / f"publish-{url.rsplit('/', 1)[-1]}.log" if log_dir else Path(os.devnull)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return Publisher(proc, url)


@dataclass
class RtspServerBase:
    """Common process handling; subclasses set ``client_port``, ``source_port`` and ``_command()``.

    Use as a context manager or call ``start()`` / ``close()``; the log goes to ``workdir``."""

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kill(self) -> None:
        """SIGKILL the server (as a crash would) and stop the publishers feeding it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for p in self.publishers:
            p.stop()
        self.publishers.clear()

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/{name}"

    def publish(self, clip: Clip | Path, name: str = "cam", wait: bool = True, timeout_s: float = 10.0) -> Publisher:
        """Publish ``clip`` in a loop as ``name``; waits until readers can DESCRIBE it. Returns the
        Publisher; ``.url`` is the reader URL."""
        src_url = f"rtsp://127.0.0.1:{self.source_port}/{name}"
        pub = publish(clip, src_url, transport=self.transport_in, log_dir=self.workdir)
        pub.url = self.url(name)
        self.publishers.append(pub)
        if wait:
            deadline = time.monotonic() + timeout_s
            while rtsp_describe_status(pub.url, self.client_port) != 200:
                if pub.proc.poll() is not None or time.monotonic() > deadline:
                    pub.stop()
                    raise RuntimeError(f"publishing to {src_url} failed (see {self.workdir})")
                time.sleep(0.05)
        return pub

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server process and its publishers."""
        procs = ([self.proc] if self.proc is not None else []) + [p.proc for p in self.publishers]
        return process_cpu_s([p.pid for p in procs])

    def close(self) -> None:
        self.kill()


# /usr/bin/rtsp-server-perl with two fixes to RTSP::Server 0.06's RTP port handling:
# 1. it resets its RTP port counter to the package variable $RTP_START_PORT (20000) whenever it has no
#    mount (housekeeping() runs when any connection closes, e.g. a readiness probe or a DESCRIBE before
#    the publisher arrived), so --rtp_start_port only held until then and two servers on one machine
#    ended up fighting over UDP 20000+ (their publishers' packets then went to the wrong server);
# 2. it hands out port pairs without checking them (and never reuses them), so a pair taken by another
#    process was bound silently in vain. next_rtp_start_port now skips pairs it cannot bind and wraps
#    around within [start, end).
PERL_LAUNCHER = r"""
use strict; use warnings; use AnyEvent; use RTSP::Server; use Socket;
$RTSP::Server::RTP_START_PORT = $ENV{SIGHTLINE_RTP_START_PORT};
my $end = $ENV{SIGHTLINE_RTP_END_PORT};
sub pair_free {
    my ($port) = @_;
    for my $p ($port, $port + 1) {
        socket(my $s, PF_INET, SOCK_DGRAM, 0) or return 0;
        my $ok = bind($s, sockaddr_in($p, inet_aton('127.0.0.1')));
        close($s);
        return 0 unless $ok;
    }
    return 1;
}
{
    no warnings 'redefine';
    *RTSP::Server::next_rtp_start_port = sub {
        my ($self) = @_;
        for (1 .. 5000) {
            my $port = $self->rtp_start_port;
            my $next = $port + 2;
            $next = $RTSP::Server::RTP_START_PORT if $next + 1 >= $end;
            $self->rtp_start_port($next);
            return $port if pair_free($port);
        }
        die "no free RTP port pair in $RTSP::Server::RTP_START_PORT .. $end\n";
    };
}
my $srv = RTSP::Server->new_with_options();
$srv->listen;
my $cv = AnyEvent->condvar;
$SIG{INT} = $SIG{TERM} = sub { $cv->send };
$cv->recv;
"""


@dataclass
class PerlRtspServer(RtspServerBase):
    """Debian's RTSP::Server (rtsp-server-perl): UDP only; RTP port pairs from ``rtp_start_port`` up to
    ``rtp_start_port + rtp_ports`` (each publisher stream and each reader SETUP takes one free pair)."""

    rtp_start_port: int = 0
    rtp_ports: int = 200

    @classmethod
    def on_free_ports(cls, workdir: Path, rtp_ports: int = 200) -> PerlRtspServer:
        """A server (not started) on free TCP ports with a free UDP range of ``rtp_ports`` ports."""
        return cls(
            workdir,
            client_port=free_tcp_port(),
            source_port=free_tcp_port(),
            rtp_start_port=free_udp_range(rtp_ports),
            rtp_ports=rtp_ports,
        )

    def _command(self) -> list[str]:
        _require(RTSP_PERL)  # the Debian package provides the RTSP::Server library used below
        if self.rtp_start_port <= 0:
            raise ValueError("PerlRtspServer needs rtp_start_port (use PerlRtspServer.on_free_ports)")
        return [
            "perl", "-e", PERL_LAUNCHER, "--",
            "--clientport", str(self.client_port), "--serverport", str(self.source_port),
            "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
            "--rtp_start_port", str(self.rtp_start_port), "--loglevel", "2",
        ]  # fmt: skip

    def _env(self) -> dict[str, str] | None:
        return {
            **os.environ,
            "SIGHTLINE_RTP_START_PORT": str(self.rtp_start_port),
            "SIGHTLINE_RTP_END_PORT": str(self.rtp_start_port + self.rtp_ports),
        }


@dataclass
class RelayRtspServer(RtspServerBase):
    """The RTSP relay of tests/video/rtsp_relay.py as a process (RTP over TCP and UDP).

    Publishers use TCP: construct with ``source_port == client_port`` and ``transport_in="tcp"``."""

    script: Path = RELAY_SCRIPT

    def _command(self) -> list[str]:
        if not self.script.is_file():
            raise RuntimeError(f"RTSP relay script {self.script} not found (needs a source checkout)")
        return [sys.executable, str(self.script), "--port", str(self.client_port)]


# ---- HTTP: MJPEG (multipart/x-mixed-replace) and static files (HLS, progressive MP4) ------------------


def jpeg_frames(photos: Sequence[Path], size: tuple[int, int] = (320, 240), grey_first: bool = True) -> list[bytes]:
    """JPEG bytes of a grey frame (when ``grey_first``) then each photo, letterboxed to ``size``."""
    from PIL import Image, ImageOps

    out = []
    images = [Image.new("RGB", size, (128, 128, 128))] if grey_first else []
    images += [Image.open(p) for p in photos]
    for im in images:
        fitted = ImageOps.pad(im.convert("RGB"), size, color=(128, 128, 128))
        buf = io.BytesIO()
        fitted.save(buf, format="JPEG", quality=80)
        out.append(buf.getvalue())
    return out


@dataclass
class HttpVideoServer:
    """A threaded HTTP server: ``/mjpeg`` streams the JPEG ``frames`` (one second each) at ``mjpeg_fps``;
    other paths serve files from ``root``. ``/stall`` sends three JPEG parts and then nothing (to test
    read timeouts)."""

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
        return int(self.server.server_address[1])

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
                        jpg = outer.frames[(i // max(1, int(outer.mjpeg_fps))) % len(outer.frames)]
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
