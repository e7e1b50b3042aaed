"""Weekly partitions at scale: the hot-path statements on 10,000,000 attempts vs the same on small tables.

Run: `.venv/bin/python bench/partitions.py [--attempts N]` (about ten minutes at the default on two cores).
An embedded PostgreSQL in a temp dir (removed afterwards) holds two databases with the same WEEKS + 1
weeks of history up to now, both migrated to the head: `large`, with N attempts (default 10,000,000),
N/5 deliveries, N/20 events and N/10 inbound receipts; `small`, the same schema and partitions (a week
per table, the weeks ahead, the default) with 1/SMALL_SHARE of the rows. (A third, `flat`, once held the
tables as they were before partitioning, migration 0006; today's statements read columns added after it,
so it is gone.) Rows are made in SQL (generate_series), a week per transaction, then VACUUM ANALYZE.
Each holds the same pending work: DUE deliveries due now, and STUCK pending deliveries of paused
webhooks in the oldest week.

Each hot-path statement, as the stores compile and run it, takes turns on the two databases REPS
times (median client-side time over the unix socket, after WARMUP turns), then runs once under
EXPLAIN (ANALYZE, BUFFERS). Writes run in a transaction rolled back afterwards, so every turn sees the
same rows. Printed: the medians, the buffers each plan touched, large/small as a ratio,
and each plan's shape with the partitions it read. Retention runs last on small and large: dropping
the oldest week's partitions, then the rest of the sweep, beside deleting that week 1,000 rows at a
time as before, extrapolated from one batch per table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from webhookd.domain.deliveries import AttemptRecord
from webhookd.domain.history import LogPosition
from webhookd.domain.lifecycle import PAUSED_AFTER_FAILURES, PAUSED_GONE
from webhookd.domain.routing import RATE_SLOT_HORIZON
from webhookd.domain.statuses import LogKind, Outcome
from webhookd.store import deliveries, history, migrate, partitions, retention
from webhookd.store.conninfo import conninfo
from webhookd.store.database import BEGIN, COMMIT, GENERIC_PLAN, Database
from webhookd.store.embedded import EmbeddedPostgres
from webhookd.store.inbound import _LOCK_MESSAGE, _RECORD
from webhookd.store.lifecycle import lifecycle_filters

Connection = psycopg.Connection[Any]
WEEKS = 20  # of history before the current week
SMALL_SHARE = 250  # the small database has 1/250 of the rows
TENANTS = 100
WEBHOOKS_PER_TENANT = 10
PAUSED_TENANTS = 10  # these tenants' last webhook is paused
DUE = 1_000
STUCK = 100
CLAIM_LIMIT = 32
LOG_LIMIT = 100
REPS = 300
WARMUP = 30
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The 10 time characters of a ULID made at `ms`, as ids.time_floor writes them (inlined by the planner).
ULID_TIME = (
    "CREATE FUNCTION bench_ulid_time(ms bigint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT "
    + " || ".join(
        f"substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> {5 * (9 - i)}) & 31)::int + 1, 1)" for i in range(10)
    )
    + " $$"
)
WEBHOOKS = """
INSERT INTO webhooks (id, tenant_id, name, direction, url, event_types, signature_scheme, headers, enabled,
    retry_max_attempts, retry_backoff, retry_timeout_ms, connector_id, application_id, tags, source, source_type,
    vault_path, secret_fingerprint, created_at, updated_at, schema_version, version, consecutive_failures, paused_at)
SELECT 'whk_bench_' || w, 'tnt_bench_' || (w %% %(tenants)s), 'bench', 'outbound', 'http://127.0.0.1:9/hook',
    ARRAY['*'], 'standard-webhooks', '{}'::jsonb, true, 8, 'exponential', 5000, '', '', ARRAY[]::text[], '', 'api',
    'webhookd/bench', 'fp', now(), now(), 1, 1, 0,
    CASE WHEN w / %(tenants)s = %(webhooks_per_tenant)s - 1 AND w %% %(tenants)s < %(paused)s THEN now() END
