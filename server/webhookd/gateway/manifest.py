"""The Playground's manifest: every resource with its path, description, operations and fields.

Built from the same descriptors, http rules and doc comments as the OpenAPI document, in the
shape the Playground page renders: field types are the seed's words (`uuid`, `string`,
`date-time`, `enum`, `json`, `boolean`, `number`), in proto field order.

A resource is a message the service lists (the repeated field of a `List*` response) or one that
carries a `google.api.resource` option. An RPC belongs to the resource whose collection path its
http rule sits under (`/webhooks/{id}:resume` → Webhook, `/events` → Event: PublishEvent), else to
the resource its request names by id (`webhook_id` → Webhook: DeliveryLog); `Ack<Stream>` sits beside
the stream it acknowledges (AckDeliveryLog → Webhook, AckInboundEvents beside StreamInboundEvents).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api import field_behavior_pb2, resource_pb2  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from webhookd.gateway import headers as http_headers
from webhookd.gateway.descriptors import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    Comments,
    enum_of,
    field_behaviors,
    is_map,
    is_output_only,
    is_raw_json_twin,
    is_repeated,
    is_well_known,
    resolve_field_path,
    rpc_path,
)
from webhookd.gateway.documents import OPENAPI_PATH
from webhookd.gateway.jsonshape import enum_words, json_key
from webhookd.gateway.query import query_parameters
from webhookd.gateway.routes import Binding, bindings_for_services

# The seed's type words that the proto type alone cannot give: these ids are typed `uuid`, and
# `direction` (an enum in the proto) is documented as a plain `string`.
SEED_TYPE_WORDS: dict[str, str] = {
    "id": "uuid",
    "created_by": "uuid",
    "updated_by": "uuid",
    "deleted_by": "uuid",
    "application_id": "uuid",
    "direction": "string",
}
# Output fields the seed stars as required: every stored resource has them.
SEED_STARRED_FIELDS = frozenset({"id", "tenant_id", "created_at", "updated_at"})

STANDARD_OPERATIONS = ("list", "get", "create", "update", "delete")

# Request bodies are not in the protos; these are the documented ones (README). An operation
# without one gets its required fields with placeholder values.
EXAMPLE_BODIES: dict[str, Any] = {
    "CreateWebhook": {"name": "orders", "url": "https://example.com/hooks", "event_types": ["rfp.*"]},
    "UpdateWebhook": {"name": "orders (EU)", "tags": ["eu"]},
    "PublishEvent": {"event_type": "rfp.created", "payload": {"rfp_id": 7}},
    "CreateEventType": {
        "name": "rfp.created",
        "description": "An RFP was created.",
        "schema": {
            "type": "object",
            "properties": {"rfp_id": {"type": "integer"}, "amount": {"type": "number", "minimum": 0}},
            "required": ["rfp_id"],
        },
        "example": {"rfp_id": 7, "amount": 1200.5},
    },
    "UpdateEventType": {"description": "An RFP was created (by a buyer)."},
}

_CAMEL_WORD = re.compile(r"[A-Z][a-z0-9]*")


def build_manifest(
    services: Sequence[ServiceDescriptor], comments: Comments, *, now: datetime | None = None
) -> dict[str, Any]:
    bindings = [b for b in bindings_for_services(services) if b.index == 0]
    resources = _find_resources(bindings)
    by_resource: dict[str, list[Binding]] = {r.full_name: [] for r, _ in resources}
    owners = {binding.method.name: _owner(binding, resources) for binding in bindings}
    for binding in bindings:
        owner = owners[binding.method.name] or _acknowledged_stream_owner(binding, owners)
        if owner is not None:
            by_resource[owner.full_name].append(binding)
    example_time = (now or datetime.now(UTC)) - timedelta(hours=1)
    return {
        "title": "webhookd API",
        "version": "v1",
        "openapi": OPENAPI_PATH,
        "services": [{"name": s.full_name, "description": comments.of(s.full_name)} for s in services],
        "resources": [
            _resource(message, path, by_resource[message.full_name], comments, example_time)
            for message, path in resources
        ],
    }


# ------------------------------------------------------------------------------------ resources


def _find_resources(bindings: Sequence[Binding]) -> list[tuple[Descriptor, str]]:
    """(message, collection path) for each listed or annotated resource, in RPC order."""
    found: dict[str, tuple[Descriptor, str]] = {}
    for binding in bindings:
        listed = _listed_message(binding)
        if listed is not None and listed.full_name not in found:
            found[listed.full_name] = (listed, binding.template.text)
    for binding in bindings:
        # An annotated resource that is never listed: its collection is its create path.
        for message in (binding.method.input_type, binding.method.output_type):
            for field in message.fields:
                nested = field.message_type
                if nested is None or nested.full_name in found or not _is_annotated_resource(nested):
                    continue
                if binding.http_method == "POST" and not binding.template.variables:
                    found[nested.full_name] = (nested, binding.template.text)
    return list(found.values())


def _listed_message(binding: Binding) -> Descriptor | None:
    method = binding.method
    if not method.name.startswith("List") or binding.http_method != "GET" or binding.server_streaming:
        return None
    for field in method.output_type.fields:
        if is_repeated(field) and not is_map(field) and field.message_type is not None:
            return field.message_type
    return None


def _is_annotated_resource(message: Descriptor) -> bool:
    return bool(message.GetOptions().HasExtension(resource_pb2.resource))


def _owner(binding: Binding, resources: Sequence[tuple[Descriptor, str]]) -> Descriptor | None:
    path = binding.template.text
    for message, collection in resources:
        if path == collection or path.startswith(collection + "/"):
            return message
    request_fields = binding.method.input_type.fields_by_name
    for message, _ in resources:
        if f"{_snake(message.name)}_id" in request_fields:
            return message
    return None


def _acknowledged_stream_owner(binding: Binding, owners: dict[str, Descriptor | None]) -> Descriptor | None:
    """`AckDeliveryLog` acknowledges what the stream `DeliveryLog` read, `AckInboundEvents` what
    `StreamInboundEvents` read: each sits beside its stream."""
    acknowledged = binding.method.name.removeprefix("Ack")
    if acknowledged == binding.method.name:
        return None
    for stream in (acknowledged, f"Stream{acknowledged}"):
        method = binding.method.containing_service.methods_by_name.get(stream)
        if method is not None and method.server_streaming:
            return owners.get(stream)
    return None


def _resource(
    message: Descriptor, path: str, bindings: Sequence[Binding], comments: Comments, example_time: datetime
) -> dict[str, Any]:
    operations = [_operation(b, comments, example_time) for b in bindings]
    _name_apart(operations, message)
    standard = {name: i for i, name in enumerate(STANDARD_OPERATIONS)}
    operations.sort(key=lambda op: standard.get(op["name"], len(standard)))
    return {
        "name": message.name,
        "full_name": message.full_name,
        "path": path,
        "description": comments.of(message.full_name),
        "operations": operations,
        "fields": [_field(f, comments) for f in message.fields if not is_raw_json_twin(f)],
    }


def _name_apart(operations: list[dict[str, Any]], message: Descriptor) -> None:
    """Names select the Playground's tabs and its URL fragments, so they must differ. An operation
    whose verb a standard method of the resource already has (GetWebhookPublicKey beside GetWebhook)
    is named by what its RPC says after the resource's name: `publicKey`. Other operations sharing a
    verb (AckDeliveryLog, AckInboundEvents) are each named by their whole RPC: `ackDeliveryLog`."""
    verbs = {operation["name"] for operation in operations if _is_standard(operation["rpc"], message)}
    custom = [operation for operation in operations if not _is_standard(operation["rpc"], message)]
    for operation in custom:
        if operation["name"] in verbs:
            rest = operation["rpc"].split(message.name, 1)[-1] or operation["rpc"]
            operation["name"] = _lower_first(rest)
    shared = Counter(operation["name"] for operation in custom)
    for operation in custom:
        if shared[operation["name"]] > 1:
            operation["name"] = _lower_first(operation["rpc"])


def _lower_first(name: str) -> str:
    return name[0].lower() + name[1:]


def _is_standard(rpc: str, message: Descriptor) -> bool:
    """`GetWebhook`, `ListWebhooks`, ... : a standard method of the resource (AIP-131..135)."""
    return any(
        rpc in (f"{verb.capitalize()}{message.name}", f"{verb.capitalize()}{message.name}s")
        for verb in STANDARD_OPERATIONS
    )


# ---------------------------------------------------------------------------------- operations


def operation_name(method: MethodDescriptor) -> str:
    """The RPC's verb: ListWebhooks → list, RotateWebhookSecret → rotate, PublishEvent → publish.
    A stream is named for what it carries, so by its last word: DeliveryLog → log."""
    words: list[str] = _CAMEL_WORD.findall(method.name) or [method.name]
    return (words[-1] if method.server_streaming else words[0]).lower()


def _operation(binding: Binding, comments: Comments, example_time: datetime) -> dict[str, Any]:
    method = binding.method
    headers = []
    if http_headers.precondition_path(binding) is not None:
        headers.append(
            {"name": "If-Match", "notes": 'The ETag of the version this write expects, e.g. "3".', "secret": False}
        )
    if http_headers.accepts_idempotency_key(binding):
        notes = "Retries with the same key return the first result."
        headers.append({"name": "Idempotency-Key", "notes": notes, "secret": False})
    for field, header in http_headers.secret_headers(binding).items():
        notes = comments.of(binding.method.input_type.fields_by_name[field].full_name)
        headers.append({"name": header, "notes": notes, "secret": True})
    operation: dict[str, Any] = {
        "name": operation_name(method),
        "rpc": method.name,
        "grpc": rpc_path(method),
        "method": binding.http_method,
        "path": binding.template.text,
        "description": comments.of(method.full_name),
        "path_params": [_path_param(binding, variable.field_path, comments) for variable in binding.template.variables],
        "query_params": _query_params(binding, comments),
        "body": binding.body,
        "body_fields": _body_fields(binding, comments),
        "headers": headers,
        "response_body": binding.response_body,
        "streaming": binding.server_streaming,
    }
    if binding.body:
        operation["example"] = _example_body(binding, example_time)
    return operation


def _path_param(binding: Binding, field_path: str, comments: Comments) -> dict[str, Any]:
    fields = resolve_field_path(binding.method.input_type, field_path)
    notes = comments.of(fields[-1].full_name) if fields else ""
    owner = fields[-1].containing_type if fields else None
    if owner is not None and owner is not binding.method.input_type:
        # `webhook.id` documents the resource's id; say which one the URL names.
        notes = f"The id of the {owner.name.lower()} to change."
    return {"name": field_path, "type": "string", "notes": notes, "required": True}


def _query_params(binding: Binding, comments: Comments) -> list[dict[str, Any]]:
    return [
        {**_field(query.leaf, comments), "name": query.name, "repeated": query.repeated}
        for query in query_parameters(binding).values()
    ]


def _body_fields(binding: Binding, comments: Comments) -> list[dict[str, Any]]:
    request = binding.method.input_type
    if binding.body == "*":
        top_path = {p for p in binding.path_fields if "." not in p}
        return [_field(f, comments) for f in request.fields if f.name not in top_path and not is_raw_json_twin(f)]
    if binding.body:
        field = request.fields_by_name[binding.body]
        if field.message_type is not None and not is_well_known(field.message_type):
            return [
                _field(f, comments)
                for f in field.message_type.fields
                if not is_output_only(f) and not is_raw_json_twin(f)
            ]
    return []


def _example_body(binding: Binding, example_time: datetime) -> Any:
    if binding.method.name in EXAMPLE_BODIES:
        return EXAMPLE_BODIES[binding.method.name]
    if binding.body != "*":
        return {}
    top_path = {p for p in binding.path_fields if "." not in p}
    example: dict[str, Any] = {}
    for field in binding.method.input_type.fields:
        if field.name in top_path or field_behavior_pb2.REQUIRED not in field_behaviors(field):
            continue
        example[json_key(field)] = _placeholder(field, example_time)
    return example


def _placeholder(field: FieldDescriptor, example_time: datetime) -> Any:
    if is_repeated(field):
        return {} if is_map(field) else []
    nested = field.message_type
    if nested is not None:
        if nested.full_name == "google.protobuf.Timestamp":
            return example_time.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return {}
    kind = field_type(field)
    return {"boolean": False, "number": 0, "enum": None}.get(kind, "")


# -------------------------------------------------------------------------------------- fields


def field_type(field: FieldDescriptor) -> str:
    """The field's type as the seed writes it."""
    if field.name in SEED_TYPE_WORDS:
        return SEED_TYPE_WORDS[field.name]
    if is_repeated(field) or is_map(field):
        return "json"
    nested = field.message_type
    if nested is not None:
        if nested.full_name == "google.protobuf.Timestamp":
            return "date-time"
        return "json"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return "enum"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "boolean"
    if field.type in INTEGER_TYPES | FLOAT_TYPES:
        return "number"
    return "string"


def _field(field: FieldDescriptor, comments: Comments) -> dict[str, Any]:
    behaviors = field_behaviors(field)
    entry: dict[str, Any] = {
        "name": json_key(field),
        "type": field_type(field),
        "notes": comments.of(field.full_name),
        "required": field_behavior_pb2.REQUIRED in behaviors or field.name in SEED_STARRED_FIELDS,
        "output_only": field_behavior_pb2.OUTPUT_ONLY in behaviors,
        "immutable": field_behavior_pb2.IMMUTABLE in behaviors,
        "input_only": field_behavior_pb2.INPUT_ONLY in behaviors,
    }
    if field.type == FieldDescriptor.TYPE_ENUM and not is_repeated(field):
        entry["values"] = enum_words(enum_of(field))
    return entry


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
