"""The notification outbox: every (alert, channel) delivery as a row, and the worker that delivers them.

    notifier = Notifier(store, NotifyConfig())
    notifier.start()                      # a background thread; nothing runs at import
    ...                                   # camera workers store alerts: AlertStore.add queues the rows
    notifier.list_deliveries(status="failed")
    notifier.retry(delivery_id)           # or notifier.retry_failed()
    notifier.stop()

Why an outbox: ``AlertStore.add`` writes the alert and one ``outbox`` row per enabled channel of its
watchlist in ONE transaction, so an alert is never stored without its notifications queued, and a
channel that is down, a process that crashes or restarts, loses nothing: pending rows wait in the file
and whichever ``Notifier`` runs next (this process or another) delivers them.

Row life: ``pending`` (due at ``next_attempt_at``) -> claimed -> ``delivered``; or, after a failed
attempt, ``pending`` again with ``next_attempt_at`` pushed back by capped exponential backoff with
jitter; after ``max_attempts`` attempts, or an answer that retrying cannot change (e.g. HTTP 404), it is
``failed``: kept, visible through ``list_deliveries`` and retried on request (``retry``).

Several workers (threads or processes) share the table safely. Claiming is one ``UPDATE ... RETURNING``
in a write transaction that increments ``attempts`` and moves ``next_attempt_at`` to a lease expiry
(now + ``lease_s``), so no other worker sees the row as due while it is being delivered. Recording the
outcome is conditional on that same (attempts, lease expiry) pair, so a worker whose lease ran out
cannot overwrite the outcome of the worker that took the row over. A worker that dies mid-delivery
leaves the row to be claimed again when its lease ends.

Semantics: at-least-once. A delivery can be sent twice (a crash after sending but before recording
it, a lease that expired during a very slow send), never silently dropped while its alert and channel
exist. Payloads carry the stable ``alert_id`` and ``delivery_id`` (the outbox row id, the same on every
attempt) so receivers can de-duplicate. Deleting an alert (its person erased) or a channel deletes its
outbox rows: nothing is sent about an erased person.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, get_args

from sightline.config import NotifyConfig
from sightline.events.bus import EventBus, Subscription
from sightline.events.notify.channels import (
    AlertMessage,
    Channel,
    ChannelError,
    ChannelKind,
    ChannelStore,
    DeliveryResult,
)
from sightline.events.store import AlertStore
from sightline.gallery.store import GalleryStore
from sightline.types import Alert

logger = logging.getLogger(__name__)

DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
#: Longest error text kept per delivery, characters.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Claim:
    """A delivery reserved by one worker: ``attempt`` (from 1) and ``lease_until`` (epoch s) identify the
    claim; outcomes are recorded only while both still match the row."""

    delivery_id: int
    alert_id: int
    channel_id: int
    attempt: int
    lease_until: float


@dataclass(frozen=True)
class Delivery:
    """One outbox row for people and APIs (no payload, no secret, the channel target redacted).

    status: 'pending' (waiting for its next attempt at ``next_attempt_at``, or being delivered),
    'delivered' (at ``delivered_at``) or 'failed' (gave up; ``last_error`` says why). attempts: attempts
    made so far. Times: epoch s.
    """

    id: int
    alert_id: int
    channel_id: int
    kind: str
    target: str
    watchlist: str
    camera_id: str
    person_id: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None


def backoff_delay(attempt: int, cfg: NotifyConfig, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1): ``backoff_initial_s * 2**(attempt-1)``
    capped at ``backoff_max_s``, of which the fraction ``backoff_jitter`` is drawn at random."""
    base = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2.0 ** min(max(attempt, 1) - 1, 60))
    r = (rng or random).random()
    return base * (1.0 - cfg.backoff_jitter * r)


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit must be in [1, 100000] rows, got {limit}")


_DELIVERY_COLS = (
    "o.id, o.alert_id, o.channel_id, c.kind, c.target, w.name, a.camera_id, a.person_id, o.status, o.attempts, "
    "o.next_attempt_at, o.last_error, o.created_at, o.delivered_at"
)
_DELIVERY_FROM = (
    "outbox o JOIN channels c ON c.id = o.channel_id JOIN watchlists w ON w.id = c.watchlist_id "
    "JOIN alerts a ON a.id = o.alert_id"
)


