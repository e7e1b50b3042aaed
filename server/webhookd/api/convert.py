"""Proto messages to domain values and back: the only place that knows both shapes."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cpod.integration.v1 import event_type_pb2 as event_type_pb
from cpod.integration.v1 import operations_pb2 as operations_pb
from cpod.integration.v1 import webhook_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2 as service_pb
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from webhookd.domain import json_text
from webhookd.domain.deliveries import Delivery
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.event_catalog import EXAMPLE_FIELD, SCHEMA_FIELD, STRUCT_MAX_DEPTH, EventType, EventTypeSpec
from webhookd.domain.events import PAYLOAD_FIELD, PAYLOAD_JSON_FIELD, StoredEvent
from webhookd.domain.history import LogEntry
from webhookd.domain.inbound import InboundEvent
from webhookd.domain.log_cursors import LogCursors
from webhookd.domain.webhooks import (
    DEFAULT_ENABLED,
    DEFAULT_SOURCE,
    OUTPUT_ONLY_FIELDS,
    Backoff,
    Direction,
    Ordering,
    RetryPolicy,
    SignatureScheme,
    SourceType,
    Webhook,
    WebhookSpec,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIRECTION_TO_PROTO = {Direction.OUTBOUND: pb.DIRECTION_OUTBOUND, Direction.INBOUND: pb.DIRECTION_INBOUND}
_DIRECTION_FROM_PROTO = {value: key for key, value in _DIRECTION_TO_PROTO.items()}
_SOURCE_TYPE_TO_PROTO = {
    SourceType.FRONTEND: pb.SOURCE_TYPE_FRONTEND,
    SourceType.BACKEND: pb.SOURCE_TYPE_BACKEND,
    SourceType.SERVER: pb.SOURCE_TYPE_SERVER,
    SourceType.SYSTEM: pb.SOURCE_TYPE_SYSTEM,
    SourceType.API: pb.SOURCE_TYPE_API,
}
_SOURCE_TYPE_FROM_PROTO = {value: key for key, value in _SOURCE_TYPE_TO_PROTO.items()}
_ORDERING_TO_PROTO = {Ordering.UNORDERED: pb.ORDERING_UNORDERED, Ordering.FIFO: pb.ORDERING_FIFO}
_ORDERING_FROM_PROTO = {value: key for key, value in _ORDERING_TO_PROTO.items()}
DEFAULT_RETRY = RetryPolicy()
# The ranges protobuf defines for its well-known types (0001-01-01 to 9999-12-31; +-10,000 years); a
# message may carry any int64 there, which Python's datetime and timedelta cannot hold.
TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
DURATION_SECONDS_MAX = 315_576_000_000
NANOS_MAX = 999_999_999


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    set_timestamp(stamp, value)
    return stamp


def set_timestamp(stamp: timestamp_pb2.Timestamp, value: datetime) -> None:
    """What Timestamp.FromDatetime does (a naive time is UTC), in a fifth of its time: every entry of a
    log stream carries one or two."""
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    stamp.seconds = since.days * 86_400 + since.seconds
    stamp.nanos = since.microseconds * 1000


def datetime_of(stamp: timestamp_pb2.Timestamp, field: str) -> datetime:
    """The instant `stamp` names; Invalid naming `field` outside protobuf's Timestamp range."""
    low, high = TIMESTAMP_SECONDS
    if not (low <= stamp.seconds <= high and 0 <= stamp.nanos <= NANOS_MAX):
        raise Invalid.field(field, "is not a valid timestamp (0001-01-01 to 9999-12-31, nanos 0 to 999999999)")
    return stamp.ToDatetime(tzinfo=UTC)


