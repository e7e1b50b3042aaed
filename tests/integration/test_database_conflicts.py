"""A deadlock victim (40P01) or a serialization failure (40001) is a concurrency conflict the server
reported at once, not an outage. The rolled-back transaction runs again (store/conflict_reruns.py), and
only when its three runs all conflict is the caller told ABORTED (HTTP 409 at the gateway) with reason
TRANSACTION_CONFLICT, never UNAVAILABLE "database unavailable"; no reachability probe starts. Each
conflict is forced on the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import httpx
import psycopg
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.rpc import error_details_pb2, status_pb2
from psycopg import sql
from rest_calls import WEBHOOKS, create, error_of, reason_of, rest_caller
from trigger_ddl import trigger_ddl
from webhook_calls import create_webhook, error_info

from support import AuthedStub
from webhookd.api.errors import to_status
from webhookd.app import Service
from webhookd.domain.errors import Aborted
from webhookd.http.errors import HTTP_STATUS_BY_CODE
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Connection, Database
from webhookd.store.stream_leases import PostgresStreamLeases

T = TypeVar("T")


@pytest.fixture
async def table(backends) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """A one-row table in a schema of its own, dropped afterwards: the service's tables stay untouched."""
    schema = f"conflicts_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url), autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(f"CREATE TABLE {schema}.counter (id int PRIMARY KEY, n int NOT NULL)")
        await admin.execute(f"INSERT INTO {schema}.counter VALUES (1, 0)")
        try:
            yield f"{schema}.counter"
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


def assert_told_aborted(error: BaseException, sqlstate: str) -> None:
    """What the caller gets, and the status the gRPC layer (api/errors.py) and the gateway's one table
    (http/errors.py) make of it."""
    assert isinstance(error, Aborted), repr(error)
    assert sqlstate in error.message
    assert "unavailable" not in error.public_message
    status = to_status(error)
    assert status.code == grpc.StatusCode.ABORTED
    assert HTTP_STATUS_BY_CODE[status.code] == 409
    assert _error_info(status).reason == "TRANSACTION_CONFLICT"


def _error_info(status: grpc.Status) -> error_details_pb2.ErrorInfo:
    [details] = [value for key, value in status.trailing_metadata if key == "grpc-status-details-bin"]
    for detail in status_pb2.Status.FromString(details).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


def assert_no_probe(pool: Database, caplog: pytest.LogCaptureFixture) -> None:
    assert pool._probe is None, "a reachability probe was started for a conflict the server reported"
    assert pool.reachable
    assert not [record for record in caplog.records if "unreachable" in record.getMessage()]


