"""Proto messages ↔ the JSON the Playground documents.

Output is what `json_format.MessageToDict(preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)` writes (well-known types are written by it), except:
- every field is present: an unset message, optional or oneof field is `null` (the seed's "null
  otherwise"), and so is an output-only string the server left empty (`deleted_by`, `app_id`:
  descriptors.is_stamp_or_nothing), so a resource always has the same keys;
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

import base64
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from webhookd.domain.errors import FieldViolation
from webhookd.gateway.descriptors import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    descriptor_of,
    enum_of,
    field_by_json_or_proto_name,
    is_map,
    is_raw_json_twin,
    is_repeated,
    is_stamp_or_nothing,
    is_well_known,
    message_of,
    raw_json_twin,
)

# Messages whose JSON keys are camelCase because the published schema shows them that way.
CAMEL_CASE_MESSAGES = frozenset({"cpod.integration.v1.RetryPolicy"})

_INT64_WRAPPERS = frozenset({"google.protobuf.Int64Value", "google.protobuf.UInt64Value"})
_ONE_STRING_FORMS = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"})


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
    shaped: dict[str, Any] = _message_json(message)
    return shaped


# Reads one field of a message as JSON.
_Reader = Callable[[Any], Any]


def _message_json(message: Any) -> Any:
    descriptor = descriptor_of(message)
    if is_well_known(descriptor):
        return _well_known_json(message)
    return {key: read(message) for key, read in _readers(descriptor)}


def _well_known_json(message: Any) -> Any:
    """json_format's canonical forms (RFC 3339 timestamps, "3.5s", ...), 64-bit wrappers as numbers."""
    name = descriptor_of(message).full_name
    if name in _ONE_STRING_FORMS:
        return message.ToJsonString()
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    if name in _INT64_WRAPPERS and isinstance(data, str):
        return int(data)
    return data


@functools.cache
def _readers(descriptor: Descriptor) -> tuple[tuple[str, _Reader], ...]:
    """Each output key of `descriptor` with what reads it: worked out once per message type (a
    response is shaped on every REST call, and walking the descriptor each time cost 190 us for a
    Webhook, a fifth of the call)."""
    return tuple((json_key(field), _field_reader(field)) for field in descriptor.fields if not is_raw_json_twin(field))


def _field_reader(field: FieldDescriptor) -> _Reader:
    twin = raw_json_twin(field)
    if twin is not None:
        twin_name, own = twin.name, _field_reader_of_value(field)

        def pair(message: Any) -> Any:
            text = getattr(message, twin_name)
            return json.loads(text) if text else own(message)

        return pair
    return _field_reader_of_value(field)


def _field_reader_of_value(field: FieldDescriptor) -> _Reader:
    name = field.name
    if is_map(field):
        value_of = _value_json(message_of(field).fields_by_name["value"])
        key_of = _map_key_json(message_of(field).fields_by_name["key"])
        return lambda message: {key_of(key): value_of(item) for key, item in getattr(message, name).items()}
    value_of = _value_json(field)
    if is_repeated(field):
        return lambda message: [value_of(item) for item in getattr(message, name)]
    if field.has_presence:  # an unset message, optional or oneof field is null
        return lambda message: value_of(getattr(message, name)) if message.HasField(name) else None
    if is_stamp_or_nothing(field):
        return lambda message: getattr(message, name) or None
    return lambda message: value_of(getattr(message, name))


def _map_key_json(field: FieldDescriptor) -> Callable[[Any], str]:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


def _value_json(field: FieldDescriptor) -> _Reader:
    """One value of `field` as JSON: protobuf's JSON mapping, with the changes this module's
    docstring lists (enum words, 64-bit integers as numbers)."""
    if field.message_type is not None:
        return _message_json
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = enum_of(field)
        if enum.full_name == "google.protobuf.NullValue":
            return lambda value: None
        words = {value.number: enum_word(enum, value.number) for value in enum.values}
        return lambda value: words.get(value, value)  # an open enum's unknown number stays a number
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda value: base64.b64encode(value).decode("ascii")
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        shortest = field.type == FieldDescriptor.TYPE_FLOAT
        return lambda value: _float_json(value, shortest=shortest)
    return _same


def _same(value: Any) -> Any:
    return value