def timedelta_of(duration: duration_pb2.Duration, field: str) -> timedelta:
    """The span `duration` names; Invalid naming `field` outside protobuf's Duration range."""
    seconds, nanos = duration.seconds, duration.nanos
    in_range = abs(seconds) <= DURATION_SECONDS_MAX and abs(nanos) <= NANOS_MAX
    if not in_range or (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        raise Invalid.field(
            field, "is not a valid duration (at most 315576000000 s either way; seconds and nanos of one sign)"
        )
    return duration.ToTimedelta()


def webhook_to_proto(webhook: Webhook) -> pb.Webhook:
    spec = webhook.spec
    return pb.Webhook(
        id=webhook.id,
        tenant_id=webhook.tenant_id,
        app_id=webhook.app_id or "",
        created_at=timestamp(webhook.created_at),
        updated_at=timestamp(webhook.updated_at),
        created_by=webhook.created_by or "",
        updated_by=webhook.updated_by or "",
        source=spec.source,
        source_type=_SOURCE_TYPE_TO_PROTO[spec.source_type],
        is_deleted=webhook.is_deleted,
        deleted_at=timestamp(webhook.deleted_at),
        deleted_by=webhook.deleted_by or "",
        schema_version=webhook.schema_version,
        name=spec.name,
        direction=_DIRECTION_TO_PROTO[spec.direction],
        url=spec.url,
        event_types=list(spec.event_types),
        signature_scheme=spec.signature_scheme.value,
        vault_path=webhook.vault_path,
        headers=dict(spec.headers),
        enabled=spec.enabled,
        retry_policy=pb.RetryPolicy(
            max_attempts=spec.retry_policy.max_attempts,
            backoff=spec.retry_policy.backoff.value,
            timeout_ms=spec.retry_policy.timeout_ms,
        ),
        last_delivery_at=timestamp(webhook.last_delivery_at),
        last_delivery_status=webhook.last_delivery_status.value if webhook.last_delivery_status else "",
        consecutive_failures=webhook.consecutive_failures,
        paused_at=timestamp(webhook.paused_at),
        connector_id=spec.connector_id,
        tags=list(spec.tags),
        version=webhook.version,
        application_id=spec.application_id,
        secret_fingerprint=webhook.secret_fingerprint,
        is_active=webhook.is_active,
        channels=list(spec.channels),
        rate_limit_per_second=spec.rate_limit_per_second,
        ordering=_ORDERING_TO_PROTO[spec.ordering],
        credential_header=webhook.credential_header,
    )


def direction_from_proto(value: int, field: str) -> Direction | None:
    """None for DIRECTION_UNSPECIFIED (no filter / the default); Invalid naming `field` for a number
    the enum does not have (proto3 keeps unknown numbers; REST refuses unknown words the same way)."""
    if value == pb.DIRECTION_UNSPECIFIED:
        return None
    violations: list[FieldViolation] = []
    direction = _direction(value, field, violations)
    if violations:
        raise Invalid(violations)
    return direction


def _scheme(value: str, field: str, violations: list[FieldViolation]) -> SignatureScheme:
    if value == "":
        return SignatureScheme.STANDARD_WEBHOOKS
    try:
        return SignatureScheme(value)
    except ValueError:
        allowed = ", ".join(scheme.value for scheme in SignatureScheme)
        violations.append(FieldViolation(field, f"must be one of {allowed}, not {value!r}"))
        return SignatureScheme.STANDARD_WEBHOOKS


def _backoff(value: str, field: str, violations: list[FieldViolation]) -> Backoff:
    if value == "":
        return DEFAULT_RETRY.backoff
    try:
        return Backoff(value)
    except ValueError:
        allowed = ", ".join(backoff.value for backoff in Backoff)
        violations.append(FieldViolation(field, f"must be one of {allowed}, not {value!r}"))
        return DEFAULT_RETRY.backoff


def _source_type(value: int, field: str, violations: list[FieldViolation]) -> SourceType:
    if value == pb.SOURCE_TYPE_UNSPECIFIED:
        return SourceType.API
    if value not in _SOURCE_TYPE_FROM_PROTO:
        violations.append(FieldViolation(field, f"is not a known source type ({value})"))
        return SourceType.API
    return _SOURCE_TYPE_FROM_PROTO[value]  # type: ignore[index]


def _direction(value: int, field: str, violations: list[FieldViolation]) -> Direction:
    if value == pb.DIRECTION_UNSPECIFIED:
        return Direction.OUTBOUND
    if value not in _DIRECTION_FROM_PROTO:
        violations.append(FieldViolation(field, f"is not a known direction ({value})"))
        return Direction.OUTBOUND
    return _DIRECTION_FROM_PROTO[value]  # type: ignore[index]


def _ordering(value: int, field: str, violations: list[FieldViolation]) -> Ordering:
    if value == pb.ORDERING_UNSPECIFIED:
        return Ordering.UNORDERED
    if value not in _ORDERING_FROM_PROTO:
        violations.append(FieldViolation(field, f"is not a known ordering ({value})"))
        return Ordering.UNORDERED
    return _ORDERING_FROM_PROTO[value]  # type: ignore[index]


def _retry_policy(message: pb.RetryPolicy, field: str, violations: list[FieldViolation]) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=message.max_attempts or DEFAULT_RETRY.max_attempts,
        backoff=_backoff(message.backoff, f"{field}.backoff", violations),
        timeout_ms=message.timeout_ms or DEFAULT_RETRY.timeout_ms,
    )


