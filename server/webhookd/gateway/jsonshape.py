"""Proto messages ↔ the JSON the Playground documents.

Output starts from `json_format.MessageToDict(preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)` and then:
- every field is present: an unset message, optional or oneof field is `null` (the seed's "null
  otherwise"), so a resource always has the same keys;
- enum values are the lowercase word without the type prefix (`DIRECTION_OUTBOUND` → "outbound");
  the `*_UNSPECIFIED` zero value is `null`;
- 64-bit integers are JSON numbers, not proto3-JSON strings (the seed types `version` as number;
  counters never approach 2^53);
- the fields of messages in CAMEL_CASE_MESSAGES use their json_name (`retry_policy` renders as
  `{"maxAttempts", "backoff", "timeoutMs"}`); every other field keeps its proto (snake_case) name;
- a raw-JSON twin (`payload_json` beside `payload`, descriptors.raw_json_twin) is not a field of its
  own: the pair is `payload`, whose JSON the transcoder hands to the twin as written; on output the
  pair shows the twin's text when it is set (numbers as written, where the Struct holds doubles).

Input accepts both spellings of every field, enum words (lowercase, any case) and full enum names,
and reports every unknown field, bad enum word or wrong type as a field violation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from webhookd.domain.errors import FieldViolation
from webhookd.gateway.descriptors import (
    INT64_TYPES,
    descriptor_of,
    enum_of,
    field_by_json_or_proto_name,
    is_map,
    is_raw_json_twin,
    is_repeated,
    is_well_known,
    message_of,
    raw_json_twin,
)

# Messages whose JSON keys are camelCase because the published schema shows them that way.
CAMEL_CASE_MESSAGES = frozenset({"cpod.integration.v1.RetryPolicy"})

_INT64_WRAPPERS = frozenset({"google.protobuf.Int64Value", "google.protobuf.UInt64Value"})


class JsonInputError(ValueError):
    """The JSON cannot become the message; one violation per offending field."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field or '(body)'}: {v.description}" for v in violations))
        self.violations = violations


# ---------------------------------------------------------------------------------------- names


def json_key(field: FieldDescriptor) -> str:
    """The key a field has in the gateway's JSON."""
    container = field.containing_type
    return field.json_name if container is not None and container.full_name in CAMEL_CASE_MESSAGES else field.name


def enum_prefix(enum: EnumDescriptor) -> str:
    """`SourceType` → `SOURCE_TYPE_`, when every value carries it (buf's ENUM_VALUE_PREFIX)."""
    prefix = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", enum.name).upper() + "_"
    return prefix if all(v.name.startswith(prefix) for v in enum.values) else ""


def is_unspecified(enum: EnumDescriptor, number: int) -> bool:
    value = enum.values_by_number.get(number)
    return number == 0 and value is not None and value.name.endswith("_UNSPECIFIED")


def enum_word(enum: EnumDescriptor, number: int) -> str | None:
    """The JSON word of an enum value: `outbound`; None for the unspecified zero value."""
    if is_unspecified(enum, number):
        return None
    value = enum.values_by_number.get(number)
    if value is None:
        return None
    return value.name.removeprefix(enum_prefix(enum)).lower()


def enum_words(enum: EnumDescriptor) -> list[str]:
    return [w for w in (enum_word(enum, v.number) for v in enum.values) if w is not None]


def enum_number(enum: EnumDescriptor, text: str) -> int | None:
    """`outbound`, `OUTBOUND` or `DIRECTION_OUTBOUND` → 1; None when it names no value."""
    wanted = text.strip().upper()
    prefix = enum_prefix(enum)
    for value in enum.values:
        if wanted in (value.name, value.name.removeprefix(prefix)):
            return int(value.number)
    return None


# --------------------------------------------------------------------------------------- output


