"""Publishing events: validate, build the body every delivery will carry, and enqueue the fan-out."""

from __future__ import annotations

import json
from collections.abc import Sequence

from webhookd.domain import event_types, ids, json_text
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.events import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    PAYLOAD_FIELD,
    PAYLOAD_JSON_FIELD,
    NewEvent,
    Published,
    event_body,
)
from webhookd.domain.scope import Scope
from webhookd.ports import Clock, EventRepository, Notifications, Topic, utc_now

# Up to this many webhooks a publish's notification names (about 30 bytes each in the payload).
NAMED_WEBHOOKS_MAX = 32


class Events:
    def __init__(
        self,
        store: EventRepository,
        notifications: Notifications,
        *,
        max_payload_bytes: int,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._max_payload_bytes = max_payload_bytes
        self._now = clock

    async def publish(
        self,
        scope: Scope,
        *,
        event_type: str,
        payload_json: str,
        idempotency_key: str | None,
        webhook_id: str | None,
    ) -> Published:
        """`payload_json` is the event's data as the publisher wrote it (a JSON object); receivers
        get this very text as `data`."""
        violations: list[FieldViolation] = []
        problem = event_types.validate_event_type(event_type)
        if problem is not None:
            violations.append(FieldViolation("event_type", problem))
        elif event_types.is_service_event(event_type):
            # Receivers trust `webhookd.*` events to come from webhookd itself.
            violations.append(
                FieldViolation("event_type", f"'{event_types.SERVICE_NAMESPACE}.' types are the service's own events")
            )
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            violations.append(FieldViolation("idempotency_key", f"must be 1..{MAX_IDEMPOTENCY_KEY_LENGTH} characters"))
        # Sized before it is parsed, so an oversized text costs no parse.
        now = self._now()
        body = event_body(event_type, now, payload_json)
        if len(body) > self._max_payload_bytes:
            violations.append(
                FieldViolation(
                    PAYLOAD_FIELD, f"is {len(body)} bytes serialised; the limit is {self._max_payload_bytes} bytes"
                )
            )
        else:
            violations += _payload_violations(payload_json)
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
        published = await self._store.publish(scope, event, event_types.matching_filters(event_type))
        if published.deliveries_queued and not published.duplicate:
            notify_deliveries(self._notifications, published.queued_for)
        return published


def notify_deliveries(notifications: Notifications, webhook_ids: Sequence[str]) -> None:
    """Wakes the workers for new deliveries, naming their webhooks when they are few: the workers
    then claim those webhooks' first ones at once, however deep other webhooks' backlogs are
    (store/deliveries.py). A wide fan-out wakes them without names."""
    if not webhook_ids or len(webhook_ids) > NAMED_WEBHOOKS_MAX:
        notifications.notify(Topic.DELIVERIES)
        return
    for webhook_id in webhook_ids:
        notifications.notify(Topic.DELIVERIES, webhook_id)


def _payload_violations(payload_json: str) -> list[FieldViolation]:
    """A JSON object within json_text's rules; violations name `payload_json`, the field that
    carries the text (a Struct or a REST body is checked on its way in)."""
    try:
        value = json_text.loads(payload_json, field=PAYLOAD_JSON_FIELD)
    except json.JSONDecodeError as error:
        return [
            FieldViolation(PAYLOAD_JSON_FIELD, f"is not JSON: {error.msg} at line {error.lineno} column {error.colno}")
        ]
    except Invalid as error:
        return error.violations
    if not isinstance(value, dict):
        return [FieldViolation(PAYLOAD_JSON_FIELD, "must be a JSON object")]
    return []
