"""API answers are one tenant's data, some of them secrets: no browser or proxy cache may keep them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rest_calls import WEBHOOKS, RestCaller, create, rest_caller

LOG = "/api/v1/integration/delivery-log"


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


async def test_a_created_webhooks_signing_secret_is_not_stored_by_any_cache(rest) -> None:
    response = await rest.post(WEBHOOKS, json={"name": "orders", "url": "http://127.0.0.1:9/hook"})

    assert response.status_code == 200, response.text
    assert response.json()["signing_secret"].startswith("whsec_")
    assert response.headers["cache-control"] == "no-store"


async def test_a_rotated_signing_secret_is_not_stored_by_any_cache(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    response = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={})

    assert response.status_code == 200, response.text
    assert response.json()["signing_secret"]
    assert response.headers["cache-control"] == "no-store"


async def test_reads_and_the_delivery_log_are_not_stored_by_any_cache(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    read = await rest.get(f"{WEBHOOKS}/{webhook_id}")
    listed = await rest.get(WEBHOOKS)
    log = await rest.get(LOG, params={"webhook_id": webhook_id}, headers={"Accept": "text/event-stream"})

    assert [read.status_code, listed.status_code, log.status_code] == [200, 200, 200]
    assert read.headers["cache-control"] == "no-store"
    assert listed.headers["cache-control"] == "no-store"
    assert log.headers["cache-control"] == "no-store"
