"""PostgreSQL frozen (SIGSTOP: it answers nothing, not even a refusal) or killed (SIGKILL) under
`webhookd serve` while events are published, delivered and webhooks created.

While it is away every call fails fast with UNAVAILABLE and a RetryInfo (never INTERNAL, never a hang),
/readyz answers 503 within its own bound and gRPC health says NOT_SERVING; once it is back the same
processes serve again with no restart. Every acknowledged event is delivered, with its event id as
webhook-id; only events in flight when the fault struck may arrive twice. A webhook whose create ended
UNAVAILABLE either exists with its secret or leaves nothing behind once the orphans are reconciled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from backends import FaultyPostgres, in_thread
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from harness import (
    CALL_DEADLINE_SECONDS,
    Calls,
    FaultBackends,
    Ledger,
    Publisher,
    Serving,
    all_settled,
    assert_delivered,
    health_is,
    readyz,
    record,
    serving,
    until,
)
from receivers import Receiver
from support import FRESH_READ, Database, make_caller
from webhookd.secrets.vault import VaultSecretStore

pytestmark = pytest.mark.slow
# A retry once the database is back: a few calls may still meet the outage before the probe ends it.
RETRIES = 300
RETRY_PAUSE_SECONDS = 0.1
DELIVERED_WITHIN = 90


@pytest.fixture(scope="module")
async def service(fault_backends: FaultBackends) -> AsyncIterator[Serving]:
    async with serving(fault_backends, "postgres-faults") as running:
        yield running


async def owned_secrets(backends: FaultBackends, database: Database, tenant_id: str) -> tuple[set[str], set[str]]:
    """The tenant's webhook ids with a row, and those with a secret in Vault."""
    rows = {row.id for row in await database.rows("SELECT id FROM webhooks WHERE tenant_id = :t", t=tenant_id)}
    vault = VaultSecretStore(backends.vault_addr, backends.vault_token)
    try:
        return rows, set(await vault.webhook_ids(tenant_id))
    finally:
        vault.close()


@pytest.mark.parametrize("fault", ["SIGSTOP", "SIGKILL"])
async def test_postgres_away_fails_calls_fast_and_loses_no_acknowledged_event(
    fault_backends: FaultBackends, service: Serving, receiver: Receiver, fault: str
) -> None:
    postgres = fault_backends.postgres
    name = f"postgres {fault} during publishing, delivery and create"
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        webhook = (
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url=receiver.url, event_types=["fault.*"]))
            )
        ).webhook
        publisher = Publisher(caller, "fault.db")
        await publisher.until_acknowledged(20)

        struck_at = time.monotonic()
        delivered_before = set(Ledger.of(receiver.received).by_n)
        await in_thread(postgres.freeze if fault == "SIGSTOP" else postgres.kill)
        during = Calls()
        try:
            await until(lambda: publisher.calls.first("UNAVAILABLE", struck_at), "a publish UNAVAILABLE")
            fresh = (*caller.metadata, FRESH_READ)
            await during.make(
                lambda: caller.GetWebhook(
                    pb.GetWebhookRequest(id=webhook.id), metadata=fresh, timeout=CALL_DEADLINE_SECONDS
                )
            )
            await during.make(
                lambda: caller.CreateWebhook(
                    pb.CreateWebhookRequest(webhook=wpb.Webhook(name="during", url=receiver.url)),
                    timeout=CALL_DEADLINE_SECONDS,
                )
            )
            ready_status, ready_seconds = await readyz(service.http_url)
            not_serving_at = await until(lambda: health_is(channel, "NOT_SERVING"), "health NOT_SERVING", within=60)
        finally:
            back_at = time.monotonic()
            await in_thread(postgres.thaw if fault == "SIGSTOP" else postgres.restart)

        recovered = await until(lambda: publisher.calls.first("OK", back_at), "a publish OK again", within=60)
        serving_at = await until(lambda: health_is(channel, "SERVING"), "health SERVING again", within=60)
        ready_after, _ = await readyz(service.http_url)
        acknowledged_during = len(publisher.acknowledged)
        await publisher.until_acknowledged(acknowledged_during + 10)
        await publisher.stop()

    database = Database(fault_backends.database_url)
    try:
        await until(lambda: all_settled(database, caller.tenant_id), "every delivery succeeded", within=90)
        rows, secrets = await owned_secrets(fault_backends, database, caller.tenant_id)
    finally:
        await database.close()

    ledger = Ledger.of(receiver.received)
    first_unavailable = publisher.calls.first("UNAVAILABLE", struck_at)
    first_ok = publisher.calls.first("OK", back_at)
    assert first_unavailable is not None and first_ok is not None
    record(
        name,
        faults_injected=1,
        acknowledged=len(publisher.acknowledged),
        delivered=len(set(ledger.by_n) & set(publisher.acknowledged)),
        duplicates=ledger.duplicates(),
        calls=dict(publisher.calls.codes() + during.codes()),
        time_to_unavailable_s=first_unavailable.started + first_unavailable.seconds - struck_at,
        slowest_failed_call_s=max(o.seconds for o in publisher.calls.failures() + during.failures()),
        readyz_s=ready_seconds,
        time_to_not_serving_s=not_serving_at - struck_at,
        down_for_s=back_at - struck_at,
        time_to_recover_s=first_ok.started + first_ok.seconds - back_at,
        time_to_serving_s=serving_at - back_at,
    )
    # Fast UNAVAILABLE with RetryInfo, never INTERNAL, never a hang.
    codes = publisher.calls.codes() + during.codes()
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert all(o.retry_info for o in publisher.calls.failures() + during.failures())
    assert during.codes() == {"UNAVAILABLE": 2}
    assert ready_status == 503 and ready_after == 200
    assert recovered > back_at
    # Nothing acknowledged lost; repeats only of what was in flight: published before the recovery and
    # not yet delivered when the fault struck.
    in_flight = publisher.published_before(first_ok.started) - delivered_before
    assert_delivered(ledger, publisher.acknowledged, repeatable=in_flight)
    # A create that ended UNAVAILABLE left no row without its secret (an orphaned secret is reconciled).
    assert rows <= secrets, f"webhooks without their secret: {rows - secrets}"


