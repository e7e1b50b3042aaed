"""Weekly time partitions of the history tables: what they are called, and creating them ahead.

`deliveries`, `attempts` and `inbound_events` are partitioned by range of time (migration 0007):

- deliveries by `id`: a delivery id is a ULID, whose first characters are its creation time, so a
  range of ids is a range of time, and `WHERE id = ...`, which every write of a delivery uses
  (claim, record, release, redeliver, recover), prunes to one partition;
- attempts by `occurred_at` and inbound_events by `received_at`: both are read in (txid, seq)
  order, which no time key can prune, are never addressed by id, and age out by those times.

A partition covers one week, Monday 00:00 UTC to the next Monday, and is named `<table>_p<yyyymmdd>`
after its first day; retention reads the range back from the name. Each table also has a default
partition, `<table>_default`, that takes any row no week covers (an id that is not a ULID, a clock
far off), so an insert never fails for want of a partition.

`ensure` creates what is missing of the current week (by the database's clock, which every process
shares) and the AHEAD weeks after it: at start-up (store/migrate.py, before anything serves) and
then hourly in every long-running process that writes history, servers, gateways and workers alike
(`keep_created_ahead`), so the weeks ahead do not depend on which roles are deployed. It is
idempotent and safe to run from several processes at once: each partition (one table, one week) is
created in a short transaction and a call to the database of its own, under an advisory lock, after
looking again whether it exists. A process that waits for that lock longer than `lock_timeout`
leaves the round to the one holding it, which is creating what is missing, and looks again at its
next round. A table that stays locked by someone else (a long read) try after try keeps its weeks
missing until the next round; the other tables' are created, and start-up goes on: until its week
exists a row lands in the default partition, which takes any.

Rows of a week the default took before the week had a partition move into it when it is created, in
that transaction, if there are at most MAX_ROWS_MOVED. A week left in the default (more rows than
that, its table busy, or no round ran that week) is tried again every round, after it is past too,
as long as it is newer than the table's oldest week partition; a week with more rows than may move
stays in the default partition, which serves it, until retention deletes it there.

A week more than a week ahead is first kept out of the default partition by a validated CHECK
constraint, so that making it does not scan the whole default under the table's lock
(EXCLUDED_AHEAD).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg import sql

from webhookd.domain import ids
from webhookd.domain.errors import Unavailable
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Connection, Database
from webhookd.store.tables import attempts, deliveries, inbound_events

log = logging.getLogger("webhookd.partitions")
T = TypeVar("T")

# A week: few enough partitions that what cannot prune (the log's (txid, seq) order, the claim's
# due scan, a delivery's attempts, the inbound duplicate check) stays a handful of index probes,
# small enough that retention keeps at most a week beyond the retention period.
WIDTH = timedelta(days=7)
# Weeks created after the current one: the hourly loop has two weeks of tries before one is needed.
AHEAD = 2
# How often each process looks for missing weeks: one catalog read when nothing is missing.
UPKEEP_SECONDS = 3600.0
# Weeks start on Mondays at 00:00 UTC; 2024-01-01 was one.
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
# Serialises partition creation across processes. Every advisory lock has a number of its own
# (tests/unit/test_advisory_locks.py): jobs sharing one would skip or wait for each other.
PARTITIONS_LOCK_ID = 7_202_611_29
# Creating or dropping a partition takes an ACCESS EXCLUSIVE lock on the table, and queries queue
# behind the request: wait briefly, and try again rather than stall the hot paths behind a long read.
# Once it is held, a client that goes silent mid-transaction (a stalled host, a cut network) would
# hold it until TCP gives up, hours later: the server ends such a transaction after a short silence.
LOCK_TIMEOUT = "1s"
SILENT_CLIENT_TIMEOUT = "2s"
LOCK_TRIES = 3
# A week's rows the default partition took before the week had a partition move into the new one
# under the table's ACCESS EXCLUSIVE lock, which stalls every query of the table while they move. At
# most this many: a week with more (an outage longer than the weeks made ahead, a clock far off) stays
# in the default partition, which serves it as before, and retention deletes it there row by row.
# All or nothing: PostgreSQL makes no partition while the default holds rows of its range, so rows
# moved out in chunks would have nowhere visible to wait (docs/architecture.md, History partitioned).
MAX_ROWS_MOVED = 20_000
# CREATE ... PARTITION OF scans the whole default partition, under the table's ACCESS EXCLUSIVE lock,
# to prove it holds no row of the new week: 0.13-0.23 s a million rows there (pending deliveries
# retention kept), every query of the table waiting. A week this far ahead of `now` is first excluded
# from the default by a CHECK constraint, added NOT VALID (an instant under the default's lock) and
# validated under a lock that lets reads and writes run, which PostgreSQL then takes for the proof.
# Meanwhile a row of that week, which only a clock more than a week fast writes, fails its insert
# instead of landing in the default; nearer weeks, whose rows any process may write, keep the scan.
EXCLUDED_AHEAD = WIDTH
# The first statement of a transaction that takes a table's ACCESS EXCLUSIVE lock.
DDL_LIMITS = (
    f"SELECT set_config('lock_timeout', '{LOCK_TIMEOUT}', true),"
    f" set_config('idle_in_transaction_session_timeout', '{SILENT_CLIENT_TIMEOUT}', true)"
)
_PARTITION_NAME = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True, order=True)
class Period:
    """One week of history: [start, end)."""

    start: datetime

    @classmethod
    def of(cls, at: datetime) -> Period:
        return cls(ORIGIN + (at - ORIGIN) // WIDTH * WIDTH)

    @property
    def end(self) -> datetime:
        return self.start + WIDTH

    def and_following(self, count: int) -> list[Period]:
        return [Period(self.start + WIDTH * n) for n in range(count + 1)]


@dataclass(frozen=True)
class PartitionedTable:
    table: sa.Table
    key: str  # the partition key column
    id_prefix: str | None  # the key is an id of this type, whose ULID holds the creation time
    time_column: str  # when the row was made: what retention compares with its cutoff

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def default_partition(self) -> str:
        return f"{self.name}_default"

    def partition_name(self, period: Period) -> str:
        return f"{self.name}_p{period.start:%Y%m%d}"

    def period_of(self, partition_name: str) -> Period | None:
        """The week a partition covers, from its name; None for the default or a stranger's table."""
        match = _PARTITION_NAME.search(partition_name)
        if match is None:
            return None
        try:
            period = Period.of(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC))
        except ValueError:
            return None
        # Equal only when the name is this table's and its day starts a week.
        return period if self.partition_name(period) == partition_name else None

    def bound(self, at: datetime) -> str:
        """The key's value at `at`: the lowest id made then, or the time itself."""
        if self.id_prefix is not None:
            return ids.time_floor(self.id_prefix, at)
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")

    def create_statement(self, period: Period) -> str:
        return (
            sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
            .format(
                sql.Identifier(self.partition_name(period)),
                sql.Identifier(self.name),
                sql.Literal(self.bound(period.start)),
                sql.Literal(self.bound(period.end)),
            )
            .as_string(None)
        )

    def exclusion_name(self, period: Period) -> str:
        """The default partition's CHECK constraint keeping out a week about to be made."""
        return f"{self.default_partition}_not_p{period.start:%Y%m%d}"

    def exclusion_statement(self, period: Period) -> str:
        # NOT of the week's range, as PostgreSQL words the default's new constraint: it proves it.
        return (
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (NOT ({key} >= {} AND {key} < {})) NOT VALID")
            .format(
                sql.Identifier(self.default_partition),
                sql.Identifier(self.exclusion_name(period)),
                sql.Literal(self.bound(period.start)),
                sql.Literal(self.bound(period.end)),
                key=sql.Identifier(self.key),
            )
            .as_string(None)
        )

    def default_statement(self) -> str:
        return (
            sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT")
            .format(sql.Identifier(self.default_partition), sql.Identifier(self.name))
            .as_string(None)
        )


