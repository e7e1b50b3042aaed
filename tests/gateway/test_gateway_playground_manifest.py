"""The manifest the Playground renders: built from the descriptors and comments, as the seed shows it."""

from __future__ import annotations

from typing import Any

import pytest

from playground_seed import ADDED_FIELDS, EMBEDDED_SEED, parse_schema, seed_schema
from webhookd.gateway.descriptors import default_descriptor_set, default_services, load_comments
from webhookd.gateway.manifest import build_manifest
from webhookd.gateway.routes import bindings_for_services


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return build_manifest(default_services(), load_comments(default_descriptor_set()))


def resource(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in manifest["resources"] if r["name"] == name)


def operation(manifest: dict[str, Any], resource_name: str, name: str) -> dict[str, Any]:
    return next(o for o in resource(manifest, resource_name)["operations"] if o["name"] == name)


def test_the_seed_table_parses_the_same_from_the_file_and_the_embedded_copy() -> None:
    assert seed_schema() == parse_schema(EMBEDDED_SEED)


def test_webhook_header_is_the_seeds(manifest: dict[str, Any]) -> None:
    webhook = resource(manifest, "Webhook")
    assert webhook["path"] == "/api/v1/integration/webhooks"
    assert webhook["description"] == "An outbound webhook endpoint."


def test_webhook_fields_are_the_seeds_in_its_order_with_its_types_and_notes(manifest: dict[str, Any]) -> None:
    fields = resource(manifest, "Webhook")["fields"]
    seed = seed_schema()
    assert [f["name"] for f in fields] == [s.name for s in seed] + list(ADDED_FIELDS)
    for field, expected in zip(fields, seed, strict=False):
        assert field["type"] == expected.type, field["name"]
        assert field["notes"] == expected.notes, field["name"]
        if expected.type == "enum":
            assert field["values"] == list(expected.values)
        if expected.starred:
            assert field["required"], field["name"]


def test_webhook_field_behaviours_come_from_the_protos(manifest: dict[str, Any]) -> None:
    fields = {f["name"]: f for f in resource(manifest, "Webhook")["fields"]}
    assert fields["name"]["required"]  # REQUIRED in the proto, though the seed does not star it
    assert not fields["url"]["required"]
    assert fields["id"]["output_only"] and fields["vault_path"]["output_only"]
    assert not fields["name"]["output_only"]
    assert fields["direction"]["immutable"] and not fields["url"]["immutable"]
    assert fields["direction"]["values"] == ["outbound", "inbound"]  # typed `string`, as the seed does


def test_standard_operations_come_first_then_the_custom_ones(manifest: dict[str, Any]) -> None:
    names = [o["name"] for o in resource(manifest, "Webhook")["operations"]]
    assert names[:5] == ["list", "get", "create", "update", "delete"]
    assert {"undelete", "rotate", "resume", "log", "send", "ackDeliveryLog"} <= set(names[5:])
    assert len(names) == len(set(names))


