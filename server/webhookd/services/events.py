"""Publishing events: validate, build the body every delivery will carry, and enqueue the fan-out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from webhookd.domain import event_types, ids
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.scope import Scope
from webhookd.store.events import EventStore, NewEvent, Published

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def event_body(event_type: str, timestamp: datetime, payload: dict[str, Any]) -> bytes:
    """The Standard Webhooks payload shape; built once so every attempt sends (and signs) the same bytes."""
    envelope = {"type": event_type, "timestamp": timestamp.isoformat().replace("+00:00", "Z"), "data": payload}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


class Events:
    def __init__(self, store: EventStore, *, max_payload_bytes: int) -> None:
        self._store = store
        self._max_payload_bytes = max_payload_bytes

    async def publish(
        self,
        scope: Scope,
        *,
        event_type: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        webhook_id: str | None,
    ) -> Published:
        violations: list[FieldViolation] = []
        problem = event_types.validate_event_type(event_type)
        if problem is not None:
            violations.append(FieldViolation("event_type", problem))
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            violations.append(FieldViolation("idempotency_key", f"must be 1..{MAX_IDEMPOTENCY_KEY_LENGTH} characters"))
        now = datetime.now(UTC)
        body = event_body(event_type, now, payload)
        if len(body) > self._max_payload_bytes:
            violations.append(
                FieldViolation(
                    "payload", f"is {len(body)} bytes serialised; the limit is {self._max_payload_bytes} bytes"
                )
            )
        if violations:
            raise Invalid(violations)
        event = NewEvent(
            id=ids.new_id(ids.EVENT_PREFIX),
            event_type=event_type,
            body=body,
            idempotency_key=idempotency_key,
            target_webhook_id=webhook_id,
            created_at=now,
        )
        return await self._store.publish(scope, event, event_types.matching_filters(event_type))
