"""Events: what a publisher sends, the body every delivery of it carries, and what publishing did."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from webhookd.domain.json_text import json_identity

# The request fields an event's data comes in (a Struct, or JSON text kept as written): errors name them.
PAYLOAD_FIELD = "payload"
PAYLOAD_JSON_FIELD = "payload_json"
_DATA_KEY = ',"data":'


def event_body(event_type: str, timestamp: datetime, data_json: str) -> bytes:
    """The Standard Webhooks payload shape, `{"type","timestamp","data"}`, with `data` spliced in as
    the publisher's JSON text (already checked: json_text.loads), so every number reaches the
    receiver as written. Built once: every attempt sends (and signs) the same bytes."""
    head = {"type": event_type, "timestamp": timestamp.isoformat().replace("+00:00", "Z")}
    head_json = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
    return f"{head_json[:-1]}{_DATA_KEY}{data_json}}}".encode()


def event_data(body: bytes) -> str:
    """The publisher's JSON text back out of a body `event_body` built, byte for byte. The head holds
    only a validated type and a timestamp, so the first `,"data":` is where the data was spliced in."""
    text = body.decode()
    start = text.index(_DATA_KEY) + len(_DATA_KEY)
    return text[start:-1]


@dataclass(frozen=True)
class NewEvent:
    id: str
    event_type: str
    body: bytes
    idempotency_key: str | None
    target_webhook_id: str | None
    created_at: datetime
    # Only webhooks without channels, or sharing one of these, receive it (domain/routing.py).
    channels: tuple[str, ...] = ()


# An idempotency key names one event: a retry must be that event again, as Stripe and the IETF
# Idempotency-Key draft hold, or a mistaken reuse would be answered as if the new event were published.
KEY_REUSED = (
    "was used within 24 hours for another event (another type, payload, target webhook or channels):"
    " a retry must repeat the event, a new event needs a new key"
)


def same_event(
    event: NewEvent, event_type: str, body: bytes, target_webhook_id: str | None, channels: list[str]
) -> bool:
    """Whether `event` repeats the stored one: type, target, channels and data (equal as JSON values,
    json_identity: a retry that writes the same data with other spacing, key order or `1.0` for `1` is
    the same event; `true` is not `1`)."""
    return (event.event_type, event.target_webhook_id, sorted(event.channels)) == (
        event_type,
        target_webhook_id,
        sorted(channels),
    ) and json_identity(json.loads(event_data(event.body))) == json_identity(json.loads(event_data(body)))


@dataclass(frozen=True)
class Published:
    event_id: str
    deliveries_queued: int
    duplicate: bool
    deliveries_held: int = 0  # for paused webhooks
    deliveries_skipped: int = 0  # for webhooks their owner disabled
    queued_for: tuple[str, ...] = ()  # the webhooks given a pending delivery


@dataclass(frozen=True)
class StoredEvent:
    """An event as it was published, read back."""

    id: str
    event_type: str
    payload_json: str  # the data exactly as published
    created_at: datetime
    idempotency_key: str | None
    target_webhook_id: str | None


@dataclass(frozen=True)
class EventFilter:
    # Subscription-style filters (`rfp.created`, `rfp.*`, `*`).
    event_types: tuple[str, ...] = ()
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class EventPage:
    events: list[StoredEvent]
    next_page_token: str