def spec_from_proto(message: pb.Webhook, *, field: str = "webhook") -> WebhookSpec:
    """The caller-writable fields of a Create request, defaults filled in; output-only ones ignored."""
    violations: list[FieldViolation] = []
    spec = WebhookSpec(
        name=message.name,
        url=message.url,
        direction=_direction(message.direction, f"{field}.direction", violations),
        event_types=tuple(message.event_types),
        signature_scheme=_scheme(message.signature_scheme, f"{field}.signature_scheme", violations),
        headers=dict(message.headers),
        enabled=_enabled(message),
        retry_policy=_retry_policy(message.retry_policy, f"{field}.retry_policy", violations),
        connector_id=message.connector_id,
        application_id=message.application_id,
        tags=tuple(message.tags),
        source=message.source or DEFAULT_SOURCE,
        source_type=_source_type(message.source_type, f"{field}.source_type", violations),
        channels=tuple(message.channels),
        rate_limit_per_second=message.rate_limit_per_second,
        ordering=_ordering(message.ordering, f"{field}.ordering", violations),
    )
    if violations:
        raise Invalid(violations)
    return spec


def _enabled(message: pb.Webhook) -> bool:
    # Unset (JSON null, or a mask naming it without a value) is the default, never proto3's false.
    return message.enabled if message.HasField("enabled") else DEFAULT_ENABLED


def implied_mask(message: pb.Webhook) -> list[str]:
    """AIP-134: without an update_mask, the populated fields are the mask; output-only ones and the
    identifying fields (id, version) are not updates, and direction can never change. A retry_policy
    with sub-fields set names those (`retry_policy.max_attempts`), as the gateway derives it from a
    JSON body, so the ones left out keep their values; an empty one resets the whole policy."""
    ignored = OUTPUT_ONLY_FIELDS | {"id", "version", "direction"}
    paths: list[str] = []
    for descriptor, value in message.ListFields():
        if descriptor.name in ignored:
            continue
        if descriptor.name == "retry_policy" and value.ListFields():
            paths += [f"retry_policy.{sub.name}" for sub, _ in value.ListFields()]
        else:
            paths.append(descriptor.name)
    return paths


def mask_changes(message: pb.Webhook, paths: list[str], *, field: str = "webhook") -> dict[str, object]:
    """Typed new values for each (validated) mask path; a path naming an unset field resets it."""
    violations: list[FieldViolation] = []
    values: dict[str, object] = {
        "name": message.name,
        "url": message.url,
        "event_types": tuple(message.event_types),
        "headers": dict(message.headers),
        "enabled": _enabled(message),
        "connector_id": message.connector_id,
        "application_id": message.application_id,
        "tags": tuple(message.tags),
        "source": message.source or DEFAULT_SOURCE,
        "channels": tuple(message.channels),
        "rate_limit_per_second": message.rate_limit_per_second,
    }
    changes: dict[str, object] = {}
    for path in paths:
        if path in values:
            changes[path] = values[path]
        elif path == "signature_scheme":
            changes[path] = _scheme(message.signature_scheme, f"{field}.signature_scheme", violations)
        elif path == "source_type":
            changes[path] = _source_type(message.source_type, f"{field}.source_type", violations)
        elif path == "ordering":
            changes[path] = _ordering(message.ordering, f"{field}.ordering", violations)
        elif path == "retry_policy":
            changes[path] = _retry_policy(message.retry_policy, f"{field}.retry_policy", violations)
        elif path == "retry_policy.max_attempts":
            changes[path] = message.retry_policy.max_attempts or DEFAULT_RETRY.max_attempts
        elif path == "retry_policy.timeout_ms":
            changes[path] = message.retry_policy.timeout_ms or DEFAULT_RETRY.timeout_ms
        elif path == "retry_policy.backoff":
            changes[path] = _backoff(message.retry_policy.backoff, f"{field}.retry_policy.backoff", violations)
    if violations:
        raise Invalid(violations)
    return changes


