"""Generated input (hypothesis) at every RPC and every REST route: protobuf values of every field's type and
then some (int64 extremes, unknown enum numbers, out-of-range timestamps, NUL and 10,000-character strings),
JSON bodies of the wrong shapes, and odd headers. Whatever the input, the answer is never INTERNAL (or
UNKNOWN, DATA_LOSS), never a 5xx, never a hang or a dropped connection.

Event payloads stay finite and shallow here (no NaN, Infinity, 1e400 or deep nesting): how payload JSON is
handled is covered with that work. Generated URLs reach only loopback: a URL-shaped value is replaced by a
closed loopback port, so no test ever sends traffic off this machine.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import grpc
import httpx
import hypothesis
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from harness import record
from receivers import closed_port_url
from support import JWT_SECRET, new_tenant_id
from webhookd.auth.tokens import mint
from webhookd.domain.inbound import INBOUND_PATH_PREFIX
from webhookd.gateway.descriptors import default_services, is_map, is_repeated, message_class, rpc_path
from webhookd.gateway.routes import Binding, bindings_for_services

pytestmark = pytest.mark.slow
EXAMPLES_PER_TARGET = 12
CALL_TIMEOUT_SECONDS = 15.0
SERVER_FAULTS = {"INTERNAL", "UNKNOWN", "DATA_LOSS"}
LOOPBACK_URL = closed_port_url()
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES_PER_TARGET,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# -- values --------------------------------------------------------------------------------------------

ODD_STRINGS = st.sampled_from(
    ["", "\x00", "a\x00b", "x" * 10_000, "../../etc", "whk_01J00000000000000000000000", "ünïcødé ✓", "%00", " "]
)
TEXT = st.one_of(st.text(max_size=40), ODD_STRINGS)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-(2**63), 2**63 - 1, 2**62, -1, 0]))
UINT32, UINT64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
# JSON a payload may hold: finite numbers, a few levels deep.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | FINITE | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Mostly with a valid token: what is behind the authentication is what most needs the traffic.
AUTHORIZED = st.sampled_from([True, True, True, False])
URLS = st.one_of(st.just(LOOPBACK_URL), st.sampled_from(["", "not a url", "http://example.com:80:80/", "https://[::1"]))

SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: TEXT,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=40),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_DOUBLE: FINITE,
    FieldDescriptor.TYPE_FLOAT: st.floats(-1e30, 1e30, allow_nan=False, width=32),
    FieldDescriptor.TYPE_ENUM: INT32,  # proto3 enums keep unknown numbers: the server must refuse them
}


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.name == "url":
        return URLS
    if field.name == "follow":
        return st.just(False)  # a followed stream never ends; following is not what this test is about
    if field.message_type is None:
        return SCALARS[field.type]
    return messages(field.message_type, depth + 1)


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    message = message_class(descriptor)()
    name = descriptor.full_name
    if name == "google.protobuf.Struct":
        message.update(draw(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4)))  # type: ignore[attr-defined]
        return message
    if name in ("google.protobuf.Value", "google.protobuf.ListValue"):
        return message
    if depth > 3:
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if is_map(field):
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            entries = draw(st.dictionaries(SCALARS[key.type], field_values(value, depth), max_size=3))
            target = getattr(message, field.name)
            for entry_key, entry_value in entries.items():
                if value.message_type is None:
                    target[entry_key] = entry_value
                else:
                    target[entry_key].CopyFrom(entry_value)
        elif is_repeated(field):
            items = draw(st.lists(field_values(field, depth), max_size=3))
            target = getattr(message, field.name)
            for item in items:
                if field.message_type is None:
                    target.append(item)
                else:
                    target.add().CopyFrom(item)
        elif field.message_type is not None:
            getattr(message, field.name).CopyFrom(draw(field_values(field, depth)))
        else:
            setattr(message, field.name, draw(field_values(field, depth)))
    return message


def methods() -> list[MethodDescriptor]:
    return [method for service in default_services() for method in service.methods]


# -- gRPC ------------------------------------------------------------------------------------------------


def rpc_examples(channel: grpc.Channel, method: MethodDescriptor, token: str, seen: dict[str, int]) -> Any:
    """The hypothesis test of one RPC."""
    input_class, output_class = message_class(method.input_type), message_class(method.output_type)
    make = channel.unary_stream if method.server_streaming else channel.unary_unary
    call = make(
        rpc_path(method),
        request_serializer=input_class.SerializeToString,
        response_deserializer=output_class.FromString,
    )
    odd_metadata = st.one_of(
        st.tuples(st.just("authorization"), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E))),
        st.tuples(st.just("cache-control"), st.sampled_from(["no-cache", "max-age=0"])),
        st.tuples(st.just("x-request-id"), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E))),
    )

    @SETTINGS
    @hypothesis.given(
        request=messages(method.input_type), extra=st.lists(odd_metadata, max_size=2), authorized=AUTHORIZED
    )
    def examples(request: Message, extra: list[tuple[str, str]], authorized: bool) -> None:
        # The first authorization value is the one read: a valid token most of the time.
        metadata = [("authorization", f"Bearer {token}")] if authorized else []
        try:
            result = call(request, metadata=[*metadata, *extra], timeout=CALL_TIMEOUT_SECONDS)
            if method.server_streaming:
                list(result)
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        seen[code] = seen.get(code, 0) + 1
        assert code not in SERVER_FAULTS | {"DEADLINE_EXCEEDED"}, f"{method.name}: {code} for {request}"

    return examples


def throw_at_rpcs(target: str, token: str) -> dict[str, int]:
    """Runs every RPC's examples (blocking: call it in a thread); returns the codes seen."""
    seen: dict[str, int] = {}
    with grpc.insecure_channel(target) as channel:
        for method in methods():
            rpc_examples(channel, method, token, seen)()
    return seen


