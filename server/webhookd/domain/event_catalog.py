"""The event type catalog: what a tenant (or an app) says its event types are.

An entry names one event type (`rfp.created`) once per scope: a person's calls write the tenant's
catalog (no app), an integration key's its app's. A publish is checked against the entry of its own
scope, so an app's events follow the app's schemas and a person's the tenant's. A type without an
entry, or whose entry has no schema, is published unchecked, as before the catalog existed.

`schema` is a JSON Schema (2020-12) and `example` an event's data that must validate against it; both
are kept as the JSON text the caller wrote. Entries are deleted for good (no soft delete): an entry
carries no history, and its name is free again at once.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webhookd.domain import event_schemas, event_types, json_text
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.webhooks import REPLACE_ALL

EVENT_TYPE_PREFIX = "etp_"
DESCRIPTION_MAX = 2000
# Schemas and examples are documents about events, not events: kept well under a payload's size.
SCHEMA_MAX_BYTES = 64 * 1024
EXAMPLE_MAX_BYTES = 64 * 1024
# Schema and example also go out as protobuf Structs, three messages deep for each level of JSON: past
# about 33 levels a reply exceeds the 100 nested messages protobuf decodes (INTERNAL, on every Get and
# List of the entry). Deeper documents are refused when written.
STRUCT_MAX_DEPTH = 32
SCHEMA_FIELD = "schema"
EXAMPLE_FIELD = "example"

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")

MUTABLE_FIELDS = frozenset({"description", "schema", "example", "deprecated"})
IMMUTABLE_FIELDS = frozenset({"name"})
OUTPUT_ONLY_FIELDS = frozenset({"id", "tenant_id", "app_id", "created_at", "updated_at", "created_by", "updated_by"})


@dataclass(frozen=True)
class EventTypeSpec:
    """What a caller writes: Create takes it whole, Update changes the masked fields."""

    name: str
    description: str = ""
    schema_json: str | None = None  # None: no schema, payloads are not checked
    example_json: str | None = None
    deprecated: bool = False


@dataclass(frozen=True)
class EventType:
    id: str
    tenant_id: str
    app_id: str | None
    spec: EventTypeSpec
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None
    version: int


@dataclass(frozen=True)
class EventTypePage:
    event_types: list[EventType]
    next_page_token: str


class PayloadMismatch(Invalid):
    """A published payload does not match its event type's schema: one violation per mismatch."""

    reason = "PAYLOAD_SCHEMA_MISMATCH"


def validate_event_type_spec(spec: EventTypeSpec, *, prefix: str = "event_type") -> EventTypeSpec:
    """The spec normalised (description trimmed), or Invalid listing every violation: the name is an
    event type, the schema a 2020-12 JSON Schema, the example JSON that the schema accepts."""
    violations: list[FieldViolation] = []
    problem = event_types.validate_event_type(spec.name)
    if problem is not None:
        violations.append(FieldViolation(f"{prefix}.name", problem))
    description = spec.description.strip()
    if len(description) > DESCRIPTION_MAX:
        violations.append(FieldViolation(f"{prefix}.description", f"must be at most {DESCRIPTION_MAX} characters"))
    schema = _json_field(spec.schema_json, f"{prefix}.{SCHEMA_FIELD}", SCHEMA_MAX_BYTES, violations)
    example = _json_field(spec.example_json, f"{prefix}.{EXAMPLE_FIELD}", EXAMPLE_MAX_BYTES, violations)
    if schema is not None:
        violations += event_schemas.schema_violations(schema, f"{prefix}.{SCHEMA_FIELD}")
    if example is not None and not isinstance(example, dict):
        violations.append(FieldViolation(f"{prefix}.{EXAMPLE_FIELD}", "must be a JSON object (an event's data)"))
    elif example is not None and schema is not None and not violations:
        violations += _example_violations(schema, example, len((spec.example_json or "").encode()), prefix)
    if violations:
        raise Invalid(violations)
    return dataclasses.replace(spec, description=description)


def validate_event_type_mask(paths: list[str], *, prefix: str = "update_mask") -> list[str]:
    """The mask's paths (snake_case, no duplicates), or Invalid naming each one that cannot be updated.
    `*` alone is every updatable field (REPLACE_ALL)."""
    violations: list[FieldViolation] = []
    result: list[str] = []
    for index, raw in enumerate(paths):
        if raw.strip() == REPLACE_ALL:  # AIP-134's full replacement, as UpdateWebhook takes it
            if len(paths) == 1:
                return sorted(MUTABLE_FIELDS)
            violations.append(FieldViolation(f"{prefix}.paths[{index}]", "'*' replaces the whole entry: give it alone"))
            continue
        path = _CAMEL.sub(lambda match: "_" + match.group(1).lower(), raw.strip())
        if path in MUTABLE_FIELDS:
            if path not in result:
                result.append(path)
            continue
        if path in IMMUTABLE_FIELDS:
            problem = "is immutable: it identifies the entry (create another one for another name)"
        elif path in OUTPUT_ONLY_FIELDS:
            problem = "is output only: the server sets it"
        elif path == "version":
            problem = "is not updatable: it is the precondition (send the version you read as event_type.version)"
        else:
            problem = "names no such field; updatable fields: " + ", ".join(sorted(MUTABLE_FIELDS))
        violations.append(FieldViolation(f"{prefix}.paths[{index}]", f"{raw!r} {problem}"))
    if violations:
        raise Invalid(violations)
    return result


def _example_violations(schema: dict[str, Any], example: Any, example_bytes: int, prefix: str) -> list[FieldViolation]:
    try:
        mismatches = event_schemas.compile_schema(schema).mismatches(example, example_bytes)
    except event_schemas.Unevaluable as error:  # a loop only this example's values lead into
        return [FieldViolation(f"{prefix}.{SCHEMA_FIELD}", f"cannot be applied to the example: {error}")]
    except event_schemas.TooCostly as error:  # so would every publish like it be refused: say so now
        return [FieldViolation(f"{prefix}.{EXAMPLE_FIELD}", f"cannot be checked against the schema: {error}")]
    return [
        FieldViolation(f"{prefix}.{EXAMPLE_FIELD}", f"does not match the schema: {mismatch}") for mismatch in mismatches
    ]


def _json_field(text: str | None, field: str, max_bytes: int, violations: list[FieldViolation]) -> Any:
    """The parsed value of optional JSON text, or None (absent, or wrong: then its violation is added)."""
    if text is None:
        return None
    if len(text.encode()) > max_bytes:
        violations.append(FieldViolation(field, f"must be at most {max_bytes} bytes of JSON"))
        return None
    try:
        value = event_schemas.parse_json(text, field, max_depth=STRUCT_MAX_DEPTH)
    except Invalid as error:
        violations += error.violations
        return None
    # It goes out as a Struct too (api/convert.py), whose strings must be UTF-8.
    unencodable = [FieldViolation(path, what) for path, what in json_text.unpaired_surrogates(value, field)]
    violations += unencodable
    return None if unencodable else value
