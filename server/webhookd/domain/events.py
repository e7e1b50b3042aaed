"""Events: what a publisher sends, the body every delivery of it carries, and what publishing did."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_IDEMPOTENCY_KEY_LENGTH = 255
# An idempotency key is remembered this long; a later publish with it is a new event.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def event_body(event_type: str, timestamp: datetime, payload: dict[str, Any]) -> bytes:
    """The Standard Webhooks payload shape; built once so every attempt sends (and signs) the same bytes."""
    envelope = {"type": event_type, "timestamp": timestamp.isoformat().replace("+00:00", "Z"), "data": payload}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class NewEvent:
    id: str
    event_type: str
    body: bytes
    idempotency_key: str | None
    target_webhook_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class Published:
    event_id: str
    deliveries_queued: int
    duplicate: bool