class Outbox:
    """The ``outbox`` table: claim due deliveries, record outcomes, list and retry them."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store
        self._channels = ChannelStore(store)

    def claim(self, limit: int, *, lease_s: float, now: float | None = None) -> list[Claim]:
        """Reserve up to ``limit`` due deliveries (pending, ``next_attempt_at <= now``, channel enabled),
        oldest due first, for ``lease_s`` seconds; each claim counts as an attempt."""
        if limit < 1:
            return []
        now = time.time() if now is None else now
        lease_until = now + lease_s
        with self.store.transaction() as conn:
            rows = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id IN ("
                "SELECT o.id FROM outbox o JOIN channels c ON c.id = o.channel_id "
                "WHERE o.status = 'pending' AND o.next_attempt_at <= ? AND c.enabled = 1 "
                "ORDER BY o.next_attempt_at, o.id LIMIT ?) "
                "RETURNING id, alert_id, channel_id, attempts, next_attempt_at",
                (lease_until, now, int(limit)),
            ).fetchall()
        return sorted(
            (Claim(int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows), key=lambda c: c.delivery_id
        )

    def _finish(self, claim: Claim, sql: str, params: Sequence) -> bool:
        with self.store.transaction() as conn:
            n = conn.execute(
                f"UPDATE outbox SET {sql} WHERE id = ? AND status = 'pending' AND attempts = ? AND next_attempt_at = ?",
                (*params, claim.delivery_id, claim.attempt, claim.lease_until),
            ).rowcount
        if not n:
            logger.info("delivery %s: outcome not recorded (claim taken over, retried or deleted)", claim.delivery_id)
        return bool(n)

    def mark_delivered(self, claim: Claim, *, at: float | None = None) -> bool:
        """Record success; False when the claim is no longer current (row taken over or deleted)."""
        return self._finish(
            claim, "status = 'delivered', delivered_at = ?, last_error = NULL", (time.time() if at is None else at,)
        )

    def mark_retry(self, claim: Claim, error: str, *, delay_s: float, now: float | None = None) -> bool:
        """Record a failed attempt; the row is due again ``delay_s`` seconds from now."""
        now = time.time() if now is None else now
        return self._finish(claim, "next_attempt_at = ?, last_error = ?", (now + max(0.0, delay_s), _clip(error)))

    def mark_failed(self, claim: Claim, error: str) -> bool:
        """Give up on a delivery: status 'failed' (kept, listed, retryable by hand)."""
        return self._finish(claim, "status = 'failed', last_error = ?", (_clip(error),))

    def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        alert_id: int | None = None,
        channel_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries newest first (by id), filtered by what is given."""
        _check_limit(limit)
        if status is not None and status not in DELIVERY_STATUSES:
            raise ValueError(f"status must be one of {DELIVERY_STATUSES}, got {status!r}")
        clauses = [("o.status = ?", status), ("o.alert_id = ?", alert_id), ("o.channel_id = ?", channel_id)]
        used = [(sql, v) for sql, v in clauses if v is not None]
        where = (" WHERE " + " AND ".join(sql for sql, _ in used)) if used else ""
        with self.store.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {_DELIVERY_COLS} FROM {_DELIVERY_FROM}{where} ORDER BY o.id DESC LIMIT ?",
                [*(v for _, v in used), int(limit)],
            ).fetchall()
        out = []
        for r in rows:
            try:
                target = self._channels.kind(r[3]).redact(r[4])
            except ChannelError:
                target = "(redacted)"
            out.append(
                Delivery(
                    id=int(r[0]),
                    alert_id=int(r[1]),
                    channel_id=int(r[2]),
                    kind=r[3],
                    target=target,
                    watchlist=r[5],
                    camera_id=r[6],
                    person_id=int(r[7]),
                    status=r[8],
                    attempts=int(r[9]),
                    next_attempt_at=float(r[10]),
                    last_error=r[11],
                    created_at=float(r[12]),
                    delivered_at=None if r[13] is None else float(r[13]),
                )
            )
        return out

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, 0 when none) and ``due``: pending rows due now."""
        now = time.time()
        with self.store.transaction(write=False) as conn:
            rows = conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall()
            due = conn.execute(
                "SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?", (now,)
            ).fetchone()[0]
        out = dict.fromkeys(DELIVERY_STATUSES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        out["due"] = int(due)
        return out

    def retry(self, delivery_id: int, *, now: float | None = None) -> bool:
        """Queue a failed delivery again, due now, with a fresh attempt budget; False when it is not
        failed (pending ones retry on their own, delivered ones are done) or does not exist."""
        now = time.time() if now is None else now
        with self.store.transaction() as conn:
            n = conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                "WHERE id = ? AND status = 'failed'",
                (now, int(delivery_id)),
            ).rowcount
        if n:
            logger.info("delivery %s queued again", delivery_id)
        return bool(n)

    def retry_failed(self, *, channel_id: int | None = None, now: float | None = None) -> int:
        """Queue every failed delivery (of one channel, or all) again; returns how many."""
        now = time.time() if now is None else now
        sql = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? WHERE status = 'failed'"
        params: list[object] = [now]
        if channel_id is not None:
            sql += " AND channel_id = ?"
            params.append(int(channel_id))
        with self.store.transaction() as conn:
            n = int(conn.execute(sql, params).rowcount)
        if n:
            logger.info("%s failed deliveries queued again", n)
        return n


@dataclass
class NotifierStats:
    """Counters since the notifier was built. claimed: attempts started; delivered / retried / failed:
    their outcomes ('failed': given up); stale: outcomes not recorded because the claim was no longer
    current; errors: unexpected errors of the worker loop (the loop keeps running)."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    stale: int = 0
    errors: int = 0
    in_flight: int = 0


