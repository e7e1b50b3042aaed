"""The OpenAPI 3.1 document, generated from the same descriptors and bindings the routes use.

Schemas describe the JSON the gateway really speaks (see jsonshape): proto field names (camelCase
only inside CAMEL_CASE_MESSAGES), enums as lowercase words, unset message/optional fields and
unspecified enums as `null`, 64-bit integers as numbers.

For generated clients and validators: every message and enum is one named schema, referenced
wherever it is used (a `$ref` never has siblings, which some generators read as a new type); an
enum schema lists its words only, and a field that can be `null` says so itself (`anyOf` with
`null`), so query and path parameters, which are never null, reference the enum as it is.
Streams are described by media type (NDJSON, SSE) as text whose items are the message schema or a
last error (`contentSchema`), so a client never waits for one JSON body.

A message has one schema as responses carry it and, when a request body carries it too, another
(`<Name>Input`; `<Name>Update` for a PATCH): a response has every field (null when unset), so its
schema requires them all, while a request needs only those marked REQUIRED and never the server's
stamps. Two schemas because OAS 3.1 dropped 3.0's "readOnly and required: required in responses
only", and tools no longer agree on it (see `_required`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.api import field_behavior_pb2  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor

from webhookd.gateway import headers as http_headers
from webhookd.gateway.descriptors import (
    Comments,
    enum_of,
    field_behaviors,
    is_map,
    is_raw_json_twin,
    is_repeated,
    is_stamp_or_nothing,
    is_well_known,
    message_of,
    resolve_field_path,
    rpc_path,
)
from webhookd.gateway.jsonshape import enum_word, enum_words, is_unspecified, json_key
from webhookd.gateway.openapi_routes import TAGS as OPERATIONAL_TAGS
from webhookd.gateway.openapi_routes import operational_paths
from webhookd.gateway.query import query_parameters
from webhookd.gateway.routes import Binding, PathTemplate, Variable, bindings_for_services
from webhookd.gateway.transcode import UPDATE_MASK_FIELD
from webhookd.http.errors import CODE_BY_HTTP_ONLY_STATUS, HTTP_STATUS_BY_CODE
from webhookd.http.media_types import JSON_MEDIA_TYPE, NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE

# Relative: the server that serves this document (OAS 3.1 resolves it against the document's URL).
SERVERS = [{"url": "/", "description": "The webhookd that serves this document."}]
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# A message's schema as a request body carries it, beside the response schema's plain name.
INPUT_SUFFIX = "Input"
_INPUT_NOTE = "As a request sends it: the fields marked readOnly may be left out, and are ignored when sent."

_JSON = JSON_MEDIA_TYPE
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_UINT64: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_FIXED64: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}
_CONVENTIONS = """
JSON conventions: field names are the proto names (snake_case; `retry_policy`'s fields are
camelCase as published); enum values are lowercase words (`outbound`), `null` when unspecified;
an unset message or optional field is `null`; 64-bit integers are JSON numbers. Input accepts
either spelling of a field name, and enum words or full enum names. Unknown fields are a 400.

