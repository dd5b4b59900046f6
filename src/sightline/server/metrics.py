"""Server counters and their Prometheus text rendering (``GET /metrics``), without a client library.

Counters live in a ``ServerMetrics`` object owned by the app's ``Services`` (no module globals); per
camera figures are read from the camera supervisor at scrape time. Latencies are seconds.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Histogram bucket upper bounds for search latency, s.
SEARCH_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """A cumulative Prometheus histogram (thread-safe). ``buckets``: increasing upper bounds."""

    def __init__(self, buckets: Sequence[float]) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError(f"buckets must be a non-empty increasing sequence, got {buckets}")
        self.buckets = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value
            self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        with self._lock:
            counts, total, n = list(self._counts), self.sum, self.count
        out, cum = [], 0
        sep = "," if labels else ""
        for bound, c in zip((*self.buckets, float("inf")), counts, strict=True):
            cum += c
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cum}')
        lab = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{lab} {total}")
        out.append(f"{name}_count{lab} {n}")
        return out


@dataclass
class CameraSample:
    """One camera's figures at scrape time (from the supervisor)."""

    camera_id: str
    state: str
    running: bool
    decode_fps: float
    decoded: int
    analysed: int
    dropped: int
    alerts: int
    alert_latency_max_s: float | None
    worker_restarts: int
    frame_latency_mean_s: float | None = None


class ServerMetrics:
    """What the server counts itself: searches, logins, WebSocket fan-out, HTTP errors."""

    def __init__(self) -> None:
        self.search_latency = Histogram(SEARCH_BUCKETS_S)
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "searches_total": 0,
            "searches_rate_limited_total": 0,
            "logins_total": 0,
            "login_failures_total": 0,
            "logins_throttled_total": 0,
            "uploads_refused_total": 0,
            "ws_clients_total": 0,
            "ws_events_sent_total": 0,
            "ws_events_dropped_total": 0,
            "alert_decisions_total": 0,
        }
        self.ws_clients = 0

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def ws_connected(self, delta: int) -> None:
        with self._lock:
            self.ws_clients += delta
            if delta > 0:
                self.counters["ws_clients_total"] += delta


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    metrics: ServerMetrics,
    cameras: Iterable[CameraSample],
    alerts_by_status: dict[str, int],
    *,
    notifier: dict[str, int] | None = None,
    outbox: dict[str, int] | None = None,
) -> str:
    """The Prometheus text exposition (format 0.0.4) of everything the server knows.

    notifier: the notifier's counters since start (``NotifierStats``: claimed, delivered, retried, failed,
    stale, errors, in_flight); outbox: deliveries held per status, and ``due`` (pending and due now)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    with metrics._lock:
        counters = dict(metrics.counters)
        ws_now = metrics.ws_clients
    for key, value in sorted(counters.items()):
        name = f"sightline_{key}"
        family(name, "counter", key.replace("_total", "").replace("_", " "))
        lines.append(f"{name} {value}")
    family("sightline_ws_clients", "gauge", "live WebSocket clients connected now")
    lines.append(f"sightline_ws_clients {ws_now}")
    family("sightline_search_latency_seconds", "histogram", "photo search time (decode, analyse, match), s")
    lines.extend(metrics.search_latency.lines("sightline_search_latency_seconds"))
    family("sightline_alerts", "gauge", "stored alerts by review status")
    for status, n in sorted(alerts_by_status.items()):
        lines.append(f'sightline_alerts{{status="{_esc(status)}"}} {n}')

    if notifier is not None:
        for key, value in sorted(notifier.items()):
            if key == "in_flight":
                family("sightline_notify_in_flight", "gauge", "notification deliveries being sent now")
                lines.append(f"sightline_notify_in_flight {value}")
            else:
                name = f"sightline_notify_{key}_total"
                family(name, "counter", f"notification delivery attempts {key} since start")
                lines.append(f"{name} {value}")
    if outbox is not None:
        family(
            "sightline_outbox_deliveries", "gauge", "notification deliveries held by status (due: pending and due now)"
        )
        for status, n in sorted(outbox.items()):
            lines.append(f'sightline_outbox_deliveries{{status="{_esc(status)}"}} {n}')

    cams = list(cameras)
    per_cam = (
        ("camera_up", "gauge", "1 when the camera's capture is live", lambda c: int(c.state == "live")),
        ("camera_running", "gauge", "1 when the camera is started in this server", lambda c: int(c.running)),
        ("camera_decode_fps", "gauge", "frames decoded per second", lambda c: round(c.decode_fps, 3)),
        ("camera_frames_decoded_total", "counter", "frames decoded since start", lambda c: c.decoded),
        ("camera_frames_analysed_total", "counter", "frames analysed since start", lambda c: c.analysed),
        ("camera_frames_dropped_total", "counter", "frames dropped unanalysed (queue full)", lambda c: c.dropped),
        ("camera_alerts_total", "counter", "alerts raised since start", lambda c: c.alerts),
        ("camera_worker_restarts_total", "counter", "analysis worker crashes restarted", lambda c: c.worker_restarts),
        (
            "camera_alert_latency_max_seconds",
            "gauge",
            "largest alert latency (alert time minus frame capture time), s",
            lambda c: c.alert_latency_max_s,
        ),
        (
            "camera_frame_latency_mean_seconds",
            "gauge",
            "mean time from frame capture to analysis done over the recent frames, queue wait included, s",
            lambda c: None if c.frame_latency_mean_s is None else round(c.frame_latency_mean_s, 4),
        ),
    )
    for name, kind, help_, get in per_cam:
        full = f"sightline_{name}"
        family(full, kind, help_)
        for c in cams:
            v = get(c)
            if v is not None:
                lines.append(f'{full}{{camera="{_esc(c.camera_id)}"}} {v}')
    return "\n".join(lines) + "\n"
