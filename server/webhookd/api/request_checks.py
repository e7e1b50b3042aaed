"""Checks every request message gets before a servicer sees it.

PostgreSQL text cannot hold NUL, so a NUL in any string would reach the database as an error; it is
refused here, once for every RPC and field (ids, filters, keys), as INVALID_ARGUMENT naming the
field. JSON payloads (Struct/Value) are exempt: they are stored as bytes, where NUL is fine.

A request's own string fields marked REQUIRED (the ids of Get, Delete, ...) are refused empty, as
AIP-203 asks: an id left out is the caller's mistake, not a resource that was not found.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

from google.api import field_behavior_pb2  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from webhookd.domain.errors import FieldViolation, Invalid

_OPAQUE_JSON = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})


def _nul_paths(message: Message, prefix: str) -> Iterator[str]:
    if message.DESCRIPTOR.full_name in _OPAQUE_JSON:
        return
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            for key, item in value.items():
                if "\x00" in str(key) or (isinstance(item, str) and "\x00" in item):
                    yield f"{path}[{json.dumps(key)}]"  # as validation names an entry: webhook.headers["X-Foo"]
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                yield from (f"{path}[{index}]" for index, item in enumerate(value) if "\x00" in item)
            elif "\x00" in value:
                yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            children = value if field.is_repeated else [value]
            for child in children:
                yield from _nul_paths(child, f"{path}.")


@functools.cache
def _required_strings(descriptor: Descriptor) -> tuple[str, ...]:
    return tuple(
        field.name
        for field in descriptor.fields
        if field.type == FieldDescriptor.TYPE_STRING
        and not field.is_repeated
        and field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    )


def check_request(message: Message) -> None:
    missing = [name for name in _required_strings(message.DESCRIPTOR) if not getattr(message, name)]
    violations = [FieldViolation(name, "is required") for name in missing]
    violations += [FieldViolation(path, "must not contain NUL characters") for path in _nul_paths(message, "")]
    if violations:
        raise Invalid(violations)
