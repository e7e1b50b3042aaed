"""Generic gRPC calls built from method descriptors, and the metadata the gateway forwards.

No generated stub is used: a method added to the protos is callable as soon as it is in the
descriptor, which is what lets new RPCs appear in REST without gateway changes.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from starlette.datastructures import Headers

from webhookd.auth.tokens import MAX_AUTHORIZATION_LENGTH, check_authorization_length, single_authorization
from webhookd.domain.errors import Unauthenticated
from webhookd.gateway.descriptors import message_class, rpc_path
from webhookd.observability.request_ids import REQUEST_ID_HEADER, settle_request_id

# The request headers the gRPC service reads, passed on as metadata of the same name.
_FORWARDED_HEADERS = ("authorization", "cache-control")
# gRPC metadata values must be printable ASCII; anything else would fail the call locally.
_PRINTABLE = re.compile(rf"[\x20-\x7e]{{1,{MAX_AUTHORIZATION_LENGTH}}}")


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class Channel(Protocol):
    """What the gateway calls methods through: a grpc.aio.Channel, or api/local.py's LocalChannel."""

    def unary_unary(self, method: str, **kwargs: Any) -> Any: ...

    def unary_stream(self, method: str, **kwargs: Any) -> Any: ...


class Invoker:
    """Caches one multi-callable per method on a shared channel."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._callables: dict[str, Any] = {}

    def unary(self, method: MethodDescriptor) -> Any:
        return self._get(method, self._channel.unary_unary)

    def server_stream(self, method: MethodDescriptor) -> Any:
        return self._get(method, self._channel.unary_stream)

    def _get(self, method: MethodDescriptor, factory: Any) -> Any:
        if method.full_name not in self._callables:
            self._callables[method.full_name] = factory(
                rpc_path(method),
                request_serializer=_serialize,
                response_deserializer=message_class(method.output_type).FromString,
            )
        return self._callables[method.full_name]


def request_id(headers: Headers) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one."""
    return settle_request_id(headers.get(REQUEST_ID_HEADER))


def call_metadata(headers: Headers, request_id: str) -> tuple[tuple[str, str], ...]:
    """`authorization` is passed through untouched (the gRPC server verifies the token), and
    `cache-control` so that `no-cache` asks for a fresh read. An authorization header that cannot be
    passed on is Unauthenticated saying why, rather than dropped (the call would say it is missing)."""
    authorization = single_authorization(headers.getlist("authorization"))
    if authorization:
        check_authorization_length(authorization)
        if not _PRINTABLE.fullmatch(authorization):
            raise Unauthenticated("authorization must be printable ASCII")
    metadata = [(REQUEST_ID_HEADER, request_id)]
    for forwarded in _FORWARDED_HEADERS:
        value = headers.get(forwarded)
        if value is not None and _PRINTABLE.fullmatch(value):
            metadata.append((forwarded, value))
    return tuple(metadata)
