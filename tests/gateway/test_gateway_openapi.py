"""The OpenAPI document: valid 3.1, built from the descriptors and their comments."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from webhookd.gateway.descriptors import default_services, load_comments, message_class
from webhookd.gateway.jsonshape import message_to_json
from webhookd.gateway.openapi import build_openapi
from webhookd.gateway.routes import bindings_for_services, parse_template


@pytest.fixture(scope="module")
def document(descriptor_set: Path) -> dict[str, Any]:
    return build_openapi(default_services(), load_comments(descriptor_set))


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_document_without_comments_is_still_valid() -> None:
    validate(build_openapi(default_services(), load_comments(None)))


def test_probe_service_with_streams_maps_and_nested_queries_is_valid(
    probe: tuple[ModuleType, ModuleType, Path],
) -> None:
    messages, _, descriptors = probe
    document = build_openapi([messages.DESCRIPTOR.services_by_name["ProbeService"]], load_comments(descriptors))
    validate(document)
    tail = document["paths"]["/v1/probes/{probe_id}/log"]["get"]
    assert set(tail["responses"]["200"]["content"]) == {"application/x-ndjson", "text/event-stream"}
    assert "Last-Event-ID" in [p.get("name") for p in tail["parameters"]]
    search = document["paths"]["/v1/{parent_name}/items"]["get"]
    names = [p.get("name") for p in search["parameters"]]
    assert {"filter.min_size", "filter.color", "tags", "since", "colors"} <= set(names)
    assert "labels" not in names  # a map has no query form


def test_every_binding_is_an_operation(document: dict[str, Any]) -> None:
    operations = {
        operation["operationId"]: (path, verb)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }
    for binding in bindings_for_services(default_services()):
        path, verb = operations[f"WebhookService_{binding.method.name}"]
        assert verb == binding.http_method.lower()
        assert parse_template(path).shape == binding.template.shape


def test_templates_of_one_shape_are_one_path_item(document: dict[str, Any]) -> None:
    # OpenAPI: paths differing only in their variables' names are identical, and must not both exist.
    shapes = [parse_template(path).shape for path in document["paths"]]
    assert len(shapes) == len(set(shapes))
    assert set(document["paths"]["/api/v1/integration/webhooks/{id}"]) >= {"get", "patch", "delete"}
    assert not any("." in name for path in document["paths"] for name in re.findall(r"{([^}]*)}", path))


def test_descriptions_come_from_proto_comments(document: dict[str, Any]) -> None:
    get = document["paths"]["/api/v1/integration/webhooks/{id}"]["get"]
    assert get["description"] == "Returns one webhook, soft-deleted or not."
    webhook = document["components"]["schemas"]["Webhook"]
    assert webhook["description"] == "An outbound webhook endpoint."
    assert webhook["properties"]["name"]["description"] == "Human-readable webhook name."


def test_webhook_schema_matches_the_gateway_json(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    webhook = schemas["Webhook"]
    assert schemas["WebhookInput"]["required"] == ["name"]
    assert list(schemas["WebhookInput"]["properties"]) == list(webhook["properties"])
    assert webhook["properties"]["id"]["readOnly"] is True
    assert webhook["properties"]["vault_path"]["readOnly"] is True
    assert webhook["properties"]["created_at"]["type"] == ["string", "null"]
    # An output-only string the server left empty is null; one the caller writes is a string.
    assert webhook["properties"]["deleted_by"]["type"] == ["string", "null"]
    assert webhook["properties"]["app_id"]["type"] == ["string", "null"]
    assert webhook["properties"]["url"]["type"] == "string"
    assert webhook["properties"]["version"] == {
        "type": "integer", "format": "int64", "description": "Optimistic concurrency version counter."
    }  # fmt: skip
    assert list(schemas["RetryPolicy"]["properties"]) == ["maxAttempts", "backoff", "timeoutMs"]


def test_an_enum_is_one_schema_of_its_words_and_fields_say_when_they_may_be_null(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert {k: v for k, v in schemas["Direction"].items() if k != "description"} == {
        "type": "string",
        "enum": ["outbound", "inbound"],
    }
    assert schemas["SourceType"]["enum"] == ["frontend", "backend", "server", "system", "api"]
    direction = schemas["Webhook"]["properties"]["direction"]
    assert direction["anyOf"] == [{"$ref": "#/components/schemas/Direction"}, {"type": "null"}]
    listing = document["paths"]["/api/v1/integration/webhooks"]["get"]
    [query] = [p for p in listing["parameters"] if p.get("name") == "direction"]
    assert query["schema"] == {"$ref": "#/components/schemas/Direction"}


def walk(node: Any, path: str = "#") -> Any:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def allows_null(schema: Any) -> bool:
    return any(
        isinstance(node, dict)
        and (node.get("type") == "null" or "null" in (node.get("type") or []) or None in (node.get("enum") or []))
        for _, node in walk(schema)
    )


def test_no_parameter_is_nullable(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            for parameter in operation.get("parameters", []):
                if "schema" in parameter:
                    assert not allows_null(parameter["schema"]), (path, verb, parameter["name"])


def test_a_reference_never_has_siblings(document: dict[str, Any]) -> None:
    # Generators (openapi-python-client) read a $ref with siblings as a new type: one enum became three.
    for where, node in walk(document):
        if isinstance(node, dict) and "$ref" in node:
            assert set(node) == {"$ref"}, where


def test_every_operation_has_a_description_and_declared_tags(document: dict[str, Any]) -> None:
    declared = {tag["name"] for tag in document["tags"]}
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            assert operation["description"], (path, verb)
            assert operation["tags"] and set(operation["tags"]) <= declared, (path, verb)


def test_servers_and_the_routes_no_proto_describes(document: dict[str, Any]) -> None:
    assert document["servers"] == [{"url": "/", "description": "The webhookd that serves this document."}]
    paths = document["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert {"text/plain", "application/openmetrics-text"} <= set(
        paths["/metrics"]["get"]["responses"]["200"]["content"]
    )
    inbound = paths["/api/v1/integration/inbound/{webhook_id}"]["post"]
    assert inbound["security"] == [] and inbound["tags"] == ["Inbound"]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature", "X-Hub-Signature-256"} <= {
        p["name"] for p in inbound["parameters"]
    }
    assert {"200", "401", "404", "413", "429"} <= set(inbound["responses"])


def test_streams_are_text_of_their_media_type_whose_items_are_the_message(document: dict[str, Any]) -> None:
    for path in ("/api/v1/integration/delivery-log", "/api/v1/integration/inbound-events"):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/x-ndjson", "text/event-stream"}
        for media_type, body in content.items():
            assert body["schema"]["type"] == "string" and body["schema"]["contentMediaType"] == media_type
            message, error = body["schema"]["contentSchema"]["anyOf"]  # a failure mid-stream is the last item
            assert message["$ref"].startswith("#/components/schemas/")
            assert error == {"$ref": "#/components/schemas/Error"}


def test_payload_json_is_not_a_rest_field(document: dict[str, Any]) -> None:
    publish = document["paths"]["/api/v1/integration/events"]["post"]
    properties = publish["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "payload" in properties and "payload_json" not in properties


def test_patch_body_has_no_required_fields(document: dict[str, Any]) -> None:
    patch = document["paths"]["/api/v1/integration/webhooks/{id}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/WebhookUpdate"
    assert "required" not in document["components"]["schemas"]["WebhookUpdate"]


def test_if_match_etag_and_412_are_documented_where_they_apply(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for operation in (paths["/api/v1/integration/webhooks/{id}"]["patch"],
                      paths["/api/v1/integration/webhooks/{id}"]["delete"]):  # fmt: skip
        assert "If-Match" in [p.get("name") for p in operation["parameters"]]
        assert "412" in operation["responses"] and "409" in operation["responses"]
        assert "ETag" in operation["responses"]["200"]["headers"]
    create = paths["/api/v1/integration/webhooks"]["post"]
    assert "412" not in create["responses"]
    get = paths["/api/v1/integration/webhooks/{id}"]["get"]
    assert "If-None-Match" in [p.get("name") for p in get["parameters"]]
    assert "ETag" in get["responses"]["304"]["headers"]


def test_query_parameters_and_bodies_follow_the_http_rules(document: dict[str, Any]) -> None:
    paths = document["paths"]
    listing = paths["/api/v1/integration/webhooks"]["get"]
    assert {"page_size", "page_token", "show_deleted", "direction", "enabled"} <= {
        p.get("name") for p in listing["parameters"]
    }
    assert "requestBody" not in listing
    create = paths["/api/v1/integration/webhooks"]["post"]
    assert create["requestBody"]["required"] is True
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/WebhookInput"
    assert "Webhook-Signing-Secret" in [p.get("name") for p in create["parameters"]]
    assert "signing_secret" not in [p.get("name") for p in create["parameters"]]
    undelete = paths["/api/v1/integration/webhooks/{id}:undelete"]["post"]
    assert undelete["requestBody"]["required"] is False  # the id is in the path; nothing else to send
    publish = paths["/api/v1/integration/events"]["post"]
    assert "Idempotency-Key" in [p.get("name") for p in publish["parameters"]]


def test_security_is_bearer_jwt_except_health_and_the_document(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT carrying `tenant_id` (required), `sub`, `app_id` and `exp`.",
    }  # fmt: skip
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_errors_use_the_aip_193_schema(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "status"]
    # Every code an error can carry, and not OK, which no error does.
    assert set(error["properties"]["status"]["enum"]) == {c.name for c in grpc.StatusCode} - {"OK"}
    get = document["paths"]["/api/v1/integration/webhooks/{id}"]["get"]
    assert get["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def referenced(node: Any, schemas: dict[str, Any], found: set[str] | None = None) -> set[str]:
    """The component schemas `node` refers to, and theirs in turn."""
    found = set() if found is None else found
    for _, inner in walk(node):
        if isinstance(inner, dict) and isinstance(ref := inner.get("$ref"), str):
            name = ref.rsplit("/", 1)[-1]
            if name not in found:
                found.add(name)
                referenced(schemas[name], schemas, found)
    return found


def response_schemas(document: dict[str, Any]) -> set[str]:
    """The messages (not enums) that successful responses, streamed ones included, are made of."""
    schemas = document["components"]["schemas"]
    successes = [
        response
        for item in document["paths"].values()
        for operation in item.values()
        for status, response in operation["responses"].items()
        if status.startswith("2")
    ]
    return {name for name in referenced(successes, schemas) if "enum" not in schemas[name] and name != "Error"}


def test_response_schemas_require_every_field_the_gateway_writes(document: dict[str, Any]) -> None:
    # jsonshape writes every field of a message, null when unset: generated clients should not type
    # the seed's starred fields (or any other) as possibly absent.
    schemas = document["components"]["schemas"]
    names = response_schemas(document)
    assert {"Webhook", "RetryPolicy", "Delivery", "DeliveryLogEntry", "EventType"} <= names
    for name in names:
        assert schemas[name].get("required", []) == list(schemas[name].get("properties", {})), name
    assert {"id", "tenant_id", "created_at", "updated_at"} <= set(schemas["Webhook"]["required"])


def test_request_bodies_require_only_what_a_caller_must_send(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/v1/integration/webhooks"]["post"]["requestBody"]["content"]["application/json"]
    body_schema = create["schema"]
    body = {"name": "orders", "url": "https://example.com/hook", "event_types": ["order.*"]}
    body["retry_policy"] = {"maxAttempts": 3}

    request = OAS31Validator({**body_schema, "components": document["components"]})
    response = OAS31Validator({"$ref": "#/components/schemas/Webhook", "components": document["components"]})

    assert list(request.iter_errors(body)) == []
    assert [error.message for error in request.iter_errors({"url": "https://example.com/hook"})] == [
        "'name' is a required property"
    ]
    # The response schema would refuse it: server stamps are required there.
    assert {error.message for error in response.iter_errors(body)} >= {"'id' is a required property"}
    assert referenced(body_schema, schemas).isdisjoint(response_schemas(document))


def messages_by_name(services: list[Any]) -> dict[str, Any]:
    """Every message the services' RPCs carry, by short and by full name."""
    found: dict[str, Any] = {}
    pending = [t for s in services for m in s.methods for t in (m.input_type, m.output_type)]
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in found:
            continue
        found[descriptor.full_name] = found.setdefault(descriptor.name, descriptor)
        pending += [f.message_type for f in descriptor.fields if f.message_type is not None]
    return found


def test_every_response_message_rendered_unset_validates_against_its_schema(document: dict[str, Any]) -> None:
    # Each field unset is what the gateway renders as null: a required field must allow that null.
    messages = messages_by_name(default_services())
    for name in response_schemas(document):
        empty = message_to_json(message_class(messages[name])())
        validator = OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})
        assert [error.message for error in validator.iter_errors(empty)] == [], name
