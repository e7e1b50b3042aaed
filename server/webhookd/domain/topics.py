"""What a notification says happened: the core sends topics, and the PostgreSQL adapter
(store/notifications.py) carries them."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    """What a notification says happened; each is a PostgreSQL channel of the same name."""

    # deliveries became due: workers claim; payloads (when few) name the webhooks of a publish's
    DELIVERIES = "webhookd_deliveries"
    ATTEMPTS = "webhookd_attempts"  # log lines were written: DeliveryLog followers read
    INBOUND = "webhookd_inbound"  # inbound receipts were accepted: inbound consumers read
    WEBHOOKS = "webhookd_webhooks"  # webhooks changed: payloads `<id>[:<version>]`, caches forget them
    EVENT_TYPES = "webhookd_event_types"  # catalog entries changed: payloads are their names
