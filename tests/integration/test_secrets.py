"""The signing secret: returned once by Create, kept in Vault only, never in rows, responses or logs."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import grpc
import hvac
import pytest
import sqlalchemy as sa
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from webhook_calls import create, create_webhook, field_violations, rpc_error

from ports import closed_port
from support import AuthedStub, make_caller
from webhookd.app import Backends, Service
from webhookd.config import Settings
from webhookd.domain.errors import Unavailable
from webhookd.domain.fingerprints import fingerprint
from webhookd.secrets.vault import VaultSecretStore

CALLER_SECRET = "whsec_" + base64.b64encode(b"caller-chosen secret key, 32 b!!").decode()


def secret_forms(secret: str) -> list[bytes]:
    """Every spelling of the secret that must not leak: as sent, its base64 body, its raw key bytes."""
    forms = [secret.encode()]
    if secret.startswith("whsec_"):
        body = secret.removeprefix("whsec_")
        forms += [body.encode(), base64.b64decode(body)]
    return forms


def assert_absent(secret: str, blob: bytes | str, where: str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for form in secret_forms(secret):
        assert form not in data, f"the signing secret ({form!r}) appears in {where}"
        assert form.hex().encode() not in data, f"the signing secret's hex appears in {where}"


@pytest.fixture(scope="module")
async def database(backends: Backends) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(backends.database_url)
    yield engine
    await engine.dispose()


async def read_vault(backends: Backends, settings: Settings, path: str) -> dict[str, str]:
    client = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    response = await asyncio.to_thread(
        client.secrets.kv.v2.read_secret_version,
        path=path,
        mount_point=settings.vault_mount,
        raise_on_deleted_version=True,
    )
    return dict(response["data"]["data"])


async def test_create_returns_a_generated_whsec_secret(caller) -> None:
    first = await create(caller)
    second = await create(caller)
    for created in (first, second):
        assert created.signing_secret.startswith("whsec_")
        assert len(base64.b64decode(created.signing_secret.removeprefix("whsec_"))) == 32
    assert first.signing_secret != second.signing_secret


async def test_secret_is_in_vault_at_the_webhooks_vault_path(caller, backends, settings) -> None:
    created = await create(caller)
    path = created.webhook.vault_path
    assert caller.tenant_id in path and created.webhook.id in path
    stored = await read_vault(backends, settings, path)
    assert created.signing_secret in stored.values()


@pytest.mark.slow
async def test_secret_is_in_no_database_row(caller, database) -> None:
    created = await create(caller)
    async with database.connect() as connection:
        row = await connection.scalar(
            sa.text("SELECT row_to_json(w)::text FROM webhooks w WHERE id = :id"), {"id": created.webhook.id}
        )
        assert row is not None and created.webhook.vault_path in row
        assert_absent(created.signing_secret, row, "the webhooks row")
        tables = await connection.scalars(
            sa.text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()")
        )
        for table in tables.all():
            dump = await connection.scalar(sa.text(f"SELECT string_agg(row_to_json(t)::text, '') FROM {table} t"))
            assert_absent(created.signing_secret, dump or "", f"table {table}")


async def test_secret_is_returned_by_create_only(caller) -> None:
    created = await create(caller)
    secret, webhook_id = created.signing_secret, created.webhook.id
    assert secret.encode() in created.SerializeToString()

    responses = [
        await caller.GetWebhook(pb.GetWebhookRequest(id=webhook_id)),
        await caller.ListWebhooks(pb.ListWebhooksRequest(show_deleted=True)),
        await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook_id, name="renamed"))),
        await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook_id)),
        await caller.UndeleteWebhook(pb.UndeleteWebhookRequest(id=webhook_id)),
    ]
    for response in responses:
        assert_absent(secret, response.SerializeToString(), type(response).__name__)


async def test_secret_is_not_logged(caller, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    generated = await create(caller)
    supplied = await create(caller, signing_secret=CALLER_SECRET)
    await caller.GetWebhook(pb.GetWebhookRequest(id=supplied.webhook.id))

    assert caplog.records, "nothing was logged at DEBUG: the capture is not working"
    text = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert_absent(generated.signing_secret, text, "the logs")
    assert_absent(CALLER_SECRET, text, "the logs")


async def test_caller_supplied_secret_is_used_as_given(caller, backends, settings) -> None:
    created = await create(caller, signing_secret=CALLER_SECRET)
    assert created.signing_secret == CALLER_SECRET
    assert created.webhook.secret_fingerprint == fingerprint(CALLER_SECRET)
    assert CALLER_SECRET in (await read_vault(backends, settings, created.webhook.vault_path)).values()


async def test_caller_supplied_plain_text_secret_is_used_as_given(caller, backends, settings) -> None:
    secret = "plain-text-secret-of-32-chars-xx"
    created = await create(caller, signing_secret=secret)
    assert created.signing_secret == secret
    assert secret in (await read_vault(backends, settings, created.webhook.vault_path)).values()


@pytest.mark.parametrize(
    "secret",
    [
        "too-short",
        "whsec_" + base64.b64encode(b"only 10 b!").decode(),
        "whsec_not*base64*at*all*but*long*enough*to*pass",
        "x" * 65,
        "has whitespace inside but is long enough",
    ],
)
async def test_bad_caller_supplied_secret_is_invalid(caller, secret: str) -> None:
    error = await rpc_error(create(caller, signing_secret=secret))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["signing_secret"]
    assert secret not in error.details()
    listed = await caller.ListWebhooks(pb.ListWebhooksRequest(show_deleted=True))
    assert list(listed.webhooks) == []


async def test_fingerprint_identifies_but_is_not_the_secret(caller) -> None:
    created = await create(caller)
    fp = created.webhook.secret_fingerprint
    assert fp == fingerprint(created.signing_secret)
    assert fp.startswith("sha256:")
    assert_absent(created.signing_secret, fp, "the fingerprint")
    other = await create(caller)
    assert other.webhook.secret_fingerprint != fp


async def test_vault_down_is_unavailable_and_stores_no_row(settings, backends, database) -> None:
    down = Service(settings, Backends(backends.database_url, f"http://127.0.0.1:{closed_port()}", "x"))
    await down.start()
    try:
        async with grpc.aio.insecure_channel(down.grpc_target) as channel:
            caller: AuthedStub = make_caller(channel, subject="person_1")
            error = await rpc_error(create(caller))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert error.details() == "vault unavailable: retry later"  # how it failed is logged, not told
            listed = await caller.ListWebhooks(pb.ListWebhooksRequest(show_deleted=True))
            assert list(listed.webhooks) == []
    finally:
        await down.stop(grace=0)
    async with database.connect() as connection:
        rows = await connection.scalar(
            sa.text("SELECT count(*) FROM webhooks WHERE tenant_id = :tenant"), {"tenant": caller.tenant_id}
        )
    assert rows == 0


async def test_created_webhook_survives_into_a_usable_secret(caller, backends, settings) -> None:
    webhook = await create_webhook(caller, signature_scheme="hmac-sha256")
    stored = await read_vault(backends, settings, webhook.vault_path)
    assert fingerprint(next(iter(stored.values()))) == webhook.secret_fingerprint


@pytest.mark.parametrize("read", ["written_at", "webhook_ids"])
async def test_the_orphan_reconcilers_reads_of_an_unreachable_vault_are_unavailable(read: str) -> None:
    store = VaultSecretStore(f"http://127.0.0.1:{closed_port()}", "x", timeout=1.0)
    try:
        with pytest.raises(Unavailable, match="vault"):
            if read == "written_at":
                await store.written_at("webhookd/tenants/t/webhooks/wh_1")
            else:
                await store.webhook_ids("t")
    finally:
        store.close()


async def swept_until(workers, backends, settings, path: str, keys: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Drives the workers' sweep (their own round may be the one that acts) until the record at `path` has
    just `keys`, or the tries run out (200 of 50 ms); the record then."""
    record = await read_vault(backends, settings, path)
    for _ in range(200):
        if sorted(record) == keys:
            break
        await workers.ended_overlaps.sweep()
        record = await read_vault(backends, settings, path)
        if sorted(record) != keys:
            await asyncio.sleep(0.05)
    return record


