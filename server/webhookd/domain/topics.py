"""What a notification says happened: the core sends topics, and the PostgreSQL adapter
(store/notifications.py) carries them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

# Up to this many webhooks a publish's deliveries notification names (about 30 bytes each).
NAMED_WEBHOOKS_MAX = 32
# A subscription key no notification names (a payload's names are split on whitespace): subscribed with
# it, a listener is woken only by notifications that name nothing, and when listening (re)starts.
NAMES_NOTHING = " "


class Topic(StrEnum):
    """What a notification says happened; each is a PostgreSQL channel of the same name."""

    # deliveries became due: workers claim; payloads (when few) name the webhooks of a publish's
    DELIVERIES = "webhookd_deliveries"
    ATTEMPTS = "webhookd_attempts"  # log lines were written: DeliveryLog followers read
    INBOUND = "webhookd_inbound"  # inbound receipts were accepted: inbound consumers read
    WEBHOOKS = "webhookd_webhooks"  # webhooks changed: payloads `<id>[:<version>]`, caches forget them
    EVENT_TYPES = "webhookd_event_types"  # catalog entries changed: payloads are their names


def new_deliveries_payload(webhook_ids: Sequence[str]) -> str:
    """What a deliveries notification says: the webhooks of its new deliveries, one name per delivery,
    when they are few, so the workers claim those webhooks' first ones at once however deep other
    webhooks' backlogs are (delivery/pool.py); nothing for a wide fan-out, which wakes them all the same."""
    return " ".join(webhook_ids) if len(webhook_ids) <= NAMED_WEBHOOKS_MAX else ""
