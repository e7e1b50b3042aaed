"""Conditional writes and idempotent publishing over HTTP: `ETag` comes from `version`; `If-Match`
makes PATCH/DELETE conditional (stale or weak: 412 FAILED_PRECONDITION); a stale `version` in the
body is 409 ABORTED; `If-None-Match` on GET is 304 while the ETag is current; the same
`Idempotency-Key` on POST /events publishes once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rest_calls import EVENTS, WEBHOOKS, RestCaller, create, error_of, rest_caller, violated_fields


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


@pytest.fixture
async def webhook(rest) -> dict:
    return (await create(rest, name="conditional"))["webhook"]


# -- ETag ------------------------------------------------------------------------------------------


async def test_etag_follows_the_version_through_writes(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    assert (await rest.get(url)).headers["etag"] == '"1"'

    patched = await rest.patch(url, json={"name": "v2"})
    deleted = await rest.delete(url)
    restored = await rest.post(f"{url}:undelete")

    assert [r.headers["etag"] for r in (patched, deleted, restored)] == ['"2"', '"3"', '"4"']
    assert (await rest.get(url)).headers["etag"] == '"4"'


async def test_get_with_the_current_etag_in_if_none_match_is_304_until_a_write(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    etag = (await rest.get(url)).headers["etag"]

    unchanged = await rest.get(url, headers={"If-None-Match": etag})
    await rest.patch(url, json={"name": "v2"})
    changed = await rest.get(url, headers={"If-None-Match": etag})

    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)
    assert (changed.status_code, changed.json()["name"], changed.headers["etag"]) == (200, "v2", '"2"')


async def test_list_and_publish_carry_no_etag(rest, webhook) -> None:
    assert "etag" not in (await rest.get(WEBHOOKS)).headers
    assert "etag" not in (await rest.post(EVENTS, json={"event_type": "rfp.created"})).headers


# -- If-Match on PATCH -----------------------------------------------------------------------------


async def test_patch_with_the_current_etag_succeeds(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    etag = (await rest.get(url)).headers["etag"]

    response = await rest.patch(url, json={"name": "renamed"}, headers={"If-Match": etag})

    assert response.status_code == 200
    assert response.json()["name"] == "renamed"


async def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    stale = (await rest.get(url)).headers["etag"]
    await rest.patch(url, json={"name": "someone else"})

    response = await rest.patch(url, json={"name": "mine"}, headers={"If-Match": stale})

    assert response.status_code == 412
    assert error_of(response)["status"] == "FAILED_PRECONDITION"
    assert (await rest.get(url)).json()["name"] == "someone else"


async def test_patch_with_a_stale_version_in_the_body_is_409(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    await rest.patch(url, json={"name": "v2"})

    response = await rest.patch(url, json={"name": "mine", "version": 1})

    assert response.status_code == 409
    assert error_of(response)["status"] == "ABORTED"


async def test_if_match_star_is_unconditional(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    await rest.patch(url, json={"name": "v2"})

    response = await rest.patch(url, json={"name": "v3"}, headers={"If-Match": "*"})

    assert response.status_code == 200


async def test_a_weak_if_match_never_matches_so_is_412_and_changes_nothing(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"

    response = await rest.patch(url, json={"name": "x"}, headers={"If-Match": 'W/"1"'})

    assert response.status_code == 412
    assert error_of(response)["status"] == "FAILED_PRECONDITION"
    assert (await rest.get(url)).json()["name"] == webhook["name"]


async def test_a_malformed_if_match_is_400(rest, webhook) -> None:
    response = await rest.patch(f"{WEBHOOKS}/{webhook['id']}", json={"name": "x"}, headers={"If-Match": "one"})

    assert response.status_code == 400
    assert violated_fields(response) == {"If-Match"}


async def test_if_match_disagreeing_with_the_body_version_is_400(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"

    response = await rest.patch(url, json={"name": "x", "version": 1}, headers={"If-Match": '"7"'})

    assert response.status_code == 400


# -- If-Match on DELETE ----------------------------------------------------------------------------


async def test_delete_with_the_current_etag_succeeds(rest, webhook) -> None:
    response = await rest.delete(f"{WEBHOOKS}/{webhook['id']}", headers={"If-Match": '"1"'})

    assert response.status_code == 200
    assert response.json()["is_deleted"] is True


async def test_delete_with_a_stale_if_match_is_412_and_keeps_the_webhook(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    await rest.patch(url, json={"name": "v2"})

    response = await rest.delete(url, headers={"If-Match": '"1"'})

    assert response.status_code == 412
    assert error_of(response)["status"] == "FAILED_PRECONDITION"
    assert (await rest.get(url)).json()["is_deleted"] is False


async def test_delete_with_a_stale_version_query_is_409(rest, webhook) -> None:
    url = f"{WEBHOOKS}/{webhook['id']}"
    await rest.patch(url, json={"name": "v2"})

    response = await rest.delete(url, params={"version": 1})

    assert response.status_code == 409
    assert error_of(response)["status"] == "ABORTED"


# -- Idempotency-Key -------------------------------------------------------------------------------


async def test_the_same_idempotency_key_publishes_once(rest, webhook, database) -> None:
    event = {"event_type": "rfp.created", "payload": {"rfp_id": 1}}

    first = await rest.post(EVENTS, json=event, headers={"Idempotency-Key": "order-1"})
    again = await rest.post(EVENTS, json=event, headers={"Idempotency-Key": "order-1"})

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["event_id"] == first.json()["event_id"]
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    deliveries = await database.value("SELECT count(*) FROM deliveries WHERE webhook_id = :id", id=webhook["id"])
    assert deliveries == 1


async def test_different_idempotency_keys_publish_twice(rest, webhook) -> None:
    event = {"event_type": "rfp.created"}

    first = await rest.post(EVENTS, json=event, headers={"Idempotency-Key": "a"})
    second = await rest.post(EVENTS, json=event, headers={"Idempotency-Key": "b"})

    assert first.json()["event_id"] != second.json()["event_id"]
    assert second.json()["duplicate"] is False


async def test_idempotency_keys_are_per_tenant(gateway, rest, webhook) -> None:
    first = (await rest.post(EVENTS, json={"event_type": "rfp.created"}, headers={"Idempotency-Key": "k"})).json()

    async with rest_caller(gateway.url) as other:
        theirs = await other.post(EVENTS, json={"event_type": "rfp.created"}, headers={"Idempotency-Key": "k"})

    assert theirs.json()["event_id"] != first["event_id"]
    assert theirs.json()["duplicate"] is False


async def test_an_idempotency_key_header_disagreeing_with_the_body_is_400(rest) -> None:
    response = await rest.post(
        EVENTS, json={"event_type": "rfp.created", "idempotency_key": "x"}, headers={"Idempotency-Key": "y"}
    )

    assert response.status_code == 400
    assert violated_fields(response) == {"idempotency_key"}
