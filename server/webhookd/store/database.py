"""The connection pool every store shares, and the one place database failures become domain errors:
Unavailable, or TransactionConflict (ABORTED) when PostgreSQL ended a transaction to settle a conflict
and the runs again that settle most of them (store/conflict_reruns.py) did not.

A fixed-size psycopg_pool (no overflow connections to open and throw away under load), each
connection in autocommit: a single-statement read is one round trip, and writes say where their
transaction starts and ends. Statements are SQL strings compiled once at import (store/sql.py).

Every unit of work is bounded in time on the client side as well as the server's
(`statement_timeout`): a frozen server (SIGSTOP) answers nothing, not even a cancel, and psycopg
waits up to ten seconds to clean a cancelled query up. So the work runs as a task of its own, and
the caller gets Unavailable when the bound passes while the task is cancelled in the background.

When work fails in a way that says the server may be gone (a connection error, no answer in time;
not an error the server answered with, such as a deadlock or a statement timeout), a probe opens a
fresh connection to find out. While the probe cannot reach the server, every call fails at once
with Unavailable instead of waiting out its bound, and `reachable` is False (readiness and gRPC
health report it, woken by `reachability_changed`); the probe keeps trying, and the first success
ends the outage and returns broken pooled connections. No restart is needed either way.

Connection budget of a process: `size` pooled connections, one for sending notifications, and one
per notification topic the process listens to (store/notifications.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from webhookd.domain.errors import DomainError, TransactionConflict, Unavailable
from webhookd.observability.log_throttle import ThrottledLog
from webhookd.store.conflict_reruns import ATTEMPTS as CONFLICT_ATTEMPTS
from webhookd.store.conflict_reruns import rerun_on_conflict
from webhookd.store.conninfo import conninfo, pool_options

log = logging.getLogger("webhookd.database")
T = TypeVar("T")
Connection = psycopg.AsyncConnection[TupleRow]
Params = dict[str, Any] | Sequence[Any] | None
# Explicit transaction statements, for work that pipelines its BEGIN and COMMIT with the statements
# between them (connection.transaction() would send each in a round trip of its own).
BEGIN = "BEGIN"
COMMIT = "COMMIT"
GENERIC_PLAN = "SET LOCAL plan_cache_mode = force_generic_plan"
# What a caller is told to wait before retrying when the database did not answer.
RETRY_AFTER_SECONDS = 1.0
# A statement is prepared on a connection the first time it runs there (psycopg's default: the fifth).
# The hot statements are few and fixed, and until then each run is planned again: 2-3 ms for a claim
# over every partition against 1-2 to run it. On a quiet service, whose connections each see a
# statement a few times an hour, most claims were still parsed and planned anew (18 of 32 in an idle
# probe's log, after the warm-up).
PREPARE_THRESHOLD = 0
PROBE_INTERVAL_SECONDS = 1.0
# Failures that mean "the database cannot be reached or did not answer", not "the request is bad".
_UNREACHABLE = (psycopg.OperationalError, psycopg.errors.QueryCanceled, psycopg_pool.PoolTimeout, TimeoutError)
# A transaction PostgreSQL ended to settle a conflict with another (a deadlock's victim, a serialization
# failure): the server answered at once and rolled the transaction back, so it runs again (`run`); a
# caller whose runs all conflict is told ABORTED and may send the call again. It is no sign of an outage.
_CONFLICTS = frozenset({"40P01", "40001"})
# SQLSTATEs that say the connection, not the statement, failed: the server may be gone.
_CONNECTION_LOST = frozenset({"57P01", "57P02", "57P03"})
# What a failure was, by PostgreSQL's SQLSTATE: a statement timeout and a lost connection both read
# UNAVAILABLE to the caller, and only the log can tell them apart.
_KINDS = {
    "40P01": "deadlock",
    "40001": "serialization failure",
    "55P03": "lock timeout",
    "53300": "too many connections",
    "57P01": "connection lost",  # the server ended it (pg_terminate_backend, a shutdown)
    "57P02": "connection lost",
    "57P03": "connection refused: the server is starting or stopping",
}
# One line an interval per kind of failure: an outage fails every call alike, and a deadlock between
# two such lines must still show.
_failures = ThrottledLog(log)


class Database:
    """A fixed pool of `size` connections to `url` (a SQLAlchemy or libpq URL)."""

    def __init__(self, url: str, *, size: int = 10, timeout_seconds: float = 5.0, name: str = "webhookd") -> None:
        self._timeout = timeout_seconds
        self._conninfo = conninfo(url)
        self._pool = psycopg_pool.AsyncConnectionPool(
            self._conninfo,
            min_size=size,
            max_size=size,
            open=False,
            name=name,
            timeout=timeout_seconds,  # checkout
            reconnect_timeout=float("inf"),  # keep trying: the database may come back
            kwargs={
                "autocommit": True,
                "prepare_threshold": PREPARE_THRESHOLD,
                "connect_timeout": max(1, round(timeout_seconds)),
                "application_name": name,
                "options": pool_options(self._conninfo, statement_timeout_ms=int(timeout_seconds * 1000)),
            },
        )
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._outage: str | None = None  # why the server cannot be reached, while it cannot
        self._probe: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set (and replaced) when an outage starts or ends

    @property
    def reachable(self) -> bool:
        return self._outage is None

    def reachability_changed(self) -> Coroutine[Any, Any, bool]:
        """Completes once `reachable` changes (an outage starts or ends) after this call."""
        return self._changed.wait()  # this Event: a change before the awaiting starts still counts

    def _set_outage(self, reason: str | None) -> None:
        changed = (reason is None) != (self._outage is None)
        self._outage = reason
        if changed:
            self._changed.set()
            self._changed = asyncio.Event()

    @property
    def timeout_seconds(self) -> float:
        return self._timeout

    async def open(self) -> None:
        """Starts filling the pool; calls wait for a connection (bounded) while it fills."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        for task in self._abandoned:
            task.cancel()
        await asyncio.gather(*self._abandoned, *([self._probe] if self._probe else []), return_exceptions=True)
        await self._pool.close(timeout=self._timeout)

    async def run(self, work: Callable[[Connection], Awaitable[T]], *, rerunnable: bool = True) -> T:
        """`work` on a pooled connection, bounded by the timeout; Unavailable when the database
        cannot be reached or does not answer in time. Other errors pass through unchanged.

        When PostgreSQL rolls `work` back to settle a conflict it runs again, up to CONFLICT_ATTEMPTS
        runs in all, each bounded alike, and TransactionConflict is raised only after the last. So
        `work` must be one transaction (or one statement) whose results are built inside it and
        returned, with no effect outside it; work that is several transactions, or leaves state
        behind, passes `rerunnable=False` and meets its first conflict as TransactionConflict."""
        runs = CONFLICT_ATTEMPTS if rerunnable else 1
        try:
            return await rerun_on_conflict(lambda: self._run_once(work), attempts=runs)
        except TransactionConflict as conflict:
            _log_conflict(conflict, runs)
            raise

    async def _run_once(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        if self._outage is not None:
            raise _unavailable(self._outage)
        connected = asyncio.Event()
        task = asyncio.ensure_future(self._checked_out(work, connected))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            # psycopg cancels the query (or drops the connection) in the background.
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            self._suspect()
            # This bound, the pool's checkout timeout and statement_timeout are one setting, and this
            # one usually fires first: say which wait it cut short, a full pool or a server not done.
            waited = "the server did not finish" if connected.is_set() else "no pooled connection was free"
            raise _failed(f"no answer in time: {waited} within {self._timeout:g} s", None, "TimeoutError")
        return task.result()

    async def _checked_out(self, work: Callable[[Connection], Awaitable[T]], connected: asyncio.Event) -> T:
        try:
            async with self._pool.connection() as connection:
                connected.set()
                return await work(connection)
        except psycopg.OperationalError as error:
            if _server_may_be_gone(error.sqlstate):
                self._suspect()
            raise _failed(failure_reason(error), error.sqlstate, type(error).__name__) from error
        except _UNREACHABLE as error:
            raise _failed(failure_reason(error), None, type(error).__name__) from error

    def _suspect(self) -> None:
        """The server may be gone: find out, unless a probe already is."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_reachable(), name="database-probe")

    async def _probe_until_reachable(self) -> None:
        while True:
            try:
                await _probe(self._conninfo, self._timeout)
            except Unavailable as error:
                reason = error.message.removeprefix("database unreachable: ")
                if self._outage is None:
                    log.warning("database unreachable; failing calls fast until it answers", extra={"reason": reason})
                self._set_outage(reason)
                await asyncio.sleep(PROBE_INTERVAL_SECONDS)
                continue
            if self._outage is not None:
                log.warning("database reachable again")
                self._set_outage(None)
            await self._pool.check()  # drops the pooled connections the outage broke
            return

    # Single statements, each its own transaction (autocommit).

    async def fetch_one(self, sql: str, params: Params = None) -> TupleRow | None:
        async def one(connection: Connection) -> TupleRow | None:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchone()

        return await self.run(one)

    async def fetch_all(self, sql: str, params: Params = None, *, generic_plan: bool = False) -> list[TupleRow]:
        """generic_plan: for a statement over partitioned tables that no parameter prunes (a log read,
        a page of deliveries). Left to choose, PostgreSQL plans such a statement afresh on every call,
        its generic plan priced over every partition looking dearer than a custom one; planning two
        dozen partitions costs a millisecond or more, more than running it. So it runs in a transaction
        that asks for the generic plan, planned once per connection."""
        if generic_plan:
            return await self.fetch_all_after(GENERIC_PLAN, sql, params)

        async def all_rows(connection: Connection) -> list[TupleRow]:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()

        return await self.run(all_rows)

    async def fetch_all_after(self, first: str, sql: str, params: Params = None) -> list[TupleRow]:
        """`sql`'s rows, in a transaction that runs `first` before it (a setting, a lock): BEGIN, both
        statements and COMMIT in one round trip."""

        async def all_rows_after(connection: Connection) -> list[TupleRow]:
            try:
                async with connection.pipeline():
                    await connection.execute(BEGIN)
                    await connection.execute(first)
                    cursor = await connection.execute(sql, params)
                    await connection.execute(COMMIT)
                return await cursor.fetchall()
            except BaseException:
                await rollback(connection)
                raise

        return await self.run(all_rows_after)

    async def execute(self, sql: str, params: Params = None) -> int:
        """Runs one statement; returns the number of rows it touched."""

        async def rowcount(connection: Connection) -> int:
            cursor = await connection.execute(sql, params)
            return cursor.rowcount

        return await self.run(rowcount)

    async def execute_unless_abandoned(self, sql: str, params: Params = None) -> int:
        """Runs one write whose caller must not be told Unavailable while it still commits; returns the
        number of rows it touched. A statement sent to a frozen server is carried out when it resumes,
        and an autocommit one then commits long after its caller gave up. Here BEGIN and the statement
        go first, and COMMIT only once they were answered: a server that stops answering before then
        never commits (the transaction ends with its abandoned connection). Only a COMMIT itself left
        unanswered has an outcome the caller cannot know. One round trip more than `execute`."""

        async def committed_after_answer(connection: Connection) -> int:
            try:
                async with connection.pipeline():
                    await connection.execute(BEGIN)
                    cursor = await connection.execute(sql, params)
                await connection.execute(COMMIT)
            except BaseException:
                await rollback(connection)
                raise
            return cursor.rowcount

        return await self.run(committed_after_answer)

    async def transaction(self, work: Callable[[Connection], Awaitable[T]], *, rerunnable: bool = True) -> T:
        """`work` inside one transaction: committed when it returns, rolled back when it raises, and
        run again after a conflict unless not `rerunnable` (see `run`)."""

        async def in_transaction(connection: Connection) -> T:
            async with connection.transaction():
                return await work(connection)

        return await self.run(in_transaction, rerunnable=rerunnable)


async def probe(url: str, timeout_seconds: float) -> None:
    """Connects afresh to `url` and runs a trivial query; Unavailable saying why when that fails in time."""
    await _probe(conninfo(url), timeout_seconds)


async def _probe(connection_string: str, timeout_seconds: float) -> None:
    try:
        async with asyncio.timeout(timeout_seconds):
            connection = await psycopg.AsyncConnection.connect(
                connection_string, autocommit=True, connect_timeout=max(1, round(timeout_seconds))
            )
            async with connection:
                await connection.execute("SELECT 1")
    except TimeoutError:
        raise _unreachable("no answer in time") from None
    except psycopg.Error as error:
        # libpq's first line says why (refused, no such host, authentication) without the password.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _unreachable(reason) from None


async def connection_limit(url: str, timeout_seconds: float) -> int | None:
    """The database's max_connections, or None where it cannot be read (e.g. through PgBouncer,
    which answers no SHOW of PostgreSQL's)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            connection = await psycopg.AsyncConnection.connect(
                conninfo(url), autocommit=True, connect_timeout=max(1, round(timeout_seconds))
            )
            async with connection:
                row = await (await connection.execute("SELECT current_setting('max_connections')::int")).fetchone()
    except (TimeoutError, psycopg.Error):
        return None
    return None if row is None else int(row[0])


