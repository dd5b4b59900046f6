"""Apprise channel: one notification through any service Apprise knows (ntfy, Telegram, Pushover,
e-mail, Matrix, Slack, MQTT, json:// and form:// POSTs, ...), given by an Apprise URL.

Each delivery builds its own ``apprise.Apprise()`` holding only the channel URL (no shared state between
threads or channels), sends the alert's title and plain-text body (person, watchlist, camera, time,
similarity and what it means) and maps Apprise's success flag to delivered / retry. Apprise says
nothing about why a service failed beyond its log lines, so every failure is retried until the
outbox's attempt limit; a URL Apprise does not understand is refused when the channel is added.

Apprise URLs carry tokens and passwords (``tgram://BOT_TOKEN/CHAT``, ``mailto://user:pass@host``): the URL
is never logged; logs and listings show the scheme and host of Apprise's privacy form of it (secrets
masked, path and query dropped).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import Field

from sightline.events.notify.channels import (
    AlertMessage,
    Channel,
    ChannelError,
    ChannelKind,
    DeliveryResult,
    _Options,
    channel_kinds,
    redact_url_path,
)

logger = logging.getLogger(__name__)


class AppriseOptions(_Options):
    include_crop: bool = Field(
        False, description="Attach the alert's face crop (face.jpg) where the service supports attachments"
    )


def _scrub(text: str, target: str) -> str:
    """``text`` without the target URL or any longer piece of it (tokens, passwords)."""
    pieces = sorted({p for p in re.split(r"[/:@?&=#]+", target) if len(p) >= 6} | {target}, key=len, reverse=True)
    for p in pieces:
        text = text.replace(p, "***")
    return text


class _ScrubTargets(logging.Filter):
    """On the ``apprise`` logger: removes the URLs in use from its records (Apprise logs a URL it cannot
    parse in full, tokens included). Installed on first use, never at import."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            targets = list(self._active)
        if targets:
            msg = record.getMessage()
            for t in targets:
                msg = _scrub(msg, t)
            record.msg, record.args = msg, None
        return True

    @contextmanager
    def hiding(self, target: str) -> Iterator[None]:
        with self._lock:
            self._active[target] = self._active.get(target, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._active[target] -= 1
                if not self._active[target]:
                    del self._active[target]


_scrubber: _ScrubTargets | None = None
_scrubber_lock = threading.Lock()


def _hidden(target: str):  # -> context manager
    """While in it, the ``apprise`` logger's records do not show ``target``."""
    global _scrubber
    with _scrubber_lock:
        if _scrubber is None:
            _scrubber = _ScrubTargets()
            logging.getLogger("apprise").addFilter(_scrubber)
    return _scrubber.hiding(target)


def _instantiate(url: str):  # -> apprise plugin instance or None
    import apprise

    with _hidden(url):
        return apprise.Apprise.instantiate(url)


@channel_kinds.register("apprise")
class AppriseChannel(ChannelKind):
    """Any Apprise URL; the body is plain text for people."""

    name = "apprise"
    Options = AppriseOptions
    secret_use = None

    def validate_target(self, target: str) -> str:
        if "://" not in target:
            raise ChannelError("apprise target must be an Apprise URL such as ntfy://host/topic or json://host/path")
        if _instantiate(target) is None:
            scheme = target.split("://", 1)[0]
            raise ChannelError(
                f"Apprise does not understand this URL (scheme {scheme!r}, or a required part is missing); "
                "see https://github.com/caronc/apprise/wiki for the URL of each service"
            )
        return target

    def redact(self, target: str) -> str:
        try:
            plugin = _instantiate(target)
            if plugin is not None:
                # Apprise's privacy form masks the parts it knows are secret (a bot token in the host
                # position, passwords); paths and queries can still carry tokens (json://host/TOKEN), so
                # keep only scheme and host of it.
                return redact_url_path(str(plugin.url(privacy=True)))
        except Exception:
            pass
        scheme = target.split("://", 1)[0] if "://" in target else "?"
        return f"{scheme}://(redacted)"

    def deliver(
        self, channel: Channel, secret: bytes | None, message: AlertMessage, *, timeout_s: float
    ) -> DeliveryResult:
        import apprise

        opts = AppriseOptions.model_validate(dict(channel.options))
        with _hidden(channel.target):
            return self._deliver(apprise, channel, opts, message, timeout_s)

    def _deliver(
        self, apprise: Any, channel: Channel, opts: AppriseOptions, message: AlertMessage, timeout_s: float
    ) -> DeliveryResult:
        plugin = apprise.Apprise.instantiate(channel.target)
        if plugin is None:
            return DeliveryResult.permanent("Apprise does not understand this URL")
        # Bound the network waits of HTTP-based services (URL parameters cto=/rto= win when given).
        if "cto=" not in channel.target:
            plugin.socket_connect_timeout = timeout_s
        if "rto=" not in channel.target:
            plugin.socket_read_timeout = timeout_s
        ap = apprise.Apprise()
        ap.add(plugin)
        attach = None
        if opts.include_crop and message.crop_jpeg is not None:
            from apprise.attachment.memory import AttachMemory

            attach = AttachMemory(content=message.crop_jpeg, name="face.jpg", mimetype="image/jpeg")
        result = ap.notify(body=message.body, title=message.title, body_format=apprise.NotifyFormat.TEXT, attach=attach)
        if bool(result):
            return DeliveryResult.ok()
        detail = ""
        logs = getattr(result, "logs", None)  # apprise >= 2 explains failures in its result
        if callable(logs):
            lines = [e.message for e in logs() if getattr(e, "level", "") in ("WARNING", "ERROR", "CRITICAL")]
            if lines:
                detail = ": " + _scrub(lines[-1], channel.target)[:300]
        return DeliveryResult.retry(f"Apprise reported a failed notification{detail}")