@dataclass
class _Job:
    """A claim with what its delivery needs, loaded by the worker thread (the pool does network I/O only)."""

    claim: Claim
    channel: Channel
    kind: ChannelKind | None = None
    message: AlertMessage | None = None
    secret: bytes | None = field(default=None, repr=False)
    error: DeliveryResult | None = None


class Notifier:
    """Delivers due outbox rows in a background thread, with up to ``config.concurrency`` deliveries in flight.

    The worker thread is the only one touching the database; deliveries (network I/O only) run in a
    small thread pool. It polls every ``config.poll_interval_s`` and can be woken at once with
    ``wake()``; given the process's ``bus``, every published ``Alert`` wakes it (the camera worker
    publishes after storing, so the alert's deliveries are queued by then), so alerts raised in this
    process go out at once and the poll only matters for retries and other processes' alerts.
    ``start()`` / ``stop()`` may be called from any thread; no thread or connection exists before
    ``start()``. ``deliver_due()`` does one synchronous pass instead
    (CLI, tests). Outcomes are logged with the channel's redacted target, never its URL or secret.
    """

    def __init__(
        self,
        store: GalleryStore,
        config: NotifyConfig | None = None,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.config = config or NotifyConfig()
        if self.config.lease_s <= self.config.timeout_s:
            raise ValueError(
                f"NotifyConfig.lease_s ({self.config.lease_s:g} s) must exceed timeout_s "
                f"({self.config.timeout_s:g} s), "
                "or a slow delivery would be claimed again by another worker while it is still running"
            )
        self.store = store
        self.outbox = Outbox(store)
        self.channels = ChannelStore(store)
        self.alerts = AlertStore(store)
        self.worker_id = worker_id or uuid.uuid4().hex[:8]
        self.stats = NotifierStats()
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._kinds: dict[str, ChannelKind] = {}  # shared by the delivery threads (kinds are thread-safe)
        self._bus = bus
        self._sub: Subscription[Alert] | None = None
        self._waker: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (no-op when running)."""
        with self._lock:
            if self.running:
                return
            # A fresh stop flag per run: a previous run that is still finishing keeps its own (set) flag.
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name=f"notifier-{self.worker_id}", daemon=True
            )
            self._thread.start()
            if self._bus is not None:
                sub = self._sub = self._bus.subscribe(Alert, maxsize=16)
                self._waker = threading.Thread(
                    target=self._wake_on_alerts, args=(sub,), name=f"notifier-{self.worker_id}-bus", daemon=True
                )
                self._waker.start()
        logger.info("notifier %s started", self.worker_id)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let deliveries in flight finish (each bounded by ``timeout_s``) and record them,
        then end the thread. ``timeout``: seconds to wait for it (None: timeout_s + 5)."""
        with self._lock:
            thread, self._thread = self._thread, None
            stop_flag = self._stop  # the flag of the run that ``thread`` executes
            sub, self._sub = self._sub, None
            waker, self._waker = self._waker, None
        if sub is not None:
            sub.close()
        if waker is not None:
            waker.join(5.0)
        if thread is None:
            return
        stop_flag.set()
        self._wake.set()
        thread.join(self.config.timeout_s + 5.0 if timeout is None else timeout)
        if thread.is_alive():
            logger.warning("notifier %s did not stop within the timeout; its leases will expire", self.worker_id)
        else:
            logger.info("notifier %s stopped", self.worker_id)

    def __enter__(self) -> Notifier:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    def _wake_on_alerts(self, sub: Subscription[Alert]) -> None:
        """With a bus: every published alert (already stored, its deliveries queued) wakes the worker."""
        while not sub.closed:
            if sub.get(timeout=1.0) is not None:
                sub.drain()
                self._wake.set()

    # ---- operator API ----------------------------------------------------------------------------

    def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        alert_id: int | None = None,
        channel_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """See ``Outbox.list_deliveries``."""
        return self.outbox.list_deliveries(status=status, alert_id=alert_id, channel_id=channel_id, limit=limit)

    def retry(self, delivery_id: int) -> bool:
        """Queue a failed delivery again (see ``Outbox.retry``) and wake the worker."""
        ok = self.outbox.retry(delivery_id)
        if ok:
            self.wake()
        return ok

    def retry_failed(self, *, channel_id: int | None = None) -> int:
        """Queue every failed delivery again (see ``Outbox.retry_failed``) and wake the worker."""
        n = self.outbox.retry_failed(channel_id=channel_id)
        if n:
            self.wake()
        return n

    # ---- delivery --------------------------------------------------------------------------------

    def deliver_due(self, *, max_rounds: int = 1000) -> int:
        """Deliver every delivery due now, in this thread, one at a time; returns how many attempts were made.
        Rows that fail are rescheduled as usual (not retried within this call unless due again). For the
        CLI and tests: do not call it on a notifier that is running (``start()``)."""
        attempts = 0
        for _ in range(max_rounds):
            claims = self.outbox.claim(self.config.concurrency, lease_s=self.config.lease_s)
            if not claims:
                break
            for claim in claims:
                job = self._load(claim)
                if job is not None:
                    self._record(job, self._deliver(job))
                    attempts += 1
        self._close_kinds()
        return attempts

    def _close_kinds(self) -> None:
        kinds, self._kinds = list(self._kinds.values()), {}
        for kind in kinds:
            try:
                kind.close()
            except Exception:
                logger.exception("closing notification channel kind %s failed", kind.name)

    def _load(self, claim: Claim) -> _Job | None:
        """Read what a claim needs (channel, alert, secret); None when its channel is gone (its rows went
        with it). A read error (e.g. encrypted data and no key) becomes the attempt's retry outcome."""
        self.stats.claimed += 1
        channel = self.channels.get(claim.channel_id)
        if channel is None:
            return None
        job = _Job(claim=claim, channel=channel)
        try:
            kind = self._kinds.get(channel.kind)
            if kind is None:
                kind = self._kinds[channel.kind] = self.channels.kind(channel.kind)
            job.kind = kind
            job.message = self._message(claim)
            job.secret = self.channels.secret(channel.id)
        except ChannelError as exc:
            job.error = DeliveryResult.permanent(str(exc))
        except Exception as exc:  # recorded as the attempt's outcome
            job.error = DeliveryResult.retry(f"cannot read the alert or channel: {type(exc).__name__}: {exc}")
        return job

    def _message(self, claim: Claim) -> AlertMessage | None:
        stored = self.alerts.get(claim.alert_id)
        if stored is None:
            return None
        a = stored.alert
        return AlertMessage(
            alert_id=stored.id,
            delivery_id=claim.delivery_id,
            attempt=claim.attempt,
            camera_id=a.camera_id,
            track_id=a.track_id,
            person_id=a.match.person_id,
            person_name=a.match.name,
            watchlist=a.match.watchlist,
            similarity=a.match.similarity,
            threshold=a.match.threshold,
            est_fmr=a.match.est_fmr,
            ts=a.ts,
            frame_ts=a.frame_ts,
            xyxy=a.xyxy,
            quality=a.quality,
            status=stored.status,
            crop_jpeg=a.crop_jpeg,
        )

    def _deliver(self, job: _Job) -> DeliveryResult:
        """Send one loaded job (network only, no database); never raises: an unexpected error is a retry."""
        if job.error is not None:
            return job.error
        channel = job.channel
        if job.message is None:
            return DeliveryResult.permanent("the alert no longer exists")
        assert job.kind is not None
        try:
            return job.kind.deliver(channel, job.secret, job.message, timeout_s=self.config.timeout_s)
        except Exception as exc:  # a channel bug must not kill the worker
            logger.warning(
                "delivery %s via channel %s (%s %s) raised %s",
                job.claim.delivery_id,
                channel.id,
                channel.kind,
                channel.target_redacted,
                type(exc).__name__,
            )
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}".replace(channel.target, channel.target_redacted))

    def _record(self, job: _Job, result: DeliveryResult) -> None:
        claim, channel = job.claim, job.channel
        where = f"{channel.kind} {channel.target_redacted}"
        if result.outcome == "delivered":
            ok = self.outbox.mark_delivered(claim)
            if ok:
                self.stats.delivered += 1
                logger.info(
                    "alert %s delivered via channel %s (%s), attempt %s",
                    claim.alert_id,
                    channel.id,
                    where,
                    claim.attempt,
                )
        elif result.outcome == "permanent" or claim.attempt >= self.config.max_attempts:
            error = result.error or "failed"
            if result.outcome != "permanent":
                error = f"{error} (gave up after {claim.attempt} attempts)"
            ok = self.outbox.mark_failed(claim, error)
            if ok:
                self.stats.failed += 1
                logger.warning(
                    "alert %s NOT delivered via channel %s (%s): %s; delivery %s marked failed (retry with "
                    "`sightline notify retry`)",
                    claim.alert_id,
                    channel.id,
                    where,
                    error,
                    claim.delivery_id,
                )
        else:
            delay = backoff_delay(claim.attempt, self.config, self._rng)
            if result.retry_after_s is not None:  # the receiver asked for a pause (kinds cap it at an hour)
                delay = max(delay, result.retry_after_s)
            ok = self.outbox.mark_retry(claim, result.error or "failed", delay_s=delay)
            if ok:
                self.stats.retried += 1
                logger.warning(
                    "alert %s via channel %s (%s), attempt %s of %s failed: %s; next attempt in %.1f s",
                    claim.alert_id,
                    channel.id,
                    where,
                    claim.attempt,
                    self.config.max_attempts,
                    result.error,
                    delay,
                )
        if not ok:
            self.stats.stale += 1

    def _run(self, stop: threading.Event) -> None:
        cfg = self.config
        done: queue.SimpleQueue[tuple[_Job, DeliveryResult]] = queue.SimpleQueue()
        in_flight = 0

        def finished(job: _Job, fut: Future) -> None:
            exc = fut.exception()
            done.put((job, fut.result() if exc is None else DeliveryResult.retry(type(exc).__name__)))
            self._wake.set()

        with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix=f"notify-{self.worker_id}") as pool:
            while True:
                self._wake.clear()
                while True:  # record outcomes: only this thread touches the database
                    try:
                        job, result = done.get_nowait()
                    except queue.Empty:
                        break
                    in_flight -= 1
                    try:
                        self._record(job, result)
                    except Exception:
                        self.stats.errors += 1
                        logger.exception(
                            "notifier %s: recording delivery %s failed", self.worker_id, job.claim.delivery_id
                        )
                self.stats.in_flight = in_flight
                if stop.is_set():
                    if in_flight == 0:
                        break
                    self._wake.wait(cfg.poll_interval_s)
                    continue
                free = cfg.concurrency - in_flight
                claimed = 0
                if free > 0:
                    try:
                        for claim in self.outbox.claim(free, lease_s=cfg.lease_s):
                            job = self._load(claim)
                            if job is None:
                                continue
                            fut = pool.submit(self._deliver, job)
                            in_flight += 1
                            claimed += 1
                            fut.add_done_callback(lambda f, j=job: finished(j, f))
                    except Exception:
                        self.stats.errors += 1
                        logger.exception("notifier %s: claiming deliveries failed", self.worker_id)
                self.stats.in_flight = in_flight
                if claimed and claimed == free:
                    continue  # a full batch: more may be due
                self._wake.wait(cfg.poll_interval_s)
        self._close_kinds()
