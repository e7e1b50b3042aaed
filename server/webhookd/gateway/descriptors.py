"""Protobuf descriptors the gateway is built from: services, message classes, field paths, comments.

The generated `_pb2` modules embed descriptors without source info, so doc comments come from a
FileDescriptorSet compiled with `--include_source_info` (see `load_comments`).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

from google.api import field_behavior_pb2  # type: ignore[import-untyped, unused-ignore]
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

# Where the generation step writes the descriptor set, inside the generated stubs package.
DESCRIPTOR_SET_PACKAGE = "cpod.integration.v1"
DESCRIPTOR_SET_NAME = "descriptor_set.binpb"

INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
INTEGER_TYPES = INT64_TYPES | frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})

# google/protobuf/wrappers.proto: JSON writes each as its `value` alone.
WRAPPER_TYPES = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
# Well-known types whose JSON is one string (or a wrapper's one value), so that a path variable or
# a query parameter can carry them; Struct, Value, ListValue, Any and Empty cannot.
ONE_STRING_WELL_KNOWN = (
    frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}) | WRAPPER_TYPES
)


def default_services() -> list[ServiceDescriptor]:
    """The services webhookd exposes over REST."""
    from cpod.integration.v1 import webhook_service_pb2

    return list(webhook_service_pb2.DESCRIPTOR.services_by_name.values())


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def rpc_path(method: MethodDescriptor) -> str:
    """The HTTP/2 path gRPC uses for a method: /package.Service/Method."""
    return f"/{method.containing_service.full_name}/{method.name}"


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def descriptor_of(message: Message) -> Descriptor:
    """`message.DESCRIPTOR`, typed: the stubs union the pure-Python and upb descriptor classes."""
    return cast(Descriptor, message.DESCRIPTOR)


def message_of(field: FieldDescriptor) -> Descriptor:
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_of(field: FieldDescriptor) -> EnumDescriptor:
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def field_behaviors(field: FieldDescriptor) -> frozenset[int]:
    """The google.api.field_behavior values on a field (OUTPUT_ONLY, REQUIRED, ...)."""
    return frozenset(int(b) for b in field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def is_output_only(field: FieldDescriptor) -> bool:
    return field_behavior_pb2.OUTPUT_ONLY in field_behaviors(field)


def is_stamp_or_nothing(field: FieldDescriptor) -> bool:
    """An output-only single string: the server stamps it or leaves it empty, and empty means it
    stamped nothing (no app scope, not deleted, never delivered), which the seed writes as null."""
    return (
        field.type == FieldDescriptor.TYPE_STRING
        and not is_repeated(field)
        and not field.has_presence
        and is_output_only(field)
    )


def is_well_known(descriptor: Descriptor) -> bool:
    """Well-known types have their own JSON forms (Timestamp → RFC 3339 string, ...)."""
    return descriptor.full_name.startswith("google.protobuf.")


def has_one_string_form(descriptor: Descriptor) -> bool:
    return descriptor.full_name in ONE_STRING_WELL_KNOWN


# A JSON-valued field `x` (Struct) may have a string twin `x_json` that carries the same value as
# JSON text, exactly as written (a Struct turns every number into a double). Over REST the pair is
# one field, `x`, whose JSON goes to the twin untouched.
RAW_JSON_SUFFIX = "_json"
JSON_VALUE_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})


def raw_json_twin(field: FieldDescriptor) -> FieldDescriptor | None:
    """The string field that carries `field`'s value as JSON text, when it has one."""
    container = field.containing_type
    if container is None or field.message_type is None or is_repeated(field):
        return None
    if field.message_type.full_name not in JSON_VALUE_TYPES:
        return None
    twin = container.fields_by_name.get(field.name + RAW_JSON_SUFFIX)
    if twin is None or twin.type != FieldDescriptor.TYPE_STRING or is_repeated(twin):
        return None
    return twin


def is_raw_json_twin(field: FieldDescriptor) -> bool:
    """A field REST does not show on its own: its JSON value travels as its sibling's."""
    container = field.containing_type
    if container is None or not field.name.endswith(RAW_JSON_SUFFIX):
        return False
    sibling = container.fields_by_name.get(field.name.removesuffix(RAW_JSON_SUFFIX))
    twin = raw_json_twin(sibling) if sibling is not None else None
    return twin is not None and twin.full_name == field.full_name


