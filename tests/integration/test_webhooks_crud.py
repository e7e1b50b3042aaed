"""Every resource RPC of WebhookService, its server stamps and its errors, over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2, timestamp_pb2
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ulid import ULID
from webhook_calls import create, create_webhook, error_info, field_violations, rpc_error

from support import FRESH_READ, make_caller
from webhookd.app import Backends
from webhookd.domain.ids import WEBHOOK_PREFIX, looks_like

PUBLIC_URL = "http://127.0.0.1:8080"


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


@pytest.fixture(scope="module")
async def database(backends: Backends) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(backends.database_url)
    yield engine
    await engine.dispose()


async def test_create_returns_the_webhook_with_server_stamps(caller) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = await create(caller, name="orders", event_types=["rfp.created"], tags=["crm"])
    webhook = created.webhook

    assert webhook.id.startswith(WEBHOOK_PREFIX) and looks_like(WEBHOOK_PREFIX, webhook.id)
    assert webhook.tenant_id == caller.tenant_id
    assert webhook.app_id == ""
    assert webhook.created_by == webhook.updated_by == "person_1"
    assert webhook.source == "edm"
    assert webhook.source_type == wpb.SOURCE_TYPE_API
    assert webhook.schema_version >= 1
    assert webhook.version == 1
    assert webhook.direction == wpb.DIRECTION_OUTBOUND
    assert webhook.HasField("enabled") and webhook.enabled is True
    assert webhook.is_active is True
    assert webhook.is_deleted is False and not webhook.HasField("deleted_at")
    assert webhook.signature_scheme == "standard-webhooks"
    assert webhook.retry_policy == wpb.RetryPolicy(max_attempts=8, backoff="exponential", timeout_ms=15000)
    assert webhook.vault_path and webhook.secret_fingerprint
    assert before <= webhook.created_at.ToDatetime(UTC) <= datetime.now(UTC)
    assert webhook.updated_at == webhook.created_at
    assert list(webhook.event_types) == ["rfp.created"] and list(webhook.tags) == ["crm"]


async def test_create_without_event_types_subscribes_to_everything(caller) -> None:
    webhook = await create_webhook(caller)
    assert list(webhook.event_types) == ["*"]


async def test_create_stamps_app_id_from_an_integration_token(channel) -> None:
    app_caller = make_caller(channel, subject="svc_1", app_id="app_crm")
    webhook = await create_webhook(app_caller)
    assert webhook.app_id == "app_crm"
    assert webhook.created_by == "svc_1"


async def test_create_keeps_caller_source_and_source_type(caller) -> None:
    webhook = await create_webhook(caller, source="erp", source_type=wpb.SOURCE_TYPE_BACKEND)
    assert webhook.source == "erp"
    assert webhook.source_type == wpb.SOURCE_TYPE_BACKEND


async def test_create_ignores_output_only_fields_sent_by_the_caller(caller) -> None:
    forged_time = timestamp_pb2.Timestamp(seconds=1)
    webhook = await create_webhook(
        caller,
        id="whk_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        tenant_id="tnt_someone_else",
        app_id="app_forged",
        created_at=forged_time,
        updated_at=forged_time,
        created_by="mallory",
        updated_by="mallory",
        is_deleted=True,
        deleted_at=forged_time,
        deleted_by="mallory",
        schema_version=99,
        vault_path="secret/elsewhere",
        secret_fingerprint="sha256:forged",
        last_delivery_status="succeeded",
        consecutive_failures=7,
        paused_at=forged_time,
        is_active=False,
        version=42,
    )
    assert webhook.id != "whk_01ARZ3NDEKTSV4RRFFQ69G5FAV" and looks_like(WEBHOOK_PREFIX, webhook.id)
    assert webhook.tenant_id == caller.tenant_id
    assert webhook.app_id == ""
    assert webhook.created_at.seconds > 1 and webhook.updated_at.seconds > 1
    assert webhook.created_by == webhook.updated_by == "person_1"
    assert webhook.is_deleted is False and not webhook.HasField("deleted_at") and webhook.deleted_by == ""
    assert webhook.schema_version != 99
    assert webhook.vault_path != "secret/elsewhere" and webhook.id in webhook.vault_path
    assert webhook.secret_fingerprint != "sha256:forged"
    assert webhook.last_delivery_status == "" and webhook.consecutive_failures == 0
    assert not webhook.HasField("paused_at")
    assert webhook.is_active is True
    assert webhook.version == 1


async def test_inbound_webhook_gets_a_server_assigned_callback_url(caller) -> None:
    webhook = await create_webhook(caller, direction=wpb.DIRECTION_INBOUND, url="https://caller.test/ignored")
    assert webhook.direction == wpb.DIRECTION_INBOUND
    assert webhook.url == f"{PUBLIC_URL}/api/v1/integration/inbound/{webhook.id}"


async def test_inbound_webhook_needs_no_url(caller) -> None:
    webhook = await create_webhook(caller, direction=wpb.DIRECTION_INBOUND, url="")
    assert webhook.url == f"{PUBLIC_URL}/api/v1/integration/inbound/{webhook.id}"


async def test_inbound_url_stays_server_assigned_on_update(caller) -> None:
    webhook = await create_webhook(caller, direction=wpb.DIRECTION_INBOUND)
    updated = await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=webhook.id, url="https://caller.test/other", name="renamed"),
            update_mask=mask("url", "name"),
        )
    )
    assert updated.webhook.url == webhook.url
    assert updated.webhook.name == "renamed"


async def test_disabled_webhook_is_not_active(caller) -> None:
    webhook = await create_webhook(caller, enabled=False)
    assert webhook.enabled is False
    assert webhook.is_active is False


async def test_paused_webhook_is_not_active(caller, database) -> None:
    webhook = await create_webhook(caller)
    # Only the delivery worker pauses a webhook (after repeated failures); do what it does.
    async with database.begin() as connection:
        await connection.execute(sa.text("UPDATE webhooks SET paused_at = now() WHERE id = :id"), {"id": webhook.id})
    request = pb.GetWebhookRequest(id=webhook.id)
    got = (await caller.GetWebhook(request, metadata=(*caller.metadata, FRESH_READ))).webhook
    assert got.enabled is True and got.HasField("paused_at")
    assert got.is_active is False


async def test_get_returns_what_create_returned(caller) -> None:
    webhook = await create_webhook(caller, headers={"X-Team": "billing"}, connector_id="con_1")
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook == webhook


async def test_get_unknown_id_is_not_found(caller) -> None:
    error = await rpc_error(caller.GetWebhook(pb.GetWebhookRequest(id=f"whk_{ULID()}")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "NOT_FOUND"


async def test_update_changes_masked_fields_and_stamps_the_writer(channel, caller) -> None:
    webhook = await create_webhook(caller, name="before", url="https://example.test/a", tags=["keep"])
    other_person = make_caller(channel, tenant_id=caller.tenant_id, subject="person_2")

    updated = (
        await other_person.UpdateWebhook(
            pb.UpdateWebhookRequest(
                webhook=wpb.Webhook(
                    id=webhook.id,
                    version=webhook.version,
                    name="after",
                    url="https://example.test/b",
                    tags=["ignored-not-in-mask"],
                    retry_policy=wpb.RetryPolicy(max_attempts=3),
                ),
                update_mask=mask("name", "url", "retry_policy.max_attempts"),
            )
        )
    ).webhook

    assert (updated.name, updated.url) == ("after", "https://example.test/b")
    assert list(updated.tags) == ["keep"]
    assert updated.retry_policy.max_attempts == 3 and updated.retry_policy.timeout_ms == 15000
    assert updated.version == webhook.version + 1
    assert updated.created_by == "person_1" and updated.updated_by == "person_2"
    assert updated.updated_at.ToDatetime() > webhook.updated_at.ToDatetime()
    assert updated.created_at == webhook.created_at
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook == updated


async def test_update_mask_accepts_json_camel_case_paths(caller) -> None:
    webhook = await create_webhook(caller)
    updated = await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=webhook.id, retry_policy=wpb.RetryPolicy(timeout_ms=500), connector_id="con_9"),
            update_mask=mask("retryPolicy.timeoutMs", "connectorId"),
        )
    )
    assert updated.webhook.retry_policy.timeout_ms == 500 and updated.webhook.retry_policy.max_attempts == 8
    assert updated.webhook.connector_id == "con_9"


async def test_update_without_mask_changes_the_fields_sent(caller) -> None:
    webhook = await create_webhook(caller, name="before", tags=["a"])
    updated = (
        await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, enabled=False)))
    ).webhook
    assert updated.enabled is False and updated.is_active is False
    assert updated.name == "before" and list(updated.tags) == ["a"]


async def test_update_without_mask_changes_only_the_retry_policy_fields_sent(caller) -> None:
    policy = wpb.RetryPolicy(max_attempts=5, backoff="fixed", timeout_ms=5000)
    webhook = await create_webhook(caller, retry_policy=policy)

    sent = wpb.Webhook(id=webhook.id, retry_policy=wpb.RetryPolicy(max_attempts=3))
    updated = (await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=sent))).webhook

    # As over REST (`{"retry_policy": {"maxAttempts": 3}}`): the sub-fields left out keep their values.
    assert updated.retry_policy == wpb.RetryPolicy(max_attempts=3, backoff="fixed", timeout_ms=5000)


async def test_update_ignores_output_only_fields_without_mask(caller) -> None:
    webhook = await create_webhook(caller)
    updated = (
        await caller.UpdateWebhook(
            pb.UpdateWebhookRequest(
                webhook=wpb.Webhook(
                    id=webhook.id,
                    name="renamed",
                    tenant_id="tnt_other",
                    vault_path="secret/elsewhere",
                    secret_fingerprint="sha256:forged",
                    created_by="mallory",
                    is_deleted=True,
                )
            )
        )
    ).webhook
    assert updated.name == "renamed"
    assert updated.tenant_id == caller.tenant_id
    assert (updated.vault_path, updated.secret_fingerprint) == (webhook.vault_path, webhook.secret_fingerprint)
    assert updated.created_by == "person_1" and updated.is_deleted is False


async def test_update_unknown_id_is_not_found(caller) -> None:
    error = await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=f"whk_{ULID()}", name="x"), update_mask=mask("name"))
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_update_without_an_id_is_invalid_argument_naming_it(caller) -> None:
    error = await rpc_error(
        caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(name="x"), update_mask=mask("name")))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"webhook.id": "is required: it names the webhook to update"}


async def test_update_with_stale_version_is_aborted(caller) -> None:
    webhook = await create_webhook(caller)
    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=1, name="first"), update_mask=mask("name"))
    )
    error = await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(
                webhook=wpb.Webhook(id=webhook.id, version=1, name="second"), update_mask=mask("name")
            )
        )
    )
    assert error.code() == grpc.StatusCode.ABORTED
    assert error_info(error).reason == "VERSION_MISMATCH"
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook.name == "first" and got.webhook.version == 2


async def test_update_of_a_deleted_webhook_is_failed_precondition(caller) -> None:
    webhook = await create_webhook(caller)
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id))
    error = await rpc_error(caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="x"))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_delete_soft_deletes_and_get_still_returns_it(channel, caller) -> None:
    webhook = await create_webhook(caller)
    deleter = make_caller(channel, tenant_id=caller.tenant_id, subject="person_3")

    deleted = (await deleter.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id, version=1))).webhook

    assert deleted.is_deleted is True and deleted.is_active is False
    assert deleted.HasField("deleted_at") and deleted.deleted_by == "person_3"
    assert deleted.version == 2
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook == deleted


async def test_delete_of_a_deleted_webhook_returns_it_unchanged(caller) -> None:
    webhook = await create_webhook(caller)
    first = await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id))
    second = await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id))
    assert second.webhook == first.webhook


async def test_delete_with_stale_version_is_aborted(caller) -> None:
    webhook = await create_webhook(caller)
    await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="v2")))
    error = await rpc_error(caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id, version=1)))
    assert error.code() == grpc.StatusCode.ABORTED
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook.is_deleted is False


async def test_a_negative_version_is_invalid_not_a_version_mismatch(caller) -> None:
    """No write ever has a negative version: the caller's mistake (INVALID_ARGUMENT naming the field),
    not a race that a re-read would settle (ABORTED VERSION_MISMATCH)."""
    webhook = await create_webhook(caller)
    updating = await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=-1, name="x"), update_mask=mask("name"))
        )
    )
    deleting = await rpc_error(caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id, version=-1)))

    assert (updating.code(), deleting.code()) == (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(updating) == {"webhook.version": "must not be negative (0 or unset: no precondition)"}
    assert field_violations(deleting) == {"version": "must not be negative (0 or unset: no precondition)"}
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert (got.webhook.name, got.webhook.version, got.webhook.is_deleted) == (webhook.name, 1, False)


async def test_delete_unknown_id_is_not_found(caller) -> None:
    error = await rpc_error(caller.DeleteWebhook(pb.DeleteWebhookRequest(id=f"whk_{ULID()}")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_undelete_restores_the_webhook(caller) -> None:
    webhook = await create_webhook(caller)
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id))
    restored = (await caller.UndeleteWebhook(pb.UndeleteWebhookRequest(id=webhook.id))).webhook
    assert restored.is_deleted is False and restored.is_active is True
    assert not restored.HasField("deleted_at") and restored.deleted_by == ""
    listed = await caller.ListWebhooks(pb.ListWebhooksRequest())
    assert [w.id for w in listed.webhooks] == [webhook.id]


async def test_undelete_of_a_live_webhook_is_already_exists(caller) -> None:
    webhook = await create_webhook(caller)
    error = await rpc_error(caller.UndeleteWebhook(pb.UndeleteWebhookRequest(id=webhook.id)))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_undelete_unknown_id_is_not_found(caller) -> None:
    error = await rpc_error(caller.UndeleteWebhook(pb.UndeleteWebhookRequest(id=f"whk_{ULID()}")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_version_increments_on_every_write(caller) -> None:
    webhook = await create_webhook(caller)
    updated = await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="n")))
    deleted = await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id))
    restored = await caller.UndeleteWebhook(pb.UndeleteWebhookRequest(id=webhook.id))
    versions = [webhook.version, updated.webhook.version, deleted.webhook.version, restored.webhook.version]
    assert versions == [1, 2, 3, 4]