DELIVERIES = PartitionedTable(deliveries, key="id", id_prefix=ids.DELIVERY_PREFIX, time_column="created_at")
ATTEMPTS = PartitionedTable(attempts, key="occurred_at", id_prefix=None, time_column="occurred_at")
INBOUND_EVENTS = PartitionedTable(inbound_events, key="received_at", id_prefix=None, time_column="received_at")
TABLES = (DELIVERIES, ATTEMPTS, INBOUND_EVENTS)

_PARTITIONS = """
SELECT parent.relname, child.relname
FROM pg_inherits i
JOIN pg_class child ON child.oid = i.inhrelid
JOIN pg_class parent ON parent.oid = i.inhparent
WHERE i.inhparent = ANY(CAST(%(tables)s AS regclass[]))
"""
_EXCLUSION_EXISTS = """
SELECT EXISTS (SELECT 1 FROM pg_constraint
               WHERE conrelid = CAST(%(default)s AS regclass) AND conname = %(name)s)
"""
# A query of the catalog, not to_regclass: a name lookup may answer from what this connection saw
# before it waited for the lock, so a week another process created meanwhile looked missing.
_EXISTS = """
SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class child ON child.oid = i.inhrelid
               WHERE i.inhparent = CAST(%(parent)s AS regclass) AND child.relname = %(name)s)
"""


