"""OpenBao frozen (SIGSTOP) or killed (SIGKILL) under `webhookd serve` while webhooks are created and
events delivered.

CreateWebhook fails fast with UNAVAILABLE and a RetryInfo, /readyz says 503 within its bound and gRPC
health NOT_SERVING (SERVING again once OpenBao is back), and
deliveries that need a secret nobody holds yet wait (no attempt is counted) while those whose secret a
worker already holds go on. Once OpenBao is back the same processes create and deliver again. A frozen
OpenBao may carry out the write it had queued when it resumes (it does unless it notices the caller
gone first), leaving a secret no webhook owns: the workers' reconciler removes it once past its grace
period (2 s here), and no webhook loses its own.
Every acknowledged event arrives exactly once: a delivery without its secret is given back before
anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
from backends import in_thread
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from harness import (
    CALL_DEADLINE_SECONDS,
    SERVICE,
    Calls,
    FaultBackends,
    Ledger,
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
from support import AuthedStub, Database, make_caller
from webhookd.secrets.vault import VaultSecretStore

pytestmark = pytest.mark.slow
ORPHAN_GRACE_SECONDS = 2


@pytest.fixture(scope="module")
async def service(fault_backends: FaultBackends) -> AsyncIterator[Serving]:
    async with serving(
        fault_backends, "openbao-faults", WEBHOOKD_ORPHAN_SECRET_GRACE_SECONDS=str(ORPHAN_GRACE_SECONDS)
    ) as running:
        yield running


async def create(caller: AuthedStub, name: str, url: str) -> wpb.Webhook:
    request = pb.CreateWebhookRequest(webhook=wpb.Webhook(name=name, url=url, event_types=["vault.*"]))
    created: pb.CreateWebhookResponse = await caller.CreateWebhook(request, timeout=CALL_DEADLINE_SECONDS)
    return created.webhook


async def publish(caller: AuthedStub, webhook_id: str, n: int) -> str:
    payload = struct_pb2.Struct()
    payload.update({"n": n})
    request = pb.PublishEventRequest(event_type="vault.fault", payload=payload, webhook_id=webhook_id)
    published: pb.PublishEventResponse = await caller.PublishEvent(request, timeout=CALL_DEADLINE_SECONDS)
    return published.event_id


async def secrets_and_rows(backends: FaultBackends, database: Database, tenant_id: str) -> tuple[set[str], set[str]]:
    rows = {row.id for row in await database.rows("SELECT id FROM webhooks WHERE tenant_id = :t", t=tenant_id)}
    vault = VaultSecretStore(backends.vault_addr, backends.vault_token)
    try:
        return set(await vault.webhook_ids(tenant_id)), rows
    finally:
        vault.close()


@pytest.mark.parametrize("fault", ["SIGSTOP", "SIGKILL"])
async def test_openbao_away_fails_creates_fast_and_delivers_every_event_once_it_is_back(
    fault_backends: FaultBackends, service: Serving, receiver: Receiver, fault: str
) -> None:
    openbao = fault_backends.openbao
    database = Database(fault_backends.database_url)
    acknowledged: dict[int, str] = {}
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            caller = make_caller(channel, subject="person_1")
            known = await create(caller, "known", receiver.url)
            acknowledged[0] = await publish(caller, known.id, 0)
            await receiver.wait_for(1)  # the worker has read this webhook's secret, and keeps it
            unknown = await create(caller, "unknown", receiver.url)  # its secret not read yet

            struck_at = time.monotonic()
            await in_thread(openbao.freeze if fault == "SIGSTOP" else openbao.kill)
            during = Calls()
            try:
                await during.make(lambda: create(caller, "during", receiver.url))
                acknowledged[1] = await publish(caller, known.id, 1)
                acknowledged[2] = await publish(caller, unknown.id, 2)
                await receiver.wait_for(2)  # delivered with the secret the worker holds
                await database.wait_for(  # given back without an attempt: no secret to sign with
                    "SELECT 1 FROM deliveries WHERE event_id = :e AND lease_token IS NULL AND attempts = 0"
                    " AND next_attempt_at > now()",
                    bool,
                    e=acknowledged[2],
                    within=30,
                )
                ready_status, ready_seconds = await readyz(service.http_url)
                not_serving_at = await until(lambda: health_is(channel, "NOT_SERVING"), "health NOT_SERVING")
            finally:
                back_at = time.monotonic()
                await in_thread(openbao.thaw if fault == "SIGSTOP" else openbao.restart)
            # A resumed OpenBao carries out (or, seeing its caller gone, drops) what it had queued before
            # it answers a request sent after: a secret with no webhook row, when it carries it out.
            await round_trip(fault_backends)
            orphans_seen = await orphans(fault_backends, database, caller.tenant_id)

            again = Calls()
            await until(lambda: again.make(lambda: create(caller, "after", receiver.url)), "a create OK again")
            recovered_at = time.monotonic()
            # What the 15 s postponement would do once it passes: the delivery is due now.
            await database.execute(
                "UPDATE deliveries SET next_attempt_at = now() WHERE tenant_id = :t AND status = 'pending'"
                " AND lease_token IS NULL",
                t=caller.tenant_id,
            )
            await until(lambda: all_settled(database, caller.tenant_id), "every delivery succeeded", within=60)
            # The reconciler removes an orphaned secret once past its grace; a killed OpenBao queued nothing.
            reconciled_at = await until(
                lambda: no_orphan(fault_backends, database, caller.tenant_id), "orphaned secrets reconciled"
            )
    finally:
        await database.close()

    failed_create = during.outcomes[0]
    record(
        f"openbao {fault} during create and delivery",
        faults_injected=1,
        acknowledged=len(acknowledged),
        delivered=len(Ledger.of(receiver.received).by_n),
        duplicates=Ledger.of(receiver.received).duplicates(),
        time_to_unavailable_s=failed_create.seconds,
        readyz_s=ready_seconds,
        time_to_not_serving_s=not_serving_at - struck_at,
        down_for_s=back_at - struck_at,
        time_to_recover_s=recovered_at - back_at,
        orphaned_secrets=orphans_seen,
        orphans_reconciled_after_s=reconciled_at - back_at,
    )
    assert failed_create.code == "UNAVAILABLE" and failed_create.retry_info
    assert set(again.codes()) <= {"OK", "UNAVAILABLE"}
    assert ready_status == 503  # and gRPC health said NOT_SERVING (the wait above), as /readyz does
    assert_delivered(Ledger.of(receiver.received), acknowledged, repeatable=set())


async def test_grpc_health_says_not_serving_while_openbao_is_frozen_and_serving_once_it_is_back(
    fault_backends: FaultBackends, service: Serving
) -> None:
    """grpc.health.v1 follows the readiness /readyz reports: an operator's grpcurl, or a balancer's
    health check, sees the server (service "") and the WebhookService NOT_SERVING while Vault answers
    nothing, and SERVING again once it does, with no restart."""
    openbao = fault_backends.openbao
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        for name in ("", SERVICE):
            await until(lambda name=name: health_is(channel, "SERVING", name), f"{name!r} SERVING at first")

        struck_at = time.monotonic()
        await in_thread(openbao.freeze)
        try:
            not_serving_at = {
                name: await until(lambda name=name: health_is(channel, "NOT_SERVING", name), f"{name!r} NOT_SERVING")
                for name in ("", SERVICE)
            }
            ready_status, _ = await readyz(service.http_url)
        finally:
            back_at = time.monotonic()
            await in_thread(openbao.thaw)
        serving_at = {
            name: await until(lambda name=name: health_is(channel, "SERVING", name), f"{name!r} SERVING again")
            for name in ("", SERVICE)
        }

    record(
        "openbao SIGSTOP seen by gRPC health",
        time_to_not_serving_s=max(not_serving_at.values()) - struck_at,
        time_to_serving_s=max(serving_at.values()) - back_at,
    )
    assert ready_status == 503  # the same readiness, over HTTP


async def round_trip(backends: FaultBackends) -> None:
    vault = VaultSecretStore(backends.vault_addr, backends.vault_token)
    try:
        await vault.ping()
    finally:
        vault.close()


async def orphans(backends: FaultBackends, database: Database, tenant_id: str) -> int:
    secrets, rows = await secrets_and_rows(backends, database, tenant_id)
    return len(secrets - rows)


async def no_orphan(backends: FaultBackends, database: Database, tenant_id: str) -> bool:
    secrets, rows = await secrets_and_rows(backends, database, tenant_id)
    assert rows <= secrets, f"webhooks without their secret: {rows - secrets}"
    return secrets == rows
