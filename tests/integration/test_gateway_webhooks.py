"""Every webhook route over HTTP, against the real gateway in front of the real service: the happy
path of each, and the errors a caller can make on it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from rest_calls import (
    EVENTS,
    WEBHOOKS,
    RestCaller,
    create,
    detail_of,
    error_of,
    reason_of,
    rest_caller,
    violated_fields,
    webhook_body,
)

from webhookd.domain.secret_rotation import MAX_PREVIOUS, TOO_MANY_SIGNING_SECRETS


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


# -- list ------------------------------------------------------------------------------------------


async def test_list_returns_the_callers_webhooks_oldest_first(rest) -> None:
    first = (await create(rest, name="first"))["webhook"]
    second = (await create(rest, name="second"))["webhook"]

    response = await rest.get(WEBHOOKS)

    assert response.status_code == 200
    assert [w["id"] for w in response.json()["webhooks"]] == [first["id"], second["id"]]
    assert response.json()["next_page_token"] == ""


async def test_list_pages_with_page_size_and_page_token(rest) -> None:
    ids = [(await create(rest, name=f"w{i}"))["webhook"]["id"] for i in range(3)]

    page = (await rest.get(WEBHOOKS, params={"page_size": 2})).json()
    rest_of = (await rest.get(WEBHOOKS, params={"page_size": 2, "page_token": page["next_page_token"]})).json()

    assert [w["id"] for w in page["webhooks"]] == ids[:2]
    assert [w["id"] for w in rest_of["webhooks"]] == ids[2:]
    assert rest_of["next_page_token"] == ""


async def test_list_filters_from_query_parameters(rest) -> None:
    await create(rest, name="plain")
    tagged = (await create(rest, name="tagged", tags=["blue"]))["webhook"]

    response = await rest.get(WEBHOOKS, params={"tag": "blue"})

    assert [w["id"] for w in response.json()["webhooks"]] == [tagged["id"]]


async def test_list_with_a_bad_page_token_is_400(rest) -> None:
    response = await rest.get(WEBHOOKS, params={"page_token": "not-a-token"})

    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    assert "page_token" in violated_fields(response)


async def test_list_with_an_unknown_query_parameter_is_400(rest) -> None:
    response = await rest.get(WEBHOOKS, params={"colour": "blue"})

    assert response.status_code == 400
    assert violated_fields(response) == {"colour"}


async def test_list_with_a_non_boolean_flag_is_400(rest) -> None:
    response = await rest.get(WEBHOOKS, params={"show_deleted": "maybe"})

    assert response.status_code == 400
    assert violated_fields(response) == {"show_deleted"}


# -- get -------------------------------------------------------------------------------------------


async def test_get_returns_the_webhook_with_its_etag(rest) -> None:
    created = (await create(rest))["webhook"]

    response = await rest.get(f"{WEBHOOKS}/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


async def test_get_an_unknown_id_is_404(rest) -> None:
    response = await rest.get(f"{WEBHOOKS}/whk_01J0000000000000000000000")

    assert response.status_code == 404
    assert error_of(response)["status"] == "NOT_FOUND"


# -- create ----------------------------------------------------------------------------------------


async def test_create_returns_the_webhook_and_its_secret_once(rest) -> None:
    response = await rest.post(WEBHOOKS, json=webhook_body(name="orders", tags=["a"]))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"webhook", "signing_secret", "public_key", "duplicate"}
    assert body["duplicate"] is False  # no idempotency key: a create of its own
    assert body["signing_secret"].startswith("whsec_")
    assert body["public_key"] == ""  # only an ed25519 webhook has one
    assert body["webhook"]["id"].startswith("whk_")
    assert body["webhook"]["tenant_id"] == rest.tenant_id
    assert body["webhook"]["created_by"] == "person_1"
    assert (body["webhook"]["name"], body["webhook"]["tags"]) == ("orders", ["a"])
    assert "signing_secret" not in (await rest.get(f"{WEBHOOKS}/{body['webhook']['id']}")).json()


async def test_create_keeps_a_signing_secret_given_in_its_header(rest) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()

    response = await rest.post(WEBHOOKS, json=webhook_body(), headers={"Webhook-Signing-Secret": secret})

    assert response.status_code == 200
    assert response.json()["signing_secret"] == secret


async def test_create_without_a_name_is_400_naming_the_field(rest) -> None:
    response = await rest.post(WEBHOOKS, json={"url": "http://127.0.0.1:9/hook"})

    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    assert "webhook.name" in violated_fields(response)


async def test_create_with_a_bad_url_is_400_naming_the_field(rest) -> None:
    response = await rest.post(WEBHOOKS, json=webhook_body(url="ftp://example.com/x"))

    assert response.status_code == 400
    assert "webhook.url" in violated_fields(response)


# -- update (PATCH) --------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(rest) -> None:
    created = (await create(rest, name="before", tags=["keep"]))["webhook"]

    response = await rest.patch(f"{WEBHOOKS}/{created['id']}", json={"name": "after"})

    assert response.status_code == 200
    updated = response.json()
    assert (updated["name"], updated["tags"], updated["url"]) == ("after", ["keep"], created["url"])
    assert updated["version"] == created["version"] + 1
    assert response.headers["etag"] == f'"{updated["version"]}"'
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(created["updated_at"])


async def test_patch_with_an_explicit_update_mask_query(rest) -> None:
    created = (await create(rest, name="before", tags=["old"]))["webhook"]

    response = await rest.patch(
        f"{WEBHOOKS}/{created['id']}", params={"update_mask": "tags"}, json={"name": "ignored", "tags": ["new"]}
    )

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["tags"]) == ("before", ["new"])


async def test_patch_with_a_mask_of_star_replaces_the_webhook(rest) -> None:
    created = (await create(rest, name="before", tags=["old"]))["webhook"]
    body = {"name": "after", "url": created["url"], "event_types": ["rfp.created"]}

    response = await rest.patch(f"{WEBHOOKS}/{created['id']}", params={"update_mask": "*"}, json=body)

    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["tags"]) == ("after", [])


async def test_patch_of_a_null_enabled_resets_it_to_its_default_not_disabled(rest) -> None:
    created = (await create(rest))["webhook"]
    await rest.patch(f"{WEBHOOKS}/{created['id']}", json={"enabled": False})

    reset = await rest.patch(f"{WEBHOOKS}/{created['id']}", json={"enabled": None})

    assert reset.status_code == 200
    assert (reset.json()["enabled"], reset.json()["is_active"]) == (True, True)


async def test_a_mask_naming_enabled_without_a_value_leaves_a_webhook_enabled(rest) -> None:
    created = (await create(rest))["webhook"]

    response = await rest.patch(
        f"{WEBHOOKS}/{created['id']}", params={"update_mask": "enabled,name"}, json={"name": "n"}
    )

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["enabled"]) == ("n", True)


async def test_patch_an_unknown_id_is_404(rest) -> None:
    response = await rest.patch(f"{WEBHOOKS}/whk_01J0000000000000000000000", json={"name": "x"})

    assert response.status_code == 404


async def test_patch_with_an_invalid_value_is_400(rest) -> None:
    created = (await create(rest))["webhook"]

    response = await rest.patch(f"{WEBHOOKS}/{created['id']}", json={"url": "not a url"})

    assert response.status_code == 400
    assert "webhook.url" in violated_fields(response)


async def test_patch_of_an_output_only_field_is_400(rest) -> None:
    created = (await create(rest))["webhook"]

    response = await rest.patch(f"{WEBHOOKS}/{created['id']}", params={"update_mask": "tenant_id"}, json={})

    assert response.status_code == 400


@pytest.mark.parametrize("path", ["Name", "NAME", "Retry_policy.max_attempts", "retryPolicy.MaxAttempts"])
async def test_an_update_mask_path_in_neither_spelling_is_400_naming_it_as_sent(rest, path: str) -> None:
    """A path is snake_case or lowerCamelCase (FieldMask's JSON form); anything else is not read as
    a field by folding its case, and the error quotes what the caller wrote."""
    created = (await create(rest))["webhook"]

    response = await rest.patch(f"{WEBHOOKS}/{created['id']}", params={"update_mask": path}, json={"name": "n"})

    assert response.status_code == 400
    [violation] = detail_of(response, "BadRequest")["fieldViolations"]
    assert violation["field"] == "update_mask.paths[0]"
    assert repr(path) in violation["description"]


# -- delete and undelete ---------------------------------------------------------------------------


async def test_delete_soft_deletes_and_hides_from_the_default_list(rest) -> None:
    created = (await create(rest))["webhook"]

    response = await rest.delete(f"{WEBHOOKS}/{created['id']}")

    assert response.status_code == 200
    deleted = response.json()
    assert deleted["is_deleted"] is True
    assert deleted["deleted_by"] == "person_1"
    assert datetime.fromisoformat(deleted["deleted_at"]).tzinfo is not None
    assert response.headers["etag"] == f'"{deleted["version"]}"'
    assert (await rest.get(WEBHOOKS)).json()["webhooks"] == []
    shown = (await rest.get(WEBHOOKS, params={"show_deleted": "true"})).json()["webhooks"]
    assert [w["id"] for w in shown] == [created["id"]]


async def test_delete_an_unknown_id_is_404(rest) -> None:
    response = await rest.delete(f"{WEBHOOKS}/whk_01J0000000000000000000000")

    assert response.status_code == 404


async def test_undelete_restores_a_deleted_webhook(rest) -> None:
    created = (await create(rest))["webhook"]
    await rest.delete(f"{WEBHOOKS}/{created['id']}")

    response = await rest.post(f"{WEBHOOKS}/{created['id']}:undelete")

    assert response.status_code == 200
    assert (response.json()["is_deleted"], response.json()["deleted_at"]) == (False, None)
    assert [w["id"] for w in (await rest.get(WEBHOOKS)).json()["webhooks"]] == [created["id"]]


async def test_undelete_of_a_live_webhook_is_409_already_exists(rest) -> None:
    created = (await create(rest))["webhook"]

    response = await rest.post(f"{WEBHOOKS}/{created['id']}:undelete", json={})

    assert response.status_code == 409
    assert error_of(response)["status"] == "ALREADY_EXISTS"


async def test_undelete_an_unknown_id_is_404(rest) -> None:
    response = await rest.post(f"{WEBHOOKS}/whk_01J0000000000000000000000:undelete")

    assert response.status_code == 404


# -- publish ---------------------------------------------------------------------------------------


async def test_publish_queues_one_delivery_per_matching_webhook(rest) -> None:
    await create(rest, event_types=["rfp.*"])
    await create(rest, event_types=["invoice.*"])

    response = await rest.post(EVENTS, json={"event_type": "rfp.created", "payload": {"rfp_id": 7}})

    assert response.status_code == 200
    body = response.json()
    assert body["event_id"].startswith("evt_")
    assert (body["deliveries_queued"], body["duplicate"]) == (1, False)


async def test_publish_without_an_event_type_is_400(rest) -> None:
    response = await rest.post(EVENTS, json={"payload": {"a": 1}})

    assert response.status_code == 400
    assert "event_type" in violated_fields(response)


async def test_publish_with_a_non_object_payload_is_400(rest) -> None:
    response = await rest.post(EVENTS, json={"event_type": "rfp.created", "payload": [1, 2]})

    assert response.status_code == 400
    assert "payload" in violated_fields(response)


# -- rotate secret ---------------------------------------------------------------------------------


async def test_rotate_returns_a_new_secret_and_when_the_old_one_stops(rest) -> None:
    created = await create(rest)
    webhook_id = created["webhook"]["id"]

    response = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={"overlap": "3600s"})

    assert response.status_code == 200
    body = response.json()
    assert body["signing_secret"].startswith("whsec_")
    assert body["signing_secret"] != created["signing_secret"]
    assert datetime.fromisoformat(body["previous_secret_expires_at"]).tzinfo is not None
    assert body["webhook"]["secret_fingerprint"] != created["webhook"]["secret_fingerprint"]
    fetched = (await rest.get(f"{WEBHOOKS}/{webhook_id}")).json()
    assert fetched["secret_fingerprint"] == body["webhook"]["secret_fingerprint"]


async def test_rotate_takes_a_chosen_secret_from_its_header_as_create_does(rest) -> None:
    """A caller that sends its secret as it does to create must not get a random one instead."""
    webhook_id = (await create(rest))["webhook"]["id"]
    chosen = "whsec_" + base64.b64encode(b"a rotation's chosen secret, 32b!").decode()

    response = await rest.post(
        f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={}, headers={"Webhook-Signing-Secret": chosen}
    )

    assert response.status_code == 200
    assert response.json()["signing_secret"] == chosen


async def test_rotate_with_a_header_secret_other_than_the_bodys_is_400(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]
    in_body = "whsec_" + base64.b64encode(b"the secret the body carries, 32b").decode()
    in_header = "whsec_" + base64.b64encode(b"the secret the header carries 32").decode()

    response = await rest.post(
        f"{WEBHOOKS}/{webhook_id}:rotateSecret",
        json={"signing_secret": in_body},
        headers={"Webhook-Signing-Secret": in_header},
    )

    assert response.status_code == 400
    assert violated_fields(response) == {"signing_secret"}
    assert in_body not in response.text and in_header not in response.text


async def test_rotate_with_a_malformed_overlap_is_400(rest) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]

    response = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={"overlap": "an hour"})

    assert response.status_code == 400
    assert violated_fields(response) == {"overlap"}


async def test_a_rotation_past_the_secrets_kept_signing_is_400_and_one_without_overlap_goes_ahead(rest) -> None:
    """Every secret handed out keeps its promised overlap: the rotation that would end one early is
    refused with its own reason, naming when it may be sent again; overlap 0s ends them all."""
    created = await create(rest)
    webhook_id = created["webhook"]["id"]
    secrets = [created["signing_secret"]]
    for _ in range(MAX_PREVIOUS):
        rotated = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={"overlap": "3600s"})
        assert rotated.status_code == 200
        secrets.append(rotated.json()["signing_secret"])

    refused = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={"overlap": "3600s"})
    retired = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={"overlap": "0s"})

    assert refused.status_code == 400
    assert reason_of(refused) == TOO_MANY_SIGNING_SECRETS
    assert "overlap 0s" in error_of(refused)["message"]
    assert not any(secret in refused.text for secret in secrets)
    assert retired.status_code == 200
    assert retired.json()["signing_secret"] not in secrets


async def test_rotate_an_unknown_id_is_404(rest) -> None:
    response = await rest.post(f"{WEBHOOKS}/whk_01J0000000000000000000000:rotateSecret", json={})

    assert response.status_code == 404


# -- resume ----------------------------------------------------------------------------------------


async def test_resume_clears_an_automatic_pause(rest, database) -> None:
    webhook_id = (await create(rest))["webhook"]["id"]
    await database.execute(
        "UPDATE webhooks SET paused_at = now(), consecutive_failures = 25, version = version + 1 WHERE id = :id",
        id=webhook_id,
    )
    paused = (await rest.get(f"{WEBHOOKS}/{webhook_id}", headers={"Cache-Control": "no-cache"})).json()
    assert (paused["is_active"], paused["consecutive_failures"]) == (False, 25)

    published = await rest.post(EVENTS, json={"event_type": "rfp.created", "payload": {"n": 1}})
    assert published.json()["deliveries_held"] == 1

    response = await rest.post(f"{WEBHOOKS}/{webhook_id}:resume")

    assert response.status_code == 200
    body = response.json()
    resumed = body["webhook"]
    assert (resumed["is_active"], resumed["paused_at"], resumed["consecutive_failures"]) == (True, None, 0)
    assert (body["deliveries_released"], body["deliveries_discarded"]) == (1, 0)


async def test_resume_an_unknown_id_is_404(rest) -> None:
    response = await rest.post(f"{WEBHOOKS}/whk_01J0000000000000000000000:resume")

    assert response.status_code == 404
    assert reason_of(response)