def failure_reason(error: BaseException) -> str:
    """What a database failure was, for the log: its kind, PostgreSQL's SQLSTATE when the server sent
    one, and psycopg's class. Never the server's message, which may quote a statement's values."""
    name = type(error).__name__
    if isinstance(error, psycopg_pool.PoolTimeout):
        return f"pool timeout: no pooled connection free in time ({name})"
    if not isinstance(error, psycopg.Error):
        return f"no answer in time ({name})" if isinstance(error, TimeoutError) else name
    sqlstate = error.sqlstate
    if sqlstate is None:  # raised by libpq on the client's side: the connection failed or broke
        kind = "connection lost"
    elif isinstance(error, psycopg.errors.QueryCanceled):
        # 57014 for both; the primary message is PostgreSQL's fixed words, without values.
        primary = error.diag.message_primary or ""
        kind = "statement timeout" if "statement timeout" in primary else "statement canceled"
    elif sqlstate.startswith("08"):
        kind = "connection lost"
    else:
        kind = _KINDS.get(sqlstate, "database error")
    return f"{kind} (SQLSTATE {sqlstate}, {name})" if sqlstate else f"{kind} ({name})"


def _server_may_be_gone(sqlstate: str | None) -> bool:
    """Whether a failure may mean the server cannot be reached: none reported by the server (libpq's
    own), or one of the connection's. Any other SQLSTATE is the server answering."""
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _CONNECTION_LOST