async def test_a_deadlock_victims_transaction_runs_again_and_goes_through(
    pool: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    first, second = 7_502_001, 7_502_002  # advisory keys no other test takes
    both_hold_one = asyncio.Barrier(2)
    runs: list[int] = []

    def crossing(mine: int, theirs: int):  # type: ignore[no-untyped-def]
        async def work(connection: Connection) -> int:
            runs.append(mine)
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (mine,))
            if runs.count(mine) == 1:  # the first runs cross; a rerun finds the other done
                await both_hold_one.wait()
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (theirs,))
            return mine

        return work

    outcomes = await asyncio.gather(
        pool.transaction(crossing(first, second)), pool.transaction(crossing(second, first)), return_exceptions=True
    )

    assert outcomes == [first, second]
    assert len(runs) == 3, runs  # the victim's transaction ran twice
    assert_no_probe(pool, caplog)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_serialization_failures_that_keep_coming_are_told_aborted_after_three_runs(
    pool: Database, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    runs = 0

    async def read_then_write(connection: Connection) -> None:
        nonlocal runs
        runs += 1
        await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await connection.execute(f"SELECT n FROM {table} WHERE id = 1")  # the snapshot
        await pool.execute(f"UPDATE {table} SET n = n + 10 WHERE id = 1")  # committed by another, every run
        await connection.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")  # a row changed since

    with pytest.raises(Aborted) as raised:
        await pool.transaction(read_then_write)

    assert runs == 3
    assert_no_probe(pool, caplog)
    assert_told_aborted(raised.value, "40001")
    [line] = [record for record in caplog.records if record.getMessage() == "database call failed"]
    assert "serialization failure" in line.reason and "in each of 3 runs" in line.reason  # type: ignore[attr-defined]


async def test_work_that_may_not_run_again_is_told_aborted_at_its_first_conflict(pool: Database, table: str) -> None:
    runs = 0

    async def read_then_write(connection: Connection) -> None:
        nonlocal runs
        runs += 1
        await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await connection.execute(f"SELECT n FROM {table} WHERE id = 1")
        await pool.execute(f"UPDATE {table} SET n = n + 10 WHERE id = 1")
        await connection.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")

    with pytest.raises(Aborted) as raised:
        await pool.transaction(read_then_write, rerunnable=False)

    assert runs == 1
    assert_told_aborted(raised.value, "40001")


# -- what a client of the running service sees ---------------------------------------------------------

ADVISORY_KEY = 7_502_003  # no other test takes it
LOCK_RETRY = "500ms"


async def made_a_deadlock_victim(
    database_url: str,
    row_id: str,
    call: Callable[[], Awaitable[T]],
    *,
    times: int = 1,
    table: str = "webhooks",
    statement: str = "UPDATE webhooks",
) -> tuple[T | BaseException, int]:
    """The outcome of `call()`, made once the trap is set, and how many times the transaction whose
    `statement` (an UPDATE or DELETE) changes the row `row_id` of `table` was made a deadlock's victim
    (at most `times`, one each run): a trigger (this test's, dropped after) makes that statement wait
    on an advisory lock another session holds while it holds the row, and that session then asks for
    the row. PostgreSQL checks a wait for a deadlock once, `deadlock_timeout` after it began, and the
    backend that finds one is the victim. So the call's wait is begun anew every LOCK_RETRY (each
    checked after 100 ms), and the holder's is checked only after a minute: the call is the victim,
    however late the holder comes (a loaded machine), never the holder."""
    name = sql.Identifier(f"conflict_{uuid.uuid4().hex[:12]}")
    async with (
        await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as admin,
        await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as holder,
    ):
        await admin.execute(
            sql.SQL(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " PERFORM set_config('deadlock_timeout', '100ms', true);"
                " PERFORM set_config('lock_timeout', {retry}, true);"
                " LOOP BEGIN PERFORM pg_advisory_xact_lock({key}); EXIT;"
                " EXCEPTION WHEN lock_not_available THEN NULL; END; END LOOP;"
                " IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$"
            ).format(name=name, key=sql.Literal(ADVISORY_KEY), retry=sql.Literal(LOCK_RETRY))
        )
        try:
            await admin.execute(
                sql.SQL(
                    "CREATE TRIGGER {name} BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW WHEN (OLD.id = {id})"
                    " EXECUTE FUNCTION {name}()"
                ).format(name=name, table=sql.Identifier(table), id=sql.Literal(row_id))
            )
            await holder.execute("SET deadlock_timeout = '1min'")
            await holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_KEY,))
            answered = asyncio.ensure_future(call())
            victims = 0
            while victims < times and await _waits_on_the_trap(admin, answered, statement):
                await holder.execute("BEGIN")
                await holder.execute(
                    sql.SQL("SELECT 1 FROM {table} WHERE id = %s FOR UPDATE").format(table=sql.Identifier(table)),
                    (row_id,),
                )
                await holder.execute("ROLLBACK")
                victims += 1
            await holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
            [outcome] = await asyncio.gather(answered, return_exceptions=True)
            return outcome, victims
        finally:
            await admin.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {name} ON {table}").format(name=name, table=sql.Identifier(table))
            )
            await admin.execute(sql.SQL("DROP FUNCTION {name}()").format(name=name))


async def _waits_on_the_trap(admin: psycopg.AsyncConnection, answered: asyncio.Future[object], statement: str) -> bool:
    """Whether the call's statement is waiting on the advisory lock while it holds the row (False once
    the call was answered, or after 10 s)."""
    for _ in range(1000):
        waiting = await (
            await admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND wait_event = 'advisory' AND query LIKE %s",
                (statement + " %",),
            )
        ).fetchone()
        if waiting is not None and waiting[0]:
            return True
        if answered.done():
            return False
        await asyncio.sleep(0.01)
    return False


