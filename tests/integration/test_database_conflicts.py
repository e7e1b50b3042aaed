"""A deadlock victim (40P01) or a serialization failure (40001) is a concurrency conflict the server
reported at once, not an outage: the caller is told ABORTED (HTTP 409 at the gateway) with reason
TRANSACTION_CONFLICT, never UNAVAILABLE "database unavailable", and no reachability probe starts. Each
is forced on the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2, status_pb2

from webhookd.api.errors import to_status
from webhookd.domain.errors import Aborted
from webhookd.http.errors import HTTP_STATUS_BY_CODE
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Connection, Database


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