FROM generate_series(0, %(tenants)s * %(webhooks_per_tenant)s - 1) AS w
UNION ALL
SELECT 'whk_bench_in_' || t, 'tnt_bench_' || t, 'bench-in', 'inbound', 'http://127.0.0.1:9/in', ARRAY['*'],
    'standard-webhooks', '{}'::jsonb, true, 8, 'exponential', 5000, '', '', ARRAY[]::text[], '', 'api',
    'webhookd/bench', 'fp', now(), now(), 1, 1, 0, NULL
FROM generate_series(0, %(tenants)s - 1) AS t
"""
# A week, parents first, each child made from its parent's row: event n is made at start + n * step
# (its id's last 16 characters are its number); four deliveries per event, made at the same instant
# (their ids share its time characters); five attempts per delivery, ten seconds apart; two receipts per event.
EVENTS = """
INSERT INTO events (id, tenant_id, event_type, body, created_at)
SELECT 'evt_' || bench_ulid_time(ms) || lpad((%(first)s + n)::text, 16, '0'),
    'tnt_bench_' || ((%(first)s + n) %% %(tenants)s),
    'bench.event', convert_to(repeat('x', 200), 'UTF8'), to_timestamp(ms / 1000.0)
FROM generate_series(0, %(count)s - 1) AS n, LATERAL (SELECT %(start_ms)s + n * %(step_ms)s AS ms) AS t
"""
DELIVERIES = """
INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, last_outcome, last_http_status,
    last_error, created_at, updated_at, completed_at)
SELECT 'dlv_' || substr(e.id, 5, 10) || k || substr(e.id, 16), e.tenant_id, e.id,
    'whk_bench_' || (n %% %(tenants)s + %(tenants)s * ((n + k) %% %(webhooks_per_tenant)s)),
    CASE WHEN (n + k) %% 50 = 0 THEN 'failed' ELSE 'succeeded' END, 5,
    CASE WHEN (n + k) %% 50 = 0 THEN 'failed' ELSE 'succeeded' END, 200, '', e.created_at,
    e.created_at + interval '40 seconds', e.created_at + interval '40 seconds'
FROM events e, LATERAL (SELECT substr(e.id, 15)::bigint AS n) AS number, generate_series(0, 3) AS k
WHERE e.created_at >= %(start)s AND e.created_at < %(end)s
"""
ATTEMPTS = """
INSERT INTO attempts (id, tenant_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome, http_status,
    latency_ms, error, response_excerpt, occurred_at)
SELECT 'att_' || substr(d.id, 5) || j, d.tenant_id, d.id, d.event_id, 'bench.event', d.webhook_id, j + 1,
    CASE WHEN j = 4 THEN 'succeeded' ELSE 'failed' END, CASE WHEN j = 4 THEN 200 ELSE 503 END, 12, '', 'ok',
    d.created_at + j * interval '10 seconds'
FROM deliveries d, generate_series(0, 4) AS j
WHERE d.id >= %(low)s AND d.id < %(high)s
"""
RECEIPTS = """
INSERT INTO inbound_events (id, tenant_id, webhook_id, message_id, status, reason, event_type, content_type, body,
    received_at)
SELECT 'rcv_' || substr(e.id, 5) || k, e.tenant_id, 'whk_bench_in_' || substr(e.tenant_id, 11),
    'msg_' || substr(e.id, 15) || '_' || k, 'accepted', '', 'partner.updated', 'application/json',
    convert_to(repeat('y', 100), 'UTF8'), e.created_at
FROM events e, generate_series(0, 1) AS k
WHERE e.created_at >= %(start)s AND e.created_at < %(end)s
"""
# The newest DUE deliveries of active webhooks are due now; the oldest STUCK of paused webhooks wait.
PENDING = """
WITH paused AS (SELECT id FROM webhooks WHERE paused_at IS NOT NULL)
UPDATE deliveries SET status = 'pending', completed_at = NULL, attempts = 1,
    next_attempt_at = CASE WHEN chosen.due THEN now() - interval '1 minute' ELSE now() + interval '1 day' END
