"""A small RTSP relay server for the tests: publishers ANNOUNCE/RECORD, readers DESCRIBE/SETUP/PLAY.

Why: Debian's rtsp-server-perl (used for the UDP tests) only speaks RTP over UDP; it answers a
TCP-interleaved SETUP with 400. Cameras are usually read over TCP, so this relay serves both:
readers may SETUP with ``RTP/AVP/TCP;interleaved=a-b`` or ``RTP/AVP;unicast;client_port=p-q``.
Publishers must use TCP interleaved (``ffmpeg ... -rtsp_transport tcp -f rtsp rtsp://host:port/name``).

Run as a process (the tests start and kill it):  ``python rtsp_relay.py --port 8554``.
It prints ``READY <port>`` on stdout once listening. When a publisher goes away, its mount is
removed and its readers are disconnected, as real servers do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import re
import socket
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

logger = logging.getLogger("rtsp_relay")

MAX_READER_BACKLOG = 4 * 1024 * 1024  # bytes buffered for a slow TCP reader before packets are dropped
_session_ids = itertools.count(0x1000)


@dataclass
class Reader:
    conn: Connection
    channels: dict[int, int] = field(default_factory=dict)  # publisher channel -> reader channel
    udp: dict[int, tuple[socket.socket, tuple[str, int]]] = field(default_factory=dict)  # pub ch -> (sock, dest)
    playing: bool = False


@dataclass
class Mount:
    path: str
    sdp: str
    publisher: Connection
    track_channels: dict[int, int] = field(default_factory=dict)  # track index -> publisher rtp channel
    readers: list[Reader] = field(default_factory=list)


class Relay:
    def __init__(self) -> None:
        self.mounts: dict[str, Mount] = {}


def _mount_path(url: str) -> str:
    return urlsplit(url).path.strip("/")


def _split_track(path: str) -> tuple[str, int]:
    m = re.match(r"^(.*)/(?:streamid|trackID|track)=(\d+)$", path)
    if m:
        return m.group(1), int(m.group(2))
    return path, 0


class Connection:
    def __init__(self, relay: Relay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.relay = relay
        self.r = reader
        self.w = writer
        self.session = str(next(_session_ids))
        self.mount: Mount | None = None  # as publisher
        self.as_reader: tuple[Mount, Reader] | None = None
        peer = writer.get_extra_info("peername")
        self.peer_host = peer[0] if peer else "127.0.0.1"

    async def serve(self) -> None:
        try:
            while True:
                first = await self.r.readexactly(1)
                if first == b"$":
                    hdr = await self.r.readexactly(3)
                    ch, n = hdr[0], int.from_bytes(hdr[1:3], "big")
                    payload = await self.r.readexactly(n)
                    if self.mount is not None:
                        self.forward(ch, payload)
                    continue
                line = first + await self.r.readline()
                if not line.strip():
                    continue
                await self.handle_request(line.decode("latin-1").strip())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.cleanup()

    def forward(self, ch: int, payload: bytes) -> None:
        assert self.mount is not None
        for rd in list(self.mount.readers):
            if not rd.playing:
                continue
            if ch in rd.udp:
                sock, dest = rd.udp[ch]
                with contextlib.suppress(OSError):
                    sock.sendto(payload, dest)
            elif ch in rd.channels:
                w = rd.conn.w
                if w.is_closing() or w.transport.get_write_buffer_size() > MAX_READER_BACKLOG:
                    continue
                w.write(b"$" + bytes([rd.channels[ch]]) + len(payload).to_bytes(2, "big") + payload)

    async def handle_request(self, request_line: str) -> None:
        parts = request_line.split(" ")
        if len(parts) != 3:
            self.w.close()
            return
        method, url, _ = parts
        headers: dict[str, str] = {}
        while True:
            h = (await self.r.readline()).decode("latin-1").strip()
            if not h:
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        if "content-length" in headers:
            body = await self.r.readexactly(int(headers["content-length"]))
        cseq = headers.get("cseq", "0")
        handler = getattr(self, "do_" + method.upper(), None)
        if handler is None:
            self.respond(cseq, 501, "Not Implemented")
            return
        handler(cseq, url, headers, body)
        await self.w.drain()

    def respond(
        self, cseq: str, code: int, reason: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        out = [f"RTSP/1.0 {code} {reason}", f"CSeq: {cseq}", "Server: sightline-test-relay"]
        for k, v in (headers or {}).items():
            out.append(f"{k}: {v}")
        if body:
            out.append(f"Content-Length: {len(body)}")
        self.w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)

    def do_OPTIONS(self, cseq, url, headers, body) -> None:  # noqa: N802
        self.respond(
            cseq,
            200,
            "OK",
            {"Public": "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER"},
        )

    def do_GET_PARAMETER(self, cseq, url, headers, body) -> None:  # noqa: N802
        self.respond(cseq, 200, "OK", {"Session": self.session})

    do_SET_PARAMETER = do_GET_PARAMETER  # noqa: N815

    def do_ANNOUNCE(self, cseq, url, headers, body) -> None:  # noqa: N802
        path = _mount_path(url)
        old = self.relay.mounts.get(path)
        if old is not None and old.publisher is not self:
            self.respond(cseq, 455, "Method Not Valid In This State")
            return
        self.mount = Mount(path, body.decode("latin-1"), self)
        self.relay.mounts[path] = self.mount
        logger.info("publisher on /%s", path)
        self.respond(cseq, 200, "OK")

    def do_DESCRIBE(self, cseq, url, headers, body) -> None:  # noqa: N802
        path = _mount_path(url)
        mount = self.relay.mounts.get(path)
        if mount is None:
            self.respond(cseq, 404, "Not Found")
            return
        self.respond(
            cseq,
            200,
            "OK",
            {"Content-Type": "application/sdp", "Content-Base": url.rstrip("/") + "/"},
            mount.sdp.encode("latin-1"),
        )

    def do_SETUP(self, cseq, url, headers, body) -> None:  # noqa: N802
        transport = headers.get("transport", "")
        path, track = _split_track(_mount_path(url))
        if self.mount is not None:  # publisher
            m = re.search(r"interleaved=(\d+)", transport)
            if not m:
                self.respond(cseq, 461, "Unsupported Transport")
                return
            self.mount.track_channels[track] = int(m.group(1))
            self.respond(cseq, 200, "OK", {"Transport": transport, "Session": self.session})
            return
        mount = self.relay.mounts.get(path)
        if mount is None or track not in mount.track_channels:
            self.respond(cseq, 404, "Not Found")
            return
        if self.as_reader is None:
            rd = Reader(self)
            mount.readers.append(rd)
            self.as_reader = (mount, rd)
        rd = self.as_reader[1]
        pub_rtp = mount.track_channels[track]
        m = re.search(r"interleaved=(\d+)(?:-(\d+))?", transport)
        if m:
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) else a + 1
            rd.channels[pub_rtp] = a
            rd.channels[pub_rtp + 1] = b
            self.respond(
                cseq, 200, "OK", {"Transport": f"RTP/AVP/TCP;unicast;interleaved={a}-{b}", "Session": self.session}
            )
            return
        m = re.search(r"client_port=(\d+)(?:-(\d+))?", transport)
        if not m:
            self.respond(cseq, 461, "Unsupported Transport")
            return
        p = int(m.group(1))
        q = int(m.group(2)) if m.group(2) else p + 1
        socks = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
        rd.udp[pub_rtp] = (socks[0], (self.peer_host, p))
        rd.udp[pub_rtp + 1] = (socks[1], (self.peer_host, q))
        sp = [s.getsockname()[1] for s in socks]
        self.respond(
            cseq,
            200,
            "OK",
            {
                "Transport": f"RTP/AVP/UDP;unicast;client_port={p}-{q};server_port={sp[0]}-{sp[1]}",
                "Session": self.session,
            },
        )

    def do_PLAY(self, cseq, url, headers, body) -> None:  # noqa: N802
        if self.as_reader is None:
            self.respond(cseq, 455, "Method Not Valid In This State")
            return
        self.as_reader[1].playing = True
        self.respond(cseq, 200, "OK", {"Session": self.session, "Range": "npt=0.000-"})

    def do_RECORD(self, cseq, url, headers, body) -> None:  # noqa: N802
        if self.mount is None:
            self.respond(cseq, 455, "Method Not Valid In This State")
            return
        self.respond(cseq, 200, "OK", {"Session": self.session})

    def do_TEARDOWN(self, cseq, url, headers, body) -> None:  # noqa: N802
        self.respond(cseq, 200, "OK", {"Session": self.session})
        self.w.close()

    def cleanup(self) -> None:
        if self.mount is not None and self.relay.mounts.get(self.mount.path) is self.mount:
            del self.relay.mounts[self.mount.path]
            logger.info("publisher left /%s; disconnecting %s readers", self.mount.path, len(self.mount.readers))
            for rd in self.mount.readers:
                rd.conn.w.close()
                for s, _ in rd.udp.values():
                    s.close()
        if self.as_reader is not None:
            mount, rd = self.as_reader
            if rd in mount.readers:
                mount.readers.remove(rd)
            for s, _ in rd.udp.values():
                s.close()
        self.w.close()


async def main_async(host: str, port: int) -> None:
    relay = Relay()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await Connection(relay, r, w).serve()

    server = await asyncio.start_server(on_client, host, port, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args()
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="rtsp_relay %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args.host, args.port))


if __name__ == "__main__":
    main()
