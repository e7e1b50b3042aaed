"""Reading the attempt log and delivery history, and queueing deliveries again (redeliver, recover).

The log is read in (txid, seq) order and only up to the oldest transaction still running
(`pg_snapshot_xmin`): a row whose transaction might still commit "behind" the reader is held back
until it is settled. So a follower that continues from its last position never skips a row that
committed late, and never sees one twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webhookd.domain.deliveries import Delivery, DeliveryFilter
from webhookd.domain.errors import FailedPrecondition, NotFound
from webhookd.domain.event_types import WILDCARD
from webhookd.domain.history import DELIVERY_ATTEMPTS_SHOWN, LogEntry, LogFilter, LogPosition, LogRead
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, LogKind, Outcome
from webhookd.store.database import Connection, Database
from webhookd.store.partitions import Period
from webhookd.store.sql import (
    LOG_SCAN_ROWS,
    TEXT_ARRAY,
    compiled,
    param,
    scope_params,
    scoped,
    settled_and_held_back,
    settled_read,
)
from webhookd.store.tables import attempts, deliveries, events, webhooks

RECOVER_BATCH = 1000
_LOG_COLUMNS = (
    attempts.c.txid,
    attempts.c.seq,
    attempts.c.delivery_id,
    attempts.c.event_id,
    attempts.c.event_type,
    attempts.c.webhook_id,
    attempts.c.attempt,
    attempts.c.outcome,
    attempts.c.http_status,
    attempts.c.latency_ms,
    attempts.c.error,
    attempts.c.response_excerpt,
    attempts.c.next_attempt_at,
    attempts.c.occurred_at,
    attempts.c.kind,
    attempts.c.reason,
    attempts.c.delivery_count,
)
# GetDelivery's attempts also show what was sent and received; the log stream leaves headers out.
_ATTEMPT_COLUMNS = (*_LOG_COLUMNS, attempts.c.request_headers, attempts.c.response_headers)
_ATTEMPT = LogKind.ATTEMPT.value
DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.event_id,
    events.c.event_type,
    deliveries.c.webhook_id,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.last_outcome,
    deliveries.c.last_http_status,
    deliveries.c.last_error,
    deliveries.c.created_at,
    deliveries.c.updated_at,
    deliveries.c.completed_at,
)
# Due at the database's time, which the claim compares with (store/events.py, _INSERT_DELIVERIES).
_PENDING_NOW = {
    "status": DeliveryStatus.PENDING.value,
    "next_attempt_at": sa.func.now(),
    "retry_at": None,  # queued again: no retry of the last run waits
    "completed_at": None,
    "updated_at": param("now"),
}
_GET_DELIVERY = compiled(
    sa.select(*DELIVERY_COLUMNS)
    .join_from(deliveries, events, events.c.id == deliveries.c.event_id)
    .where(scoped(deliveries), deliveries.c.id == param("id"))
)
# Newest first, to cut at the bound; shown oldest first.
_NEWEST_ATTEMPTS_OF = compiled(
    sa.select(*_ATTEMPT_COLUMNS)
    .where(scoped(attempts), attempts.c.delivery_id == param("id"))
    .order_by(attempts.c.seq.desc())
    .limit(DELIVERY_ATTEMPTS_SHOWN)
)
# Not while a worker's lease holds, judged on the database's clock, which set it (a server's clock
# running ahead would queue it again beside the attempt). A lease that ran out goes with the
# redelivery: its stalled worker's late result must not overwrite the delivery queued again.
_REDELIVER = compiled(
    deliveries.update()
    .where(
        scoped(deliveries),
        deliveries.c.id == param("id"),
        sa.or_(deliveries.c.lease_token.is_(None), deliveries.c.lease_expires_at <= sa.func.now()),
    )
    .values(_PENDING_NOW | {"lease_token": None, "lease_expires_at": None})
)
_WEBHOOK_EXISTS = compiled(sa.select(webhooks.c.id).where(scoped(webhooks), webhooks.c.id == param("id")))
# Skipped: published while its owner had the webhook disabled ("replay since"). A test event's
# delivery is not requeued: it checked the endpoint then, and is no event the receiver missed.
_RECOVERABLE = sa.and_(
    sa.or_(deliveries.c.status == DeliveryStatus.FAILED.value, deliveries.c.status == DeliveryStatus.SKIPPED.value),
    sa.not_(deliveries.c.is_test),
)
# `id = ANY(ARRAY(...))` rather than `id IN (...)`: a join of a batch of ids into the partitioned
# deliveries is priced as a probe of every partition per id, and would become a scan of them all.
# The status again outside the batch: a row another writer changed while this one waited for it is
# checked again as it is now, and the batch was read before that (a concurrent recovery that queued
# it, a worker that claimed it since: queued once more, it would be sent beside its attempt).
_RECOVER = compiled(
    deliveries.update()
    .where(
        deliveries.c.id
        == sa.func.any(
            sa.func.array(
                sa.select(deliveries.c.id)
                .where(
                    scoped(deliveries),
                    deliveries.c.webhook_id == param("id"),
                    _RECOVERABLE,
                    deliveries.c.created_at >= param("since"),
                )
                .limit(RECOVER_BATCH)
                .scalar_subquery()
            )
        ),
        _RECOVERABLE,
    )
    .values(_PENDING_NOW)
)


def event_type_condition(column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """Subscription-style matching in SQL: an exact type, or a `prefix.*` as a LIKE pattern."""
    return sa.or_(
        column == sa.func.any(param("exact_types", TEXT_ARRAY)),
        # LIKE's default escape character is the backslash the patterns are escaped with.
        column.like(sa.func.any(param("type_patterns", TEXT_ARRAY))),
    )


def event_type_params(filters: tuple[str, ...]) -> dict[str, Any]:
    """Parameters for `event_type_condition`; an empty dict when `*` makes it match everything."""
    if not filters or WILDCARD in filters:
        return {}
    prefixes = [value[:-1] for value in filters if value.endswith(".*")]
    patterns = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes]
    return {"exact_types": [value for value in filters if not value.endswith(".*")], "type_patterns": patterns}


# The stored words to their members by dict: calling the enum costs a microsecond a time, per entry.
_KINDS = {kind.value: kind for kind in LogKind}
_OUTCOMES = {outcome.value: outcome for outcome in Outcome}


def log_entry(row: Sequence[Any]) -> LogEntry:
    """A row of `_LOG_COLUMNS`, or of `_ATTEMPT_COLUMNS` (with the headers); positional, in LogEntry's
    field order, since a log stream builds one per entry."""
    kind = _KINDS[row[14]]
    return LogEntry(
        LogPosition(row[0], row[1]),
        row[2],  # delivery_id
        row[3],  # event_id
        row[4],  # event_type
        row[5],  # webhook_id
        row[6],  # attempt
        _OUTCOMES[row[7]] if kind is LogKind.ATTEMPT else None,
        row[8],  # http_status
        row[9],  # latency_ms
        row[10],  # error
        row[11],  # response_excerpt
        row[12],  # next_attempt_at
        row[13],  # occurred_at
        kind,
        row[15],  # reason
        row[16],  # delivery_count
        _header_pairs(row[17]) if len(row) > 17 else (),
        _header_pairs(row[18]) if len(row) > 18 else (),
    )


def _header_pairs(stored: Any) -> tuple[tuple[str, str], ...]:
    """The JSON array of [name, value] pairs the recorder stores (NULL for rows before it did)."""
    return tuple((str(name), str(value)) for name, value in stored or ())


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """A row of `DELIVERY_COLUMNS`."""
    return Delivery(
        id=row[0],
        event_id=row[1],
        event_type=row[2],
        webhook_id=row[3],
        status=DeliveryStatus(row[4]),
        attempts=row[5],
        next_attempt_at=row[6],
        last_outcome=None if row[7] is None else Outcome(row[7]),
        last_http_status=row[8],
        last_error=row[9],
        created_at=row[10],
        updated_at=row[11],
        completed_at=row[12],
    )


@functools.cache
def _log_statement(filters: frozenset[str]) -> str:
    conditions: list[sa.ColumnElement[bool]] = [scoped(attempts)]
    # What the log's indexes lead with before (txid, seq): attempts_tenant_log, attempts_webhook_log.
    keys: list[sa.ColumnElement[bool]] = [attempts.c.tenant_id == param("tenant_id", sa.Text)]
    if "webhook_id" in filters:
        conditions.append(attempts.c.webhook_id == param("webhook_id"))
        keys.append(attempts.c.webhook_id == param("webhook_id"))
    if "kinds" in filters:
        conditions.append(attempts.c.kind == sa.func.any(param("kinds", TEXT_ARRAY)))
    if "outcomes" in filters:
        # Outcomes select among attempts; a lifecycle entry (no outcome) stays when `kinds` names it.
        outcome = attempts.c.outcome == sa.func.any(param("outcomes", TEXT_ARRAY))
        conditions.append(sa.or_(attempts.c.kind != _ATTEMPT, outcome) if "kinds" in filters else outcome)
    if "exact_types" in filters:
        conditions.append(event_type_condition(attempts.c.event_type))
    after = None
    if "after_txid" in filters:
        after = (param("after_txid", sa.BigInteger), param("after_seq", sa.BigInteger))
        conditions.append(sa.tuple_(attempts.c.txid, attempts.c.seq) > sa.tuple_(*after))
    start: list[sa.ColumnElement[bool]] = []
    if "since" in filters:
        # The partitions' key, so the scan starts in the week of `since`, not at the oldest row kept: at the
        # week's start, which no row of the weeks it reads is before. `since` there would filter the week's
        # rows before it out where the scan's bound does not count them (all read, on each read); judged with
        # the other filters, they count.
        start.append(attempts.c.occurred_at >= param("since_week"))
        conditions.append(attempts.c.occurred_at >= param("since"))
    return settled_and_held_back(sa.select(*_LOG_COLUMNS).where(*conditions), attempts, keys, after=after, start=start)


@functools.cache
def _deliveries_statement(filters: frozenset[str]) -> str:
    conditions: list[sa.ColumnElement[bool]] = [scoped(deliveries)]
    if "webhook_id" in filters:
        conditions.append(deliveries.c.webhook_id == param("webhook_id"))
    if "status" in filters:
        conditions.append(deliveries.c.status == param("status"))
    if "last_outcome" in filters:
        conditions.append(deliveries.c.last_outcome == param("last_outcome"))
    if "exact_types" in filters:
        conditions.append(event_type_condition(events.c.event_type))
    if "start_time" in filters:
        conditions.append(deliveries.c.created_at >= param("start_time"))
    if "end_time" in filters:
        conditions.append(deliveries.c.created_at < param("end_time"))
    if "before_created_at" in filters:
        before = sa.tuple_(param("before_created_at", deliveries.c.created_at.type), param("before_id", sa.Text))
        conditions.append(sa.tuple_(deliveries.c.created_at, deliveries.c.id) < before)
    return compiled(
        sa.select(*DELIVERY_COLUMNS)
        .join_from(deliveries, events, events.c.id == deliveries.c.event_id)
        .where(*conditions)
        .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        .limit(param("limit"))
    )


def log_read(
    scope: Scope, query: LogFilter, *, after: LogPosition | None, since: datetime | None, limit: int, scan: int
) -> tuple[str, dict[str, Any]]:
    """A read of the log (`HistoryStore.read_log`): its statement and the values it runs with."""
    values: dict[str, Any] = scope_params(scope) | {"limit": limit, "scan": scan} | event_type_params(query.event_types)
    if query.webhook_id is not None:
        values["webhook_id"] = query.webhook_id
    if query.outcomes:
        values["outcomes"] = [outcome.value for outcome in query.outcomes]
    if query.kinds:
        values["kinds"] = [kind.value for kind in query.kinds]
    if after is not None:
        values |= {"after_txid": after.txid, "after_seq": after.seq}
    if since is not None:
        values |= {"since": since, "since_week": Period.of(since).start}
    return _log_statement(_filters(values)), values


# Values of a read that select no statement of their own: the statement is chosen by the others.
_NOT_FILTERS = frozenset(
    {"tenant_id", "app_id", "limit", "scan", "type_patterns", "after_seq", "since_week", "before_id"}
)


def _filters(values: dict[str, Any]) -> frozenset[str]:
    return frozenset(values) - _NOT_FILTERS


class HistoryStore:
    """ports.HistoryRepository in PostgreSQL."""

    def __init__(self, database: Database, *, scan_rows: int = LOG_SCAN_ROWS) -> None:
        self._db = database
        self._scan_rows = scan_rows

    async def read_log(
        self,
        scope: Scope,
        query: LogFilter,
        *,
        after: LogPosition | None,
        since: datetime | None,
        limit: int,
    ) -> LogRead[LogEntry]:
        statement, values = log_read(scope, query, after=after, since=since, limit=limit, scan=self._scan_rows)
        read = settled_read(await self._db.fetch_all(statement, values, generic_plan=True))
        return LogRead([log_entry(row) for row in read.entries], read.held_back, read.scanned_to, read.cut_short)

    async def list_deliveries(
        self, scope: Scope, query: DeliveryFilter, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Delivery]:
        values: dict[str, Any] = scope_params(scope) | {"limit": limit} | event_type_params(query.event_types)
        if query.webhook_id is not None:
            values["webhook_id"] = query.webhook_id
        if query.status is not None:
            values["status"] = query.status.value
        if query.last_outcome is not None:
            values["last_outcome"] = query.last_outcome.value
        if query.start_time is not None:
            values["start_time"] = query.start_time
        if query.end_time is not None:
            values["end_time"] = query.end_time
        if before is not None:
            values |= {"before_created_at": before[0], "before_id": before[1]}
        rows = await self._db.fetch_all(_deliveries_statement(_filters(values)), values, generic_plan=True)
        return [delivery_from_row(row) for row in rows]

    async def get_delivery(self, scope: Scope, delivery_id: str) -> tuple[Delivery, list[LogEntry]]:
        keys = scope_params(scope) | {"id": delivery_id}

        async def read(connection: Connection) -> tuple[Any, list[Any]]:
            async with connection.pipeline():
                delivery = await connection.execute(_GET_DELIVERY, keys)
                attempt_rows = await connection.execute(_NEWEST_ATTEMPTS_OF, keys)
                return await delivery.fetchone(), await attempt_rows.fetchall()

        row, newest_first = await self._db.run(read)
        if row is None:
            raise NotFound.of("delivery", delivery_id)
        return delivery_from_row(row), [log_entry(attempt) for attempt in reversed(newest_first)]

    async def redeliver(self, scope: Scope, delivery_id: str, *, now: datetime) -> Delivery:
        updated = await self._db.execute(_REDELIVER, scope_params(scope) | {"id": delivery_id, "now": now})
        delivery, _ = await self.get_delivery(scope, delivery_id)  # NotFound when it is not the caller's
        if updated == 0:
            raise FailedPrecondition(f"delivery {delivery_id} is being attempted right now; try again shortly")
        return delivery

    async def recover(self, scope: Scope, webhook_id: str, *, since: datetime, now: datetime) -> int:
        """Failed deliveries of the webhook since `since` become pending and due, a batch per transaction."""
        values = scope_params(scope) | {"id": webhook_id, "since": since, "now": now}
        if await self._db.fetch_one(_WEBHOOK_EXISTS, values) is None:
            raise NotFound.of("webhook", webhook_id)
        queued = 0
        while True:
            changed = await self._db.execute(_RECOVER, values)
            queued += changed
            if changed < RECOVER_BATCH:
                return queued
