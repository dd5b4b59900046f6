"""Notifications: per-watchlist channels (webhook, Apprise, MQTT) fed by a transactional outbox.

    channels = ChannelStore(store)
    channels.add(watchlist_id, "webhook", "https://hooks.example.org/sightline", secret="s3cret",
                 options={"include_crop": False})
    notifier = Notifier(store, NotifyConfig())   # nothing runs until start()
    notifier.start()
    notifier.list_deliveries(status="failed"); notifier.retry(delivery_id); notifier.retry_failed()
    notifier.stop()

``AlertStore.add`` queues one outbox row per enabled channel of the alert's watchlist in the alert's own
transaction; the ``Notifier`` delivers due rows with retries (capped exponential backoff with jitter),
marks them delivered or, after ``max_attempts``, failed (visible, retryable). Delivery is at-least-once:
payloads carry the stable ``alert_id`` and ``delivery_id`` so receivers can de-duplicate. See
``outbox`` for the claiming protocol between several workers and processes, and each kind's module
(``webhook``, ``apprise_channel``, ``mqtt``) for what it sends.
"""

from sightline.events.notify.channels import (
    CHANNEL_KINDS,
    AlertMessage,
    Channel,
    ChannelError,
    ChannelKind,
    ChannelStore,
    DeliveryResult,
    UnknownChannelError,
    channel_kinds,
    describe_fmr,
)
from sightline.events.notify.outbox import (
    DELIVERY_STATUSES,
    Claim,
    Delivery,
    DeliveryStatus,
    Notifier,
    NotifierStats,
    Outbox,
    backoff_delay,
)

__all__ = [
    "CHANNEL_KINDS",
    "DELIVERY_STATUSES",
    "AlertMessage",
    "Channel",
    "ChannelError",
    "ChannelKind",
    "ChannelStore",
    "Claim",
    "Delivery",
    "DeliveryResult",
    "DeliveryStatus",
    "Notifier",
    "NotifierStats",
    "Outbox",
    "UnknownChannelError",
    "backoff_delay",
    "channel_kinds",
    "describe_fmr",
]
