"""In-process event bus: typed records out to any number of subscribers, never blocking the publisher.

    bus = EventBus()
    alerts = bus.subscribe(Alert, maxsize=100)     # Subscription[Alert]
    everything = bus.subscribe()                   # Subscription[object]
    bus.publish(alert)                             # from a camera worker; returns at once
    a = alerts.get(timeout=1.0)                    # Alert, or None after 1 s

Each subscription has its own bounded queue. When a subscriber falls behind and its queue is
full, the OLDEST queued record is dropped and counted (``Subscription.dropped``), so a slow
subscriber always holds the most recent events and never slows the pipeline or the other
subscribers. ``publish`` takes only short locks (no I/O, no waiting): safe to call from the
camera workers' threads. Anything that must not be lost (the alert and sighting rows) is written to
the database by the worker before it publishes; the bus is for live notification.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Generic, TypeVar, overload

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Queue length of a subscription unless told otherwise.
DEFAULT_MAXSIZE = 256


class Subscription(Generic[T]):
    """One subscriber's bounded queue of records of ``kind`` (None: every record).

    Thread-safe: the bus appends from publisher threads, the subscriber takes from its own thread.
    ``dropped``: records discarded because the queue was full (oldest first); ``delivered``:
    records queued, dropped ones included.
    """

    def __init__(self, bus: EventBus, kind: type[T] | None, maxsize: int) -> None:
        self.kind = kind
        self.maxsize = maxsize
        self._bus = bus
        self._queue: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self.dropped = 0
        self.delivered = 0

    def wants(self, record: object) -> bool:
        return self.kind is None or isinstance(record, self.kind)

    def offer(self, record: T) -> None:
        """Queue ``record`` without waiting; when full, drop the oldest and count it."""
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.warning("event subscriber %s is behind: %s record(s) dropped", self._label(), self.dropped)
            self._queue.append(record)
            self.delivered += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest queued record, waiting up to ``timeout`` seconds (None: until one comes or the
        subscription is closed; 0: do not wait). None when nothing came or it is closed."""
        with self._cond:
            if not self._queue and timeout != 0:
                self._cond.wait_for(lambda: self._queue or self._closed, timeout)
            return self._queue.popleft() if self._queue else None

    def drain(self) -> list[T]:
        """Every queued record, oldest first, without waiting."""
        with self._cond:
            out = list(self._queue)
            self._queue.clear()
            return out

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; queued records are discarded and a waiting ``get`` returns None."""
        self._bus.unsubscribe(self)
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _label(self) -> str:
        return "all" if self.kind is None else self.kind.__name__


class EventBus:
    """Publish typed records (``Alert``, ``Sighting``, ...) to the subscribers that want them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()  # replaced, never mutated: publish reads it lock-free
        self.published = 0

    @overload
    def subscribe(self, kind: type[T], *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription[T]: ...

    @overload
    def subscribe(self, kind: None = None, *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription[object]: ...

    def subscribe(self, kind: type | None = None, *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """A new subscription to records that are instances of ``kind`` (None: all records).

        maxsize: queue length, records, in [1, 1_000_000]; beyond it the oldest are dropped.
        """
        if not 1 <= maxsize <= 1_000_000:
            raise ValueError(f"maxsize must be in [1, 1000000] records, got {maxsize}")
        if kind is not None and not isinstance(kind, type):
            raise TypeError(f"kind must be a class (e.g. Alert) or None, got {kind!r}")
        sub: Subscription = Subscription(self, kind, maxsize)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, record: object) -> int:
        """Hand ``record`` to every subscriber that wants it, without waiting; returns how many."""
        subs = self._subs
        n = 0
        for sub in subs:
            if sub.wants(record):
                sub.offer(record)
                n += 1
        with self._lock:
            self.published += 1
        return n