FROM (
    (SELECT id, true AS due FROM deliveries WHERE webhook_id NOT IN (SELECT id FROM paused)
     ORDER BY id DESC LIMIT %(due)s)
    UNION ALL
    (SELECT id, false FROM deliveries WHERE webhook_id IN (SELECT id FROM paused) ORDER BY id LIMIT %(stuck)s)
) AS chosen
WHERE deliveries.id = chosen.id
"""
# Retention as it was before migration 0007: 1,000 rows per transaction.
OLD_BATCHES = {
    "attempts": "DELETE FROM attempts WHERE seq IN"
    " (SELECT seq FROM attempts WHERE occurred_at < %(cutoff)s LIMIT 1000)",
    "deliveries": "DELETE FROM deliveries WHERE id IN"
    " (SELECT id FROM deliveries WHERE status <> 'pending' AND created_at < %(cutoff)s LIMIT 1000)",
    "inbound_events": "DELETE FROM inbound_events WHERE seq IN"
    " (SELECT seq FROM inbound_events WHERE received_at < %(cutoff)s LIMIT 1000)",
}
OLD_ROWS = {
    "attempts": "SELECT count(*) FROM attempts WHERE occurred_at < %(cutoff)s",
    "deliveries": "SELECT count(*) FROM deliveries WHERE status <> 'pending' AND created_at < %(cutoff)s",
    "inbound_events": "SELECT count(*) FROM inbound_events WHERE received_at < %(cutoff)s",
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def milliseconds(at: datetime) -> int:
    return (at - _UNIX_EPOCH) // timedelta(milliseconds=1)


def first_week(now: datetime) -> partitions.Period:
    return partitions.Period(partitions.Period.of(now).start - WEEKS * partitions.WIDTH)


def value(connection: Connection, statement: str, params: dict[str, Any] | None = None) -> Any:
    row = connection.execute(statement, params).fetchone()
    assert row is not None
    return row[0]


# -- the data --------------------------------------------------------------------------------------------


def fill(conninfo: str, attempts: int, now: datetime) -> float:
    """WEEKS weeks of history up to `now` and the current week's so far, `attempts` attempts in all;
    returns the seconds it took."""
    started = time.perf_counter()
    events = max(WEEKS + 1, attempts // 20)
    per_week = events // (WEEKS + 1)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute(ULID_TIME)
        shape = {"tenants": TENANTS, "webhooks_per_tenant": WEBHOOKS_PER_TENANT, "paused": PAUSED_TENANTS}
        connection.execute(WEBHOOKS, shape)
        for number in range(WEEKS + 1):
            week = partitions.Period(first_week(now).start + number * partitions.WIDTH)
            end = min(week.end, now - timedelta(minutes=5))
            count = per_week if number < WEEKS else events - WEEKS * per_week
            values = shape | {
                "first": number * per_week,
                "count": count,
                "start_ms": milliseconds(week.start),
                "step_ms": max(1, (milliseconds(end) - milliseconds(week.start)) // count),
                "start": week.start,
                "end": week.end,
                "low": partitions.DELIVERIES.bound(week.start),
                "high": partitions.DELIVERIES.bound(week.end),
            }
            with connection.transaction():
                for statement in (EVENTS, DELIVERIES, ATTEMPTS, RECEIPTS):
                    connection.execute(statement, values)
        connection.execute(PENDING, {"due": DUE, "stuck": STUCK})
        connection.execute("DROP FUNCTION bench_ulid_time")
        connection.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def sizes(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo, autocommit=True) as connection:
        counted = {
            table: int(value(connection, f"SELECT count(*) FROM {table}"))
            for table in ("attempts", "deliveries", "events", "inbound_events")
        }
        counted["partitions"] = int(
            value(connection, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'attempts'::regclass")
        )
    return counted


# -- the statements ---------------------------------------------------------------------------------


@dataclass
class Statement:
    """`prepare` (untimed, inside the transaction when the statement writes) returns the parameters;
    `work` is what is timed; `explained` is the statement EXPLAIN (ANALYZE, BUFFERS) runs with them."""

    name: str
    prepare: Callable[[Connection], dict[str, Any]]
    work: Callable[[Connection, dict[str, Any]], None]
    explained: str
    writes: bool = False


@dataclass
class Figure:
    times_ms: list[float] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def buffers(self) -> int:
        top = self.plan["Plan"]
        return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


def log_position(connection: Connection, tenant: str, *, lines_before_end: int | None) -> LogPosition:
    """A follower's cursor: `lines_before_end` lines before the end of the tenant's log, or its first line."""
    if lines_before_end is None:
        statement = "SELECT txid, seq FROM attempts WHERE tenant_id = %s ORDER BY txid, seq LIMIT 1"
        row = connection.execute(statement, (tenant,)).fetchone()
    else:
        statement = "SELECT txid, seq FROM attempts WHERE tenant_id = %s ORDER BY txid DESC, seq DESC OFFSET %s LIMIT 1"
        row = connection.execute(statement, (tenant, lines_before_end)).fetchone()
    assert row is not None
    return LogPosition(row[0], row[1])


def hot_paths(connection: Connection, now: datetime) -> list[Statement]:
    tenant = "tnt_bench_7"
    log_read = history._log_statement(frozenset({"after_txid"}))
    deliveries_page = history._deliveries_statement(frozenset())
    old_week = partitions.Period(first_week(now).start + 3 * partitions.WIDTH)
    old_delivery = connection.execute(
        "SELECT id, tenant_id FROM deliveries WHERE id >= %s ORDER BY id LIMIT 1",
        (partitions.DELIVERIES.bound(old_week.start + timedelta(days=3)),),
    ).fetchone()
    inbound_webhook = value(connection, "SELECT id FROM webhooks WHERE direction = 'inbound' LIMIT 1")
    assert old_delivery is not None
    claim_values = {
        "token": "bench",
        "limit": CLAIM_LIMIT,
        "scan": CLAIM_LIMIT * 4,
        "per_webhook": 4,
        "per_tenant": CLAIM_LIMIT,
        "margin": deliveries.LEASE_MARGIN.total_seconds(),
        "fresh_webhooks": [],
        "horizon": RATE_SLOT_HORIZON.total_seconds(),
    }

    def log_after(position: LogPosition) -> Callable[[Connection], dict[str, Any]]:
        values = {"tenant_id": tenant, "app_id": None, "limit": LOG_LIMIT}
        return lambda _: values | {"after_txid": position.txid, "after_seq": position.seq}

    def generic(conn: Connection, statement: str, values: dict[str, Any]) -> list[Any]:
        """As Database.fetch_all(..., generic_plan=True) runs it."""
        with conn.pipeline():
            conn.execute(BEGIN)
            conn.execute(GENERIC_PLAN)
            cursor = conn.execute(statement, values)
            conn.execute(COMMIT)
        return cursor.fetchall()

    def read_log(conn: Connection, values: dict[str, Any]) -> None:
        assert generic(conn, log_read, values)

    def a_tenant(_: Connection) -> dict[str, Any]:
        return {"tenant_id": tenant, "app_id": None, "limit": 50}

    def list_deliveries(conn: Connection, values: dict[str, Any]) -> None:
        assert generic(conn, deliveries_page, values)

    def the_old_delivery(_: Connection) -> dict[str, Any]:
        return {"id": old_delivery[0], "tenant_id": old_delivery[1], "app_id": None}

    def get_delivery(conn: Connection, values: dict[str, Any]) -> None:
        with conn.pipeline():
            found = conn.execute(history._GET_DELIVERY, values)
            attempt_rows = conn.execute(history._NEWEST_ATTEMPTS_OF, values)
        assert found.fetchone() is not None and len(attempt_rows.fetchall()) == 5

    def generic_plans(conn: Connection) -> dict[str, Any]:
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        return the_old_delivery(conn)

    def attempts_of(conn: Connection, values: dict[str, Any]) -> None:
        assert len(conn.execute(history._NEWEST_ATTEMPTS_OF, values).fetchall()) == 5

    def locked(conn: Connection) -> dict[str, Any]:
        conn.execute(deliveries._QUEUE_AND_LOCK)
        return claim_values

    def claim(conn: Connection, values: dict[str, Any]) -> None:
        claimed = conn.execute(deliveries._CLAIM, values).fetchall()
        assert len(claimed) == CLAIM_LIMIT, len(claimed)

    def claimed_batch(conn: Connection) -> dict[str, Any]:
        conn.execute(deliveries._QUEUE_AND_LOCK)
        rows = conn.execute(deliveries._CLAIM, claim_values).fetchall()
        # The recorder writes in a transaction of its own, with its own settings, not the claim's.
        for setting in ("enable_hashjoin", "enable_mergejoin", "enable_seqscan"):
            conn.execute(f"SET LOCAL {setting} TO DEFAULT")
        conn.execute(deliveries._RECORD_SETTINGS)
        at = datetime.now(UTC)
        result = AttemptRecord(Outcome.SUCCEEDED, 200, 12, "", "ok", gone=False, next_attempt_at=None, occurred_at=at)
        batch = [(deliveries._claimed(row, "bench"), result) for row in rows]
        webhook_values = deliveries._webhook_arrays(batch) | {
            "pause_after": 5,
            "resolution": 1.0,
            "gone_reason": PAUSED_GONE,
            "failures_reason": PAUSED_AFTER_FAILURES,
            "lifecycle_filters": lifecycle_filters(LogKind.PAUSED),
        }
        return {"batch": deliveries.attempt_batch_json(batch), "webhooks": webhook_values}

    def record(conn: Connection, values: dict[str, Any]) -> None:
        with conn.pipeline():
            updated = conn.execute(deliveries._RECORD_ATTEMPTS, values)
            conn.execute(deliveries._UPDATE_WEBHOOKS, values["webhooks"])
        assert len(updated.fetchall()) == CLAIM_LIMIT

    def new_receipt(_: Connection) -> dict[str, Any]:
        return {
            "id": "rcv_bench",
            "tenant_id": "tnt_bench_0",
            "app_id": None,
            "webhook_id": inbound_webhook,
            "message_id": "msg_new",
            "status": "accepted",
            "reason": "",
            "event_type": "partner.updated",
            "content_type": "application/json",
            "body": b"{}",
            "received_at": datetime.now(UTC),
            "once": True,
            "log_id": "att_bench",
            "event_id": "msg_new",
            "outcome": Outcome.RECEIVED.value,
            "http_status": 202,
            "latency_ms": 1,
        }

    def receive_once(conn: Connection, values: dict[str, Any]) -> None:
        with conn.pipeline():
            conn.execute(_LOCK_MESSAGE, values)
            inserted = conn.execute(_RECORD, values)
        assert inserted.fetchone() is not None

    tail = log_position(connection, tenant, lines_before_end=LOG_LIMIT // 2)
    start = log_position(connection, tenant, lines_before_end=None)
    return [
        Statement("log: tail after a cursor, one tenant", log_after(tail), read_log, log_read),
        Statement("log: replay from the first line", log_after(start), read_log, log_read),
        Statement("list deliveries, newest 50 of a tenant", a_tenant, list_deliveries, deliveries_page),
        Statement("get delivery by id (3rd week)", the_old_delivery, get_delivery, history._GET_DELIVERY),
        # By-id statements are planned afresh each time: against every partition, a generic plan looks
        # dearer to the planner than one pruned to a partition. What a generic plan would cost instead:
        Statement("  the same, generic plans", generic_plans, get_delivery, history._GET_DELIVERY, writes=True),
        Statement("  its attempts, by delivery_id", the_old_delivery, attempts_of, history._NEWEST_ATTEMPTS_OF),
        Statement(f"claim {CLAIM_LIMIT} due", locked, claim, deliveries._CLAIM, writes=True),
        Statement(f"record a batch of {CLAIM_LIMIT}", claimed_batch, record, deliveries._RECORD_ATTEMPTS, writes=True),
        Statement("inbound receipt, duplicate check", new_receipt, receive_once, _RECORD, writes=True),
    ]


def once(connection: Connection, statement: Statement) -> float:
    """Seconds the statement's work took, its set-up and the rollback of what it wrote excluded."""
    if statement.writes:
        connection.execute("BEGIN")
    values = statement.prepare(connection)
    started = time.perf_counter()
    statement.work(connection, values)
    elapsed = time.perf_counter() - started
    if statement.writes:
        connection.execute("ROLLBACK")
    return elapsed