def message_to_json(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    shaped: dict[str, Any] = _shape_message(descriptor_of(message), data)
    return shaped


def _shape_message(descriptor: Descriptor, data: Any) -> Any:
    if is_well_known(descriptor):
        # json_format already wrote the canonical form (RFC 3339 timestamps, "3.5s", ...).
        if descriptor.full_name in _INT64_WRAPPERS and isinstance(data, str):
            return int(data)
        return data
    return {
        json_key(f): _shape_field(f, data[f.name]) if f.name in data else None
        for f in descriptor.fields
        if not is_raw_json_twin(f)
    } | _raw_json_values(descriptor, data)


def _raw_json_values(descriptor: Descriptor, data: Mapping[str, Any]) -> dict[str, Any]:
    """Each raw-JSON pair whose twin carries text: its value read from that text."""
    values: dict[str, Any] = {}
    for field in descriptor.fields:
        twin = raw_json_twin(field)
        if twin is not None and data.get(twin.name):
            values[json_key(field)] = json.loads(data[twin.name])
    return values


def _shape_field(field: FieldDescriptor, value: Any) -> Any:
    if is_map(field):
        value_field = message_of(field).fields_by_name["value"]
        return {key: _shape_single(value_field, item) for key, item in value.items()}
    if is_repeated(field):
        return [_shape_single(field, item) for item in value]
    return _shape_single(field, value)


def _shape_single(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = enum_of(field)
        if enum.full_name == "google.protobuf.NullValue":
            return None
        if isinstance(value, str) and value in enum.values_by_name:
            return enum_word(enum, enum.values_by_name[value].number)
        return value  # an open enum's unknown number stays a number
    if field.type in INT64_TYPES and isinstance(value, str):
        return int(value)
    if field.message_type is not None:
        return _shape_message(field.message_type, value)
    return value


# ---------------------------------------------------------------------------------------- input


def json_to_message(data: Any, message: Message, *, path: str = "") -> None:
    """Merge JSON into `message`; `path` prefixes violation field names (e.g. "webhook")."""
    violations: list[FieldViolation] = []
    normalized = _normalize_message(descriptor_of(message), data, path, violations)
    if violations:
        raise JsonInputError(violations)
    try:
        json_format.ParseDict(normalized, message, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise JsonInputError([_violation_from_parse_error(str(error), path)]) from error


def _normalize_message(descriptor: Descriptor, data: Any, path: str, out: list[FieldViolation]) -> Any:
    if is_well_known(descriptor):
        if descriptor.full_name == "google.protobuf.FieldMask" and isinstance(data, str):
            return field_mask_to_json(data)
        return data  # ParseDict knows the canonical forms and reports their errors
    if data is None:
        return None
    if not isinstance(data, Mapping):
        out.append(FieldViolation(path, f"expected a JSON object for {descriptor.name}"))
        return data
    normalized: dict[str, Any] = {}
    for key, value in data.items():
        field_path = f"{path}.{key}" if path else str(key)
        field = field_by_json_or_proto_name(descriptor, str(key))
        if field is None or is_raw_json_twin(field):
            out.append(FieldViolation(field_path, f"unknown field {key!r} in {descriptor.name}"))
            continue
        if field.name in normalized:
            out.append(FieldViolation(field_path, f"{field.name} is given twice (both spellings)"))
            continue
        normalized[field.name] = _normalize_field(field, value, field_path, out)
    return normalized


def _normalize_field(field: FieldDescriptor, value: Any, path: str, out: list[FieldViolation]) -> Any:
    if value is None:
        return None
    if is_map(field):
        if not isinstance(value, Mapping):
            out.append(FieldViolation(path, "expected a JSON object"))
            return value
        value_field = message_of(field).fields_by_name["value"]
        return {k: _normalize_single(value_field, v, f"{path}.{k}", out) for k, v in value.items()}
    if is_repeated(field):
        if not isinstance(value, list):
            out.append(FieldViolation(path, "expected a JSON array"))
            return value
        return [_normalize_single(field, v, f"{path}[{i}]", out) for i, v in enumerate(value)]
    return _normalize_single(field, value, path, out)


def _normalize_single(field: FieldDescriptor, value: Any, path: str, out: list[FieldViolation]) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        enum = enum_of(field)
        number = enum_number(enum, value)
        if number is None:
            out.append(FieldViolation(path, f"{value!r} is not one of: {', '.join(enum_words(enum))}"))
            return value
        return enum.values_by_number[number].name
    if field.message_type is not None:
        return _normalize_message(field.message_type, value, path, out)
    return value


_PARSE_STEP = re.compile(r"Failed to parse (\S+) field: ")


def _violation_from_parse_error(message: str, path: str) -> FieldViolation:
    """json_format nests "Failed to parse a field: Failed to parse b field: reason"; the chain is
    the field path and the tail is the reason."""
    names: list[str] = []
    rest = message
    while (step := _PARSE_STEP.match(rest)) is not None:
        names.append(step.group(1))
        rest = rest[step.end() :]
    field = ".".join([p for p in (path, *names) if p])
    return FieldViolation(field, rest.strip().rstrip(".") or message)


# ----------------------------------------------------------------------------------- field masks


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def field_mask_paths(text: str) -> list[str]:
    """`name,retryPolicy.maxAttempts` or `name,retry_policy.max_attempts` → proto paths."""
    return [".".join(_snake(part) for part in path.strip().split(".")) for path in text.split(",") if path.strip()]


def field_mask_to_json(text: str) -> str:
    """The camelCase form ParseDict requires, from either spelling."""
    paths = field_mask_paths(text)
    return ",".join(
        ".".join(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), p) for p in path.split(".")) for path in paths
    )
