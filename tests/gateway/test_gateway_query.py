"""Query parameters: what the gateway accepts, what OpenAPI advertises and what the Playground
offers are one set, for every binding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from webhookd.gateway.descriptors import Comments, default_services, enum_of
from webhookd.gateway.jsonshape import JsonInputError, enum_words
from webhookd.gateway.manifest import build_manifest
from webhookd.gateway.openapi import build_openapi
from webhookd.gateway.routes import Binding, bindings_for_services
from webhookd.gateway.transcode import HttpInput, build_request

# Deeper than any query parameter may go, so candidates include the ones refused for depth.
CANDIDATE_DEPTH = 5
ONE_STRING_SAMPLES = {
    "google.protobuf.Timestamp": "2024-05-01T10:00:00Z",
    "google.protobuf.Duration": "1.5s",
    "google.protobuf.FieldMask": "name",
}


def sample_text(field: FieldDescriptor) -> str:
    """A value the field takes from a query string; for fields that have no such form, any text."""
    message = field.message_type
    if message is not None:
        if "value" in message.fields_by_name and message.full_name.startswith("google.protobuf."):
            return sample_text(message.fields_by_name["value"])  # a wrapper: its value's form
        return ONE_STRING_SAMPLES.get(message.full_name, "x")
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_words(enum_of(field))[0]
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true"
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return "1.5"
    if field.type == FieldDescriptor.TYPE_STRING:
        return "x"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return "eA"
    return "1"


def field_paths(
    descriptor: Descriptor, prefix: tuple[FieldDescriptor, ...] = ()
) -> Iterator[tuple[FieldDescriptor, ...]]:
    """Every dotted path through the request: maps, repeated and output-only fields, the inside of
    well-known types and of cycles included, down to CANDIDATE_DEPTH."""
    for field in descriptor.fields:
        path = (*prefix, field)
        yield path
        if field.message_type is not None and not field.is_repeated and len(path) < CANDIDATE_DEPTH:
            yield from field_paths(field.message_type, path)


def accepted_by_transcode(binding: Binding) -> set[str]:
    """The candidate keys the transcoder takes without a violation naming them."""
    path_params = {variable.field_path: "p1" for variable in binding.template.variables}
    accepted = set()
    for path in field_paths(binding.method.input_type):
        key = ".".join(f.name for f in path)
        try:
            build_request(binding, HttpInput(path_params, [(key, sample_text(path[-1]))]))
        except JsonInputError as error:
            assert key in {v.field for v in error.violations}, (key, error)
            continue
        accepted.add(key)
    return accepted


def advertised_by_openapi(services: Sequence[ServiceDescriptor], binding: Binding) -> set[str]:
    document = build_openapi(services, Comments())
    operation_id = f"{binding.method.containing_service.name}_{binding.method.name}"
    operation_id += str(binding.index + 1) if binding.index else ""
    operations = [op for item in document["paths"].values() for op in item.values()]
    operation = next(op for op in operations if op["operationId"] == operation_id)
    return {p["name"] for p in operation["parameters"] if p.get("in") == "query"}


def offered_by_manifest(services: Sequence[ServiceDescriptor], binding: Binding) -> set[str] | None:
    """None when the Playground does not show the binding (additional bindings, unowned RPCs)."""
    manifest = build_manifest(services, Comments())
    for resource in manifest["resources"]:
        for operation in resource["operations"]:
            if (operation["rpc"], operation["path"]) == (binding.method.name, binding.template.text):
                return {p["name"] for p in operation["query_params"]}
    return None


def assert_one_set(services: Sequence[ServiceDescriptor], binding: Binding) -> set[str]:
    accepted = accepted_by_transcode(binding)
    assert advertised_by_openapi(services, binding) == accepted
    offered = offered_by_manifest(services, binding)
    if offered is not None:
        assert offered == accepted
    return accepted


WEBHOOK_BINDINGS = bindings_for_services(default_services())


@pytest.mark.parametrize("binding", WEBHOOK_BINDINGS, ids=[f"{b.method.name}-{b.index}" for b in WEBHOOK_BINDINGS])
def test_gateway_openapi_and_playground_agree_on_every_webhook_service_query(binding: Binding) -> None:
    assert_one_set(default_services(), binding)


def test_list_filters_are_query_parameters_and_a_whole_request_body_leaves_none() -> None:
    by_name = {b.method.name: b for b in WEBHOOK_BINDINGS}
    assert {"page_size", "show_deleted", "direction", "enabled"} <= accepted_by_transcode(by_name["ListWebhooks"])
    assert accepted_by_transcode(by_name["UpdateWebhook"]) == {"update_mask"}
    assert accepted_by_transcode(by_name["DeliveryLog"]) >= {"since", "outcomes"}
    assert accepted_by_transcode(by_name["CreateWebhook"]) == set()


def probe_service(probe: tuple[ModuleType, ModuleType, Path]) -> ServiceDescriptor:
    messages, _, _ = probe
    service: ServiceDescriptor = messages.DESCRIPTOR.services_by_name["ProbeService"]
    return service


def test_nested_messages_are_one_set_too(probe: tuple[ModuleType, ModuleType, Path]) -> None:
    service = probe_service(probe)
    for binding in bindings_for_services([service]):
        assert_one_set([service], binding)


def test_which_fields_a_query_may_name(probe: tuple[ModuleType, ModuleType, Path]) -> None:
    service = probe_service(probe)
    list_items = next(b for b in bindings_for_services([service]) if b.method.name == "ListItems")
    assert offered_by_manifest([service], list_items) is not None  # the Playground shows it
    assert assert_one_set([service], list_items) == {
        "filter.min_size",  # nested singular messages as `a.b`
        "filter.color",
        "shelf.name",
        "shelf.room.name",  # three names deep at most: not shelf.room.building.name; shelf.next is a cycle
        "since",  # well-known types written as one string
        "max_age",
        "read_mask",
        "min_count",
        "tags",  # repeated scalars, by repeating the key
        # no repeated messages (filters, days), maps (labels), output-only fields (etag), Struct (extra)
    }


def test_search_binds_parent_name_in_one_rule_and_takes_it_from_the_query_in_the_other(
    probe: tuple[ModuleType, ModuleType, Path],
) -> None:
    service = probe_service(probe)
    by_path = {b.template.text: b for b in bindings_for_services([service]) if b.method.name == "Search"}
    nested = assert_one_set([service], by_path["/v1/{parent.name=shelves/*}/items"])
    everything = assert_one_set([service], by_path["/v1/all-items"])
    assert everything - nested == {"parent.name"}