async def test_a_grpc_client_whose_update_is_a_deadlock_victim_once_gets_its_update(
    backends, caller: AuthedStub
) -> None:  # type: ignore[no-untyped-def]
    """The server runs the rolled-back transaction again (store/conflict_reruns.py): the caller never
    learns of the conflict."""
    webhook = await create_webhook(caller)
    request = pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=webhook.version, name="renamed"))

    def update() -> Awaitable[pb.UpdateWebhookResponse]:
        return caller.UpdateWebhook(request)

    response, victims = await made_a_deadlock_victim(backends.database_url, webhook.id, update)

    assert victims == 1
    assert isinstance(response, pb.UpdateWebhookResponse), response
    assert response.webhook.name == "renamed"
    assert response.webhook.version == webhook.version + 1  # written once


async def test_a_grpc_client_whose_update_keeps_being_a_deadlock_victim_reads_aborted_after_three_runs(
    backends, service: Service, caller: AuthedStub
) -> None:  # type: ignore[no-untyped-def]
    webhook = await create_webhook(caller)
    probe_before = service.core.database._probe
    request = pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=webhook.version, name="renamed"))

    def update() -> Awaitable[pb.UpdateWebhookResponse]:
        return caller.UpdateWebhook(request)  # a gRPC call starts when made

    error, victims = await made_a_deadlock_victim(backends.database_url, webhook.id, update, times=10)

    assert victims == 3, "the server runs a conflicting transaction three times in all, no more"
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.ABORTED, error
    assert error_info(error).reason == "TRANSACTION_CONFLICT"
    assert "unavailable" not in (error.details() or "")
    assert service.core.database._probe is probe_before, "a reachability probe was started"
    assert service.core.database.reachable


async def test_an_update_without_a_version_that_is_a_deadlock_victim_goes_through(backends, caller: AuthedStub) -> None:  # type: ignore[no-untyped-def]
    webhook = await create_webhook(caller)
    request = pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="renamed"))

    def update() -> Awaitable[pb.UpdateWebhookResponse]:
        return caller.UpdateWebhook(request)

    response, _ = await made_a_deadlock_victim(backends.database_url, webhook.id, update)

    assert isinstance(response, pb.UpdateWebhookResponse), response
    assert response.webhook.name == "renamed"


async def test_a_rest_client_whose_call_keeps_being_a_deadlock_victim_reads_409(
    backends, service: Service, gateway
) -> None:  # type: ignore[no-untyped-def]
    async with rest_caller(gateway.url) as rest:
        created = (await create(rest))["webhook"]
        probe_before = service.core.database._probe

        def patch() -> Awaitable[httpx.Response]:
            return rest.patch(f"{WEBHOOKS}/{created['id']}", json={"name": "renamed", "version": created["version"]})

        response, victims = await made_a_deadlock_victim(backends.database_url, created["id"], patch, times=10)

    assert victims == 3
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 409, response.text
    assert error_of(response)["status"] == "ABORTED"
    assert reason_of(response) == "TRANSACTION_CONFLICT"
    assert service.core.database._probe is probe_before, "a reachability probe was started"