class _Creation(enum.Enum):
    CREATED = "created"
    EXISTED = "another process created it since this one listed the partitions"
    CREATING_ELSEWHERE = "another process held the partitions lock longer than lock_timeout"
    TABLE_BUSY = "the table stayed locked longer than lock_timeout, try after try"
    LEFT_IN_DEFAULT = "the default partition holds more rows of the week than may move"
    NOTHING_LEFT = "a past week the default partition holds no rows of"


async def partitions_of(connection: Connection) -> dict[str, set[str]]:
    """Each partitioned table's partitions by name, the default included."""
    cursor = await connection.execute(_PARTITIONS, {"tables": [table.name for table in TABLES]})
    found: dict[str, set[str]] = {table.name: set() for table in TABLES}
    for parent, child in await cursor.fetchall():
        found[parent].add(child)
    return found


class _Run(Protocol):
    """How a round reaches the database: `Database.run` (each call bounded, on a pooled connection),
    or one connection of its own at start-up."""

    def __call__(self, work: Callable[[Connection], Awaitable[T]], /) -> Awaitable[T]: ...


async def ensure(
    database: Database, *, now: datetime | None = None, ahead: int = AHEAD, max_rows_moved: int = MAX_ROWS_MOVED
) -> list[str]:
    """Creates the missing partitions of the week of `now` (default: now) and the `ahead` weeks
    after it, and of past weeks left in the default partition that may move now (at most
    `max_rows_moved` rows; the tests lower it); returns the names it created. Each try at one table's
    week is a call of its own, so a busy table's tries do not add up to one call longer than the
    database's bound."""
    return await _ensure(database.run, now=now, ahead=ahead, max_rows_moved=max_rows_moved)


async def keep_created_ahead(database: Database) -> None:
    """Runs until cancelled: `ensure` at once, then every UPKEEP_SECONDS. A failed round is logged
    and the next one tries again."""
    while True:
        try:
            await ensure(database)
        except Unavailable as error:
            log.warning("partitions round skipped", extra={"reason": error.message})
        except Exception:
            log.exception("creating partitions failed")
        await asyncio.sleep(UPKEEP_SECONDS)


async def ensure_at(url: str, *, now: datetime | None = None, ahead: int = AHEAD) -> list[str]:
    """`ensure` on a connection of its own to `url` (a SQLAlchemy or libpq URL), for start-up."""
    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as connection:
        return await ensure_on(connection, now=now, ahead=ahead)


async def ensure_on(connection: Connection, *, now: datetime | None = None, ahead: int = AHEAD) -> list[str]:
    """`ensure` on `connection` (autocommit)."""

    async def on_connection(work: Callable[[Connection], Awaitable[T]]) -> T:
        return await work(connection)

    return await _ensure(on_connection, now=now, ahead=ahead, max_rows_moved=MAX_ROWS_MOVED)


async def _ensure(run: _Run, *, now: datetime | None, ahead: int, max_rows_moved: int) -> list[str]:
    existing = await run(partitions_of)
    if now is None:
        now = await run(_database_now)
    weeks = Period.of(now).and_following(ahead)
    # This week and the ones ahead, made even when empty; then the past weeks an earlier round left
    # in the default partition (too many rows then, the table busy, or no round ran that week),
    # made only when the default holds rows of them.
    missing = [
        (table, period)
        for table in TABLES
        for period in weeks
        if table.partition_name(period) not in existing[table.name]
    ] + [(table, period) for table in TABLES for period in _gaps(table, existing[table.name], before=weeks[0])]
    created = []
    busy: set[str] = set()
    for table, period in missing:
        if table.name in busy:
            continue
        outcome = await _create(
            run, table, period, max_rows_moved, past=period < weeks[0], excluded=period.start > now + EXCLUDED_AHEAD
        )
        if outcome is _Creation.CREATING_ELSEWHERE:
            log.info("another process is creating partitions; this round leaves them to it")
            break
        if outcome is _Creation.TABLE_BUSY:
            # Its later weeks would wait for the same lock: they wait for the next round instead.
            log.warning(
                "table busy; its missing weeks are left to the next round",
                extra={"table": table.name, "partition": table.partition_name(period)},
            )
            busy.add(table.name)
        if outcome is _Creation.LEFT_IN_DEFAULT:
            log.warning(
                "week left in the default partition: too many of its rows there to move",
                extra={"partition": table.partition_name(period), "max_rows_moved": max_rows_moved},
            )
        if outcome is _Creation.CREATED:
            created.append(table.partition_name(period))
    if created:
        log.info("partitions created", extra={"partitions": created})
    return created


