"""Checks every request message gets before a servicer sees it.

PostgreSQL text cannot hold NUL, so a NUL in any string would reach the database as an error; it is
refused here, once for every RPC and field (ids, filters, keys), as INVALID_ARGUMENT naming the
field. JSON payloads (Struct/Value) are exempt: they are stored as bytes, where NUL is fine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from webhookd.api.handlers import write_all
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


class RequestCheckInterceptor(grpc.aio.ServerInterceptor):
    """Runs check_request on unary requests (every RPC here takes one request message)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def checked_unary(request: Any, context: Any) -> Any:
                check_request(request)
                return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                checked_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def checked_stream(request: Any, context: Any) -> Any:
                check_request(request)
                await write_all(inner_stream(request, context), context)

            return grpc.unary_stream_rpc_method_handler(
                checked_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler
