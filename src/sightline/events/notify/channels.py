"""Notification channels: per-watchlist destinations for alerts, the kind registry and the alert message.

    channels = ChannelStore(store)
    ch = channels.add(watchlist_id, "webhook", "https://hooks.example.org/sightline", secret="s3cret")
    channels.add(watchlist_id, "apprise", "ntfy://ntfy.example.org/door-alerts")
    channels.add(watchlist_id, "mqtt", "mqtt://user:pass@broker:1883/home/sightline/alerts")
    channels.list(watchlist_id)           # [Channel], secrets never included, target_redacted for display
    channels.delete(ch.id)

A channel kind is one class in its own module, registered in ``channel_kinds`` under its name
(``webhook``, ``apprise``, ``mqtt``: the values the schema-4 ``channels.kind`` CHECK allows). Each kind
validates its target and options when a channel is added, redacts its target for logs and listings,
and delivers one ``AlertMessage``, answering delivered / retry / permanent failure. Delivery itself,
the retries and the bookkeeping are the outbox's (``sightline.events.notify.outbox``).

Secrets (the webhook HMAC key, an MQTT password) are stored sealed (``GalleryStore.seal``: encrypted when
the gallery has a key) and are never logged or returned by ``list``/``get``; a target can carry tokens
too (Apprise URLs, webhook paths), so logs and listings show ``target_redacted`` only.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from sightline.gallery.records import GalleryError
from sightline.gallery.store import GalleryStore
from sightline.registry import Registry
from sightline.vision.calibration import count_words

logger = logging.getLogger(__name__)

ChannelKindName = Literal["webhook", "apprise", "mqtt"]
CHANNEL_KINDS: tuple[str, ...] = get_args(ChannelKindName)

#: Longest accepted target (URL), characters.
MAX_TARGET_CHARS = 4096
#: Longest accepted secret, bytes.
MAX_SECRET_BYTES = 1024


class ChannelError(GalleryError, ValueError):
    """A channel that cannot be stored: unknown kind or watchlist, bad target, options or secret."""


class UnknownChannelError(GalleryError, LookupError):
    """A channel id that does not exist."""


# ---- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Channel:
    """One notification channel of a watchlist, as stored.

    target: the destination URL, which may carry credentials or tokens: deliver to it, never show or
    log it; use ``target_redacted`` for that. options: the kind's options as given (JSON object).
    has_secret: whether a secret (HMAC key, password) is stored; the secret itself is never in this
    record. created_at: epoch s.
    """

    id: int
    watchlist_id: int
    watchlist: str
    kind: str
    target: str = field(repr=False)
    target_redacted: str
    options: Mapping[str, Any]
    enabled: bool
    has_secret: bool
    created_at: float

    def public(self) -> dict[str, Any]:
        """A JSON-ready view for APIs and the CLI: the redacted target under ``target``, no secret."""
        return {
            "id": self.id,
            "watchlist_id": self.watchlist_id,
            "watchlist": self.watchlist,
            "kind": self.kind,
            "target": self.target_redacted,
            "options": dict(self.options),
            "enabled": self.enabled,
            "has_secret": self.has_secret,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class AlertMessage:
    """What a channel sends for one alert delivery.

    alert_id and delivery_id are stable across retries (``attempt`` counts them, from 1): delivery is
    at-least-once, so a receiver may see the same delivery twice (a worker that died after sending but
    before recording it, a lease that ran out) and should de-duplicate on ``delivery_id`` (one per
    alert and channel) or ``alert_id``. Times are epoch seconds; xyxy: face box, pixels of the frame;
    similarity: cosine (higher is closer); est_fmr: estimated false-match rate per comparison at that
    similarity; crop_jpeg: the alert's face crop (sent only where the channel's include_crop is set).
    """

    alert_id: int
    delivery_id: int
    attempt: int
    camera_id: str
    track_id: int
    person_id: int
    person_name: str
    watchlist: str
    similarity: float
    threshold: float
    est_fmr: float
    ts: float
    frame_ts: float
    xyxy: tuple[float, float, float, float]
    quality: float
    status: str
    crop_jpeg: bytes | None = field(default=None, repr=False)

    @property
    def meaning(self) -> str:
        """What the similarity means for people, from ``est_fmr``."""
        return describe_fmr(self.est_fmr)

    @property
    def title(self) -> str:
        return f"Sightline: {self.person_name} on {self.camera_id}"

    @property
    def body(self) -> str:
        """Plain text for people (Apprise, e-mail, phones)."""
        when = datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"{self.person_name} (watchlist {self.watchlist}) seen on camera {self.camera_id} at {when}.\n"
            f"Similarity {self.similarity:.3f} (threshold {self.threshold:.3f}): {self.meaning}.\n"
            f"Alert #{self.alert_id}: a possible match for a person to confirm or reject, not an identification."
        )

    def payload(self, *, include_crop: bool = False, sent_at: float | None = None) -> dict[str, Any]:
        """The JSON document webhooks and MQTT send (``crop_jpeg_b64``: base64 JPEG, only with include_crop)."""
        doc: dict[str, Any] = {
            "event": "alert",
            "version": 1,
            "alert_id": self.alert_id,
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
            "sent_at": round(time.time() if sent_at is None else sent_at, 3),
            "camera_id": self.camera_id,
            "track_id": self.track_id,
            "person_id": self.person_id,
            "person_name": self.person_name,
            "watchlist": self.watchlist,
            "similarity": round(self.similarity, 6),
            "threshold": round(self.threshold, 6),
            "est_fmr": self.est_fmr,
            "meaning": self.meaning,
            "ts": self.ts,
            "frame_ts": self.frame_ts,
            "xyxy": [round(float(v), 2) for v in self.xyxy],
            "quality": round(self.quality, 4),
            "status": self.status,
        }
        if include_crop and self.crop_jpeg is not None:
            import base64

            doc["crop_jpeg_b64"] = base64.b64encode(self.crop_jpeg).decode("ascii")
        return doc


def describe_fmr(est_fmr: float) -> str:
    """One line for people: 'about 1 in 50,000 strangers score this high' (from the false-match rate)."""
    if not math.isfinite(est_fmr) or est_fmr >= 0.5:
        return "more than half of strangers score this high"
    if est_fmr <= 0:
        return "no stranger scored this high in calibration"
    return f"about 1 in {count_words(1.0 / est_fmr)} strangers score this high"


DeliveryOutcome = Literal["delivered", "retry", "permanent"]


@dataclass(frozen=True)
class DeliveryResult:
    """A channel's answer for one attempt.

    outcome: 'delivered'; 'retry' (try again later: receiver down, timeout, 5xx, 408/429); 'permanent'
    (retrying cannot help: the receiver refused it, e.g. 4xx, a target the library rejects).
    error: short text for people, never containing the target or secret. retry_after_s: the receiver's
    requested minimum delay (HTTP Retry-After), s, or None.
    """

    outcome: DeliveryOutcome
    error: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def ok(cls) -> DeliveryResult:
        return cls("delivered")

    @classmethod
    def retry(cls, error: str, retry_after_s: float | None = None) -> DeliveryResult:
        return cls("retry", error, retry_after_s)

    @classmethod
    def permanent(cls, error: str) -> DeliveryResult:
        return cls("permanent", error)


# ---- kinds -------------------------------------------------------------------------------------------


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelKind(ABC):
    """One way of delivering alerts. Subclasses register with ``@channel_kinds.register("name")``.

    ``Options``: the kind's pydantic options model (extra keys forbidden). Instances are stateless and
    shared across threads; ``deliver`` is called from the notifier's delivery threads and must return
    within about ``timeout_s`` (it never raises for a delivery problem: it answers ``DeliveryResult``).
    A kind may keep connection pools between deliveries; its user calls ``close()`` when done.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = _Options
    #: Whether a secret may be stored with a channel of this kind, and what it is for.
    secret_use: ClassVar[str | None] = None

    @abstractmethod
    def validate_target(self, target: str) -> str:
        """The target to store (stripped), or raise ``ChannelError`` saying what is wrong."""

    def redact(self, target: str) -> str:
        """``target`` safe to show and log (credentials and tokens removed)."""
        return redact_url_path(target)

    @abstractmethod
    def deliver(
        self, channel: Channel, secret: bytes | None, message: AlertMessage, *, timeout_s: float
    ) -> DeliveryResult:
        """Send ``message`` to ``channel``; ``secret``: the unsealed channel secret or None."""

    def close(self) -> None:
        """Release what ``deliver`` kept between deliveries (connection pools); it may be used again after."""
        return None