def _gaps(table: PartitionedTable, names: set[str], *, before: Period) -> list[Period]:
    """The weeks before `before` that `table` has no partition of, from its oldest week on. Weeks
    older than that one retention has dropped: the default partition holds their pending deliveries
    on purpose (store/retention.py), and making them again would only hand them back to retention."""
    weeks = [period for period in map(table.period_of, names) if period is not None]
    if not weeks:
        return []
    period, gaps = min(weeks), []
    while period < before:
        if table.partition_name(period) not in names:
            gaps.append(period)
        period = Period(period.end)
    return gaps


async def _database_now(connection: Connection) -> datetime:
    """The database's clock, which every process shares: a process's own may run weeks off."""
    row = await (await connection.execute("SELECT now()")).fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


async def _create(
    run: _Run, table: PartitionedTable, period: Period, max_rows_moved: int, *, past: bool, excluded: bool
) -> _Creation:
    """Creates one partition unless another process did meanwhile or is creating partitions now, or
    the table stays busy, or the week is `past` and the default holds none of its rows; each try a
    short transaction of its own. An `excluded` week is first kept out of the default partition, so
    that making it does not scan the default."""
    if excluded:
        await _exclude_from_default(run, table, period)

    async def once(connection: Connection) -> _Creation:
        return await _try_create(connection, table, period, max_rows_moved, past=past)

    for attempt in range(1, LOCK_TRIES + 1):
        outcome = await run(once)
        if outcome is not _Creation.TABLE_BUSY:
            return outcome
        if attempt < LOCK_TRIES:
            log.info("table busy; trying again to create a partition", extra={"table": table.name})
    return _Creation.TABLE_BUSY


async def _exclude_from_default(run: _Run, table: PartitionedTable, period: Period) -> None:
    """Leaves the default partition a valid constraint keeping the week out, or, when it cannot (it
    holds rows of the week, a lock or the time ran out), none: the week is then made with the scan."""

    async def add(connection: Connection) -> bool:
        try:
            async with connection.transaction():
                if not await _still_missing(connection, table, period):
                    return False
                if not await _exclusion_exists(connection, table, period):
                    await connection.execute(table.exclusion_statement(period))
                return True
        except (psycopg.errors.LockNotAvailable, psycopg.errors.InsufficientPrivilege):
            # The partitions lock or the default busy, or a role that may not alter it: the week is
            # made with the scan, if at all (and a refusal said of the table, not of its default).
            return False

    async def validate(connection: Connection) -> bool:
        # SHARE UPDATE EXCLUSIVE on the default: reads and writes of the table go on during the scan.
        try:
            async with connection.transaction():
                if not (
                    await _still_missing(connection, table, period)
                    and await _exclusion_exists(connection, table, period)
                ):
                    return False
                await connection.execute(
                    sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                        sql.Identifier(table.default_partition), sql.Identifier(table.exclusion_name(period))
                    )
                )
                return True
        except (psycopg.errors.CheckViolation, psycopg.errors.LockNotAvailable) as error:
            log.info("week not excluded from the default partition", extra={"reason": type(error).__name__})
            return False

    async def drop(connection: Connection) -> None:
        with contextlib.suppress(psycopg.errors.LockNotAvailable):  # making the week drops it then
            async with connection.transaction():
                await connection.execute(DDL_LIMITS)
                await _drop_exclusion(connection, table, period)

    try:
        if not await run(add) or await run(validate):
            return
    except Unavailable as error:  # a scan longer than a call may last
        log.info("week not excluded from the default partition", extra={"reason": error.message})
    # Left NOT VALID, it would refuse the week's rows until the week is made, and spare no scan.
    await run(drop)


