"""services/webhooks.py on fakes: Vault and the row kept consistent, the update loop, rotation, paging."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from fakes import (
    FakeClock,
    FakeHistory,
    FakeLifecycle,
    FakeNotifications,
    FakeSecrets,
    FakeWebhooks,
    until,
    within,
)
from webhookd.domain import page_tokens, signing
from webhookd.domain.credentials import Credential, credential_id_of, credential_of, same_origin
from webhookd.domain.errors import Aborted, FailedPrecondition, Invalid, NotFound, Unavailable
from webhookd.domain.fingerprints import fingerprint
from webhookd.domain.idempotency import KeyedRequest
from webhookd.domain.lifecycle import LifecycleChange
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import MAX_PREVIOUS, TOO_MANY_SIGNING_SECRETS, active_secrets
from webhookd.domain.statuses import LogKind
from webhookd.domain.webhooks import Direction, Webhook, WebhookFilter, WebhookSpec
from webhookd.ports import Topic
from webhookd.services import secret_leases
from webhookd.services.ended_overlaps import EndedOverlaps
from webhookd.services.webhooks import DEFAULT_SECRET_LEASE, UNVERSIONED_UPDATE_TRIES, Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
OTHER_TENANT = Scope("tnt_b", person_id="person_2")
APP = Scope("tnt_a", app_id="app_1")
SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMy"  # 30 bytes once decoded


def outbound(name: str = "orders") -> WebhookSpec:
    return WebhookSpec(name=name, url="https://receiver.example/hooks")


def service(store: FakeWebhooks, secrets: FakeSecrets, clock: FakeClock, notifications: FakeNotifications) -> Webhooks:
    FakeLifecycle(FakeHistory(store))  # records what the store notes
    store.clock = clock  # secret leases lapse by the test's clock
    return Webhooks(
        store,
        secrets,
        notifications,
        public_url="https://hooks.example",
        allow_insecure_urls=False,
        clock=clock,
    )


def violated_fields(error: Invalid) -> list[str]:
    return [violation.field for violation in error.violations]


# -- create --------------------------------------------------------------------------------------------


class SecretCheckingStore(FakeWebhooks):
    """Notes what Vault held when the row was inserted."""

    def __init__(self, secrets: FakeSecrets) -> None:
        super().__init__()
        self.secrets = secrets
        self.vault_at_insert: dict[str, dict[str, str]] = {}

    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        self.vault_at_insert = dict(self.secrets.records)
        return await super().insert(webhook, keyed=keyed)


async def test_create_writes_the_secret_to_vault_before_the_row(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    store = SecretCheckingStore(secret_store)

    webhook, secret, _ = await service(store, secret_store, clock, notifications).create(TENANT, outbound(), None)

    assert store.vault_at_insert == {webhook.vault_path: {"current": secret}}
    assert webhook.vault_path == f"webhookd/tenants/tnt_a/webhooks/{webhook.id}"
    assert signing.validate_secret(secret) is None
    assert webhook.secret_fingerprint == fingerprint(secret)
    assert (webhook.version, webhook.created_by, webhook.created_at) == (1, "person_1", clock())
    assert store.rows[webhook.id] == webhook


async def test_create_keeps_a_secret_the_caller_chose(webhooks: Webhooks, secret_store: FakeSecrets) -> None:
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), SECRET)

    assert secret == SECRET
    assert secret_store.records[webhook.vault_path] == {"current": SECRET}


async def test_an_inbound_webhook_is_given_its_callback_url(webhooks: Webhooks) -> None:
    spec = WebhookSpec(name="from-crm", url="", direction=Direction.INBOUND)

    webhook, _, _ = await webhooks.create(TENANT, spec, None)

    assert webhook.spec.url == f"https://hooks.example/api/v1/integration/inbound/{webhook.id}"


class FailingInsert(FakeWebhooks):
    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        raise ConnectionError("the database went away")


async def test_a_failed_insert_removes_the_secret_again(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    with pytest.raises(ConnectionError):
        await service(FailingInsert(), secret_store, clock, notifications).create(TENANT, outbound(), None)

    assert secret_store.records == {}


class StuckInsert(FakeWebhooks):
    """An insert that hangs until the call is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_call_cancelled_during_the_insert_keeps_the_secret_since_the_row_may_commit(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    store = StuckInsert()
    creating = asyncio.create_task(service(store, secret_store, clock, notifications).create(TENANT, outbound(), None))
    await within(store.started.wait())
    assert len(secret_store.records) == 1

    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating

    # Removing it could leave a row that commits late with no secret; the orphan reconciler takes it.
    assert len(secret_store.records) == 1


class UnansweredInsert(FakeWebhooks):
    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        raise Unavailable("database unavailable: no answer in time")


async def test_an_insert_the_database_did_not_answer_keeps_the_secret_since_the_row_may_commit(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    with pytest.raises(Unavailable):
        await service(UnansweredInsert(), secret_store, clock, notifications).create(TENANT, outbound(), None)

    assert len(secret_store.records) == 1


async def test_the_insert_error_is_raised_even_when_the_secret_cannot_be_removed(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    class InsertWhileVaultFails(FakeWebhooks):
        async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
            secret_store.reachable = False
            raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        await service(InsertWhileVaultFails(), secret_store, clock, notifications).create(TENANT, outbound(), None)


async def test_create_names_every_invalid_field_and_writes_nothing(
    webhooks: Webhooks, webhook_store: FakeWebhooks, secret_store: FakeSecrets
) -> None:
    spec = WebhookSpec(name=" ", url="http://receiver.example/hooks", event_types=("orders.*", "Bad"))

    with pytest.raises(Invalid) as raised:
        await webhooks.create(TENANT, spec, None)

    assert violated_fields(raised.value) == ["webhook.name", "webhook.url", "webhook.event_types[1]"]
    assert webhook_store.rows == {} and secret_store.records == {}


async def test_a_signing_secret_too_short_is_invalid_signing_secret(
    webhooks: Webhooks, secret_store: FakeSecrets
) -> None:
    with pytest.raises(Invalid) as raised:
        await webhooks.create(TENANT, outbound(), "short")

    assert violated_fields(raised.value) == ["signing_secret"]
    assert secret_store.records == {}


# -- update ----------------------------------------------------------------------------------------------


class RacingWriter(FakeWebhooks):
    """Before each of the first `races` updates lands, another writer tags the webhook and wins."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.attempts = 0

    async def update_spec(
        self,
        scope: Scope,
        webhook_id: str,
        spec: WebhookSpec,
        *,
        expected_version: int,
        person_id: str | None,
        now: datetime,
        note: LifecycleChange | None = None,
        routing_changed: bool = False,
    ) -> Webhook:
        self.attempts += 1
        if self.races:
            self.races -= 1
            current = self.rows[webhook_id]
            tagged = replace(current.spec, tags=(*current.spec.tags, f"race-{self.races}"))
            await super().update_spec(
                scope, webhook_id, tagged, expected_version=current.version, person_id="someone_else", now=now
            )
        return await super().update_spec(
            scope, webhook_id, spec, expected_version=expected_version, person_id=person_id, now=now
        )


async def racing_service(races: int, clock: FakeClock) -> tuple[Webhooks, RacingWriter, Webhook]:
    store = RacingWriter(races)
    webhooks = service(store, FakeSecrets(), clock, FakeNotifications())
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    return webhooks, store, webhook


async def test_an_update_without_a_version_is_applied_to_the_row_a_concurrent_writer_left(clock: FakeClock) -> None:
    webhooks, store, webhook = await racing_service(races=2, clock=clock)

    updated = await webhooks.update(
        TENANT, webhook.id, expected_version=None, paths=["name"], changes_for=lambda paths: {"name": "renamed"}
    )

    assert store.attempts == 3
    assert updated.spec.name == "renamed"
    assert updated.spec.tags == ("race-1", "race-0")  # the other writer's changes survive
    assert updated.version == 4


async def test_an_update_without_a_version_gives_up_after_the_bounded_tries(clock: FakeClock) -> None:
    webhooks, store, webhook = await racing_service(races=UNVERSIONED_UPDATE_TRIES, clock=clock)

    with pytest.raises(Aborted, match="being changed concurrently"):
        await webhooks.update(
            TENANT, webhook.id, expected_version=None, paths=["name"], changes_for=lambda paths: {"name": "renamed"}
        )

    assert store.attempts == UNVERSIONED_UPDATE_TRIES
    assert store.rows[webhook.id].spec.name == "orders"


async def test_an_update_with_a_version_is_not_retried_when_another_writer_wins(clock: FakeClock) -> None:
    webhooks, store, webhook = await racing_service(races=1, clock=clock)

    with pytest.raises(Aborted):
        await webhooks.update(
            TENANT, webhook.id, expected_version=1, paths=["name"], changes_for=lambda paths: {"name": "renamed"}
        )

    assert store.attempts == 1


async def test_an_update_with_a_stale_version_is_aborted_before_writing(
    webhooks: Webhooks, webhook_store: FakeWebhooks
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.update(TENANT, webhook.id, expected_version=1, paths=["name"], changes_for=lambda p: {"name": "b"})

    with pytest.raises(Aborted, match="version 2, not 1"):
        await webhooks.update(
            TENANT, webhook.id, expected_version=1, paths=["name"], changes_for=lambda p: {"name": "c"}
        )

    assert webhook_store.rows[webhook.id].spec.name == "b"


async def test_direction_is_immutable(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(Invalid) as raised:
        await webhooks.update(
            TENANT,
            webhook.id,
            expected_version=None,
            paths=["name"],
            changes_for=lambda paths: {"name": "b"},
            direction=Direction.INBOUND,
        )
    same = await webhooks.update(
        TENANT,
        webhook.id,
        expected_version=None,
        paths=["name"],
        changes_for=lambda paths: {"name": "b"},
        direction=Direction.OUTBOUND,
    )

    assert violated_fields(raised.value) == ["webhook.direction"]
    assert same.spec.name == "b"


async def test_an_inbound_webhook_keeps_its_assigned_url(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, WebhookSpec(name="crm", url="", direction=Direction.INBOUND), None)

    updated = await webhooks.update(
        TENANT, webhook.id, expected_version=None, paths=["url"], changes_for=lambda paths: {"url": "https://evil"}
    )

    assert updated.spec.url == webhook.spec.url


async def test_an_update_mask_must_name_updatable_fields(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(Invalid) as empty:
        await webhooks.update(TENANT, webhook.id, expected_version=None, paths=[], changes_for=lambda paths: {})
    with pytest.raises(Invalid) as output_only:
        await webhooks.update(
            TENANT, webhook.id, expected_version=None, paths=["name", "version"], changes_for=lambda paths: {}
        )

    assert violated_fields(empty.value) == ["update_mask"]
    assert violated_fields(output_only.value) == ["update_mask.paths[1]"]


async def test_an_update_that_breaks_the_spec_names_the_field(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(Invalid) as raised:
        await webhooks.update(
            TENANT,
            webhook.id,
            expected_version=None,
            paths=["retry_policy.max_attempts"],
            changes_for=lambda paths: {"retry_policy.max_attempts": 99},
        )

    assert violated_fields(raised.value) == ["webhook.retry_policy.max_attempts"]


async def test_a_deleted_webhook_cannot_be_updated_until_undeleted(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.delete(TENANT, webhook.id, expected_version=None)

    with pytest.raises(FailedPrecondition):
        await webhooks.update(TENANT, webhook.id, expected_version=None, paths=["name"], changes_for=lambda p: {})


async def test_another_tenants_webhook_is_not_found(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(NotFound):
        await webhooks.get(OTHER_TENANT, webhook.id)
    with pytest.raises(NotFound):
        await webhooks.update(
            OTHER_TENANT, webhook.id, expected_version=None, paths=["name"], changes_for=lambda paths: {"name": "b"}
        )


class FailingCredential(FakeWebhooks):
    """Its credential's row update fails, after `meanwhile` (a change made elsewhere) when given."""

    def __init__(self, meanwhile: Callable[[Webhook], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self._meanwhile = meanwhile

    async def set_credential(self, scope: Scope, webhook_id: str, *rest: Any, **named: Any) -> Webhook:
        # Only the webhook matters here: the rest of the port's parameters are taken as they come.
        if self._meanwhile is not None:
            await self._meanwhile(self.rows[webhook_id])
        raise ConnectionError("the database went away")


# -- delivery credential ---------------------------------------------------------------------------------


async def test_a_credential_goes_to_vault_beside_the_secret_and_the_row_names_its_header(
    webhooks: Webhooks, secret_store: FakeSecrets, notifications: FakeNotifications, webhook_store: FakeWebhooks
) -> None:
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)

    credentialed = await webhooks.set_credential(
        TENANT, webhook.id, header_name="Authorization", header_value="Bearer t0ken"
    )

    record = secret_store.records[webhook.vault_path]
    assert (record["current"], credential_of(record, credentialed.credential_id)) == (
        secret,
        Credential("Authorization", "Bearer t0ken"),
    )
    assert credentialed.credential_header == "Authorization"
    assert credentialed.credential_id == record["credential_id"] and credentialed.credential_id.startswith("crd_")
    assert credentialed.version == webhook.version + 1
    assert f"{webhook.id}:{credentialed.version}" in notifications.payloads(Topic.WEBHOOKS)
    assert "t0ken" not in repr(credential_of(record, credentialed.credential_id))

    again = await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer t1")
    assert again.credential_id != credentialed.credential_id  # a new value is a new id: caches read it afresh
    removed = await webhooks.set_credential(TENANT, webhook.id, header_name="", header_value="")
    assert (removed.credential_header, removed.credential_id) == ("", "")
    record = secret_store.records[webhook.vault_path]
    assert record["current"] == secret and credential_id_of(record) == ""
    assert credential_of(record, removed.credential_id) is None
    # Each change is a DeliveryLog entry naming the header, never the value.
    assert [(note.kind, note.reason) for note in webhook_store.noted] == [
        (LogKind.CREDENTIAL_CHANGED, "Authorization is sent with every delivery"),
        (LogKind.CREDENTIAL_CHANGED, "Authorization is sent with every delivery"),
        (LogKind.CREDENTIAL_CHANGED, "no credential is sent any more"),
    ]


async def test_a_webhook_with_a_credential_keeps_its_urls_origin_until_the_credential_is_removed(
    webhooks: Webhooks,
) -> None:
    """Whoever may change the url could otherwise collect a credential they can never read."""
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer t")

    async def move(url: str) -> Webhook:
        return await webhooks.update(
            TENANT, webhook.id, expected_version=None, paths=["url"], changes_for=lambda paths: {"url": url}
        )

    base = webhook.spec.url
    same = await move(base + "/v2")
    assert same.spec.url == base + "/v2" and same.credential_header == "Authorization"
    with pytest.raises(FailedPrecondition) as refused:
        await move("https://elsewhere.example/h")
    assert "Authorization" in refused.value.message and "Bearer" not in refused.value.message
    await webhooks.set_credential(TENANT, webhook.id, header_name="", header_value="")
    moved = await move("https://elsewhere.example/h")
    assert moved.spec.url == "https://elsewhere.example/h"


async def test_a_url_moved_to_another_origin_while_a_credential_is_set_aborts_the_credential(
    clock: FakeClock, notifications: FakeNotifications
) -> None:
    """The move was allowed (the row named no credential yet); the credential, checked against the url
    before it, must not follow it."""
    store = FakeWebhooks()

    class MovedMeanwhile(FakeSecrets):
        move = False

        async def write(self, path: str, data: dict[str, str], *, replacing: int | None = None) -> None:
            await super().write(path, data, replacing=replacing)
            if self.move:  # an UpdateWebhook lands between the Vault write and the row's
                self.move = False
                [row] = [row for row in store.rows.values() if row.vault_path == path]
                store.rows[row.id] = replace(row, spec=replace(row.spec, url="https://elsewhere.example/h"))

    secrets = MovedMeanwhile()
    webhooks = service(store, secrets, clock, notifications)
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)
    secrets.move = True

    with pytest.raises(Aborted):
        await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer t")

    assert secrets.records[webhook.vault_path] == {"current": secret}  # put back
    assert store.rows[webhook.id].credential_header == "" and store.noted == []


async def test_removing_a_credential_where_there_is_none_changes_nothing(
    webhooks: Webhooks, secret_store: FakeSecrets, webhook_store: FakeWebhooks
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    versions = dict(secret_store.versions)

    unchanged = await webhooks.set_credential(TENANT, webhook.id, header_name="", header_value="")

    assert unchanged.version == webhook.version and webhook_store.noted == []
    assert secret_store.versions == versions  # Vault not written


def test_an_origin_is_the_scheme_host_and_port_with_the_default_ports_filled_in() -> None:
    assert same_origin("https://A.example/x", "https://a.example:443/y?z=1")
    assert same_origin("http://a.example/x", "http://a.example:80/")
    assert not same_origin("https://a.example/x", "http://a.example/x")
    assert not same_origin("https://a.example/x", "https://a.example:8443/x")
    assert not same_origin("https://a.example/x", "https://b.example/x")


async def test_a_rotation_landing_during_a_credential_change_is_kept_beside_it(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """Read-modify-write over Vault's check-and-set: the change that lands second reads again."""

    class Overtaken(FakeSecrets):
        overtake = True

        async def read_versioned(self, path: str) -> tuple[dict[str, str], int]:
            record, version = await super().read_versioned(path)
            if self.overtake:  # a rotation elsewhere writes right after this read
                self.overtake = False
                await self.write(path, {"current": SECRET})
            return record, version

    secrets = Overtaken()
    store = FakeWebhooks()
    webhooks = service(store, secrets, clock, notifications)
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    secrets.overtake = True

    credentialed = await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="k-9")

    record = secrets.records[webhook.vault_path]
    assert record["current"] == SECRET and credential_of(record, credentialed.credential_id) == Credential(
        "X-Api-Key", "k-9"
    )
    assert record["credential_id"] == credentialed.credential_id


async def test_a_failed_change_does_not_undo_a_change_written_after_it(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    async def rotated_meanwhile(webhook: Webhook) -> None:
        await secret_store.write(webhook.vault_path, {"current": SECRET})

    webhooks = service(FailingCredential(rotated_meanwhile), secret_store, clock, notifications)
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(ConnectionError):
        await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer t")

    assert secret_store.records[webhook.vault_path] == {"current": SECRET}


async def test_a_rotation_keeps_the_credential(webhooks: Webhooks, secret_store: FakeSecrets) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    credentialed = await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="k-123")

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=SECRET)

    record = secret_store.records[webhook.vault_path]
    assert record["current"] == SECRET and credential_of(record, credentialed.credential_id) == Credential(
        "X-Api-Key", "k-123"
    )
    assert record["credential_id"] == credentialed.credential_id == rotation.webhook.credential_id


async def test_a_credential_is_refused_where_it_cannot_apply(webhooks: Webhooks, secret_store: FakeSecrets) -> None:
    static = await webhooks.create(TENANT, replace(outbound(), headers={"X-Api-Key": "public"}), None)
    inbound, _, _ = await webhooks.create(TENANT, WebhookSpec(name="in", url="", direction=Direction.INBOUND), None)
    deleted, _, _ = await webhooks.create(TENANT, outbound("gone"), None)
    await webhooks.delete(TENANT, deleted.id, expected_version=None)

    with pytest.raises(Invalid) as clash:
        await webhooks.set_credential(TENANT, static[0].id, header_name="x-api-key", header_value="secret")
    assert violated_fields(clash.value) == ["header_name"]
    with pytest.raises(FailedPrecondition):
        await webhooks.set_credential(TENANT, inbound.id, header_name="Authorization", header_value="Bearer t")
    with pytest.raises(FailedPrecondition):
        await webhooks.set_credential(TENANT, deleted.id, header_name="Authorization", header_value="Bearer t")
    with pytest.raises(NotFound):
        await webhooks.set_credential(OTHER_TENANT, static[0].id, header_name="Authorization", header_value="Bearer t")
    assert all("credential_value" not in record for record in secret_store.records.values())


async def test_a_credential_is_taken_back_from_vault_when_the_row_update_fails(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    webhooks = service(FailingCredential(), secret_store, clock, notifications)
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(ConnectionError):
        await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer t")

    assert secret_store.records[webhook.vault_path] == {"current": secret}


# -- rotation --------------------------------------------------------------------------------------------


async def test_rotation_keeps_the_previous_secret_for_the_overlap(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    webhook, old_secret, _ = await webhooks.create(TENANT, outbound(), None)
    clock.advance(timedelta(days=1))

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)

    expires = clock() + timedelta(hours=2)
    assert secret_store.records[webhook.vault_path] == {
        "current": rotation.signing_secret,
        "previous": old_secret,
        "previous_expires_at": expires.isoformat(),
    }
    assert rotation.previous_secret_expires_at == expires
    assert rotation.webhook.secret_fingerprint == fingerprint(rotation.signing_secret)
    assert rotation.webhook.version == 2


class CommitAwaitingItsAnswer(FakeWebhooks):
    """Row writes that have reached the database (the row is written) and wait for the answer to their
    COMMIT until `answered` is set: a cancelled call cannot take them back any more."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = asyncio.Event()
        self.answered = asyncio.Event()

    async def _answer(self, written: Any) -> Any:
        self.sent.set()
        await self.answered.wait()
        return written

    async def set_fingerprint(self, scope: Scope, webhook_id: str, fingerprint: str, **stamps: Any) -> Webhook:
        return await self._answer(await super().set_fingerprint(scope, webhook_id, fingerprint, **stamps))

    async def update_spec(self, scope: Scope, webhook_id: str, spec: WebhookSpec, **stamps: Any) -> Webhook:
        return await self._answer(await super().update_spec(scope, webhook_id, spec, **stamps))

    async def soft_delete(self, scope: Scope, webhook_id: str, **stamps: Any) -> Webhook:
        return await self._answer(await super().soft_delete(scope, webhook_id, **stamps))


async def cancelled_once_sent(store: CommitAwaitingItsAnswer, call: Awaitable[Any]) -> None:
    """Runs `call` until its row write is sent, cancels it, then lets the COMMIT's answer come."""
    task = asyncio.ensure_future(call)
    await within(store.sent.wait())
    task.cancel()
    store.answered.set()
    with pytest.raises(asyncio.CancelledError):
        await task


WRITES_CANCELLED_ONCE_SENT: dict[str, Callable[[Webhooks, Webhook], Awaitable[Any]]] = {
    "update": lambda w, hook: w.update(
        TENANT, hook.id, expected_version=None, paths=["name"], changes_for=lambda paths: {"name": "renamed"}
    ),
    "delete": lambda w, hook: w.delete(TENANT, hook.id, expected_version=None),
    "rotate": lambda w, hook: w.rotate_secret(TENANT, hook.id, overlap=timedelta(hours=2), signing_secret=None),
}


@pytest.mark.parametrize("write", sorted(WRITES_CANCELLED_ONCE_SENT))
async def test_a_write_whose_caller_went_away_once_it_was_sent_is_seen_at_once_when_it_lands(
    write: str, secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """What committed is what GetWebhook answers from the cache, and other processes are told of it."""
    store = CommitAwaitingItsAnswer()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.get(TENANT, webhook.id)  # cached

    await cancelled_once_sent(store, WRITES_CANCELLED_ONCE_SENT[write](webhooks, webhook))

    assert await webhooks.get(TENANT, webhook.id) == store.rows[webhook.id]
    assert (Topic.WEBHOOKS, f"{webhook.id}:2") in notifications.notified


async def test_a_rotation_cancelled_while_its_row_commits_leaves_vault_signing_with_the_rows_secret(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """The caller goes away (a deadline, a cancel) once the row update is sent: putting the record back
    then would leave the row naming a secret nobody holds, and a rotation in the log that never was."""
    store = CommitAwaitingItsAnswer()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    await cancelled_once_sent(
        store, webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    )

    named = store.rows[webhook.id].secret_fingerprint
    signing = active_secrets(secret_store.records[webhook.vault_path], clock(), named)
    assert fingerprint(signing[0]) == named


class RotationHeld(FakeWebhooks):
    """Holds the next row read once `hold_read` is set (`read`, until `go_on`) and the next fingerprint
    commit once `hold_commit` is set (`writing`, until `commit`)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_read = self.hold_commit = False
        self.read, self.go_on = asyncio.Event(), asyncio.Event()
        self.writing, self.commit = asyncio.Event(), asyncio.Event()

    async def get(self, scope: Scope, webhook_id: str) -> Webhook:
        row = await super().get(scope, webhook_id)
        if self.hold_read:
            self.hold_read = False
            self.read.set()
            await self.go_on.wait()
        return row

    async def set_fingerprint(self, *args: Any, **kwargs: Any) -> Webhook:
        if self.hold_commit:
            self.hold_commit = False
            self.writing.set()
            await self.commit.wait()
        return await super().set_fingerprint(*args, **kwargs)


async def test_a_change_while_another_holds_the_secret_lease_is_refused_and_writes_nothing(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """One change of the record at a time, from any process: a second rotation or credential is refused
    before it reads Vault, so it can neither push the first one's secret out of the record nor leave
    the row naming what Vault no longer holds; the first one then commits and signs."""
    store = RotationHeld()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, original, _ = await webhooks.create(TENANT, outbound(), None)
    store.hold_commit = True
    first = asyncio.ensure_future(
        webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    )
    await within(store.writing.wait())
    record = dict(secret_store.records[webhook.vault_path])

    with pytest.raises(Aborted, match="being changed by another call: retry") as refused:
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    assert refused.value.reason == "SECRET_CHANGE_IN_PROGRESS"
    with pytest.raises(Aborted, match="being changed by another call: retry"):
        await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="k-1")
    assert secret_store.records[webhook.vault_path] == record
    store.commit.set()

    rotation = await first
    named = store.rows[webhook.id].secret_fingerprint
    assert named == fingerprint(rotation.signing_secret)
    assert active_secrets(secret_store.records[webhook.vault_path], clock(), named) == [
        rotation.signing_secret,
        original,
    ]


async def test_a_change_whose_lease_lapsed_and_was_taken_is_refused_without_undoing_the_next_ones_record(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """The first rotation stalls past its lease (a slow database), a second takes the lease and
    commits: the first must not commit over it, and putting its record back must not erase the
    second's, whose secret its caller was given."""
    store = RotationHeld()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, original, _ = await webhooks.create(TENANT, outbound(), None)
    store.hold_commit = True
    stalled = asyncio.ensure_future(
        webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    )
    await within(store.writing.wait())
    clock.advance(DEFAULT_SECRET_LEASE + timedelta(seconds=1))

    second = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    store.commit.set()
    with pytest.raises(Aborted, match="changed by another call meanwhile"):
        await stalled

    named = store.rows[webhook.id].secret_fingerprint
    assert named == fingerprint(second.signing_secret)
    signing = active_secrets(secret_store.records[webhook.vault_path], clock(), named)
    assert signing[0] == second.signing_secret and original in signing
    third = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    assert third.webhook.secret_fingerprint == fingerprint(third.signing_secret)  # the lease is free again


class VaultHeld(FakeSecrets):
    """Holds the next write once `hold` is set (`writing`), until its caller goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.writing = asyncio.Event()

    async def write(self, path: str, data: dict[str, str], *, replacing: int | None = None) -> None:
        if self.hold:
            self.hold = False
            self.writing.set()
            await asyncio.Future()  # a Vault that does not answer
        await super().write(path, data, replacing=replacing)


@pytest.mark.parametrize("ending", ["row update fails", "cancelled before its commit", "nothing to change"])
async def test_a_change_that_commits_nothing_gives_the_lease_back(
    ending: str, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """Else the next change would be refused until the lease lapsed."""
    store = FailingCredential() if ending == "row update fails" else FakeWebhooks()
    secrets = VaultHeld()
    webhooks = service(store, secrets, clock, notifications)
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    if ending == "cancelled before its commit":
        secrets.hold = True
        rotating = asyncio.ensure_future(
            webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
        )
        await within(secrets.writing.wait())
        rotating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rotating
    elif ending == "row update fails":
        with pytest.raises(ConnectionError):
            await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="k-1")
    else:
        await webhooks.set_credential(TENANT, webhook.id, header_name="X-Api-Key", header_value="")
    assert webhook.id not in store.secret_leases

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    assert rotation.webhook.secret_fingerprint == fingerprint(rotation.signing_secret)


class DatabaseAway(FakeWebhooks):
    """A database that carries out the next lease take but does not answer it (`take_unanswered`), does
    not answer the next fingerprint commit (`commit_unanswered`: not carried out), answers the next
    `unanswered_releases` releases Unavailable, and holds every release while `answering` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.take_unanswered = self.commit_unanswered = False
        self.unanswered_releases = 0
        self.answering = asyncio.Event()
        self.answering.set()

    async def take_secret_lease(self, scope: Scope, webhook_id: str, token: UUID, *, lasting: timedelta) -> Webhook:
        taken = await super().take_secret_lease(scope, webhook_id, token, lasting=lasting)
        if self.take_unanswered:
            self.take_unanswered = False
            raise Unavailable("database unavailable: no answer in time", dependency="database")
        return taken

    async def set_fingerprint(self, *args: Any, **kwargs: Any) -> Webhook:
        if self.commit_unanswered:
            self.commit_unanswered = False
            raise Unavailable("database unavailable: no answer in time", dependency="database")
        return await super().set_fingerprint(*args, **kwargs)

    async def release_secret_lease(self, scope: Scope, webhook_id: str, token: UUID) -> None:
        await self.answering.wait()
        if self.unanswered_releases:
            self.unanswered_releases -= 1
            raise Unavailable("database unreachable: no answer in time", dependency="database")
        await super().release_secret_lease(scope, webhook_id, token)


async def test_a_lease_whose_take_went_unanswered_is_given_back_once_the_database_answers_again(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL carried out the take its caller was told UNAVAILABLE about: the lease is given back
    as soon as a release is answered, not left to refuse every change until it lapses."""
    monkeypatch.setattr(secret_leases, "RETRY_SECONDS", 0.0)
    store = DatabaseAway()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    store.take_unanswered = True
    store.unanswered_releases = 2  # the database is still away for two tries

    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None)
    assert webhook.id in store.secret_leases  # taken all the same
    await until(lambda: webhook.id not in store.secret_leases)

    assert store.unanswered_releases == 0
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None)
    assert rotation.webhook.secret_fingerprint == fingerprint(rotation.signing_secret)


async def test_an_unanswered_commit_is_answered_unavailable_without_waiting_for_the_leases_release(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """The release would wait on the same database the commit did: the answer does not wait for it, and
    the lease is given back once the database answers."""
    store = DatabaseAway()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)
    store.commit_unanswered = True
    store.answering.clear()

    with pytest.raises(Unavailable):
        await within(webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None))
    assert secret_store.records[webhook.vault_path] == {"current": secret}  # put back before the answer
    assert webhook.id in store.secret_leases
    store.answering.set()
    await until(lambda: webhook.id not in store.secret_leases)

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None)
    assert rotation.webhook.secret_fingerprint == fingerprint(rotation.signing_secret)


async def test_a_retried_rotation_to_a_chosen_secret_keeps_the_first_ones_overlap(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """Its answer was lost, so the caller sends it again: rotating anew would make the chosen secret its
    own previous one and end the overlap of the secret receivers still hold."""
    webhook, old_secret, _ = await webhooks.create(TENANT, outbound(), None)
    first = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=SECRET)
    clock.advance(timedelta(minutes=1))

    retried = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=SECRET)

    assert secret_store.records[webhook.vault_path] == {
        "current": SECRET,
        "previous": old_secret,
        "previous_expires_at": first.previous_secret_expires_at.isoformat(),
    }
    assert retried == first


async def test_a_second_rotation_within_the_overlap_keeps_the_first_ones_promise(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """The first rotation told the caller its old secret signs for 24 hours; a second one an hour later
    must not cut that short: receivers still on the first secret keep verifying until then."""
    webhook, first_secret, _ = await webhooks.create(TENANT, outbound(), None)
    first = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)
    clock.advance(timedelta(hours=1))
    second = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=None)
    record = secret_store.records[webhook.vault_path]
    named = second.webhook.secret_fingerprint

    assert active_secrets(record, clock(), named) == [second.signing_secret, first.signing_secret, first_secret]
    clock.advance(timedelta(hours=2))  # the second rotation's overlap is over, the first one's is not
    assert active_secrets(record, clock(), named) == [second.signing_secret, first_secret]
    clock.now = first.previous_secret_expires_at
    assert active_secrets(record, clock(), named) == [second.signing_secret]


async def test_a_rotation_past_max_previous_overlapping_secrets_is_refused_so_every_handed_out_one_signs(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """Each rotation promised its caller the replaced secret signs until its overlap ends: one more
    than the record keeps is refused, not made by ending an earlier promise (the oldest secret used to
    give way, and a receiver still on it began rejecting deliveries)."""
    webhook, first_secret, _ = await webhooks.create(TENANT, outbound(), None)
    rotations = []
    for hours in range(MAX_PREVIOUS):
        rotations.append(
            await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24 - hours), signing_secret=None)
        )
        clock.advance(timedelta(minutes=1))
    record_before = dict(secret_store.records[webhook.vault_path])

    with pytest.raises(FailedPrecondition) as refused:
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)

    assert refused.value.reason == TOO_MANY_SIGNING_SECRETS
    # The first overlap to end is the last rotation's (21 h), not the first one's (24 h).
    assert rotations[-1].previous_secret_expires_at.isoformat() in refused.value.message
    assert secret_store.records[webhook.vault_path] == record_before
    handed_out = [first_secret, *(rotation.signing_secret for rotation in rotations)]
    signing = active_secrets(record_before, clock(), rotations[-1].webhook.secret_fingerprint)
    assert sorted(signing) == sorted(handed_out)


async def test_a_rotation_goes_ahead_once_an_earlier_overlap_ends(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    rotations = [
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1 + n), signing_secret=None)
        for n in range(MAX_PREVIOUS)
    ]
    clock.now = rotations[0].previous_secret_expires_at

    last = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)

    record = secret_store.records[webhook.vault_path]
    signing = active_secrets(record, clock(), last.webhook.secret_fingerprint)
    newest_first = [rotation.signing_secret for rotation in reversed([*rotations, last])]
    assert signing == newest_first[: MAX_PREVIOUS + 1]


async def test_a_rotation_without_overlap_is_never_refused_for_the_secrets_still_overlapping(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """Retiring a leaked secret must not wait for earlier overlaps: overlap 0s ends them all."""
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    for _ in range(MAX_PREVIOUS):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)

    retired = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=None)

    record = secret_store.records[webhook.vault_path]
    assert active_secrets(record, clock(), retired.webhook.secret_fingerprint) == [retired.signing_secret]


async def test_a_rotation_without_overlap_ends_every_earlier_secret(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """A leaked secret is rotated with overlap 0: nothing that signed before may sign after it."""
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=24), signing_secret=None)

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=SECRET)

    record = secret_store.records[webhook.vault_path]
    assert active_secrets(record, clock(), rotation.webhook.secret_fingerprint) == [SECRET]
    assert active_secrets(record, clock() + timedelta(hours=1), rotation.webhook.secret_fingerprint) == [SECRET]


async def test_rotation_without_overlap_drops_the_previous_secret(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=SECRET)

    record = secret_store.records[webhook.vault_path]
    assert active_secrets(record, clock(), rotation.webhook.secret_fingerprint) == [SECRET]
    assert rotation.signing_secret == SECRET


async def test_a_secret_retired_without_overlap_leaves_vault_at_the_sweep_once_the_row_names_the_new_one(
    webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks
) -> None:
    """The rotation's commit marks the row due; the workers' sweep takes the retired secret out (the call
    itself answers without another Vault call)."""
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    kept = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=None)

    await sweeper.sweep()

    assert secret_store.records[webhook.vault_path] == {"current": rotation.signing_secret}
    assert kept.signing_secret not in secret_store.records[webhook.vault_path].values()
    assert webhook.id not in webhook_store.secret_leases  # the lease the sweep took to remove it is given back


async def test_a_secret_whose_overlap_lasts_stays_in_vault(webhooks: Webhooks, secret_store: FakeSecrets) -> None:
    webhook, original, _ = await webhooks.create(TENANT, outbound(), None)

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)

    record = secret_store.records[webhook.vault_path]
    assert (record["current"], record["previous"]) == (rotation.signing_secret, original)


@pytest.mark.parametrize("value", ["Bearer second", ""], ids=["replaced", "removed"])
async def test_a_credential_replaced_or_removed_leaves_vault_at_the_sweep_once_the_row_no_longer_names_it(
    value: str, webhooks: Webhooks, sweeper: EndedOverlaps, secret_store: FakeSecrets, webhook_store: FakeWebhooks
) -> None:
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer first")
    changed = await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value=value)

    await sweeper.sweep()

    record = secret_store.records[webhook.vault_path]
    assert "Bearer first" not in record.values()
    assert record == {"current": secret} | (
        {"credential_header": "Authorization", "credential_value": value, "credential_id": changed.credential_id}
        if value
        else {}
    )
    assert webhook.id not in webhook_store.secret_leases


async def test_rotation_puts_the_old_record_back_when_the_row_update_fails(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    class FailingFingerprint(FakeWebhooks):
        async def set_fingerprint(self, *args: Any, **kwargs: Any) -> Webhook:
            raise ConnectionError("the database went away")

    webhooks = service(FailingFingerprint(), secret_store, clock, notifications)
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(ConnectionError):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None)

    assert secret_store.records[webhook.vault_path] == {"current": secret}


async def test_a_rotation_after_one_vault_carried_out_late_keeps_the_secret_the_row_names(
    webhooks: Webhooks, secret_store: FakeSecrets
) -> None:
    """The lost rotation's secret was never handed out: the next rotation overlaps with the one in use."""
    webhook, old_secret, _ = await webhooks.create(TENANT, outbound(), None)
    secret_store.answers_late = True
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    secret_store.answers_late = False

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)

    record = secret_store.records[webhook.vault_path]
    assert (record["current"], record["previous"]) == (rotation.signing_secret, old_secret)


async def test_a_rotation_without_overlap_that_vault_carried_out_late_leaves_the_row_secret_signing(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """Told UNAVAILABLE, the caller keeps the secret it holds; the row still names it. A record holding
    only the unanswered rotation's secret would sign with one nobody was given."""
    webhook, old_secret, _ = await webhooks.create(TENANT, outbound(), None)
    secret_store.answers_late = True
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=None)

    record = secret_store.records[webhook.vault_path]
    assert active_secrets(record, clock() + timedelta(seconds=1), webhook.secret_fingerprint) == [old_secret]


async def test_a_credential_change_that_vault_carried_out_late_leaves_the_row_credential_sent(
    webhooks: Webhooks, secret_store: FakeSecrets
) -> None:
    """Told UNAVAILABLE, the caller takes the credential it set before to be the one sent; the row still
    names it, and a record holding only the unanswered change's would send none."""
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    first = await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer a")
    secret_store.answers_late = True
    for value in ("Bearer b", ""):  # replaced, or removed
        with pytest.raises(Unavailable):
            await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value=value)

        record = secret_store.records[webhook.vault_path]
        assert credential_of(record, first.credential_id) == Credential("Authorization", "Bearer a")
    secret_store.answers_late = False

    removed = await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="")
    again = await webhooks.set_credential(TENANT, webhook.id, header_name="Authorization", header_value="Bearer c")

    record = secret_store.records[webhook.vault_path]
    assert credential_of(record, removed.credential_id) is None and removed.credential_id == ""
    assert credential_of(record, again.credential_id) == Credential("Authorization", "Bearer c")
    assert "Bearer a" not in record.values()  # one the row no longer names is kept no further


class FingerprintCommittedLate(FakeWebhooks):
    """The row update that the database carried out after the call gave up on it (a frozen server
    resumed): written, but the caller was told Unavailable, while `late`."""

    late = True

    async def set_fingerprint(self, *args: Any, **kwargs: Any) -> Webhook:
        written = await super().set_fingerprint(*args, **kwargs)
        if self.late:
            raise Unavailable("database unavailable: no answer in time")
        return written


async def test_a_retried_rotation_to_a_chosen_secret_writes_it_when_vault_was_put_back_under_a_late_row(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    """The first try answered UNAVAILABLE and put Vault's record back, but its row update committed
    later: the row names the chosen secret, Vault still holds the old one. The retry must not take the
    row's word for it and answer OK while every delivery is signed with the old secret."""
    store = FingerprintCommittedLate()
    webhooks = service(store, secret_store, clock, notifications)
    webhook, old_secret, _ = await webhooks.create(TENANT, outbound(), None)
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=SECRET)
    assert secret_store.records[webhook.vault_path] == {"current": old_secret}  # put back
    store.late = False  # the database answers in time again

    retried = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=2), signing_secret=SECRET)

    record = secret_store.records[webhook.vault_path]
    assert (record["current"], record["previous"]) == (SECRET, old_secret)
    row = await store.get(TENANT, webhook.id)
    assert active_secrets(record, clock(), row.secret_fingerprint) == [SECRET, old_secret]
    assert retried.signing_secret == SECRET
    assert retried.previous_secret_expires_at == clock() + timedelta(hours=2)


async def test_rotation_names_every_invalid_field(webhooks: Webhooks, secret_store: FakeSecrets) -> None:
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(Invalid) as raised:
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(days=8), signing_secret="short")

    assert violated_fields(raised.value) == ["overlap", "signing_secret"]
    assert secret_store.records[webhook.vault_path] == {"current": secret}


async def test_a_deleted_webhooks_secret_is_not_rotated(webhooks: Webhooks, secret_store: FakeSecrets) -> None:
    webhook, secret, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.delete(TENANT, webhook.id, expected_version=None)

    with pytest.raises(FailedPrecondition):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None)

    assert secret_store.records[webhook.vault_path] == {"current": secret}