_EXACT_INTEGER_LIMIT = 2**53


def payload_json(request: service_pb.PublishEventRequest) -> str:
    """The event's data as JSON text: payload_json as sent (the service checks it), or the Struct
    written out. Invalid when both are set, or when the Struct holds a number JSON cannot carry."""
    if request.payload_json:
        if request.HasField("payload"):
            raise Invalid.field(PAYLOAD_JSON_FIELD, "set payload or payload_json, not both")
        return request.payload_json
    return _struct_json(request.payload, PAYLOAD_FIELD)


def _struct_json(struct: struct_pb2.Struct, field: str) -> str:
    """A Struct written out as JSON text; Invalid when it holds a number JSON cannot carry."""
    violations: list[FieldViolation] = []
    data = {key: _json_value(value, f"{field}.{key}", violations) for key, value in struct.fields.items()}
    if violations:
        raise Invalid(violations)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _json_text(message: Any, field: str, prefix: str) -> str | None:
    """A JSON-valued field with a raw twin (`schema` / `schema_json`): the twin's text as sent, the
    Struct written out, or None when neither is set. Invalid when both are."""
    text: str = getattr(message, f"{field}_json")
    if text:
        if message.HasField(field):
            raise Invalid.field(f"{prefix}.{field}_json", f"set {field} or {field}_json, not both")
        return text
    if message.HasField(field):
        return _struct_json(getattr(message, field), f"{prefix}.{field}")
    return None


def _json_value(value: struct_pb2.Value, path: str, violations: list[FieldViolation]) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: _json_value(item, f"{path}.{key}", violations) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_json_value(item, f"{path}[{index}]", violations) for index, item in enumerate(value.list_value.values)]
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            violations.append(FieldViolation(path, f"{number} is not a finite number: JSON has no NaN or Infinity"))
            return None
        # A Struct holds every number as a double: integral ones go out as integers (`3`, not `3.0`).
        return int(number) if number.is_integer() and abs(number) < _EXACT_INTEGER_LIMIT else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind at all


def entry_to_proto(entry: LogEntry, cursors: LogCursors) -> service_pb.DeliveryLogEntry:
    message = service_pb.DeliveryLogEntry()
    fill_entry(message, entry, cursors)
    return message


def fill_entry(message: service_pb.DeliveryLogEntry, entry: LogEntry, cursors: LogCursors) -> None:
    """Sets `entry` on a message in place (a stream's response holds it, so nothing is copied). Once
    per entry of a log stream: fields at their proto default are left unset (the same message, for
    less work), and the status words go in as the str they are."""
    message.cursor = cursors.encode(entry.position)
    message.delivery_id = entry.delivery_id
    message.event_id = entry.event_id
    message.event_type = entry.event_type
    message.webhook_id = entry.webhook_id
    message.attempt = entry.attempt
    if entry.outcome is not None:
        message.outcome = entry.outcome
    if entry.http_status:
        message.http_status = entry.http_status
    message.latency_ms = entry.latency_ms
    if entry.error:
        message.error = entry.error
    if entry.response_excerpt:
        message.response_excerpt = entry.response_excerpt
    if entry.next_attempt_at is not None:
        set_timestamp(message.next_attempt_at, entry.next_attempt_at)
    set_timestamp(message.occurred_at, entry.occurred_at)
    message.kind = entry.kind
    if entry.reason:
        message.reason = entry.reason
    if entry.delivery_count:
        message.delivery_count = entry.delivery_count
    if entry.request_headers:
        message.request_headers.update(_header_map(entry.request_headers))
    if entry.response_headers:
        message.response_headers.update(_header_map(entry.response_headers))


def _header_map(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Headers as a map: a repeated name's values joined with ", " (RFC 9110's list form)."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def event_to_proto(event: StoredEvent) -> operations_pb.Event:
    return operations_pb.Event(
        id=event.id,
        event_type=event.event_type,
        payload_json=event.payload_json,
        created_at=timestamp(event.created_at),
        idempotency_key=event.idempotency_key or "",
        webhook_id=event.target_webhook_id or "",
    )