async def test_a_resume_whose_transaction_runs_again_reports_what_its_last_run_settled(
    backends, caller: AuthedStub, database
) -> None:  # type: ignore[no-untyped-def]
    """Resume settles the held deliveries in its transaction and reports how many. Forced here: its
    first run releases one fewer (a trigger skips a row) and is then rolled back at COMMIT as a
    serialization failure (a deferred trigger on the webhook's row). The caller must be told what the
    run that committed released, not what the rolled-back one did."""
    hook = await create_webhook(caller, url="https://example.test/hook", event_types=["rfp.*"])
    assert await database.execute(
        "UPDATE webhooks SET paused_at = now(), version = version + 1 WHERE id = :id", id=hook.id
    )
    for n in range(3):
        await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=f'{{"n": {n}}}'))
    schema = sql.Identifier(f"conflict_{uuid.uuid4().hex[:12]}")  # its functions and sequences; dropped after
    statements = [
        "CREATE SCHEMA {schema}",
        "CREATE SEQUENCE {schema}.runs",
        "CREATE SEQUENCE {schema}.commits",
        "CREATE FUNCTION {schema}.skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF nextval({runs}) = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$",
        "CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF nextval({commits}) = 1 THEN RAISE EXCEPTION 'forced' USING ERRCODE = 'serialization_failure';"
        " END IF; RETURN NULL; END $$",
        "CREATE TRIGGER {trigger} BEFORE UPDATE ON deliveries FOR EACH ROW"
        " WHEN (OLD.webhook_id = {id} AND OLD.status = 'held') EXECUTE FUNCTION {schema}.skip()",
        "CREATE CONSTRAINT TRIGGER {trigger} AFTER UPDATE ON webhooks DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW WHEN (NEW.id = {id}) EXECUTE FUNCTION {schema}.refuse()",
    ]
    names = {
        "schema": schema,
        "trigger": schema,  # a trigger's name is the table's own
        "runs": sql.Literal(f"{schema.as_string()}.runs"),
        "commits": sql.Literal(f"{schema.as_string()}.commits"),
        "id": sql.Literal(hook.id),
    }
    async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url), autocommit=True) as admin:
        try:
            for statement in statements:
                await trigger_ddl(admin, sql.SQL(statement).format(**names))

            resumed = await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id))

            commits = await (
                await admin.execute(sql.SQL("SELECT last_value FROM {schema}.commits").format(**names))
            ).fetchone()
        finally:
            # One table's trigger at a time, each tried again when the session's workers' statements cross its
            # locks (trigger_ddl), then the rest: the schema's CASCADE, and a trigger dropped once, were each
            # made a deadlock's victim in CI.
            for table in ("deliveries", "webhooks"):
                await trigger_ddl(
                    admin,
                    sql.SQL("DROP TRIGGER IF EXISTS {trigger} ON {table}").format(**names, table=sql.Identifier(table)),
                )
            await admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {schema} CASCADE").format(**names))

    assert commits == (2,), "resume's transaction was to be rolled back once and run again"
    assert (resumed.deliveries_released, resumed.deliveries_discarded) == (3, 0)
    rows = await database.rows("SELECT status FROM deliveries WHERE webhook_id = :w", w=hook.id)
    assert [row.status for row in rows] == ["pending"] * 3


# -- a stream's place, given back ------------------------------------------------------------------------


@pytest.fixture
async def leases(service: Service, pool: Database) -> PostgresStreamLeases:  # `service`: the database migrated
    return PostgresStreamLeases(pool)


async def released_as_a_deadlock_victim(
    database_url: str, leases: PostgresStreamLeases, *, times: int
) -> tuple[str, BaseException | None, int]:
    """A new tenant's one lease, released while its DELETE is made a deadlock's victim up to `times`
    runs: the tenant, the release's outcome and how many times it was the victim."""
    tenant = f"tnt_{uuid.uuid4().hex}"
    lease = await leases.acquire(tenant, 1)
    assert lease is not None

    def release() -> Awaitable[None]:
        return leases.release(lease)

    outcome, victims = await made_a_deadlock_victim(
        database_url, lease, release, times=times, table="stream_leases", statement="DELETE FROM stream_leases"
    )
    return tenant, outcome, victims


async def places_taken(pool: Database, tenant: str) -> int:
    row = await pool.fetch_one("SELECT count(*) FROM stream_leases WHERE tenant_id = %s", (tenant,))
    assert row is not None
    return int(row[0])


async def test_a_stream_lease_release_that_is_a_deadlock_victim_once_gives_the_place_back(
    backends, pool: Database, leases: PostgresStreamLeases
) -> None:  # type: ignore[no-untyped-def]
    tenant, outcome, victims = await released_as_a_deadlock_victim(backends.database_url, leases, times=1)

    assert victims == 1
    assert outcome is None, outcome
    assert await places_taken(pool, tenant) == 0


async def test_a_stream_lease_release_that_keeps_conflicting_gives_the_place_back_at_the_next_acquire(
    backends, pool: Database, leases: PostgresStreamLeases
) -> None:  # type: ignore[no-untyped-def]
    """As after a release the database did not answer: the lease is deleted at the next chance rather
    than holding the tenant's place until it runs out, and the stream's end raises nothing."""
    tenant, outcome, victims = await released_as_a_deadlock_victim(backends.database_url, leases, times=10)

    assert victims == 3
    assert outcome is None, outcome
    assert await places_taken(pool, tenant) == 1
    assert await leases.acquire(tenant, 1) is not None
    assert await places_taken(pool, tenant) == 1  # the new one