def _load_kinds() -> None:
    for mod in ("webhook", "apprise_channel", "mqtt"):
        name = f"sightline.events.notify.{mod}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "sightline":
                raise
            logger.info("notification channel module %s not available: %s", name, exc)


#: Channel kind name -> its class; kinds load on first lookup.
channel_kinds: Registry[type[ChannelKind]] = Registry("notification channel kind", loader=_load_kinds)


def redact_url_path(url: str) -> str:
    """``scheme://host[:port]/…``: only where it goes, without user info, path or query (paths and
    queries of webhook and notification URLs often carry tokens)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    if not parts.scheme:
        return "(redacted)"
    netloc = host if port is None else f"{host}:{port}"
    tail = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{netloc}{tail}"


# ---- store -------------------------------------------------------------------------------------------

_COLS = "c.id, c.watchlist_id, w.name, c.kind, c.target, c.secret IS NOT NULL, c.options, c.enabled, c.created_at"


class ChannelStore:
    """The ``channels`` table (schema 4): a watchlist's notification channels.

    Deleting a channel deletes its pending and past deliveries (``outbox`` cascade); deleting a
    watchlist deletes its channels. A channel added now receives the alerts raised from now on.
    """

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

    def kind(self, name: str) -> ChannelKind:
        """The channel kind ``name``; raises ``ChannelError`` listing the valid kinds."""
        if name not in CHANNEL_KINDS:
            raise ChannelError(f"unknown channel kind {name!r}; valid kinds: {', '.join(CHANNEL_KINDS)}")
        try:
            return channel_kinds.get(name)()
        except KeyError as exc:
            raise ChannelError(f"channel kind {name!r} is not available here: {exc}") from None

    def _record(self, r: Sequence) -> Channel:
        try:
            redacted = self.kind(r[3]).redact(r[4])
        except ChannelError:
            redacted = redact_url_path(r[4])
        return Channel(
            id=int(r[0]),
            watchlist_id=int(r[1]),
            watchlist=r[2],
            kind=r[3],
            target=r[4],
            target_redacted=redacted,
            has_secret=bool(r[5]),
            options=json.loads(r[6]),
            enabled=bool(r[7]),
            created_at=float(r[8]),
        )

    def validate(
        self, kind: str, target: str, secret: str | bytes | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[ChannelKind, str, bytes | None, dict[str, Any]]:
        """Check a channel without storing it: (kind, target, secret bytes, options as stored).
        Raises ``ChannelError`` naming what is wrong."""
        impl = self.kind(kind)
        if not isinstance(target, str) or not target.strip():
            raise ChannelError("target must be a non-empty URL")
        if len(target) > MAX_TARGET_CHARS:
            raise ChannelError(f"target is too long ({len(target)} characters, at most {MAX_TARGET_CHARS})")
        target = impl.validate_target(target.strip())
        raw_secret: bytes | None = None
        if secret is not None:
            raw_secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
            if impl.secret_use is None:
                raise ChannelError(f"a {kind} channel takes no secret (put credentials in its URL)")
            if not raw_secret or len(raw_secret) > MAX_SECRET_BYTES:
                raise ChannelError(f"secret must be 1 to {MAX_SECRET_BYTES} bytes")
        if options is not None and not isinstance(options, Mapping):
            raise ChannelError("options must be a JSON object")
        try:
            opts = impl.Options.model_validate(dict(options or {}))
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            raise ChannelError(f"bad {kind} options: {msg}") from None
        return impl, target, raw_secret, opts.model_dump(exclude_defaults=True, mode="json")

    def add(
        self,
        watchlist_id: int,
        kind: str,
        target: str,
        secret: str | bytes | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
    ) -> Channel:
        """Store a channel for the watchlist ``watchlist_id``; returns it (without the secret).

        kind: 'webhook' (target http(s) URL; secret: HMAC-SHA256 key of the signature header), 'apprise'
        (any Apprise URL: ntfy://, tgram://, pover://, mailto://, json://, ...; no secret) or 'mqtt'
        (mqtt[s]://[user[:password]@]host[:port]/topic; secret: the password, if not in the URL).
        Options per kind: see each kind's ``Options``. Raises ``ChannelError`` for bad input or an
        unknown watchlist.
        """
        impl, target, raw_secret, opts = self.validate(kind, target, secret, options)
        try:
            with self.store.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO channels(watchlist_id, kind, target, secret, options, enabled, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        int(watchlist_id),
                        kind,
                        target,
                        None if raw_secret is None else sqlite3.Binary(self.store.seal(raw_secret)),
                        json.dumps(opts, sort_keys=True),
                        int(bool(enabled)),
                        time.time(),
                    ),
                )
                channel_id = int(cur.lastrowid or 0)
        except sqlite3.IntegrityError:
            raise ChannelError(f"no watchlist with id {watchlist_id}") from None
        ch = self.get(channel_id)
        if ch is None:  # deleted by another process in between
            raise UnknownChannelError(f"no channel with id {channel_id}")
        logger.info("channel %s added: %s %s for watchlist %s", ch.id, kind, impl.redact(target), ch.watchlist)
        return ch

    def get(self, channel_id: int) -> Channel | None:
        with self.store.transaction(write=False) as conn:
            row = conn.execute(
                f"SELECT {_COLS} FROM channels c JOIN watchlists w ON w.id = c.watchlist_id WHERE c.id = ?",
                (int(channel_id),),
            ).fetchone()
        return None if row is None else self._record(row)

    def list(self, watchlist_id: int | None = None) -> list[Channel]:
        """Channels of one watchlist (None: all), oldest first."""
        where, params = ("", ()) if watchlist_id is None else (" WHERE c.watchlist_id = ?", (int(watchlist_id),))
        with self.store.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {_COLS} FROM channels c JOIN watchlists w ON w.id = c.watchlist_id{where} ORDER BY c.id",
                params,
            ).fetchall()
        return [self._record(r) for r in rows]

    def delete(self, channel_id: int) -> bool:
        """Delete a channel and its deliveries (pending ones are dropped); False when there was none."""
        with self.store.transaction() as conn:
            n = conn.execute("DELETE FROM channels WHERE id = ?", (int(channel_id),)).rowcount
        if n:
            logger.info("channel %s deleted", channel_id)
        return bool(n)

    def set_enabled(self, channel_id: int, enabled: bool) -> Channel:
        """Pause (False) or resume (True) a channel. Alerts raised while it is disabled queue nothing for
        it; deliveries already queued wait, pending, until it is enabled again."""
        with self.store.transaction() as conn:
            n = conn.execute(
                "UPDATE channels SET enabled = ? WHERE id = ?", (int(bool(enabled)), int(channel_id))
            ).rowcount
        ch = self.get(channel_id) if n else None
        if ch is None:
            raise UnknownChannelError(f"no channel with id {channel_id}")
        return ch

    def secret(self, channel_id: int) -> bytes | None:
        """The unsealed secret of a channel (for delivery only: never log or return it)."""
        with self.store.transaction(write=False) as conn:
            row = conn.execute("SELECT secret FROM channels WHERE id = ?", (int(channel_id),)).fetchone()
        return None if row is None or row[0] is None else self.store.unseal(bytes(row[0]))