Concurrency: a resource with a `version` comes back with `ETag: "<version>"`. Send it as
`If-Match` on PATCH/DELETE to make the write conditional: a stale version is then
412 FAILED_PRECONDITION. A stale `version` sent in the body instead is 409 ABORTED. On GET,
`If-None-Match` with the current ETag is 304 Not Modified.
""".strip()


def parameter_names(template: PathTemplate) -> tuple[str, ...]:
    """OpenAPI names for a template's variables: the field path with `_` for `.`, since tools
    read `{a.b}` in a path as attribute access (schemathesis, code generators)."""
    return tuple(variable.field_path.replace(".", "_") for variable in template.variables)


def openapi_path(template: PathTemplate, names: tuple[str, ...]) -> str:
    """The template in OpenAPI path templating, its variables called `names` in order."""
    by_variable = dict(zip(template.variables, names, strict=True))
    parts = [f"{{{by_variable[s]}}}" if isinstance(s, Variable) else s for s in template.segments]
    return "/" + "/".join(parts) + (f":{template.verb}" if template.verb else "")


def build_openapi(
    services: Sequence[ServiceDescriptor],
    comments: Comments,
    *,
    title: str = "webhookd API",
    version: str = "v1",
) -> dict[str, Any]:
    return _Builder(comments).document(services, title, version)


class _Builder:
    def __init__(self, comments: Comments) -> None:
        self._comments = comments
        self._schemas: dict[str, dict[str, Any]] = {}
        self._component_names: dict[str, str] = {}

    # ---------------------------------------------------------------------------- document

    def document(self, services: Sequence[ServiceDescriptor], title: str, version: str) -> dict[str, Any]:
        service_docs = [self._comments.of(s.full_name) for s in services]
        description = "\n\n".join([*(d for d in service_docs if d), _CONVENTIONS])
        paths: dict[str, dict[str, Any]] = operational_paths(ERROR_REF)
        names_by_shape: dict[str, tuple[str, ...]] = {}
        for binding in bindings_for_services(services):
            # One path item per shape: OpenAPI forbids two templated paths that differ only in
            # their variables' names, so PATCH /webhooks/{webhook.id} joins /webhooks/{id}.
            names = names_by_shape.setdefault(binding.template.shape, parameter_names(binding.template))
            path_item = paths.setdefault(openapi_path(binding.template, names), {})
            path_item[binding.http_method.lower()] = self._operation(binding, names)
        _add_heads(paths)
        self._schemas["Error"] = _error_schema()
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version, "description": description},
            "servers": SERVERS,
            "tags": [
                *({"name": s.name, "description": self._comments.of(s.full_name)} for s in services),
                *OPERATIONAL_TAGS,
            ],
            "security": [{"bearerAuth": []}],
            "paths": paths,
            "components": {
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "A JWT carrying `tenant_id` (required), `sub`, `app_id` and `exp`.",
                    }
                },
                "parameters": {
                    "RequestId": {
                        "name": "X-Request-Id",
                        "in": "header",
                        "required": False,
                        "description": "Correlates logs; generated when absent and echoed in the response.",
                        "schema": {"type": "string", "maxLength": 128},
                    }
                },
                "schemas": dict(sorted(self._schemas.items())),
            },
        }

    # --------------------------------------------------------------------------- operations

    def _operation(self, binding: Binding, path_names: tuple[str, ...]) -> dict[str, Any]:
        method = binding.method
        doc = self._comments.of(method.full_name)
        operation: dict[str, Any] = {
            # Additional bindings are separate operations and need their own ids.
            "operationId": f"{method.containing_service.name}_{method.name}"
            + (str(binding.index + 1) if binding.index else ""),
            "tags": [method.containing_service.name],
            "summary": _first_sentence(doc) or method.name,
            "x-grpc-method": rpc_path(method),
        }
        operation["description"] = doc or f"The {method.name} RPC ({rpc_path(method)})."
        parameters = self._path_parameters(binding, path_names) + self._query_parameters(binding)
        parameters += self._header_parameters(binding)
        operation["parameters"] = [*parameters, {"$ref": "#/components/parameters/RequestId"}]
        if binding.body:
            operation["requestBody"] = self._request_body(binding)
        operation["responses"] = self._responses(binding)
        return operation

    def _path_parameters(self, binding: Binding, names: tuple[str, ...]) -> list[dict[str, Any]]:
        parameters = []
        for variable, name in zip(binding.template.variables, names, strict=True):
            fields = resolve_field_path(binding.method.input_type, variable.field_path)
            schema = self._single_schema(fields[-1], response=False) if fields else {"type": "string"}
            parameter = {"name": name, "in": "path", "required": True, "schema": schema}
            if fields and (doc := self._comments.of(fields[-1].full_name)):
                parameter["description"] = doc
            parameters.append(parameter)
        return parameters

    def _query_parameters(self, binding: Binding) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = []
        for query in query_parameters(binding).values():
            schema = self._single_schema(query.leaf, response=False)
            parameter: dict[str, Any] = {"name": query.name, "in": "query", "required": False}
            if query.repeated:
                parameter.update(schema={"type": "array", "items": schema}, style="form", explode=True)
            else:
                parameter["schema"] = schema
            if doc := self._comments.of(query.leaf.full_name):
                parameter["description"] = doc
            parameters.append(parameter)
        return parameters

    def _header_parameters(self, binding: Binding) -> list[dict[str, Any]]:
        parameters = []
        if http_headers.precondition_path(binding) is not None:
            parameters.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": 'The ETag of the version this write expects, e.g. "3". A stale one, or '
                    "any weak one, is 412.",
                    "schema": {"type": "string"},
                }
            )
        if http_headers.accepts_idempotency_key(binding):
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Retries with the same key return the first result instead of repeating it.",
                    "schema": {"type": "string"},
                }
            )
        for field, header in http_headers.secret_headers(binding).items():
            parameter = {"name": header, "in": "header", "required": False, "schema": {"type": "string"}}
            if doc := self._comments.of(binding.method.input_type.fields_by_name[field].full_name):
                parameter["description"] = doc
            parameters.append(parameter)
        if binding.http_method == "GET" and http_headers.has_etag(binding):
            parameters.append(
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "description": "ETags the caller holds: 304 Not Modified when one is current.",
                    "schema": {"type": "string"},
                }
            )
        if http_headers.accepts_last_event_id(binding):
            parameters.append(
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this cursor (sent by EventSource on reconnect).",
                    "schema": {"type": "string"},
                }
            )
        return parameters

    def _request_body(self, binding: Binding) -> dict[str, Any]:
        request = binding.method.input_type
        body: dict[str, Any] = {}
        if binding.body == "*":
            top_path_fields = {p for p in binding.path_fields if "." not in p}
            fields = [f for f in request.fields if f.name not in top_path_fields]
            schema = self._object_schema(request, fields, response=False)
            required = bool(schema.get("required"))
        else:
            field = request.fields_by_name[binding.body]
            resource = field.message_type
            if request.fields_by_name.get(UPDATE_MASK_FIELD) and resource and not is_well_known(resource):
                schema = self._partial_ref(resource)
            else:
                schema = self._single_schema(field, response=False)
            required = field_behavior_pb2.REQUIRED in field_behaviors(field)
            if doc := self._comments.of(field.full_name):
                body["description"] = doc
        return {**body, "required": required, "content": {_JSON: {"schema": schema}}}

    def _responses(self, binding: Binding) -> dict[str, Any]:
        success_schema, description = self._success_schema(binding)
        success: dict[str, Any] = {"description": description or "OK"}
        response_headers: dict[str, Any] = {"X-Request-Id": {"schema": {"type": "string"}}}
        if binding.server_streaming:
            success["description"] = (
                (description + "\n\n" if description else "")
                + f"A stream: `{NDJSON_MEDIA_TYPE}` (one JSON message per line; a failure mid-stream is a "
                'last line `{"error": ...}`) or, with `Accept: text/event-stream`, Server-Sent Events '
                "(`id:` is the entry's cursor, `data:` the JSON message, `event: error` on failure). "
                "Each item is the `contentSchema`: the message, or that last error."
            )
            # The failure's line is an item too: a message schema requires its fields, an error has none.
            item = {"anyOf": [success_schema, ERROR_REF]}
            success["content"] = {
                NDJSON_MEDIA_TYPE: {"schema": _stream_schema(NDJSON_MEDIA_TYPE, "One JSON message per line.", item)},
                SSE_MEDIA_TYPE: {
                    "schema": _stream_schema(SSE_MEDIA_TYPE, "Each event's `data:` is one JSON message.", item)
                },
            }
        else:
            success["content"] = {_JSON: {"schema": success_schema}}
            if http_headers.has_etag(binding):
                response_headers["ETag"] = {
                    "description": 'The resource version as a strong ETag, e.g. "3"; send it back in If-Match.',
                    "schema": {"type": "string"},
                }
        success["headers"] = response_headers
        responses: dict[str, Any] = {"200": success}
        if binding.http_method == "GET" and http_headers.has_etag(binding):
            responses["304"] = {
                "description": "Not Modified: If-None-Match names the current ETag.",
                "headers": {"ETag": response_headers["ETag"], "X-Request-Id": response_headers["X-Request-Id"]},
            }
        conditional = http_headers.precondition_path(binding) is not None
        for status, text in _error_responses(binding, conditional):
            responses[str(status)] = _error_response(status, text)
        return responses

    def _success_schema(self, binding: Binding) -> tuple[dict[str, Any], str]:
        output = binding.method.output_type
        if binding.response_body:
            field = output.fields_by_name[binding.response_body]
            return self._single_schema(field, response=True), self._comments.of(field.full_name)
        return self._message_ref(output, response=True), self._comments.of(output.full_name)

    # ------------------------------------------------------------------------------ schemas

    def _message_ref(self, descriptor: Descriptor, *, response: bool) -> dict[str, Any]:
        """The message's schema as a response (`response`) or a request body carries it."""
        if is_well_known(descriptor):
            return dict(_WELL_KNOWN.get(descriptor.full_name) or self._wrapper_schema(descriptor))
        name = self._component_name(descriptor.full_name) + ("" if response else INPUT_SUFFIX)
        if name not in self._schemas:
            self._schemas[name] = {}  # placeholder first: messages may refer to themselves
            schema = self._object_schema(descriptor, list(descriptor.fields), response=response)
            if not response:
                schema["description"] = "\n\n".join(p for p in (schema.get("description", ""), _INPUT_NOTE) if p)
            self._schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _partial_ref(self, descriptor: Descriptor) -> dict[str, Any]:
        """A PATCH body: the resource as a request sends it, without `required`, since only the fields
        sent change."""
        name = self._component_name(descriptor.full_name) + "Update"
        if name not in self._schemas:
            full = self._message_ref(descriptor, response=False)
            schema = {k: v for k, v in self._schemas[full["$ref"].rsplit("/", 1)[-1]].items() if k != "required"}
            note = "Partial update: without `update_mask`, the fields present in this body are the ones updated."
            schema["description"] = "\n\n".join(p for p in (schema.get("description", ""), note) if p)
            self._schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _object_schema(
        self, descriptor: Descriptor, fields: Sequence[FieldDescriptor], *, response: bool
    ) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        if doc := self._comments.of(descriptor.full_name):
            schema["description"] = doc
        fields = [f for f in fields if not is_raw_json_twin(f)]  # REST knows the pair as one field
        schema["properties"] = {json_key(f): self._field_schema(f, response=response) for f in fields}
        required = _required(fields, response=response)
        if required:
            schema["required"] = required
        return schema

    def _field_schema(self, field: FieldDescriptor, *, response: bool) -> dict[str, Any]:
        if is_map(field):
            value = message_of(field).fields_by_name["value"]
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self._single_schema(value, response=response),
            }
        elif is_repeated(field):
            schema = {"type": "array", "items": self._single_schema(field, response=response)}
        else:
            schema = self._single_schema(field, response=response)
            if _renders_null(field):
                schema = _or_null(schema)
        behaviors = field_behaviors(field)
        if "$ref" in schema:
            schema = {"allOf": [schema]}  # room for the field's own notes beside the reference
        if doc := self._comments.of(field.full_name):
            schema["description"] = doc
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            schema["writeOnly"] = True
        if field_behavior_pb2.IMMUTABLE in behaviors:
            schema["description"] = (schema.get("description", "") + " Immutable: set on create only.").strip()
        return schema

    def _single_schema(self, field: FieldDescriptor, *, response: bool) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_ENUM:
            return self._enum_ref(enum_of(field))
        if field.message_type is not None:
            return self._message_ref(field.message_type, response=response)
        return dict(_SCALARS.get(field.type, {"type": "string"}))

    def _wrapper_schema(self, descriptor: Descriptor) -> dict[str, Any]:
        value = descriptor.fields_by_name.get("value")
        if value is None:
            return {}
        return _or_null(dict(_SCALARS.get(value.type, {"type": "string"})))

    def _enum_ref(self, enum: EnumDescriptor) -> dict[str, Any]:
        name = self._component_name(enum.full_name)
        if name not in self._schemas:
            lines = [self._comments.of(enum.full_name)]
            for value in enum.values:
                word = enum_word(enum, value.number)
                doc = self._comments.of(f"{enum.full_name}.{value.name}")
                if word is not None:
                    lines.append(f"- `{word}`: {doc}" if doc else f"- `{word}`")
                elif doc:
                    lines.append(f"- `null`: {doc}")
            # The words only: a field whose value may be unspecified is nullable itself (_renders_null).
            schema: dict[str, Any] = {"type": "string", "enum": list(enum_words(enum))}
            head, items = lines[0], [line for line in lines[1:] if line]
            description = "\n\n".join(part for part in (head, "\n".join(items)) if part)
            if description:
                schema["description"] = description
            self._schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _component_name(self, full_name: str) -> str:
        if full_name in self._component_names:
            return self._component_names[full_name]
        short = full_name.rsplit(".", 1)[-1]
        name = short if short not in self._component_names.values() and short != "Error" else full_name
        self._component_names[full_name] = name
        return name