def _failed(reason: str, sqlstate: str | None, error_class: str) -> DomainError:
    """A call's database failure as the caller's error: TransactionConflict for a conflict (logged by
    `run` once no run settled it), else Unavailable, logged with what it was."""
    if sqlstate in _CONFLICTS:
        return TransactionConflict(f"transaction rolled back to settle a conflict: {reason}")
    _log_failure(reason, sqlstate, error_class)
    return _unavailable(reason)


def _log_conflict(conflict: TransactionConflict, runs: int) -> None:
    cause = conflict.__cause__
    if isinstance(cause, psycopg.Error):
        reason = failure_reason(cause) + (f" in each of {runs} runs" if runs > 1 else "")
        _log_failure(reason, cause.sqlstate, type(cause).__name__)


def _log_failure(reason: str, sqlstate: str | None, error_class: str) -> None:
    """Once an interval per kind."""
    _failures.warning(
        ("database", reason),
        "database call failed",
        {"reason": reason, "sqlstate": sqlstate or "", "error_class": error_class},
    )


# Callers read "database unavailable: retry later"; the reason (libpq's words, the address) is logged.
def _unavailable(reason: str) -> Unavailable:
    return Unavailable(
        f"database unavailable: {reason}", retry_after_seconds=RETRY_AFTER_SECONDS, dependency="database"
    )


def _unreachable(reason: str) -> Unavailable:
    return Unavailable(
        f"database unreachable: {reason}", retry_after_seconds=RETRY_AFTER_SECONDS, dependency="database"
    )


async def rollback(connection: Connection) -> None:
    """Ends a transaction that failed part-way, so the connection goes back to the pool clean."""
    if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not connection.closed:
        try:
            await connection.execute("ROLLBACK")
        except psycopg.Error:
            log.debug("rollback failed; the pool will discard the connection")
