"""Limits hold for the fleet, not per process: two server processes (here, two services on one
database) share each inbound webhook's rate limit and each tenant's open-stream places."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from standardwebhooks.webhooks import Webhook as StandardWebhook
from ulid import ULID
from webhook_calls import rpc_error

from log_streams import Tail, until
from support import make_caller
from webhookd.app import Gateway, Service, open_service
from webhookd.ports import Topic
from webhookd.store import stream_leases
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database
from webhookd.store.stream_leases import PostgresStreamLeases

BURST = 4
PUBLIC_URL = "http://127.0.0.1:8080"


@contextlib.asynccontextmanager
async def two_processes(settings, backends, **overrides: Any) -> AsyncIterator[list[tuple[Service, str]]]:
    """Two services with their gateways on the session database: (service, gateway base URL) each."""
    tuned = settings.with_overrides(**overrides)
    running: list[tuple[Service, Gateway]] = []
    try:
        for _ in range(2):
            service = await open_service(tuned, backends)
            gateway = Gateway(tuned, service.local_channel(), extra_routes=service.http_routes())
            running.append((service, gateway))
            await gateway.start()
        yield [(service, f"http://127.0.0.1:{gateway.port}") for service, gateway in running]
    finally:
        for service, gateway in running:
            await gateway.stop()
            await service.stop(grace=1.0)


async def test_an_inbound_webhooks_rate_limit_is_shared_by_every_process(settings, backends, database) -> None:
    async with (
        two_processes(settings, backends, inbound_burst=BURST, inbound_rate_per_second=0.01) as processes,
        httpx.AsyncClient(timeout=10.0) as http,
    ):
        (first, first_url), (_, second_url) = processes
        async with grpc.aio.insecure_channel(first.grpc_target) as channel:
            created = await make_caller(channel).CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND))
            )
        path = created.webhook.url.removeprefix(PUBLIC_URL)
        body = json.dumps({"type": "order.paid"})

        async def send(base_url: str) -> int:
            message_id, at = f"msg_{ULID()}", datetime.now(UTC)
            headers = {
                "webhook-id": message_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": StandardWebhook(created.signing_secret).sign(message_id, at, body),
                "content-type": "application/json",
            }
            return (await http.post(base_url + path, content=body, headers=headers)).status_code

        # Spread over both processes: per process, each would let a whole burst in.
        statuses = await asyncio.gather(*(send(url) for url in [first_url, second_url] * BURST))

    assert sorted(statuses) == [200] * BURST + [429] * BURST
    stored = await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=created.webhook.id)
    assert stored == BURST


async def test_an_inbound_webhooks_refusals_are_recorded_within_one_limit_for_every_process(
    settings, backends, database
) -> None:
    async with (
        two_processes(settings, backends, inbound_burst=BURST, inbound_rate_per_second=0.01) as processes,
        httpx.AsyncClient(timeout=10.0) as http,
    ):
        (first, first_url), (_, second_url) = processes
        async with grpc.aio.insecure_channel(first.grpc_target) as channel:
            created = await make_caller(channel).CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND))
            )
        path = created.webhook.url.removeprefix(PUBLIC_URL)

        async def send_unsigned(base_url: str) -> int:
            headers = {"webhook-id": f"msg_{ULID()}", "content-type": "application/json"}
            return (await http.post(base_url + path, content=b"{}", headers=headers)).status_code

        # Spread over both processes: per process, each would record a whole burst.
        statuses = await asyncio.gather(*(send_unsigned(url) for url in [first_url, second_url] * BURST))

    assert statuses == [401] * (2 * BURST)
    recorded = await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=created.webhook.id)
    assert recorded == BURST


async def test_a_tenants_stream_places_are_shared_by_every_process(settings, backends, database) -> None:
    cap = 2
    async with two_processes(settings, backends, max_streams_per_tenant=cap) as processes:
        (first, _), (second, _) = processes
        async with (
            grpc.aio.insecure_channel(first.grpc_target) as one,
            grpc.aio.insecure_channel(second.grpc_target) as other,
        ):
            caller = make_caller(one)
            elsewhere = make_caller(other, tenant_id=caller.tenant_id)
            tails = [Tail(caller.DeliveryLog(pb.DeliveryLogRequest(follow=True))) for _ in range(cap)]
            try:
                await until(lambda: first.core.notifications.subscribers(Topic.ATTEMPTS) == cap)
                error = await rpc_error(elsewhere.DeliveryLog(pb.DeliveryLogRequest(follow=True)).read())
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await tails[0].close()
                await database.wait_for(
                    "SELECT count(*) AS n FROM stream_leases WHERE tenant_id = :t",
                    lambda rows: rows[0]["n"] == cap - 1,
                    t=caller.tenant_id,
                )
                # The place given back in one process can be taken in the other.
                taken = Tail(elsewhere.DeliveryLog(pb.DeliveryLogRequest(follow=True)))
                tails.append(taken)
                await until(lambda: second.core.notifications.subscribers(Topic.ATTEMPTS) == 1)
            finally:
                for tail in tails:
                    await tail.close()


@pytest.mark.parametrize("expired", [True, False])
async def test_a_dead_processs_stream_places_come_back_when_their_leases_run_out(backends, expired) -> None:
    database = Database(backends.database_url, size=2)
    await database.open()
    tenant = f"tnt_{ULID()}"
    try:
        leases = PostgresStreamLeases(database, lease_seconds=-1 if expired else 60)
        # A process takes the only place, then dies without giving it back.
        assert await leases.acquire(tenant, 1) is not None

        again = await PostgresStreamLeases(database).acquire(tenant, 1)
    finally:
        await database.close()

    assert (again is not None) is expired


class AnswerHeldBack(Database):
    """A database whose answers, while `holding`, reach the caller only after it has gone away: the work
    (a COMMIT included) is carried out, and the call waits until it is cancelled."""

    def __init__(self, url: str) -> None:
        super().__init__(url, size=2)
        self.holding = True
        self.carried_out = asyncio.Event()

    async def run(self, work: Any) -> Any:
        result = await super().run(work)
        if self.holding:
            self.carried_out.set()
            await asyncio.Event().wait()
        return result


async def test_a_place_taken_for_a_stream_whose_caller_went_away_comes_back_at_the_next_acquire(
    service, backends
) -> None:
    """A stream cancelled (a 1 ms deadline) while its lease's COMMIT is under way: the lease commits
    with no stream to release it, and must not hold the tenant's place until it runs out.
    (`service`: the session database, migrated.)"""
    pool = AnswerHeldBack(backends.database_url)
    await pool.open()
    tenant = f"tnt_{ULID()}"
    leases = PostgresStreamLeases(pool)
    try:
        acquiring = asyncio.create_task(leases.acquire(tenant, 1))
        await asyncio.wait_for(pool.carried_out.wait(), 10)
        acquiring.cancel()
        with pytest.raises(asyncio.CancelledError):
            await acquiring
        pool.holding = False

        again = await leases.acquire(tenant, 1)
    finally:
        await pool.close()

    assert again is not None


async def test_a_place_whose_release_failed_comes_back_once_the_database_answers(service, backends, database) -> None:
    """A stream that ends while PostgreSQL does not answer (restarting, say) cannot delete its lease
    then; once the database answers again its place is free at once, not when the lease runs out.
    (`service`: the session database, migrated.)"""
    pool = Database(backends.database_url, size=2, timeout_seconds=1.0)
    await pool.open()
    tenant = f"tnt_{ULID()}"
    leases = PostgresStreamLeases(pool)
    try:
        lease = await leases.acquire(tenant, 1)
        assert lease is not None
        # The release gets no answer in time: its row stays locked until the release has given up.
        async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url)) as blocker:
            await blocker.execute("SELECT 1 FROM stream_leases WHERE id = %s FOR UPDATE", [lease])
            await leases.release(lease)
            await database.wait_for(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE :blocker = ANY(pg_blocking_pids(pid))",
                lambda rows: rows[0]["n"] == 0,
                blocker=blocker.info.backend_pid,
            )
            await blocker.rollback()

        again = await leases.acquire(tenant, 1)
    finally:
        await pool.close()

    assert again is not None


@pytest.mark.parametrize(
    ("errcode", "logged", "level"),
    [
        ("read_only_sql_transaction", "renewing stream leases failed", logging.ERROR),
        ("serialization_failure", "renewing stream leases conflicted; the next round renews them", logging.WARNING),
    ],
    ids=["refused", "conflicting"],
)
async def test_stream_leases_are_renewed_again_after_a_renewal_the_database_refused(
    errcode, logged, level, service, backends, database, monkeypatch, caplog
) -> None:
    """A renewal can fail other than by the database being away (a read-only server after a failover,
    or conflicts in each of the runs store/database.py gives it): the renewer carries on, or every open
    stream's lease would run out and its tenant's cap with it. A conflict is expected, one line without
    a traceback; anything else keeps its traceback. (`service`: the session database, migrated.)"""
    monkeypatch.setattr(stream_leases, "RENEW_SECONDS", 0.05)
    tenant = f"tnt_{ULID()}"
    refuse = f"""
