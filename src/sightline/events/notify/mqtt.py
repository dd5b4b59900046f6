"""MQTT channel: publish the alert as JSON to a topic, for home-automation hubs (Home Assistant,
Node-RED, openHAB) listening on a broker.

Target ``mqtt://[user[:password]@]host[:port]/topic/path`` (port 1883) or ``mqtts://...`` (TLS, port 8883,
system CA certificates). The password may instead be the channel secret (stored sealed, so it is not
in the target). Each delivery connects, publishes one message (QoS 1 by default: it waits for the
broker's PUBACK, so "delivered" means the broker has it), and disconnects; a connection per alert is
cheap at alert rates and leaves nothing to go stale between alerts. Refused connections, timeouts and
a missing PUBACK retry. The body is ``AlertMessage.payload()`` (JSON, UTF-8); de-duplicate on
``delivery_id`` (at-least-once, as QoS 1 itself is).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

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


class MqttOptions(_Options):
    qos: Literal[0, 1, 2] = Field(1, description="MQTT quality of service: 1 waits for the broker's PUBACK")
    retain: bool = Field(False, description="Ask the broker to keep the last alert for new subscribers")
    include_crop: bool = Field(False, description="Send the alert's face crop as base64 JPEG (crop_jpeg_b64)")


@dataclass(frozen=True)
class MqttTarget:
    """A parsed ``mqtt[s]://`` target."""

    tls: bool
    host: str
    port: int
    topic: str
    username: str | None
    password: str | None


def parse_target(target: str) -> MqttTarget:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]/topic``; raises ``ChannelError``."""
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError as exc:
        raise ChannelError(f"mqtt target is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise ChannelError(f"mqtt target must start with mqtt:// or mqtts://, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ChannelError("mqtt target has no broker host")
    topic = unquote(parts.path.lstrip("/"))
    if not topic:
        raise ChannelError("mqtt target has no topic: mqtt://host:1883/some/topic")
    if "+" in topic or "#" in topic or "#" in target or "\x00" in topic:
        raise ChannelError("mqtt topic must not contain the wildcards + or # (or NUL)")
    if len(topic.encode("utf-8")) > 65535:
        raise ChannelError("mqtt topic is longer than 65535 bytes")
    if parts.query or parts.fragment:
        raise ChannelError("mqtt target takes no query or fragment (options go in the channel options)")
    tls = scheme == "mqtts"
    return MqttTarget(
        tls=tls,
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        topic=topic,
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )


@channel_kinds.register("mqtt")
class MqttChannel(ChannelKind):
    """Publish JSON to an MQTT topic (paho-mqtt), QoS 1 by default."""

    name = "mqtt"
    Options = MqttOptions
    secret_use = "broker password (when it is not in the target URL)"

    def validate_target(self, target: str) -> str:
        parse_target(target)
        return target

    def redact(self, target: str) -> str:
        try:
            t = parse_target(target)
        except ChannelError:
            return "mqtt://(redacted)"
        user = "" if t.username is None else f"{t.username}:***@" if t.password else f"{t.username}@"
        return f"{'mqtts' if t.tls else 'mqtt'}://{user}{t.host}:{t.port}/{t.topic}"

    def deliver(
        self, channel: Channel, secret: bytes | None, message: AlertMessage, *, timeout_s: float
    ) -> DeliveryResult:
        import paho.mqtt.client as mqtt

        opts = MqttOptions.model_validate(dict(channel.options))
        try:
            t = parse_target(channel.target)
        except ChannelError as exc:
            return DeliveryResult.permanent(str(exc))
        body = json.dumps(message.payload(include_crop=opts.include_crop), separators=(",", ":")).encode("utf-8")
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"sightline-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        client.connect_timeout = timeout_s
        password = t.password if t.password is not None else (None if secret is None else secret.decode("utf-8"))
        if t.username is not None or password is not None:
            client.username_pw_set(t.username or "", password)
        if t.tls:
            client.tls_set()
        connected = threading.Event()
        reason: list[str] = []

        def on_connect(_c, _u, _flags, rc, _props=None) -> None:
            if rc.is_failure:
                reason.append(str(rc))
            connected.set()

        client.on_connect = on_connect
        try:
            client.connect(t.host, t.port, keepalive=max(5, int(timeout_s * 2)))
        except (OSError, ValueError) as exc:
            return DeliveryResult.retry(f"cannot connect to the broker: {type(exc).__name__}: {exc}")
        client.loop_start()
        try:
            if not connected.wait(timeout_s):
                return DeliveryResult.retry(f"no CONNACK from the broker within {timeout_s:g} s")
            if reason:
                return DeliveryResult.retry(f"the broker refused the connection: {reason[0]}")
            info = client.publish(t.topic, body, qos=opts.qos, retain=opts.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return DeliveryResult.retry(f"publish failed: {mqtt.error_string(info.rc)}")
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                return DeliveryResult.retry(f"publish failed: {exc}")
            if not info.is_published():
                what = "PUBACK" if opts.qos == 1 else "PUBCOMP" if opts.qos == 2 else "send"
                return DeliveryResult.retry(f"no {what} from the broker within {timeout_s:g} s")
            return DeliveryResult.ok()
        finally:
            client.disconnect()
            client.loop_stop()
