"""A database failure says, in its log line and its error's message, what it was: a statement timeout,
a deadlock (ABORTED: test_database_conflicts.py), a lost connection (UNAVAILABLE), with PostgreSQL's
SQLSTATE and psycopg's class, and nothing of the statement's parameters. Each is forced on the
session's PostgreSQL."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from webhookd.domain.errors import DomainError, TransactionConflict, Unavailable
from webhookd.observability.log_throttle import ThrottledLog
from webhookd.store import database
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Connection, Database

# Passed as a statement's parameter: it must show nowhere in what is logged or raised.
MARKER = "parameter-that-must-not-be-logged"


@pytest.fixture(autouse=True)
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's failure is logged, though another test (test_database_conflicts.py) logged one of
    its kind within the throttle's interval."""
    monkeypatch.setattr(database, "_failures", ThrottledLog(database.log))


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "webhookd.database" and hasattr(record, "sqlstate")]


def everything_said(records: list[logging.LogRecord], error: DomainError) -> str:
    return " ".join([error.message, error.public_message, *(repr(vars(record)) for record in records)])


async def test_a_statement_timeout_is_logged_as_one_with_its_sqlstate(
    pool: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")

    async def slow(connection: Connection) -> None:
        await connection.execute("SET LOCAL statement_timeout = 50")
        await connection.execute("SELECT pg_sleep(30), %s::text", (MARKER,))

    with pytest.raises(Unavailable) as raised:
        await pool.transaction(slow)

    assert "statement timeout" in raised.value.message and "57014" in raised.value.message
    assert pool._probe is None, "the server answered: no reachability probe is due"
    [line] = failure_lines(caplog)
    assert line.sqlstate == "57014"  # type: ignore[attr-defined]
    assert "statement timeout" in line.reason  # type: ignore[attr-defined]
    assert MARKER not in everything_said([line], raised.value)


async def test_a_deadlock_is_logged_as_one_with_its_sqlstate(pool: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    first, second = 7_501_001, 7_501_002  # advisory keys no other test takes
    both_hold_one = asyncio.Barrier(2)

    def crossing(mine: int, theirs: int):  # type: ignore[no-untyped-def]
        async def work(connection: Connection) -> None:
            await connection.execute("SELECT pg_advisory_xact_lock(%s), %s::text", (mine, MARKER))
            await both_hold_one.wait()
            await connection.execute("SELECT pg_advisory_xact_lock(%s), %s::text", (theirs, MARKER))

        return work

    outcomes = await asyncio.gather(
        pool.transaction(crossing(first, second), rerunnable=False),
        pool.transaction(crossing(second, first), rerunnable=False),
        return_exceptions=True,
    )

    [victim] = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert isinstance(victim, TransactionConflict), victim
    assert "deadlock" in victim.message and "40P01" in victim.message
    [line] = failure_lines(caplog)
    assert line.sqlstate == "40P01"  # type: ignore[attr-defined]
    assert "deadlock" in line.reason  # type: ignore[attr-defined]
    assert MARKER not in everything_said([line], victim)


async def test_a_connection_ended_under_a_statement_is_logged_as_connection_lost(
    pool: Database, backends, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sleeping(connection: Connection) -> None:
        started.set_result(connection.info.backend_pid)
        await connection.execute("SELECT pg_sleep(30), %s::text", (MARKER,))

    call = asyncio.ensure_future(pool.run(sleeping))
    pid = await asyncio.wait_for(started, 10)
    async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url), autocommit=True) as admin:
        for _ in range(500):  # until the sleep is under way on that backend
            row = await (await admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))).fetchone()
            if row is not None and row[0] == "active":
                break
            await asyncio.sleep(0.01)
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(Unavailable) as raised:
        await call

    assert "connection lost" in raised.value.message
    assert pool._probe is not None, "a lost connection sets a reachability probe going"
    [line] = failure_lines(caplog)
    assert "connection lost" in line.reason  # type: ignore[attr-defined]
    assert MARKER not in everything_said([line], raised.value)


async def test_a_call_given_up_on_says_whether_it_waited_for_a_connection_or_for_the_server(
    backends, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """The client's bound, the pool's checkout timeout and the server's statement_timeout are one
    setting, so whichever fires first, the reason must still tell a full pool from a slow server."""
    caplog.set_level(logging.WARNING, logger="webhookd.database")
    small = Database(backends.database_url, size=1, timeout_seconds=1.0)
    await small.open()
    try:
        async with small._pool.connection():  # the pool's only connection, held past the bound
            with pytest.raises(Unavailable) as no_connection:
                await small.fetch_one("SELECT %s::text", (MARKER,))
        async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url), autocommit=True) as other:
            await other.execute("SELECT pg_advisory_lock(7501003)")
            with pytest.raises(Unavailable) as no_answer:
                await small.fetch_one("SELECT pg_advisory_xact_lock(7501003), %s::text", (MARKER,))
    finally:
        await small.close()

    assert "pool" in no_connection.value.message, no_connection.value.message
    assert "pool" not in no_answer.value.message, no_answer.value.message
    assert any(word in no_answer.value.message for word in ("statement timeout", "server")), no_answer.value.message
    assert MARKER not in everything_said(failure_lines(caplog), no_answer.value)
