"""Publishing events: validate, build the body every delivery will carry, and enqueue the fan-out."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from webhookd.domain import event_types, idempotency, ids, json_text
from webhookd.domain.errors import FailedPrecondition, FieldViolation, Invalid
from webhookd.domain.event_catalog import PayloadMismatch
from webhookd.domain.event_schemas import CompiledSchema, TooCostly, Unevaluable
from webhookd.domain.events import (
    PAYLOAD_FIELD,
    PAYLOAD_JSON_FIELD,
    NewEvent,
    Published,
    event_body,
)
from webhookd.domain.routing import EVENT_CHANNELS_MAX, check_channels
from webhookd.domain.scope import Scope
from webhookd.ports import Clock, EventRepository, utc_now

# Payloads larger than this are checked against their schema off the event loop.
SCHEMA_CHECK_INLINE_BYTES = 16 * 1024


class Schemas(Protocol):
    """Where a publish finds the schema its payload must match (services/event_types.py)."""

    async def schema_for(self, scope: Scope, name: str) -> CompiledSchema | None: ...


class Events:
    def __init__(
        self,
        store: EventRepository,
        *,
        max_payload_bytes: int,
        schemas: Schemas | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._max_payload_bytes = max_payload_bytes
        self._schemas = schemas
        self._now = clock

    async def publish(
        self,
        scope: Scope,
        *,
        event_type: str,
        payload_json: str,
        idempotency_key: str | None,
        webhook_id: str | None,
        channels: tuple[str, ...] = (),
    ) -> Published:
        """`payload_json` is the event's data as the publisher wrote it (a JSON object); receivers
        get this very text as `data`. When the scope's catalog has a schema for the type, the data
        must match it (PayloadMismatch, one violation per JSON pointer, and nothing is stored)."""
        violations: list[FieldViolation] = []
        problem = event_types.validate_event_type(event_type)
        if problem is not None:
            violations.append(FieldViolation("event_type", problem))
        elif event_types.is_service_event(event_type):
            # Receivers trust `webhookd.*` events to come from webhookd itself.
            violations.append(
                FieldViolation("event_type", f"'{event_types.SERVICE_NAMESPACE}.' types are the service's own events")
            )
        if (key_problem := idempotency.key_problem(idempotency_key)) is not None:
            violations.append(FieldViolation("idempotency_key", key_problem))
        channels, found = check_channels(channels, "channels", most=EVENT_CHANNELS_MAX)
        violations += found
        # The limit is on what the publisher can measure itself: the payload's JSON in UTF-8, not the
        # envelope the body wraps around it. Sized before it is parsed, so an oversized text costs no parse.
        now = self._now()
        body = event_body(event_type, now, payload_json)
        size = len(payload_json.encode())
        data: Any = None
        if size > self._max_payload_bytes:
            violations.append(
                FieldViolation(PAYLOAD_FIELD, f"is {size} bytes of JSON; the limit is {self._max_payload_bytes} bytes")
            )
        else:
            data, found = _payload(payload_json)
            violations += found
        if violations:
            raise Invalid(violations)
        await self._check_schema(scope, event_type, data, size=len(body), payload_bytes=size)
        event = NewEvent(
            id=ids.new_id(ids.EVENT_PREFIX),
            event_type=event_type,
            body=body,
            idempotency_key=idempotency_key,
            target_webhook_id=webhook_id,
            created_at=now,
            channels=channels,
        )
        # The store wakes the workers for what it queued, on the publish's own connection.
        return await self._store.publish(scope, event, event_types.matching_filters(event_type))

    async def _check_schema(self, scope: Scope, event_type: str, data: Any, *, size: int, payload_bytes: int) -> None:
        schema = None if self._schemas is None else await self._schemas.schema_for(scope, event_type)
        if schema is None:
            return
        # A large payload is checked in a thread, so one publish cannot hold up every other call.
        try:
            if size > SCHEMA_CHECK_INLINE_BYTES:
                mismatches = await asyncio.to_thread(schema.mismatches, data, payload_bytes)
            else:
                mismatches = schema.mismatches(data, payload_bytes)
        except Unevaluable as error:
            # The catalog entry is what is wrong (written before such schemas were refused): fix it, not the payload.
            raise FailedPrecondition(
                f"the schema of event type {event_type} cannot be applied: {error}; update or delete its catalog entry",
                reason="EVENT_SCHEMA_UNEVALUABLE",
            ) from None
        except TooCostly as error:
            # Never published unchecked: the owner bounds the schema's cost, the payload is not known to be wrong.
            raise FailedPrecondition(
                f"the schema of event type {event_type} is too costly to check this payload against: {error};"
                " simplify the schema (fewer alternatives, fewer keywords per item) or publish smaller payloads",
                reason="EVENT_SCHEMA_TOO_COSTLY",
            ) from None
        if mismatches:
            raise PayloadMismatch(
                [FieldViolation(PAYLOAD_FIELD, mismatch) for mismatch in mismatches],
                f"payload does not match the schema of {event_type}: " + "; ".join(mismatches),
            )


def _payload(payload_json: str) -> tuple[Any, list[FieldViolation]]:
    """The data, a JSON object within json_text's rules, or the violations; they name `payload_json`,
    the field that carries the text (a Struct or a REST body is checked on its way in)."""
    try:
        value = json_text.loads(payload_json, field=PAYLOAD_JSON_FIELD)
    except json.JSONDecodeError as error:
        return None, [
            FieldViolation(PAYLOAD_JSON_FIELD, f"is not JSON: {error.msg} at line {error.lineno} column {error.colno}")
        ]
    except Invalid as error:
        return None, error.violations
    if not isinstance(value, dict):
        return None, [FieldViolation(PAYLOAD_JSON_FIELD, "must be a JSON object")]
    return value, []