def field_by_json_or_proto_name(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    """Both spellings name a field on input: `retry_policy` and `retryPolicy`."""
    field = descriptor.fields_by_name.get(name)
    if field is not None:
        return field
    for candidate in descriptor.fields:
        if candidate.json_name == name:
            return candidate
    return None


def resolve_field_path(descriptor: Descriptor, path: str) -> list[FieldDescriptor] | None:
    """`webhook.id` → [Request.webhook, Webhook.id]; None when a segment does not exist or a
    segment other than the last is not a singular message."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for name in path.split("."):
        if current is None:
            return None
        field = field_by_json_or_proto_name(current, name)
        if field is None:
            return None
        fields.append(field)
        current = field.message_type if not is_repeated(field) else None
    return fields


def get_path(message: Message, fields: Sequence[FieldDescriptor]) -> object:
    current: object = message
    for field in fields:
        current = getattr(current, field.name)
    return current


def mutable_parent(message: Message, fields: Sequence[FieldDescriptor]) -> Message:
    """The message that holds the last field of a path, created on the way down."""
    current = message
    for field in fields[:-1]:
        current = getattr(current, field.name)
    return current


class Comments:
    """Leading doc comments by full name: messages, fields, enums, enum values, services, methods."""

    def __init__(self, by_name: Mapping[str, str] | None = None) -> None:
        self._by_name = dict(by_name or {})

    def of(self, full_name: str) -> str:
        return self._by_name.get(full_name, "")


def default_descriptor_set() -> Path | None:
    try:
        candidate = importlib.resources.files(DESCRIPTOR_SET_PACKAGE) / DESCRIPTOR_SET_NAME
    except ModuleNotFoundError:
        return None
    path = Path(str(candidate))
    return path if path.is_file() else None


def load_comments(descriptor_set: Path | str | None) -> Comments:
    """Read doc comments from a FileDescriptorSet built with `--include_source_info`.

    No file → no comments: the OpenAPI document is still complete, only without descriptions.
    """
    if descriptor_set is None:
        return Comments()
    files = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_set).read_bytes())
    by_name: dict[str, str] = {}
    for file in files.file:
        by_name.update(_file_comments(file))
    return Comments(by_name)


# Field numbers of FileDescriptorProto / DescriptorProto / ... used in SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


def _file_comments(file: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    names: dict[tuple[int, ...], str] = {}
    prefix = f"{file.package}." if file.package else ""
    for i, message in enumerate(file.message_type):
        _name_message(names, (_FILE_MESSAGE, i), prefix + message.name, message)
    for i, enum in enumerate(file.enum_type):
        _name_enum(names, (_FILE_ENUM, i), prefix + enum.name, enum)
    for i, service in enumerate(file.service):
        service_name = prefix + service.name
        names[(_FILE_SERVICE, i)] = service_name
        for j, method in enumerate(service.method):
            names[(_FILE_SERVICE, i, _SERVICE_METHOD, j)] = f"{service_name}.{method.name}"
    comments: dict[str, str] = {}
    for location in file.source_code_info.location:
        name = names.get(tuple(location.path))
        text = _clean_comment(location.leading_comments or location.trailing_comments)
        if name is not None and text:
            comments[name] = text
    return comments


def _name_message(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    full_name: str,
    message: descriptor_pb2.DescriptorProto,
) -> None:
    names[path] = full_name
    for i, field in enumerate(message.field):
        names[(*path, _MESSAGE_FIELD, i)] = f"{full_name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        _name_message(names, (*path, _MESSAGE_NESTED, i), f"{full_name}.{nested.name}", nested)
    for i, enum in enumerate(message.enum_type):
        _name_enum(names, (*path, _MESSAGE_ENUM, i), f"{full_name}.{enum.name}", enum)


def _name_enum(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    full_name: str,
    enum: descriptor_pb2.EnumDescriptorProto,
) -> None:
    # Values are keyed under the enum (`pkg.Direction.DIRECTION_INBOUND`), not protobuf's sibling
    # scoping, so a lookup needs only the enum's full name.
    names[path] = full_name
    for i, value in enumerate(enum.value):
        names[(*path, _ENUM_VALUE, i)] = f"{full_name}.{value.name}"


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()
