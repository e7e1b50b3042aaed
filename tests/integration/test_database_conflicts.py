"""A deadlock victim (40P01) or a serialization failure (40001) is a concurrency conflict the server
reported at once, not an outage: the caller is told ABORTED (HTTP 409 at the gateway) with reason
TRANSACTION_CONFLICT, never UNAVAILABLE "database unavailable", and no reachability probe starts. Each
is forced on the session's PostgreSQL."""

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
from webhook_calls import create_webhook, error_info

from support import AuthedStub
from webhookd.api.errors import to_status
from webhookd.app import Service
from webhookd.domain.errors import Aborted
from webhookd.http.errors import HTTP_STATUS_BY_CODE
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Connection, Database

T = TypeVar("T")


@pytest.fixture
async def pool(backends) -> AsyncIterator[Database]:  # type: ignore[no-untyped-def]
    opened = Database(backends.database_url, size=2, timeout_seconds=10.0)
    await opened.open()
    yield opened
    await opened.close()


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


async def test_a_deadlock_victim_is_told_aborted_and_no_probe_starts(
    pool: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    first, second = 7_502_001, 7_502_002  # advisory keys no other test takes
    both_hold_one = asyncio.Barrier(2)

    def crossing(mine: int, theirs: int):  # type: ignore[no-untyped-def]
        async def work(connection: Connection) -> None:
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (mine,))
            await both_hold_one.wait()
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (theirs,))

        return work

    outcomes = await asyncio.gather(
        pool.transaction(crossing(first, second)), pool.transaction(crossing(second, first)), return_exceptions=True
    )

    [victim] = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert_no_probe(pool, caplog)
    assert_told_aborted(victim, "40P01")


async def test_a_serialization_failure_is_told_aborted_and_no_probe_starts(
    pool: Database, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    snapshot_taken = asyncio.Event()
    other_committed = asyncio.Event()

    async def read_then_write(connection: Connection) -> None:
        await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await connection.execute(f"SELECT n FROM {table} WHERE id = 1")  # the snapshot
        snapshot_taken.set()
        await other_committed.wait()
        await connection.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")  # a row changed since

    async def concurrent_write() -> None:
        await snapshot_taken.wait()
        await pool.execute(f"UPDATE {table} SET n = n + 10 WHERE id = 1")
        other_committed.set()

    outcomes = await asyncio.gather(pool.transaction(read_then_write), concurrent_write(), return_exceptions=True)

    assert outcomes[1] is None, outcomes[1]
    assert isinstance(outcomes[0], BaseException), "the transaction that read first must fail"
    assert_no_probe(pool, caplog)
    assert_told_aborted(outcomes[0], "40001")


# -- what a client of the running service sees ---------------------------------------------------------

ADVISORY_KEY = 7_502_003  # no other test takes it


async def made_a_deadlock_victim(
    database_url: str, webhook_id: str, call: Callable[[], Awaitable[T]]
) -> T | BaseException:
    """The outcome of `call()`, made once the trap is set, when the transaction that updates the
    webhook's row deadlocks with another: a trigger (this test's, dropped after) makes that update wait
    on an advisory lock another session holds, and that session then waits for the row. The call's
    backend waits first, so its deadlock check runs first, and it is the victim."""
    name = sql.Identifier(f"conflict_{uuid.uuid4().hex[:12]}")
    async with (
        await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as admin,
        await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as holder,
    ):
        await admin.execute(
            sql.SQL(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM pg_advisory_xact_lock({key}); RETURN NEW; END $$"
            ).format(name=name, key=sql.Literal(ADVISORY_KEY))
        )
        try:
            await admin.execute(
                sql.SQL(
                    "CREATE TRIGGER {name} BEFORE UPDATE ON webhooks FOR EACH ROW WHEN (OLD.id = {id})"
                    " EXECUTE FUNCTION {name}()"
                ).format(name=name, id=sql.Literal(webhook_id))
            )
            await holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_KEY,))
            answered = asyncio.ensure_future(call())
            for _ in range(1000):  # until the call's update waits on the advisory lock, while it holds the row
                waiting = await (
                    await admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND wait_event = 'advisory' AND query LIKE 'UPDATE webhooks %'"
                    )
                ).fetchone()
                if answered.done() or (waiting is not None and waiting[0]):
                    break
                await asyncio.sleep(0.01)
            await holder.execute("BEGIN")
            await holder.execute("SELECT 1 FROM webhooks WHERE id = %s FOR UPDATE", (webhook_id,))
            await holder.execute("ROLLBACK")
            await holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
            [outcome] = await asyncio.gather(answered, return_exceptions=True)
            return outcome
        finally:
            await admin.execute(sql.SQL("DROP TRIGGER IF EXISTS {name} ON webhooks").format(name=name))
            await admin.execute(sql.SQL("DROP FUNCTION {name}()").format(name=name))


async def test_a_grpc_client_whose_call_is_a_deadlock_victim_reads_aborted(
    backends, service: Service, caller: AuthedStub
) -> None:  # type: ignore[no-untyped-def]
    webhook = await create_webhook(caller)
    probe_before = service.core.database._probe
    request = pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=webhook.version, name="renamed"))

    def update() -> Awaitable[pb.UpdateWebhookResponse]:
        return caller.UpdateWebhook(request)  # a gRPC call starts when made

    error = await made_a_deadlock_victim(backends.database_url, webhook.id, update)

    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.ABORTED, error
    assert error_info(error).reason == "TRANSACTION_CONFLICT"
    assert "unavailable" not in (error.details() or "")
    assert service.core.database._probe is probe_before, "a reachability probe was started"
    assert service.core.database.reachable


async def test_an_update_without_a_version_that_is_a_deadlock_victim_is_read_again_and_goes_through(
    backends, caller: AuthedStub
) -> None:  # type: ignore[no-untyped-def]
    """No version, no precondition: the service reads the webhook again after an ABORTED write
    (services/webhooks.py), a conflict's as a version race's."""
    webhook = await create_webhook(caller)
    request = pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="renamed"))

    def update() -> Awaitable[pb.UpdateWebhookResponse]:
        return caller.UpdateWebhook(request)

    response = await made_a_deadlock_victim(backends.database_url, webhook.id, update)

    assert isinstance(response, pb.UpdateWebhookResponse), response
    assert response.webhook.name == "renamed"


async def test_a_rest_client_whose_call_is_a_deadlock_victim_reads_409(backends, service: Service, gateway) -> None:  # type: ignore[no-untyped-def]
    async with rest_caller(gateway.url) as rest:
        created = (await create(rest))["webhook"]
        probe_before = service.core.database._probe

        def patch() -> Awaitable[httpx.Response]:
            return rest.patch(f"{WEBHOOKS}/{created['id']}", json={"name": "renamed", "version": created["version"]})

        response = await made_a_deadlock_victim(backends.database_url, created["id"], patch)

    assert isinstance(response, httpx.Response), response
    assert response.status_code == 409, response.text
    assert error_of(response)["status"] == "ABORTED"
    assert reason_of(response) == "TRANSACTION_CONFLICT"
    assert service.core.database._probe is probe_before, "a reachability probe was started"
