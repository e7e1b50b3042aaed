"""A webhook the real service stored, read over REST: the values the server fills in have the seed's
(the Webhook Playground page's) types and formats, and a list shows each webhook as a get does.

How any message maps to JSON (field names, enum words, camelCase retry_policy, nulls, either input
spelling, unknown fields) is tests/gateway/test_gateway_jsonshape.py, with no server or database.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from rest_calls import WEBHOOKS, RestCaller, create, rest_caller, webhook_body

from playground_seed import ADDED_FIELDS, seed_schema

TIMESTAMPS = ("created_at", "updated_at", "deleted_at", "last_delivery_at", "paused_at")
# RFC 3339 date-time: full date, 'T', full time with optional fraction, and a zone (Z or ±hh:mm).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url, app_id="app_1") as caller:
        yield caller


async def test_stored_webhook_has_the_seed_fields_with_the_seed_types(rest) -> None:
    fields = webhook_body(
        headers={"X-Team": "blue"},
        tags=["t"],
        connector_id="con_1",
        application_id="app_9",
        retry_policy={"maxAttempts": 3, "backoff": "exponential", "timeoutMs": 5000},
    )
    webhook_id = (await rest.post(WEBHOOKS, json=fields)).json()["webhook"]["id"]

    webhook = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()

    assert list(webhook) == [field.name for field in seed_schema()] + list(ADDED_FIELDS)
    assert webhook["tenant_id"] == rest.tenant_id
    assert webhook["app_id"] == "app_1"
    assert (webhook["created_by"], webhook["updated_by"]) == ("person_1", "person_1")
    assert webhook["source"] == "edm"
    assert (webhook["source_type"], webhook["direction"]) == ("api", "outbound")
    assert webhook["event_types"] == ["rfp.*"]
    assert webhook["headers"] == {"X-Team": "blue"}
    assert webhook["tags"] == ["t"]
    assert (webhook["connector_id"], webhook["application_id"]) == ("con_1", "app_9")
    assert webhook["retry_policy"] == {"maxAttempts": 3, "backoff": "exponential", "timeoutMs": 5000}
    assert webhook["enabled"] is True and webhook["is_active"] is True and webhook["is_deleted"] is False
    assert webhook["signature_scheme"] == "standard-webhooks"
    assert webhook["vault_path"].endswith(webhook_id)
    assert webhook["secret_fingerprint"].startswith("sha256:")
    for number in ("version", "schema_version", "consecutive_failures"):
        assert type(webhook[number]) is int, number


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


async def test_list_items_have_the_same_shape_as_get(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    listed = (await rest.get(WEBHOOKS)).json()
    fetched = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()

    assert set(listed) == {"webhooks", "next_page_token"}
    assert listed["webhooks"] == [fetched]