# ---------------------------------------------------------------------------------- helpers


def _add_heads(paths: dict[str, dict[str, Any]]) -> None:
    """HEAD is answered wherever a GET is but a stream's (routes.binding_for; Starlette adds it to
    its plain GET routes): the GET's parameters, statuses and headers, and no body."""
    for item in paths.values():
        get = item.get("get")
        if get is None or NDJSON_MEDIA_TYPE in get["responses"].get("200", {}).get("content", {}):
            continue
        item["head"] = {
            **get,
            "operationId": f"{get['operationId']}_head",
            "summary": f"{get['summary']} Headers only.",
            "description": "As GET: the same status and headers (Content-Length, ETag), without the body.",
            "responses": {
                status: {key: value for key, value in response.items() if key != "content"}
                for status, response in get["responses"].items()
            },
        }


def _stream_schema(media_type: str, framing: str, message: dict[str, Any]) -> dict[str, Any]:
    """A stream's body: text of `media_type` whose items are `message` (JSON Schema's contentSchema;
    OAS 3.2 would say itemSchema). Text, so no client waits to parse the whole body as one JSON."""
    return {"type": "string", "contentMediaType": media_type, "contentSchema": message, "description": framing}


def _required(fields: Sequence[FieldDescriptor], *, response: bool) -> list[str]:
    """In a response, every field: jsonshape writes each one, null when unset (those that can be say
    so: `_renders_null`). In a request, the fields marked REQUIRED; never a server stamp, which a
    request may leave out (OAS 3.1 makes `required` mean required in both, readOnly or not)."""
    if response:
        return [json_key(f) for f in fields]
    return [json_key(f) for f in fields if field_behavior_pb2.REQUIRED in field_behaviors(f)]