# -- resume ----------------------------------------------------------------------------------------------


async def test_resume_clears_the_pause_and_wakes_the_workers(
    webhooks: Webhooks, webhook_store: FakeWebhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    webhook_store.rows[webhook.id] = replace(webhook, paused_at=clock(), consecutive_failures=5)

    resumed, _ = await webhooks.resume(TENANT, webhook.id)

    assert resumed.is_active and resumed.consecutive_failures == 0
    assert notifications.count(Topic.DELIVERIES) == 1


async def test_resuming_a_deleted_webhook_fails_and_wakes_nobody(
    webhooks: Webhooks, notifications: FakeNotifications
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    await webhooks.delete(TENANT, webhook.id, expected_version=None)
    woken = notifications.count(Topic.DELIVERIES)

    with pytest.raises(FailedPrecondition):
        await webhooks.resume(TENANT, webhook.id)

    assert notifications.count(Topic.DELIVERIES) == woken


# -- reading through the cache ---------------------------------------------------------------------------


def renamed_elsewhere(store: FakeWebhooks, webhook: Webhook) -> None:
    """Another process's write: the row changes, and this process has not been told yet."""
    store.rows[webhook.id] = replace(webhook, spec=replace(webhook.spec, name="renamed"), version=webhook.version + 1)


async def test_every_change_tells_other_processes_the_version_it_wrote(
    webhooks: Webhooks, webhook_store: FakeWebhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    # Nobody caches a webhook that did not exist (misses are not cached), so a create tells no one.
    assert notifications.payloads(Topic.WEBHOOKS) == []
    await webhooks.update(TENANT, webhook.id, expected_version=1, paths=["name"], changes_for=lambda p: {"name": "b"})
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=None)
    # The recorder's pause, which tells no one itself (its version is read from the row).
    webhook_store.rows[webhook.id] = replace(webhook_store.rows[webhook.id], paused_at=clock())
    await webhooks.resume(TENANT, webhook.id)
    await webhooks.delete(TENANT, webhook.id, expected_version=None)
    await webhooks.undelete(TENANT, webhook.id)

    assert notifications.payloads(Topic.WEBHOOKS) == [f"{webhook.id}:{version}" for version in range(2, 7)]


async def test_get_answers_from_the_cache_until_told_the_webhook_changed(
    webhooks: Webhooks, webhook_store: FakeWebhooks, notifications: FakeNotifications
) -> None:
    async with webhooks.follow_changes():
        webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
        renamed_elsewhere(webhook_store, webhook)
        assert (await webhooks.get(TENANT, webhook.id)).spec.name == "orders"  # what this process wrote

        notifications.notify(Topic.WEBHOOKS, f"{webhook.id}:2")

        assert (await webhooks.get(TENANT, webhook.id)).spec.name == "renamed"


class ReadInFlightStore(FakeWebhooks):
    """A read that has its row but has not answered yet, until the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.row_read = asyncio.Event()
        self.answer = asyncio.Event()

    async def get(self, scope: Scope, webhook_id: str) -> Webhook:
        row = await super().get(scope, webhook_id)
        if not self.answer.is_set():
            self.row_read.set()
            await self.answer.wait()
        return row


async def test_a_read_overtaken_by_another_processs_write_is_not_served_afterwards(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    store = ReadInFlightStore()
    store.answer.set()
    webhooks = service(store, secret_store, clock, notifications)
    async with webhooks.follow_changes():
        webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
        notifications.notify(Topic.WEBHOOKS, webhook.id)  # forgotten here, so the next get reads the row
        store.answer.clear()
        read = asyncio.create_task(webhooks.get(TENANT, webhook.id))
        await within(store.row_read.wait())

        renamed_elsewhere(store, webhook)  # another process commits version 2, then tells this one
        notifications.notify(Topic.WEBHOOKS, f"{webhook.id}:2")
        store.answer.set()
        assert (await within(read)).spec.name == "orders"  # the read in flight answers what it read

        assert (await webhooks.get(TENANT, webhook.id)).spec.name == "renamed"


async def test_a_fresh_read_skips_the_cache(webhooks: Webhooks, webhook_store: FakeWebhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    renamed_elsewhere(webhook_store, webhook)

    assert (await webhooks.get(TENANT, webhook.id, fresh=True)).spec.name == "renamed"


async def test_following_changes_starts_by_forgetting_what_may_have_been_missed(
    webhooks: Webhooks, webhook_store: FakeWebhooks
) -> None:
    webhook, _, _ = await webhooks.create(TENANT, outbound(), None)
    renamed_elsewhere(webhook_store, webhook)  # while this process was not listening

    async with webhooks.follow_changes():
        assert (await webhooks.get(TENANT, webhook.id)).spec.name == "renamed"


async def test_a_cached_webhook_is_still_not_found_for_another_tenant(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(APP, outbound(), None)
    assert (await webhooks.get(APP, webhook.id)).id == webhook.id  # cached now

    with pytest.raises(NotFound):
        await webhooks.get(OTHER_TENANT, webhook.id)
    with pytest.raises(NotFound):
        await webhooks.get(Scope("tnt_a", app_id="app_2"), webhook.id)


# -- listing ---------------------------------------------------------------------------------------------


async def test_pages_follow_one_another_until_the_last_has_no_token(webhooks: Webhooks) -> None:
    created = [(await webhooks.create(TENANT, outbound(f"hook-{n}"), None))[0].id for n in range(5)]
    await webhooks.create(OTHER_TENANT, outbound("not-mine"), None)

    seen, tokens, token = [], [], ""
    while True:
        page = await webhooks.list_page(TENANT, WebhookFilter(), page_size=2, page_token=token)
        seen += [webhook.id for webhook in page.webhooks]
        token = page.next_page_token
        tokens.append(token)
        if not token:
            break

    assert seen == sorted(created)
    assert len(tokens) == 3 and tokens[-1] == ""


@pytest.mark.parametrize(
    "token",
    [
        page_tokens.encode(b"a guessed key", "whk_0", page_tokens.query_digest("tnt_a", None, WebhookFilter())),
        "not-a-token",
    ],
    ids=["forged", "corrupt"],
)
async def test_a_page_token_this_service_did_not_issue_is_invalid(webhooks: Webhooks, token: str) -> None:
    await webhooks.create(TENANT, outbound(), None)

    with pytest.raises(Invalid) as raised:
        await webhooks.list_page(TENANT, WebhookFilter(), page_size=1, page_token=token)

    assert violated_fields(raised.value) == ["page_token"]


@pytest.mark.parametrize(
    ("scope", "query"),
    [(TENANT, WebhookFilter(name_contains="hook")), (OTHER_TENANT, WebhookFilter())],
    ids=["other filters", "other tenant"],
)
async def test_a_page_token_is_bound_to_its_query(webhooks: Webhooks, scope: Scope, query: WebhookFilter) -> None:
    for n in range(3):
        await webhooks.create(TENANT, outbound(f"hook-{n}"), None)
    page = await webhooks.list_page(TENANT, WebhookFilter(), page_size=1, page_token="")

    with pytest.raises(Invalid) as raised:
        await webhooks.list_page(scope, query, page_size=1, page_token=page.next_page_token)

    assert violated_fields(raised.value) == ["page_token"]


async def test_a_negative_page_size_is_invalid(webhooks: Webhooks) -> None:
    with pytest.raises(Invalid) as raised:
        await webhooks.list_page(TENANT, WebhookFilter(), page_size=-1, page_token="")

    assert violated_fields(raised.value) == ["page_size"]