def explained(connection: Connection, statement: Statement) -> dict[str, Any]:
    connection.execute("BEGIN")
    values = statement.prepare(connection)
    document = value(connection, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.explained, values)
    connection.execute("ROLLBACK")
    return dict((json.loads(document) if isinstance(document, str) else document)[0])


def measure(connections: dict[str, Connection], statements: dict[str, Statement]) -> dict[str, Figure]:
    """The statement on every database in turn, rep after rep, so that whatever else the machine does
    meanwhile weighs on each alike."""
    figures = {name: Figure() for name in connections}
    for rep in range(WARMUP + REPS):
        for name, connection in connections.items():
            elapsed = once(connection, statements[name])
            if rep >= WARMUP:
                figures[name].times_ms.append(elapsed * 1000)
    for name, connection in connections.items():
        figures[name].plan = explained(connection, statements[name])
    return figures


# -- plans -----------------------------------------------------------------------------------------------


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def shape(figure: Figure) -> str:
    """The plan's node types in order, each once; an index scan with its index as every partition names it."""
    seen: list[str] = []
    for node in nodes(figure.plan["Plan"]):
        label = node["Node Type"]
        if node.get("Index Name"):
            label += " " + _PARTITION_INDEX.sub("", node["Index Name"]).removesuffix("_idx")
        if label not in seen:
            seen.append(label)
    return " > ".join(seen)