def _float_json(value: float, *, shortest: bool) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return type_checkers.ToShortestFloat(value) if shortest else value


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
        # A known field is named as the service names it, whichever spelling was sent.
        canonical_path = f"{path}.{field.name}" if path else field.name
        normalized[field.name] = _normalize_field(field, value, canonical_path, out)
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
    mismatch = _scalar_mismatch(field, value)
    if mismatch is not None:
        out.append(FieldViolation(path, mismatch))
    return value


# proto3 JSON: integers may be strings of digits (64-bit ones are, in canonical output), and
# doubles may be numeric strings or the three spellings of what JSON numbers cannot hold. ASCII
# digits only, for query parameters too (transcode.py): int() also reads `1_0`, ` 5`, `+5` and `٣`.
INTEGER_TEXT = re.compile(r"-?[0-9]+")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


def _scalar_mismatch(field: FieldDescriptor, value: Any) -> str | None:
    """Why `value` cannot be this scalar field's JSON, in the caller's terms; None when it can.
    Checked before json_format, which stops at the first wrong value, names it by proto message
    types and words it as Python does."""
    kind = field.type
    if kind in INTEGER_TYPES and isinstance(value, float) and not value.is_integer():
        return "expected an integer, not a number with a fraction"
    if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        fits, wanted = isinstance(value, str), "a string"
    elif kind == FieldDescriptor.TYPE_BOOL:
        fits, wanted = isinstance(value, bool), "true or false"
    elif kind == FieldDescriptor.TYPE_ENUM:
        fits, wanted = _is_integer(value), f"one of: {', '.join(enum_words(enum_of(field)))}"
    elif kind in INTEGER_TYPES:
        fits = _is_number(value) or (isinstance(value, str) and INTEGER_TEXT.fullmatch(value) is not None)
        wanted = "an integer"
    elif kind in FLOAT_TYPES:
        fits, wanted = _is_number(value) or (isinstance(value, str) and _is_float_text(value)), "a number"
    else:
        return None
    return None if fits else f"expected {wanted}, not {_json_kind(value)}"


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_float_text(text: str) -> bool:
    if text in _FLOAT_WORDS:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


_PARSE_STEP = re.compile(r"Failed to parse (\S+) field: ")
# Some reasons end by naming the whole path, from the message type parsed: " at Webhook.created_at".
_PARSE_AT = re.compile(r"\s+at [A-Za-z_][A-Za-z0-9_]*((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\.*$")


def _violation_from_parse_error(message: str, path: str) -> FieldViolation:
    """json_format nests "Failed to parse a field: Failed to parse b field: reason"; the chain is
    the field path and the tail is the reason. A tail ending " at Type.a.b" names the full path
    itself (the chain may stop short of it), by a type name the caller never sees."""
    names: list[str] = []
    rest = message
    while (step := _PARSE_STEP.match(rest)) is not None:
        names.append(step.group(1))
        rest = rest[step.end() :]
    at = _PARSE_AT.search(rest)
    if at is not None:
        names = at.group(1).lstrip(".").split(".")
        rest = rest[: at.start()]
    field = ".".join([p for p in (path, *names) if p])
    return FieldViolation(field, rest.strip().rstrip(".") or message)


# ----------------------------------------------------------------------------------- field masks


# A path segment as FieldMask's JSON spells it (lowerCamelCase) or as the proto does (snake_case).
# A path with any other segment is passed on as sent: folding case read `Name` as `name`, and
# quoted `NAME` back to its caller as `n_a_m_e`.
_SEGMENT = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*|[a-z][a-z0-9_]*")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _proto_path(path: str) -> str:
    parts = path.split(".")
    if not all(_SEGMENT.fullmatch(part) for part in parts):
        return path  # the service names it as the caller wrote it
    return ".".join(_snake(part) for part in parts)


def field_mask_paths(text: str) -> list[str]:
    """`name,retryPolicy.maxAttempts` or `name,retry_policy.max_attempts` → proto paths."""
    return [_proto_path(path.strip()) for path in text.split(",") if path.strip()]


def field_mask_to_json(text: str) -> str:
    """The camelCase form ParseDict requires, from either spelling."""
    paths = field_mask_paths(text)
    return ",".join(
        ".".join(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), p) for p in path.split(".")) for path in paths
    )
