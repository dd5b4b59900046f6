"""Webhook channel: POST the alert as JSON to an http(s) URL, signed with the channel secret.

Request (one per attempt):

    POST <target>
    Content-Type: application/json
    X-Sightline-Delivery: <delivery id>        stable across retries: de-duplicate on it
    X-Sightline-Timestamp: <epoch s, integer>  when this attempt was sent (also ``sent_at`` in the body)
    X-Sightline-Signature: sha256=<hex>        HMAC-SHA256 of the raw body with the channel secret
                                               (absent when the channel has no secret)
    <body: AlertMessage.payload(); "crop_jpeg_b64" only with the option include_crop>

Verify on the receiving side (``verify_signature`` here) by recomputing ``hmac.new(secret, raw_body, sha256)`` over the
exact bytes received and comparing with ``hmac.compare_digest``; reject a ``sent_at`` too far from now
to stop replays (it is inside the signed body). Delivery is at-least-once: the same delivery can
arrive twice.

Answers: 2xx delivered; 408 and 429 retry (honouring Retry-After); any other 4xx is a permanent
failure (the receiver refused it; retrying cannot help); 3xx (redirects are not followed, so a moved
hook is noticed), 5xx, timeouts and connection errors retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from sightline.events.notify.channels import (
    AlertMessage,
    Channel,
    ChannelError,
    ChannelKind,
    DeliveryResult,
    _Options,
    channel_kinds,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sightline-Signature"
TIMESTAMP_HEADER = "X-Sightline-Timestamp"
DELIVERY_HEADER = "X-Sightline-Delivery"
#: Longest Retry-After honoured, s (a receiver cannot park a delivery for days).
MAX_RETRY_AFTER_S = 3600.0


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` with ``secret`` (constant-time compare)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class WebhookOptions(_Options):
    include_crop: bool = Field(False, description="Send the alert's face crop as base64 JPEG (crop_jpeg_b64)")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate (https targets)")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            secs = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(MAX_RETRY_AFTER_S, secs))


@channel_kinds.register("webhook")
class WebhookChannel(ChannelKind):
    """POST JSON to an http(s) URL with an HMAC-SHA256 signature header."""

    name = "webhook"
    Options = WebhookOptions
    secret_use = "HMAC-SHA256 key of the X-Sightline-Signature header"

    def __init__(self) -> None:
        # One pooled client per TLS-verification setting, made on first use: building an httpx client
        # (its TLS context) costs ~100 ms, far more than a delivery to a nearby receiver.
        self._clients: dict[bool, Any] = {}
        self._lock = threading.Lock()

    def _client(self, verify_tls: bool) -> Any:
        import httpx

        with self._lock:
            client = self._clients.get(verify_tls)
            if client is None:
                client = httpx.Client(follow_redirects=False, verify=verify_tls)
                self._clients[verify_tls] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()

    def validate_target(self, target: str) -> str:
        try:
            parts = urlsplit(target)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ChannelError(f"webhook target is not a valid URL: {exc}") from None
        if parts.scheme.lower() not in ("http", "https"):
            raise ChannelError(f"webhook target must be an http:// or https:// URL, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ChannelError("webhook target has no host")
        return target

    def deliver(
        self, channel: Channel, secret: bytes | None, message: AlertMessage, *, timeout_s: float
    ) -> DeliveryResult:
        import httpx

        opts = WebhookOptions.model_validate(dict(channel.options))
        sent_at = time.time()
        body = json.dumps(
            message.payload(include_crop=opts.include_crop, sent_at=sent_at), separators=(",", ":")
        ).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sightline-notifier/1",
            DELIVERY_HEADER: str(message.delivery_id),
            TIMESTAMP_HEADER: str(int(sent_at)),
        }
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        try:
            resp = self._client(opts.verify_tls).post(channel.target, content=body, headers=headers, timeout=timeout_s)
        except httpx.TimeoutException:
            return DeliveryResult.retry(f"timed out after {timeout_s:g} s")
        except httpx.HTTPError as exc:
            # httpx messages do not include the URL; the class name says connect/read/protocol.
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")
        code = resp.status_code
        if 200 <= code < 300:
            return DeliveryResult.ok()
        text = f"HTTP {code} {resp.reason_phrase}".strip()
        if code in (408, 429):
            return DeliveryResult.retry(text, _retry_after(resp.headers.get("Retry-After")))
        if 400 <= code < 500:
            return DeliveryResult.permanent(text)
        if code == 503:
            return DeliveryResult.retry(text, _retry_after(resp.headers.get("Retry-After")))
        return DeliveryResult.retry(text)