_PARTITION_INDEX = re.compile(r"^(deliveries|attempts|inbound_events)_(p\d{8}|default)_")


def scanned(figure: Figure, per_table: int) -> str:
    """How many partitions of each table the execution read, of how many it has."""
    touched: dict[str, set[str]] = {}
    for node in nodes(figure.plan["Plan"]):
        relation = node.get("Relation Name", "")
        table = next((table.name for table in partitions.TABLES if relation.startswith(table.name + "_")), None)
        if table and node.get("Actual Loops", 0) > 0 and node["Node Type"] != "ModifyTable":
            touched.setdefault(table, set()).add(relation)
    return ", ".join(f"{table} {len(names)}/{per_table}" for table, names in sorted(touched.items()))


# -- retention -------------------------------------------------------------------------------------------


def row_by_row_estimate(conninfo: str, cutoff: datetime) -> float:
    """Seconds deleting everything older than `cutoff` 1,000 rows per transaction would take: one
    batch of each table timed (and rolled back), times the batches the rows need."""
    total = 0.0
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for table, statement in OLD_BATCHES.items():
            rows = int(value(connection, OLD_ROWS[table], {"cutoff": cutoff}))
            connection.execute("BEGIN")
            started = time.perf_counter()
            connection.execute(statement, {"cutoff": cutoff})
            connection.execute("ROLLBACK")
            total += (time.perf_counter() - started) * -(-rows // 1000)
    return total


@dataclass
class Retention:
    drop_seconds: float  # dropping the oldest week's partitions
    kept_pending: int
    rest_seconds: float  # the rest of the sweep: row batches (events, default partitions)
    deleted: int


async def sweep(url: str, week: partitions.Period) -> Retention:
    """Retention as the service runs it, timed in two parts: the oldest week's partitions dropped,
    then the rest of the sweep."""
    database = Database(url, size=2, timeout_seconds=300)
    await database.open()
    try:
        started = time.perf_counter()
        kept = 0
        for table in partitions.TABLES:
            outcome = await retention._drop_partition(database, table, table.partition_name(week))
            assert isinstance(outcome, int), f"{table.table.name}: {outcome}"  # nothing else sweeps here
            kept += outcome
        dropped = time.perf_counter()
        swept = await retention.sweep(database, cutoff=week.end)
        assert not swept.dropped
        return Retention(dropped - started, kept, time.perf_counter() - dropped, swept.deleted)
    finally:
        await database.close()


# -- the run ---------------------------------------------------------------------------------------------


DATABASES = ("small", "large")


def line(cells: tuple[str, ...]) -> str:
    widths = (36, 8, 8, 9, 7, 11)
    return "  ".join(
        cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
    )


def run(attempts: int) -> None:
    now = datetime.now(UTC)
    data_dir = Path(tempfile.mkdtemp(prefix="webhookd-bench-partitions-"))
    postgres = EmbeddedPostgres(data_dir)
    small_attempts = max(400 * (WEEKS + 1), attempts // SMALL_SHARE)
    try:
        postgres.start()
        with psycopg.connect(conninfo(postgres.url()), autocommit=True) as admin:
            # Fewer checkpoints while loading.
            admin.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
            admin.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
            admin.execute("SELECT pg_reload_conf()")
        urls = {name: postgres.create_database(f"bench_{name}") for name in DATABASES}
        loaded = {}
        for name, count in (("small", small_attempts), ("large", attempts)):
            migrate.upgrade_sync(urls[name])
            asyncio.run(partitions.ensure_at(urls[name], now=first_week(now).start, ahead=WEEKS))
            progress(f"filling {name}: {count:,} attempts over {WEEKS + 1} weeks")
            loaded[name] = fill(conninfo(urls[name]), count, now)
            progress(f"{name} filled in {loaded[name]:.0f} s")
        size = {name: sizes(conninfo(url)) for name, url in urls.items()}

        figures: dict[str, dict[str, Figure]] = {}
        connections = {name: psycopg.connect(conninfo(url), autocommit=True) for name, url in urls.items()}
        try:
            paths = {name: hot_paths(connection, now) for name, connection in connections.items()}
            for index, statement in enumerate(paths["small"]):
                progress(f"measuring {statement.name.strip()}")
                figures[statement.name] = measure(connections, {name: paths[name][index] for name in paths})
        finally:
            for connection in connections.values():
                connection.close()

        cutoff = first_week(now).end  # the oldest week, and only it, is past retention
        progress("retention")
        row_by_row = {name: row_by_row_estimate(conninfo(urls[name]), cutoff) for name in ("small", "large")}
        swept = {name: asyncio.run(sweep(urls[name], first_week(now))) for name in ("small", "large")}
        report(size, loaded, figures, swept, row_by_row)
    finally:
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def report(
    size: dict[str, dict[str, int]],
    loaded: dict[str, float],
    figures: dict[str, dict[str, Figure]],
    swept: dict[str, Retention],
    row_by_row: dict[str, float],
) -> None:
    large = size["large"]
    print(f"== partitions: hot paths on {large['attempts']:,} attempts vs a small table ==")
    for name, what in (("small", "partitioned"), ("large", "partitioned")):
        counted = size[name]
        print(
            f"{name} ({what}): {counted['attempts']:,} attempts, {counted['deliveries']:,} deliveries,"
            f" {counted['events']:,} events, {counted['inbound_events']:,} receipts"
            + (f" in {counted['partitions']} partitions per table" if counted["partitions"] else "")
            + f"; made in {loaded[name]:.0f} s"
        )
    print(line((f"median ms of {REPS}", "small", "large", "buffers", "", "large/small")))
    print(line(("", "", "", "small", "large", "")))
    for name, by_database in figures.items():
        small, big = (by_database[database] for database in DATABASES)
        print(
            line(
                (
                    name,
                    f"{small.median_ms:.3f}",
                    f"{big.median_ms:.3f}",
                    str(small.buffers),
                    str(big.buffers),
                    f"{big.median_ms / small.median_ms:.2f}",
                )
            )
        )
    kept, dropped = swept["small"], swept["large"]
    print(
        f"retention of the oldest week: dropping its {len(partitions.TABLES)} partitions"
        f" {kept.drop_seconds * 1000:.0f} ms small, {dropped.drop_seconds * 1000:.0f} ms large"
        f" (ratio {dropped.drop_seconds / kept.drop_seconds:.2f}; {dropped.kept_pending} pending deliveries kept);"
        f" the rest of the sweep, {dropped.deleted:,} old events deleted 1,000 at a time (events are not"
        f" partitioned), {kept.rest_seconds * 1000:.0f} ms small, {dropped.rest_seconds * 1000:.0f} ms large."
        f" The week deleted 1,000 rows at a time instead, as before: ~{row_by_row['small']:.1f} s small,"
        f" ~{row_by_row['large']:.1f} s large (one batch per table, extrapolated)"
    )
    print("plans on large (EXPLAIN ANALYZE, BUFFERS), and the partitions each execution read:")
    for name, by_database in figures.items():
        big, small = by_database["large"], by_database["small"]
        same = "the same plan on small" if shape(big) == shape(small) else f"on small: {shape(small)}"
        print(f"  {name.strip()}: {shape(big)}")
        print(
            f"      read {scanned(big, large['partitions'])}; planning {big.plan.get('Planning Time', 0):.2f} ms,"
            f" execution {big.plan.get('Execution Time', 0):.2f} ms; {same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="hot paths on a large partitioned history vs a small one")
    parser.add_argument("--attempts", type=int, default=10_000_000, help="attempts in the large database")
    run(parser.parse_args().attempts)


if __name__ == "__main__":
    main()
