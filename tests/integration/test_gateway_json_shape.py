"""The JSON a REST caller sees is the seed's (the Webhook Playground page): its field names, its
lowercase enum words, `retry_policy` in camelCase, RFC 3339 timestamps; and input takes either
spelling of a field name."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from rest_calls import WEBHOOKS, RestCaller, create, error_of, rest_caller, violated_fields, webhook_body

# The Playground's Webhook schema, field by field, as the seed lists it.
SEED_FIELDS = (
    "id",
    "tenant_id",
    "app_id",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "source",
    "source_type",
    "is_deleted",
    "deleted_at",
    "deleted_by",
    "schema_version",
    "name",
    "direction",
    "url",
    "event_types",
    "signature_scheme",
    "vault_path",
    "headers",
    "enabled",
    "retry_policy",
    "last_delivery_at",
    "last_delivery_status",
    "consecutive_failures",
    "paused_at",
    "connector_id",
    "tags",
    "version",
    "application_id",
    "secret_fingerprint",
    "is_active",
)
TIMESTAMPS = ("created_at", "updated_at", "deleted_at", "last_delivery_at", "paused_at")
# RFC 3339 date-time: full date, 'T', full time with optional fraction, and a zone (Z or ±hh:mm).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url, app_id="app_1") as caller:
        yield caller


async def test_get_has_every_seed_field_and_no_other(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    webhook = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()

    assert sorted(webhook) == sorted(SEED_FIELDS)


async def test_field_values_have_the_seed_types(rest) -> None:
    fields = webhook_body(headers={"X-Team": "blue"}, tags=["t"], connector_id="con_1", application_id="app_9")
    webhook_id = (await rest.post(WEBHOOKS, json={"webhook": fields})).json()["webhook"]["id"]

    webhook = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()

    assert webhook["tenant_id"] == rest.tenant_id
    assert webhook["app_id"] == "app_1"
    assert (webhook["created_by"], webhook["updated_by"]) == ("person_1", "person_1")
    assert webhook["source"] == "edm"
    assert webhook["event_types"] == ["rfp.*"]
    assert webhook["headers"] == {"X-Team": "blue"}
    assert webhook["tags"] == ["t"]
    assert (webhook["connector_id"], webhook["application_id"]) == ("con_1", "app_9")
    assert webhook["enabled"] is True and webhook["is_active"] is True and webhook["is_deleted"] is False
    assert webhook["signature_scheme"] == "standard-webhooks"
    assert webhook["vault_path"].endswith(webhook_id)
    assert webhook["secret_fingerprint"].startswith("sha256:")
    for number in ("version", "schema_version", "consecutive_failures"):
        assert type(webhook[number]) is int, number


async def test_enums_are_the_seeds_lowercase_words(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    webhook = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()

    assert webhook["source_type"] == "api"
    assert webhook["direction"] == "outbound"


async def test_enum_words_are_accepted_as_input(rest) -> None:
    created = (await create(rest, source_type="backend"))["webhook"]

    assert created["source_type"] == "backend"


async def test_an_unknown_enum_word_is_400(rest) -> None:
    response = await rest.post(WEBHOOKS, json={"webhook": webhook_body(source_type="mainframe")})

    assert response.status_code == 400
    assert violated_fields(response) == {"webhook.source_type"}


async def test_retry_policy_is_camel_case(rest) -> None:
    created = await create(rest, retry_policy={"maxAttempts": 3, "backoff": "exponential", "timeoutMs": 5000})

    assert created["webhook"]["retry_policy"] == {"maxAttempts": 3, "backoff": "exponential", "timeoutMs": 5000}


async def test_timestamps_are_rfc3339_and_unset_ones_null(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    live = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()
    deleted = (await rest.delete(f"{WEBHOOKS}/{webhook_id}")).json()

    for name in ("created_at", "updated_at"):
        assert RFC3339.fullmatch(live[name]), live[name]
        assert datetime.fromisoformat(live[name]).utcoffset() is not None
    for name in ("deleted_at", "last_delivery_at", "paused_at"):
        assert live[name] is None
    assert RFC3339.fullmatch(deleted["deleted_at"])
    assert {name for name in TIMESTAMPS if deleted[name] is not None} == {"created_at", "updated_at", "deleted_at"}


async def test_input_accepts_both_spellings_of_a_field_name(rest) -> None:
    url = "http://127.0.0.1:9/a"
    snake = {"name": "snake", "url": url, "event_types": ["a.*"], "retry_policy": {"max_attempts": 2}}
    camel = {"name": "camel", "url": url, "eventTypes": ["a.*"], "retryPolicy": {"maxAttempts": 2}}

    from_snake = (await rest.post(WEBHOOKS, json={"webhook": snake})).json()["webhook"]
    from_camel = (await rest.post(WEBHOOKS, json={"webhook": camel})).json()["webhook"]

    for made in (from_snake, from_camel):
        assert made["event_types"] == ["a.*"]
        assert made["retry_policy"]["maxAttempts"] == 2


async def test_an_unknown_field_is_400_naming_it(rest) -> None:
    response = await rest.post(WEBHOOKS, json={"webhook": {**webhook_body(), "colour": "blue"}})

    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    assert violated_fields(response) == {"webhook.colour"}


async def test_an_unknown_top_level_field_is_400(rest) -> None:
    response = await rest.post(WEBHOOKS, json={"webhook": webhook_body(), "extra": 1})

    assert response.status_code == 400
    assert violated_fields(response) == {"extra"}


async def test_list_items_have_the_same_shape_as_get(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    listed = (await rest.get(WEBHOOKS)).json()
    fetched = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()

    assert set(listed) == {"webhooks", "next_page_token"}
    assert listed["webhooks"] == [fetched]