async def made_while_frozen(postgres: FaultyPostgres, call: Callable[[], Awaitable[object]]) -> Calls:
    """`call` made once while PostgreSQL is stopped (SIGSTOP), which resumes as the call ends."""
    calls = Calls()
    await in_thread(postgres.freeze)
    try:
        await calls.make(call)
    finally:
        await in_thread(postgres.thaw)
    return calls


async def test_a_create_answered_unavailable_leaves_no_webhook_once_the_database_resumes(
    fault_backends: FaultBackends, service: Serving, receiver: Receiver
) -> None:
    """A frozen server carries out what it had received when it resumes. A create the caller was told
    failed must not then come alive: a live webhook whose signing secret nobody was given, beside the
    one the caller's retry creates (every event delivered twice, once unverifiable)."""
    postgres = fault_backends.postgres
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        request = pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url=receiver.url))
        first = await made_while_frozen(postgres, lambda: caller.CreateWebhook(request, timeout=CALL_DEADLINE_SECONDS))
        await until(lambda: health_is(channel, "SERVING"), "health SERVING again", within=60)

    database = Database(fault_backends.database_url)
    try:
        # The server has answered since it resumed: what it had received is carried out or dropped.
        rows = await database.rows("SELECT id FROM webhooks WHERE tenant_id = :t", t=caller.tenant_id)
    finally:
        await database.close()
    assert first.codes() == {"UNAVAILABLE": 1}
    assert rows == [], "a webhook the caller was told was not created"


async def test_a_publish_answered_unavailable_and_retried_with_its_idempotency_key_is_one_event(
    fault_backends: FaultBackends, service: Serving, receiver: Receiver
) -> None:
    """A publish the database did not answer in time may still be stored (when the answer lost was its
    COMMIT's; the figure says which way it went). Retried with its idempotency key, as the README says
    to, it is one event, delivered once, either way."""
    postgres = fault_backends.postgres
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        await caller.CreateWebhook(
            pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url=receiver.url, event_types=["retry.*"]))
        )
        payload = struct_pb2.Struct()
        payload.update({"n": 0})
        request = pb.PublishEventRequest(event_type="retry.once", payload=payload, idempotency_key="order-7")

        first = await made_while_frozen(postgres, lambda: caller.PublishEvent(request, timeout=CALL_DEADLINE_SECONDS))
        retries = Calls()
        published = None
        while published is None:
            assert len(retries.outcomes) < RETRIES, retries.codes()
            published = await retries.make(lambda: caller.PublishEvent(request, timeout=CALL_DEADLINE_SECONDS))
            if published is None:
                await asyncio.sleep(RETRY_PAUSE_SECONDS)

    database = Database(fault_backends.database_url)
    try:
        try:
            # A claim answered too late but committed (a loaded machine, just after the thaw) leased the
            # delivery to no worker: the next claim gives it back, but that may wait for a wake-up.
            await until(lambda: all_settled(database, caller.tenant_id), "the event delivered", within=DELIVERED_WITHIN)
        except AssertionError:
            owed = await database.rows(
                "SELECT status, attempts, next_attempt_at, lease_expires_at, last_outcome FROM deliveries"
                " WHERE tenant_id = :t",
                t=caller.tenant_id,
            )
            raise AssertionError(
                f"not delivered within {DELIVERED_WITHIN} s: {owed}; publishes {retries.codes()}"
            ) from None
        events = await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id)
    finally:
        await database.close()
    record(
        "postgres SIGSTOP during a publish, retried with its key",
        first_call=first.outcomes[0].code,
        stored_though_unavailable=published.duplicate,
        retries=dict(retries.codes()),
    )
    assert first.codes() == {"UNAVAILABLE": 1}
    assert set(retries.codes()) <= {"OK", "UNAVAILABLE"}
    assert events == 1
    ledger = Ledger.of(receiver.received)
    assert ledger.webhook_ids(0) == {published.event_id} and ledger.duplicates() == 0
