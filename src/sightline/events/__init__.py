"""Events: what the live pipeline tells the world — alerts and sightings, the in-process event bus,
and their tables in the gallery file.

    bus = EventBus()
    sub = bus.subscribe(Alert)
    stores = EventStores(gallery.store)

``EventBus`` fans typed records out to bounded per-subscriber queues (drop oldest and count, never
block); ``AlertStore`` / ``SightingStore`` persist them in the gallery's SQLite file (crops and
descriptors sealed; stored records carry their row ``id``). Notifications (webhooks, Apprise, MQTT per
watchlist, through a transactional outbox) are in ``sightline.events.notify``, imported on demand.
"""

from sightline.events.bus import EventBus, Subscription
from sightline.events.store import (
    ALERT_STATUSES,
    AlertStatus,
    AlertStore,
    EventStores,
    SightingStore,
    StoredAlert,
    StoredSighting,
    UnknownAlertError,
)

__all__ = [
    "ALERT_STATUSES",
    "AlertStatus",
    "AlertStore",
    "EventBus",
    "EventStores",
    "SightingStore",
    "StoredAlert",
    "StoredSighting",
    "Subscription",
    "UnknownAlertError",
]
