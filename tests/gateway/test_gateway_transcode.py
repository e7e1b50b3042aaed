"""HTTP parts → request message: path variables, query parameters, body, default update_mask."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cpod.integration.v1 import webhook_pb2
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.gateway.jsonshape import JsonInputError
from webhookd.gateway.routes import Binding, bindings_for_services
from webhookd.gateway.transcode import HttpInput, build_request

SERVICE = pb.DESCRIPTOR.services_by_name["WebhookService"]
BINDINGS = {b.method.name: b for b in bindings_for_services([SERVICE])}


def transcode(name: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None) -> Any:
    binding = BINDINGS[name]
    params = binding.template.match(path)
    assert params is not None, path
    return build_request(binding, HttpInput(params, query or [], body))


def violations(name: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None) -> dict[str, str]:
    with pytest.raises(JsonInputError) as caught:
        transcode(name, path, query, body)
    return {v.field: v.description for v in caught.value.violations}


def test_path_variable_query_and_body_land_in_one_request() -> None:
    request = transcode(
        "UpdateWebhook",
        "/api/v1/integration/webhooks/whk_1",
        [("update_mask", "name,retryPolicy.maxAttempts")],
        {"name": "orders", "retry_policy": {"maxAttempts": 3}},
    )
    assert request.webhook.id == "whk_1"
    assert request.webhook.name == "orders"
    assert request.webhook.retry_policy.max_attempts == 3
    assert list(request.update_mask.paths) == ["name", "retry_policy.max_attempts"]


def test_path_wins_over_an_id_in_the_body() -> None:
    request = transcode("UpdateWebhook", "/api/v1/integration/webhooks/whk_1", body={"id": "whk_other"})
    assert request.webhook.id == "whk_1"


def test_patch_without_update_mask_updates_the_fields_in_the_body() -> None:
    request = transcode(
        "UpdateWebhook",
        "/api/v1/integration/webhooks/whk_1",
        body={"enabled": False, "retryPolicy": {"timeoutMs": 500}, "tags": [], "id": "whk_1", "version": 4},
    )
    assert list(request.update_mask.paths) == ["enabled", "retry_policy.timeout_ms", "tags"]
    assert request.webhook.HasField("enabled") and request.webhook.enabled is False
    assert request.webhook.version == 4


def test_default_mask_leaves_out_output_only_fields() -> None:
    request = transcode(
        "UpdateWebhook", "/api/v1/integration/webhooks/whk_1", body={"name": "n", "tenant_id": "t", "vault_path": "x"}
    )
    assert list(request.update_mask.paths) == ["name"]


def test_an_explicit_empty_object_replaces_the_whole_sub_message() -> None:
    request = transcode("UpdateWebhook", "/api/v1/integration/webhooks/whk_1", body={"retry_policy": {}})
    assert list(request.update_mask.paths) == ["retry_policy"]


def test_query_parameters_fill_list_filters_with_enum_words_and_both_spellings() -> None:
    request = transcode(
        "ListWebhooks",
        "/api/v1/integration/webhooks",
        [("pageSize", "10"), ("direction", "inbound"), ("enabled", "false"), ("show_deleted", "true")],
    )
    assert request.page_size == 10
    assert request.direction == webhook_pb2.DIRECTION_INBOUND
    assert request.HasField("enabled") and request.enabled is False
    assert request.show_deleted is True


def test_full_enum_names_work_in_the_query_too() -> None:
    request = transcode("ListWebhooks", "/api/v1/integration/webhooks", [("direction", "DIRECTION_OUTBOUND")])
    assert request.direction == webhook_pb2.DIRECTION_OUTBOUND


def test_bad_query_parameters_are_field_violations() -> None:
    found = violations(
        "ListWebhooks",
        "/api/v1/integration/webhooks",
        [("show_delted", "true"), ("page_size", "ten"), ("direction", "sideways"), ("name", "a"), ("name", "b")],
    )
    assert found["show_delted"] == "unknown query parameter 'show_delted'"
    assert found["page_size"] == "'ten' is not an integer"
    assert found["direction"] == "'sideways' is not one of: outbound, inbound"
    assert "more than once" in found["name"]


def test_query_cannot_set_the_body_or_path_fields() -> None:
    found = violations(
        "UpdateWebhook", "/api/v1/integration/webhooks/whk_1", [("webhook.name", "x")], body={"name": "n"}
    )
    assert found == {"webhook.name": "this field is sent in the request body"}
    assert violations("GetWebhook", "/api/v1/integration/webhooks/whk_1", [("id", "x")]) == {
        "id": "this field is set by the URL path"
    }


def test_query_is_refused_when_the_body_carries_the_whole_request() -> None:
    found = violations("PublishEvent", "/api/v1/integration/events", [("event_type", "x")], body={})
    assert "query parameters are not accepted" in found["event_type"]


def test_create_takes_the_bare_resource_as_its_body() -> None:
    request = transcode("CreateWebhook", "/api/v1/integration/webhooks", body={"name": "n", "tags": ["a"]})
    assert (request.webhook.name, list(request.webhook.tags), request.signing_secret) == ("n", ["a"], "")


def test_a_secret_is_refused_in_the_query() -> None:
    found = violations("CreateWebhook", "/api/v1/integration/webhooks", [("signing_secret", "s")], body={})
    assert found == {
        "signing_secret": "a secret never travels in the URL: send it in the Webhook-Signing-Secret header"
    }


def test_body_star_drops_a_path_field_copy() -> None:
    request = transcode("UndeleteWebhook", "/api/v1/integration/webhooks/whk_1:undelete", body={"id": "whk_2"})
    assert request.id == "whk_1"


def test_no_body_on_a_body_route_is_an_empty_request() -> None:
    request = transcode("UndeleteWebhook", "/api/v1/integration/webhooks/whk_1:undelete", body=None)
    assert request.id == "whk_1"


def test_unknown_body_field_names_its_path() -> None:
    found = violations("CreateWebhook", "/api/v1/integration/webhooks", body={"name": "n", "colour": 1})
    assert found == {"webhook.colour": "unknown field 'colour' in Webhook"}


def test_wrong_json_type_names_its_path() -> None:
    found = violations(
        "UpdateWebhook", "/api/v1/integration/webhooks/whk_1", body={"retry_policy": {"maxAttempts": "x"}}
    )
    assert list(found) == ["webhook.retry_policy.max_attempts"]


def test_delete_version_comes_from_the_query() -> None:
    request = transcode("DeleteWebhook", "/api/v1/integration/webhooks/whk_1", [("version", "7")])
    assert (request.id, request.version) == ("whk_1", 7)


def probe_binding(probe: tuple[ModuleType, ModuleType, Path], path: str) -> Binding:
    messages, _, _ = probe
    service = messages.DESCRIPTOR.services_by_name["ProbeService"]
    return next(b for b in bindings_for_services([service]) if b.template.text == path)


def test_nested_repeated_enum_and_timestamp_query_parameters(probe: tuple[ModuleType, ModuleType, Path]) -> None:
    binding = probe_binding(probe, "/v1/{parent.name=shelves/*}/items")
    params = binding.template.match("/v1/shelves/s1/items")
    assert params is not None
    query = [
        ("tags", "a"),
        ("tags", "b"),
        ("filter.minSize", "3"),
        ("filter.color", "dark_blue"),
        ("colors", "red"),
        ("colors", "COLOR_DARK_BLUE"),
        ("since", "2024-05-01T10:00:00Z"),
        ("limit", "9007199254740993"),
    ]
    request = build_request(binding, HttpInput(params, query, None))
    assert request.parent.name == "shelves/s1"
    assert list(request.tags) == ["a", "b"]
    assert (request.filter.min_size, request.filter.color) == (3, 2)
    assert list(request.colors) == [1, 2]
    assert request.since.seconds == 1714557600
    assert request.limit == 9007199254740993


def test_messages_and_maps_need_a_sub_field_in_the_query(probe: tuple[ModuleType, ModuleType, Path]) -> None:
    binding = probe_binding(probe, "/v1/all-items")
    with pytest.raises(JsonInputError) as caught:
        build_request(binding, HttpInput({}, [("filter", "x"), ("labels", "y")], None))
    assert {v.field for v in caught.value.violations} == {"filter", "labels"}


def test_a_field_outside_the_query_set_is_refused_by_its_name(probe: tuple[ModuleType, ModuleType, Path]) -> None:
    binding = probe_binding(probe, "/v1/all-items")
    with pytest.raises(JsonInputError) as caught:
        build_request(binding, HttpInput({}, [("filter", "x"), ("since.seconds", "5")], None))
    assert {v.field: v.description for v in caught.value.violations} == {
        "filter": "cannot be set from text: name one of its sub-fields (filter.min_size, filter.color)",
        "since.seconds": "is not a query parameter of this method",
    }