async def _still_missing(connection: Connection, table: PartitionedTable, period: Period) -> bool:
    """Under the partitions lock (LockNotAvailable when it stays taken), whether the week is still
    to be made."""
    await connection.execute(DDL_LIMITS)
    await connection.execute(f"SELECT pg_advisory_xact_lock({PARTITIONS_LOCK_ID})")
    exists = await (
        await connection.execute(_EXISTS, {"parent": table.name, "name": table.partition_name(period)})
    ).fetchone()
    return not (exists and exists[0])


async def _exclusion_exists(connection: Connection, table: PartitionedTable, period: Period) -> bool:
    found = await (
        await connection.execute(
            _EXCLUSION_EXISTS, {"default": table.default_partition, "name": table.exclusion_name(period)}
        )
    ).fetchone()
    return bool(found and found[0])


async def _drop_exclusion(connection: Connection, table: PartitionedTable, period: Period) -> None:
    """Drops the week's exclusion from the default partition if there is one (a catalog look
    first: the ALTER would lock the default even when there is nothing to drop)."""
    if await _exclusion_exists(connection, table, period):
        await connection.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table.default_partition), sql.Identifier(table.exclusion_name(period))
            )
        )


async def _try_create(
    connection: Connection, table: PartitionedTable, period: Period, max_rows_moved: int, *, past: bool
) -> _Creation:
    locked = False
    try:
        async with connection.transaction():
            await connection.execute(DDL_LIMITS)
            await connection.execute(f"SELECT pg_advisory_xact_lock({PARTITIONS_LOCK_ID})")
            locked = True
            exists = await (
                await connection.execute(_EXISTS, {"parent": table.name, "name": table.partition_name(period)})
            ).fetchone()
            if exists and exists[0]:
                return _Creation.EXISTED
            return await _create_under_lock(connection, table, period, max_rows_moved, past=past)
    except psycopg.errors.LockNotAvailable:
        return _Creation.TABLE_BUSY if locked else _Creation.CREATING_ELSEWHERE


async def _create_under_lock(
    connection: Connection, table: PartitionedTable, period: Period, max_rows_moved: int, *, past: bool
) -> _Creation:
    in_range = sql.SQL("{key} >= %(low)s AND {key} < %(high)s").format(key=sql.Identifier(table.key))
    bounds = {"low": table.bound(period.start), "high": table.bound(period.end)}
    default = sql.Identifier(table.default_partition)
    parent = sql.Identifier(table.name)
    # Counted (by the key's index, at most one past the limit) before the table is locked: the
    # count is no reason to stall its queries.
    counted = await connection.execute(
        sql.SQL("SELECT count(*) FROM (SELECT FROM {} WHERE {} LIMIT %(over)s) AS week").format(default, in_range),
        bounds | {"over": max_rows_moved + 1},
    )
    row = await counted.fetchone()
    held = row[0] if row else 0
    if held > max_rows_moved:
        await _drop_exclusion(connection, table, period)  # the week's rows keep landing in the default
        return _Creation.LEFT_IN_DEFAULT
    if past and held == 0:
        return _Creation.NOTHING_LEFT  # an empty past week would only add a partition to plan
    # The lock CREATE takes anyway, taken before looking: a row of the week committed between the
    # look and the CREATE would make PostgreSQL refuse the partition, failing the round (or start-up).
    await connection.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(parent))
    stray = await connection.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(default, in_range), bounds
    )
    row = await stray.fetchone()
    if not (row and row[0]):
        await connection.execute(table.create_statement(period))
        await _drop_exclusion(connection, table, period)  # the partition keeps the week out from now on
        return _Creation.CREATED
    # The default took rows of this week before the week had a partition; PostgreSQL refuses a
    # partition that would overlap rows in the default, so they move into the new one.
    columns = sql.SQL(", ").join(sql.Identifier(column.name) for column in table.table.columns)
    await connection.execute(
        sql.SQL("CREATE TEMP TABLE partition_rows ON COMMIT DROP AS SELECT {} FROM {} WHERE {}").format(
            columns, default, in_range
        ),
        bounds,
    )
    await connection.execute(sql.SQL("DELETE FROM {} WHERE {}").format(default, in_range), bounds)
    await connection.execute(table.create_statement(period))
    await _drop_exclusion(connection, table, period)
    await connection.execute(
        sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM partition_rows").format(
            parent, columns, columns
        )
    )
    log.warning(
        "rows moved from the default partition into a new one",
        extra={"partition": table.partition_name(period)},
    )
    return _Creation.CREATED