def delivery_to_proto(delivery: Delivery) -> service_pb.Delivery:
    return service_pb.Delivery(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        webhook_id=delivery.webhook_id,
        status=delivery.status.value,
        attempts=delivery.attempts,
        next_attempt_at=timestamp(delivery.next_attempt_at),
        last_outcome=delivery.last_outcome.value if delivery.last_outcome else "",
        last_http_status=delivery.last_http_status or 0,
        last_error=delivery.last_error or "",
        created_at=timestamp(delivery.created_at),
        updated_at=timestamp(delivery.updated_at),
        completed_at=timestamp(delivery.completed_at),
    )


def inbound_event_to_proto(event: InboundEvent, cursors: LogCursors) -> service_pb.InboundEvent:
    return service_pb.InboundEvent(
        cursor=cursors.encode(event.position),
        id=event.id,
        webhook_id=event.webhook_id,
        message_id=event.message_id or "",
        event_type=event.event_type,
        content_type=event.content_type,
        body=event.body,
        received_at=timestamp(event.received_at),
    )


def event_type_to_proto(entry: EventType) -> event_type_pb.EventType:
    """Schema and example go out twice: exactly as written in the `_json` twins, and as Structs."""
    spec = entry.spec
    message = event_type_pb.EventType(
        id=entry.id,
        tenant_id=entry.tenant_id,
        app_id=entry.app_id or "",
        name=spec.name,
        description=spec.description,
        schema_json=spec.schema_json or "",
        example_json=spec.example_json or "",
        deprecated=spec.deprecated,
        created_at=timestamp(entry.created_at),
        updated_at=timestamp(entry.updated_at),
        created_by=entry.created_by or "",
        updated_by=entry.updated_by or "",
        version=entry.version,
    )
    # An entry stored before STRUCT_MAX_DEPTH or UTF-8 text were enforced goes out as its text only: as
    # a Struct it would fail the whole reply (a List of the catalog too), and the caller could not find
    # it to fix.
    schema = _struct_value(spec.schema_json)
    if schema is not None:
        message.schema.update(schema)
    example = _struct_value(spec.example_json)
    if example is not None:
        message.example.update(example)
    return message


# Where a lone surrogate could come from in stored JSON text: without one, no value need be walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _struct_value(text: str | None) -> Any:
    """The parsed JSON a Struct can carry, or None: absent, too deep, or holding a lone surrogate."""
    if text is None or not json_text.nests_within(text, STRUCT_MAX_DEPTH):
        return None
    value = json.loads(text)
    if _SURROGATE_ESCAPE.search(text) and any(json_text.unpaired_surrogates(value)):
        return None
    return value


def expected_version(version: int, field: str) -> int | None:
    """A write's precondition (AIP-154's etag, as a version): None when unset (0); a negative one, which
    no write ever has, is the caller's mistake, not a race a re-read would settle (ABORTED)."""
    if version < 0:
        raise Invalid.field(field, "must not be negative (0 or unset: no precondition)")
    return version or None


def event_type_spec_from_proto(message: event_type_pb.EventType, *, field: str = "event_type") -> EventTypeSpec:
    """The caller-writable fields of a CreateEventType; output-only ones are ignored."""
    return EventTypeSpec(
        name=message.name,
        description=message.description,
        schema_json=_json_text(message, SCHEMA_FIELD, field),
        example_json=_json_text(message, EXAMPLE_FIELD, field),
        deprecated=message.deprecated,
    )


# An event type's update_mask paths, as the EventTypeSpec fields they change.
_EVENT_TYPE_SPEC_FIELDS = {
    "description": "description",
    SCHEMA_FIELD: "schema_json",
    EXAMPLE_FIELD: "example_json",
    "deprecated": "deprecated",
}


def event_type_mask_changes(
    message: event_type_pb.EventType, paths: list[str], *, field: str = "event_type"
) -> dict[str, object]:
    """New spec values for each (validated) mask path; a path naming an unset field clears it."""
    values: dict[str, object] = {
        "description": message.description,
        SCHEMA_FIELD: _json_text(message, SCHEMA_FIELD, field),
        EXAMPLE_FIELD: _json_text(message, EXAMPLE_FIELD, field),
        "deprecated": message.deprecated,
    }
    return {_EVENT_TYPE_SPEC_FIELDS[path]: values[path] for path in paths}


def implied_event_type_mask(message: event_type_pb.EventType) -> list[str]:
    """AIP-134 for event types: the populated writable fields (a twin counts as its field)."""
    present = {descriptor.name.removesuffix("_json") for descriptor, _ in message.ListFields()}
    return [path for path in _EVENT_TYPE_SPEC_FIELDS if path in present]
