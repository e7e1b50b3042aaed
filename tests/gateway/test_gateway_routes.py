"""The route table comes from the google.api.http options, nothing else."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from cpod.integration.v1 import webhook_service_pb2
from google.api import annotations_pb2

from webhookd.gateway.routes import (
    TemplateError,
    Variable,
    bindings_for_services,
    group_by_template,
    parse_template,
)

SERVICE = webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"]


def test_every_rpc_with_an_http_rule_has_a_route() -> None:
    annotated = {m.name for m in SERVICE.methods if m.GetOptions().HasExtension(annotations_pb2.http)}
    routed = {b.method.name for b in bindings_for_services([SERVICE])}
    assert annotated == routed
    assert {
        "ListWebhooks",
        "GetWebhook",
        "CreateWebhook",
        "UpdateWebhook",
        "DeleteWebhook",
        "UndeleteWebhook",
    } <= routed


def test_webhook_routes_have_the_documented_verbs_templates_and_bodies() -> None:
    table = {
        b.method.name: (b.http_method, b.template.text, b.body, b.response_body)
        for b in bindings_for_services([SERVICE])
    }
    assert table["ListWebhooks"] == ("GET", "/api/v1/integration/webhooks", "", "")
    assert table["GetWebhook"] == ("GET", "/api/v1/integration/webhooks/{id}", "", "webhook")
    assert table["CreateWebhook"] == ("POST", "/api/v1/integration/webhooks", "webhook", "")
    assert table["UpdateWebhook"] == ("PATCH", "/api/v1/integration/webhooks/{webhook.id}", "webhook", "webhook")
    assert table["DeleteWebhook"] == ("DELETE", "/api/v1/integration/webhooks/{id}", "", "webhook")
    assert table["UndeleteWebhook"] == ("POST", "/api/v1/integration/webhooks/{id}:undelete", "*", "webhook")


def test_methods_sharing_a_template_share_one_route() -> None:
    grouped = {t.text: sorted(m) for t, m in group_by_template(bindings_for_services([SERVICE]))}
    assert grouped["/api/v1/integration/webhooks"] == ["GET", "POST"]
    # PATCH's {webhook.id} matches the same paths as {id}: one route, so 405s list all three.
    assert grouped["/api/v1/integration/webhooks/{id}"] == ["DELETE", "GET", "PATCH"]


def test_nested_variable_is_a_field_path() -> None:
    template = parse_template("/api/v1/integration/webhooks/{webhook.id}")
    assert template.variables == (Variable("webhook.id", ("*",)),)
    assert template.match("/api/v1/integration/webhooks/whk_1") == {"webhook.id": "whk_1"}
    assert template.match("/api/v1/integration/webhooks/whk_1/extra") is None


def test_custom_verb_matches_only_its_own_template() -> None:
    undelete = parse_template("/api/v1/integration/webhooks/{id}:undelete")
    get = parse_template("/api/v1/integration/webhooks/{id}")
    assert undelete.verb == "undelete"
    assert undelete.match("/api/v1/integration/webhooks/whk_1:undelete") == {"id": "whk_1"}
    assert undelete.match("/api/v1/integration/webhooks/whk_1") is None
    assert get.match("/api/v1/integration/webhooks/whk_1:undelete") is None


def test_an_encoded_colon_is_data_not_a_verb() -> None:
    get = parse_template("/api/v1/integration/webhooks/{id}")
    assert get.match("/api/v1/integration/webhooks/a%3Ab") == {"id": "a:b"}


def test_sub_template_and_double_star_variables() -> None:
    shelf = parse_template("/v1/{parent.name=shelves/*}/items")
    assert shelf.match("/v1/shelves/s1/items") == {"parent.name": "shelves/s1"}
    assert shelf.match("/v1/racks/s1/items") is None
    files = parse_template("/v1/files/{path=**}")
    assert files.match("/v1/files/a/b%20c/d") == {"path": "a/b c/d"}
    assert files.match("/v1/files/a%2Fb") == {"path": "a%2Fb"}  # an encoded slash stays encoded


def test_openapi_path_names_each_variable_by_field_path() -> None:
    assert parse_template("/v1/{parent.name=shelves/*}/items").openapi_path() == "/v1/{parent.name}/items"
    assert parse_template("/w/{id}:undelete").openapi_path() == "/w/{id}:undelete"


@pytest.mark.parametrize("bad", ["no-slash", "/a/{id", "/a/{1x}", "/a//b", "/a/{x={y}}"])
def test_malformed_templates_are_rejected_at_start_up(bad: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(bad)


def test_additional_bindings_become_routes(probe: tuple[ModuleType, ModuleType, Path]) -> None:
    messages, _, _ = probe
    service = messages.DESCRIPTOR.services_by_name["ProbeService"]
    paths = sorted(b.template.text for b in bindings_for_services([service]) if b.method.name == "Search")
    assert paths == ["/v1/all-items", "/v1/{parent.name=shelves/*}/items"]