def test_operations_carry_their_http_rule(manifest: dict[str, Any]) -> None:
    update = operation(manifest, "Webhook", "update")
    assert (update["method"], update["path"], update["body"]) == (
        "PATCH",
        "/api/v1/integration/webhooks/{webhook.id}",
        "webhook",
    )
    assert [p["name"] for p in update["path_params"]] == ["webhook.id"]
    assert [h["name"] for h in update["headers"]] == ["If-Match"]
    assert update["example"] == {"name": "orders (EU)", "tags": ["eu"]}
    assert "name" in [f["name"] for f in update["body_fields"]]
    assert "id" not in [f["name"] for f in update["body_fields"]]  # output only

    create = operation(manifest, "Webhook", "create")
    assert (create["method"], create["path"], create["body"]) == ("POST", "/api/v1/integration/webhooks", "webhook")
    assert create["example"]["url"].startswith("https://") and "webhook" not in create["example"]
    assert create["query_params"] == []
    assert [(h["name"], h["secret"]) for h in create["headers"]] == [
        ("Idempotency-Key", False),
        ("Webhook-Signing-Secret", True),
    ]

    listing = operation(manifest, "Webhook", "list")
    assert listing["body"] == "" and "example" not in listing
    params = {p["name"]: p for p in listing["query_params"]}
    assert params["show_deleted"]["type"] == "boolean"
    assert params["page_size"]["type"] == "number"

    delete = operation(manifest, "Webhook", "delete")
    assert (delete["method"], delete["path"]) == ("DELETE", "/api/v1/integration/webhooks/{id}")
    assert [p["name"] for p in delete["query_params"]] == ["version"]

    undelete = operation(manifest, "Webhook", "undelete")
    assert undelete["path"] == "/api/v1/integration/webhooks/{id}:undelete"
    assert undelete["example"] == {}

    publish = operation(manifest, "Event", "publish")
    assert (publish["method"], publish["path"]) == ("POST", "/api/v1/integration/events")
    assert [h["name"] for h in publish["headers"]] == ["Idempotency-Key"]
    assert publish["example"] == {"event_type": "rfp.created", "payload": {"rfp_id": 7}}

    rotate = operation(manifest, "Webhook", "rotate")
    assert rotate["rpc"] == "RotateWebhookSecret"
    assert rotate["grpc"] == "/cpod.integration.v1.WebhookService/RotateWebhookSecret"

    log = operation(manifest, "Webhook", "log")
    assert log["streaming"] and log["path"] == "/api/v1/integration/delivery-log"
    log_params = {p["name"]: p for p in log["query_params"]}
    assert {"webhook_id", "follow", "after_cursor", "since", "outcomes"} <= set(log_params)
    assert log_params["outcomes"]["repeated"] and log_params["since"]["type"] == "date-time"


def test_required_timestamps_get_a_usable_example(manifest: dict[str, Any]) -> None:
    recover = operation(manifest, "Webhook", "recover")
    assert recover["example"]["since"].endswith("Z")


def test_deliveries_are_a_resource_of_their_own(manifest: dict[str, Any]) -> None:
    delivery = resource(manifest, "Delivery")
    assert delivery["path"] == "/api/v1/integration/deliveries"
    assert delivery["description"] == "One event on its way to one webhook."
    assert [o["name"] for o in delivery["operations"]][:2] == ["list", "get"]
    assert "redeliver" in [o["name"] for o in delivery["operations"]]
    types = {f["name"]: f["type"] for f in delivery["fields"]}
    assert types["attempts"] == "number" and types["next_attempt_at"] == "date-time"
    assert types["status"] == "string"


def test_every_rpc_with_an_http_rule_appears_exactly_once(manifest: dict[str, Any]) -> None:
    # An RPC missing here is one the Playground cannot send (AckInboundEvents was).
    rpcs = [o["rpc"] for r in manifest["resources"] for o in r["operations"]]
    served = {binding.method.name for binding in bindings_for_services(default_services())}
    assert sorted(rpcs) == sorted(served)


def test_an_acknowledgement_sits_beside_the_stream_it_acknowledges(manifest: dict[str, Any]) -> None:
    operations = {o["rpc"]: o for o in resource(manifest, "Webhook")["operations"]}
    assert {"DeliveryLog", "AckDeliveryLog", "StreamInboundEvents", "AckInboundEvents"} <= set(operations)
    # Two acks on one page: each is named for what it acknowledges, so tabs and #fragments differ.
    assert operations["AckDeliveryLog"]["name"] == "ackDeliveryLog"
    assert operations["AckInboundEvents"]["name"] == "ackInboundEvents"


def test_without_comments_the_manifest_is_complete_but_silent() -> None:
    bare = build_manifest(default_services(), load_comments(None))
    webhook = resource(bare, "Webhook")
    assert webhook["description"] == ""
    assert [f["type"] for f in webhook["fields"]][: len(seed_schema())] == [s.type for s in seed_schema()]