async def test_generated_messages_at_every_rpc_never_get_a_server_fault(channel, service) -> None:
    token = mint(JWT_SECRET, tenant_id=new_tenant_id(), subject="person_generated")

    seen = await asyncio.to_thread(throw_at_rpcs, service.grpc_target, token)

    record("generated input at every RPC", rpcs=len(methods()), codes=seen)


# -- REST ------------------------------------------------------------------------------------------------


def loopback_only(value: Any) -> Any:
    """The JSON with every URL-looking string under a `url` key replaced by the loopback one."""
    if isinstance(value, dict):
        return {
            key: LOOPBACK_URL if key == "url" and isinstance(item, str) and "://" in item else loopback_only(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [loopback_only(item) for item in value]
    return value


def body_values(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """JSON for a message: its own field names with values of the right or the wrong type, and strays."""
    if depth > 3 or descriptor.full_name.startswith("google.protobuf."):
        return JSON_VALUES
    fields = {}
    for field in descriptor.fields:
        right = body_values(field.message_type, depth + 1) if field.message_type is not None else JSON_VALUES
        fields[field.name] = st.one_of(right, JSON_VALUES)
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3),
        JSON_VALUES,
    )


HEADERS = st.dictionaries(
    st.sampled_from(["If-Match", "Idempotency-Key", "Last-Event-ID", "Cache-Control", "Content-Type", "X-Request-Id"]),
    st.one_of(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
        st.sampled_from(['"1"', '"9223372036854775808"', "9" * 5000, "application/json", "text/plain", "*"]),
    ),
    max_size=3,
)


def path_for(binding: Binding, values: list[str]) -> str:
    parts: list[str] = []
    variables = iter(values)
    for segment in binding.template.segments:
        parts.append(segment if isinstance(segment, str) else urllib.parse.quote(next(variables), safe=""))
    return "/" + "/".join(parts) + (f":{binding.template.verb}" if binding.template.verb else "")


def body_descriptor(binding: Binding) -> Descriptor:
    """What the HTTP body is: the whole request (`*`) or one of its fields (`webhook` for a create)."""
    if binding.body == "*":
        return binding.method.input_type
    field = binding.method.input_type.fields_by_name[binding.body]
    return field.message_type if field.message_type is not None else binding.method.input_type


def route_examples(http: httpx.Client, binding: Binding, token: str, seen: dict[int, int]) -> Any:
    """The hypothesis test of one REST route."""
    query_names = [field.name for field in binding.method.input_type.fields] + ["unknown", "page_size"]
    variables = len(binding.template.variables)

    @SETTINGS
    @hypothesis.given(
        path_values=st.lists(TEXT.filter(bool), min_size=variables, max_size=variables),
        query=st.dictionaries(st.sampled_from(query_names), TEXT, max_size=3),
        body=body_values(body_descriptor(binding)) if binding.body else st.none(),
        headers=HEADERS,
        authorized=AUTHORIZED,
    )
    def examples(
        path_values: list[str], query: dict[str, str], body: Any, headers: dict[str, str], authorized: bool
    ) -> None:
        if binding.server_streaming:
            query["follow"] = "false"
        sent = {"Content-Type": "application/json", **headers}
        sent["Authorization"] = f"Bearer {token}" if authorized else "Bearer nope"
        content = json.dumps(loopback_only(body)).encode() if body is not None else b""
        path = path_for(binding, path_values)
        response = http.request(binding.http_method, path, params=query, content=content, headers=sent)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{binding.http_method} {binding.template.text}: {response.text}"

    return examples


def inbound_examples(http: httpx.Client, seen: dict[int, int]) -> Any:
    """The hypothesis test of the inbound receiver's route."""

    @SETTINGS
    @hypothesis.given(webhook_id=TEXT.filter(bool), body=st.binary(max_size=200), headers=HEADERS)
    def examples(webhook_id: str, body: bytes, headers: dict[str, str]) -> None:
        path = INBOUND_PATH_PREFIX + urllib.parse.quote(webhook_id, safe="")
        response = http.post(path, content=body, headers=headers)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"inbound: {response.text}"

    return examples


def throw_at_routes(base_url: str, token: str) -> dict[int, int]:
    """Runs every REST route's examples (blocking: call it in a thread); returns the statuses seen."""
    seen: dict[int, int] = {}
    with httpx.Client(base_url=base_url, timeout=CALL_TIMEOUT_SECONDS) as http:
        for binding in bindings_for_services(default_services()):
            route_examples(http, binding, token, seen)()
        inbound_examples(http, seen)()
    return seen


async def test_generated_requests_at_every_rest_route_never_get_a_5xx(gateway) -> None:
    token = mint(JWT_SECRET, tenant_id=new_tenant_id(), subject="person_generated")

    seen = await asyncio.to_thread(throw_at_routes, gateway.url, token)

    record(
        "generated input at every REST route",
        routes=len(bindings_for_services(default_services())) + 1,
        statuses=dict(sorted(seen.items())),
    )