CREATE FUNCTION refuse_{tenant.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant_id = '{tenant}' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '{errcode}'; END IF;
    RETURN NEW;
END $$"""
    await database.execute(refuse)
    await database.execute(
        f"CREATE TRIGGER refuse_{tenant.lower()} BEFORE UPDATE ON stream_leases"
        f" FOR EACH ROW EXECUTE FUNCTION refuse_{tenant.lower()}()"
    )
    pool = Database(backends.database_url, size=2)
    await pool.open()
    leases = PostgresStreamLeases(pool, lease_seconds=600)
    leases.start()
    try:
        lease = await leases.acquire(tenant, 1)
        [taken] = await database.rows("SELECT expires_at FROM stream_leases WHERE id = :id", id=lease)
        for _ in range(400):  # until a renewal has been refused
            refusals = [record for record in caplog.records if record.getMessage() == logged]
            if refusals:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"no renewal was refused; logged: {[r.getMessage() for r in caplog.records]}")
        assert refusals[0].levelno == level
        assert (refusals[0].exc_info is not None) == (level == logging.ERROR)
        await database.execute(f"DROP TRIGGER refuse_{tenant.lower()} ON stream_leases")

        await database.wait_for(
            "SELECT expires_at FROM stream_leases WHERE id = :id",
            lambda rows: rows[0]["expires_at"] > taken["expires_at"],
            id=lease,
        )
    finally:
        await leases.close()
        await pool.close()
        await database.execute(f"DROP TRIGGER IF EXISTS refuse_{tenant.lower()} ON stream_leases")
        await database.execute(f"DROP FUNCTION IF EXISTS refuse_{tenant.lower()}()")
