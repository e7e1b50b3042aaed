"""Checks every request message gets before a servicer sees it.

PostgreSQL text cannot hold NUL, so a NUL in any string would reach the database as an error; it is
refused here, once for every RPC and field (ids, filters, keys), as INVALID_ARGUMENT naming the
field. JSON payloads (Struct/Value) are exempt: they are stored as bytes, where NUL is fine.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
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
                    yield f"{path}[{key!r}]"
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                yield from (f"{path}[{index}]" for index, item in enumerate(value) if "\x00" in item)
            elif "\x00" in value:
                yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            children = value if field.is_repeated else [value]
            for child in children:
                yield from _nul_paths(child, f"{path}.")


def check_request(message: Message) -> None:
    paths = list(_nul_paths(message, ""))
    if paths:
        raise Invalid([FieldViolation(path, "must not contain NUL characters") for path in paths])