def _renders_null(field: FieldDescriptor) -> bool:
    """jsonshape writes `null` for an unset message or optional field, an unspecified enum and an
    output-only string left empty."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        return any(is_unspecified(enum_of(field), value.number) for value in enum_of(field).values)
    return bool(field.has_presence) or is_stamp_or_nothing(field)


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if kind is None and not schema:
        return schema  # `{}` already allows null
    return {"anyOf": [schema, {"type": "null"}]}


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]


def _error_responses(binding: Binding, conditional: bool) -> list[tuple[int, str]]:
    responses = [
        (400, "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE; malformed JSON; unknown fields."),
        (401, "UNAUTHENTICATED: missing or invalid bearer token (with `WWW-Authenticate: Bearer`)."),
        (403, "PERMISSION_DENIED."),
        (404, "NOT_FOUND."),
        (406, "INVALID_ARGUMENT: `Accept` admits none of the media types the operation answers in."),
        (
            409,
            "ALREADY_EXISTS, or ABORTED: a `version` sent in the body is stale, or the call conflicted with a "
            "concurrent one in the database (reason `TRANSACTION_CONFLICT`: send it again).",
        ),
    ]
    if conditional:
        responses.append((412, "FAILED_PRECONDITION: `If-Match` names a version that is not current (or is weak)."))
    if binding.body:
        responses += [
            (413, "The body is larger than the gateway accepts."),
            (415, "The body is not `application/json`."),
        ]
    responses += [
        (429, "RESOURCE_EXHAUSTED (with `Retry-After` when the server says when)."),
        (500, "INTERNAL, UNKNOWN or DATA_LOSS."),
        (503, "UNAVAILABLE (with `Retry-After` when the server says when)."),
        (504, "DEADLINE_EXCEEDED."),
    ]
    return responses


def _error_response(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": ERROR_REF}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    return response


def _error_schema() -> dict[str, Any]:
    table = ", ".join(f"{code.name} {status}" for code, status in HTTP_STATUS_BY_CODE.items())
    http_only = ", ".join(f"{status} {code.name}" for status, code in CODE_BY_HTTP_ONLY_STATUS.items())
    return {
        "type": "object",
        "description": f"AIP-193 error. gRPC code → HTTP status: {table}. Statuses only HTTP causes, with the "
        f"code they refine: {http_only}.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "status"],
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status."},
                    "message": {"type": "string", "description": "For developers, in English."},
                    "status": {
                        "type": "string",
                        "description": "The google.rpc.Code name.",
                        "enum": sorted(code.name for code in HTTP_STATUS_BY_CODE if code is not grpc.StatusCode.OK),
                    },
                    "details": {
                        "type": "array",
                        "description": "google.rpc error details: ErrorInfo, BadRequest (fieldViolations), "
                        "RetryInfo, ...",
                        "items": {
                            "type": "object",
                            "required": ["@type"],
                            "properties": {"@type": {"type": "string"}},
                            "additionalProperties": True,
                        },
                    },
                },
            }
        },
    }