async def test_a_secret_retired_without_overlap_and_a_removed_credential_leave_vaults_record(
    caller, workers, backends, settings
) -> None:
    """What the row no longer uses is not kept in Vault until some later change: the commit marks the row
    due, and the workers' sweep leaves only what signs and what is sent stored."""
    created = await create(caller)
    webhook_id = created.webhook.id
    path = created.webhook.vault_path
    await caller.SetWebhookCredential(
        pb.SetWebhookCredentialRequest(id=webhook_id, header_name="X-Api-Key", header_value="key-of-the-receiver")
    )
    rotated = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook_id, overlap={"seconds": 0}))
    credential_and_current = ["credential_header", "credential_id", "credential_value", "current"]
    after_rotation = await swept_until(workers, backends, settings, path, credential_and_current)
    await caller.SetWebhookCredential(pb.SetWebhookCredentialRequest(id=webhook_id, header_name="X-Api-Key"))
    after_removal = await swept_until(workers, backends, settings, path, ["current"])

    # Compared by key: a failing assertion shows no secret.
    assert sorted(after_rotation) == ["credential_header", "credential_id", "credential_value", "current"]
    assert fingerprint(after_rotation["current"]) == rotated.webhook.secret_fingerprint
    assert sorted(after_removal) == ["current"]
    assert fingerprint(after_removal["current"]) == rotated.webhook.secret_fingerprint
