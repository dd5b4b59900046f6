"""``sightline notify bench``: what the outbox costs and how fast a notifier drains it (JSON figures).

Measures, on a fresh gallery file in a temporary folder (WAL, synchronous=NORMAL, as in production):

- ``alert_add_ms``: median and p95 wall time of ``AlertStore.add`` (one alert transaction) with 0 and
  with ``channels`` enabled webhook channels on the alert's watchlist: the price of queueing the
  deliveries in the alert's own transaction.
- ``drain``: alerts/s a ``Notifier`` delivers to a local HTTP receiver (stdlib ``ThreadingHTTPServer``
  on 127.0.0.1, answering 200 at once) at each concurrency, from ``alerts`` queued rows to none pending.

The receiver shares the machine's CPUs with the notifier, so the drain rate is a lower bound of what
the notifier does against a remote receiver with the same latency; it says nothing about real network
round trips (then ``concurrency`` is what matters: deliveries in flight hide latency).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(*, alerts: int = 300, channels: int = 3, concurrency: tuple[int, ...] = (1, 4), cipher: bool = False) -> dict:
    """Run the benchmark; returns the figures (see the module docstring). ``cipher``: seal crops with the
    governance AES-GCM cipher when it is available (as a deployment with a key does)."""
    from sightline.config import NotifyConfig
    from sightline.events.notify.channels import ChannelStore
    from sightline.events.notify.outbox import Notifier
    from sightline.events.store import EventStores
    from sightline.gallery.store import GalleryStore
    from sightline.types import Alert, Match

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    crop = bytes(range(256)) * 24  # ~6 KB, a typical face crop JPEG
    out: dict[str, Any] = {"alerts": alerts, "channels": channels, "crop_bytes": len(crop)}
    try:
        with tempfile.TemporaryDirectory(prefix="sightline-notify-bench-") as tmp:
            store = GalleryStore.open(Path(tmp), encrypt=cipher) if cipher else GalleryStore(Path(tmp) / "g.sqlite3")
            try:
                person = store.add_person("Bench").id
                store.create_watchlist("quiet")  # no channels: the baseline
                loud = store.create_watchlist("loud").id
                chans = ChannelStore(store)
                for _ in range(channels):
                    chans.add(loud, "webhook", url, secret="bench-secret")
                stores = EventStores(store)

                def alert(watchlist: str, i: int) -> Alert:
                    m = Match(person, "Bench", watchlist, similarity=0.95, threshold=0.93, est_fmr=1e-5)
                    return Alert("cam", i, m, ts=time.time(), frame_ts=time.time(), xyxy=(0, 0, 50, 50), crop_jpeg=crop)

                add_ms: dict[str, dict[str, float]] = {}
                for wl, label in (("quiet", "0_channels"), ("loud", f"{channels}_channels")):
                    times = []
                    for i in range(alerts):
                        t0 = time.perf_counter()
                        stores.add_alert(alert(wl, i))
                        times.append((time.perf_counter() - t0) * 1000)
                    add_ms[label] = {
                        "median": round(statistics.median(times), 3),
                        "p95": round(_pct(times, 0.95), 3),
                    }
                out["alert_add_ms"] = add_ms
                queued = alerts * channels
                drain = []
                for conc in concurrency:
                    if conc != concurrency[0]:  # queue the same work again
                        store._conn().execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = 0")
                    cfg = NotifyConfig(poll_interval_s=0.01, timeout_s=10, concurrency=conc)
                    n = Notifier(store, cfg)
                    t0 = time.perf_counter()
                    with n:
                        while n.outbox.counts()["pending"] and time.perf_counter() - t0 < 300:
                            time.sleep(0.02)
                    secs = time.perf_counter() - t0
                    drain.append(
                        {
                            "concurrency": conc,
                            "deliveries": n.stats.delivered,
                            "seconds": round(secs, 3),
                            "deliveries_per_s": round(n.stats.delivered / secs, 1),
                            "retried": n.stats.retried,
                            "failed": n.stats.failed,
                        }
                    )
                out["queued_deliveries"] = queued
                out["drain"] = drain
            finally:
                store.close()
    finally:
        server.shutdown()
        server.server_close()
    return out
