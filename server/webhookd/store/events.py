"""Publishing: the event row and its fan-out of deliveries, written in one transaction.

Two pipelined round trips: (BEGIN, the event insert, the target lookup), then (the deliveries,
COMMIT). An idempotent duplicate is found by the insert itself, in the first. Fan-outs above
COPY_THRESHOLD webhooks go by COPY, which moves thousands of rows in one stream but cannot be
pipelined.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webhookd.domain import ids
from webhookd.domain.errors import Aborted, Invalid
from webhookd.domain.events import KEY_REUSED, NewEvent, Published, same_event
from webhookd.domain.idempotency import remembered
from webhookd.domain.routing import check_publish_target
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus
from webhookd.domain.topics import Topic, new_deliveries_payload
from webhookd.domain.webhooks import Direction, Ordering
from webhookd.store.database import BEGIN, COMMIT, Connection, Database, rollback
from webhookd.store.notifications import NOTIFY
from webhookd.store.sql import TEXT_ARRAY, array_literal, compiled, param, scope_params, scoped
from webhookd.store.tables import events, webhooks

# Above this many targets COPY beats a pipelined INSERT ... SELECT FROM unnest (measured with
# bench/fanout: they meet at a few hundred rows).
COPY_THRESHOLD = 500
# Tries at a keyed insert: one may find the key's stale holder and release it, one may lose a race to a
# publish that committed mid-statement; past that the key is contended and the caller should retry.
KEY_CLAIM_TRIES = 3
_DELIVERY_COLUMNS = (
    "id",
    "tenant_id",
    "app_id",
    "event_id",
    "webhook_id",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)
_EVENT_COLUMNS = (
    "id",
    "tenant_id",
    "app_id",
    "event_type",
    "body",
    "idempotency_key",
    "target_webhook_id",
    "created_at",
    "channels",
)

_INSERT_EVENT = compiled(events.insert().values({name: param(name) for name in _EVENT_COLUMNS}))
_HELD_OR_DISCARDED = f"('{DeliveryStatus.HELD.value}', '{DeliveryStatus.DISCARDED.value}')"
_SKIPPED = DeliveryStatus.SKIPPED.value
# The insert, or the live event already holding the idempotency key with its created_at, its
# deliveries counted as the publish counted them and what it was (to refuse the key's reuse for
# another event): (id, created_at, queued, held, skipped, event_type, body, target_webhook_id,
# channels), created_at NULL for a fresh insert. The counts are of the deliveries as they stand: a
# held one discarded since still counts as held, one a resume released or a recovery requeued since
# counts as queued (the publish's own counts are not stored).
_INSERT_EVENT_ONCE = compiled(
    sa.text(
        f"""
WITH inserted AS (
    INSERT INTO events ({", ".join(_EVENT_COLUMNS)})
    VALUES ({", ".join(":" + name for name in _EVENT_COLUMNS)})
    ON CONFLICT (tenant_id, coalesce(app_id, ''), idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING RETURNING id
)
SELECT id, NULL::timestamptz, 0::bigint, 0::bigint, 0::bigint, NULL, NULL::bytea, NULL, NULL::text[] FROM inserted
UNION ALL
SELECT e.id, e.created_at, counted.queued, counted.held, counted.skipped, e.event_type, e.body,
    e.target_webhook_id, e.channels
FROM events e,
    LATERAL (
        SELECT count(*) FILTER (WHERE d.status NOT IN {_HELD_OR_DISCARDED} AND d.status <> '{_SKIPPED}') AS queued,
            count(*) FILTER (WHERE d.status IN {_HELD_OR_DISCARDED}) AS held,
            count(*) FILTER (WHERE d.status = '{_SKIPPED}') AS skipped
        FROM deliveries d WHERE d.event_id = e.id
    ) AS counted
WHERE NOT EXISTS (SELECT 1 FROM inserted)
  AND e.tenant_id = :tenant_id AND coalesce(e.app_id, '') = coalesce(:app_id, '')
  AND e.idempotency_key = :idempotency_key
"""
    )
)
_RELEASE_KEY = compiled(events.update().where(events.c.id == param("id")).values(idempotency_key=None))
_PENDING = DeliveryStatus.PENDING.value
_HELD = DeliveryStatus.HELD.value


def new_delivery_status(webhook: str) -> str:
    """SQL for the status a new delivery to the webhook row `webhook` (an alias) starts in: skipped
    while its owner has it disabled, held while it is paused, else pending. Nothing is dropped: a
    paused or disabled webhook keeps a record of every event it did not get."""
    return (
        f"CASE WHEN NOT {webhook}.enabled THEN '{_SKIPPED}'"
        f" WHEN {webhook}.paused_at IS NOT NULL THEN '{_HELD}' ELSE '{_PENDING}' END"
    )


_LIVE_OUTBOUND = sa.and_(
    webhooks.c.direction == Direction.OUTBOUND.value,
    webhooks.c.deleted_at.is_(None),
    webhooks.c.event_types.overlap(param("filters", webhooks.c.event_types.type)),
    # domain/routing.py: no channels, or one of the event's (both conditions the GIN index serves).
    sa.or_(
        webhooks.c.channels == sa.literal_column("'{}'::text[]"),
        webhooks.c.channels.overlap(param("channels", webhooks.c.channels.type)),
    ),
)
_STATUS: sa.ColumnElement[str] = sa.literal_column(new_delivery_status("webhooks"), sa.Text)
_FIFO = webhooks.c.ordering == Ordering.FIFO.value
_TARGETS = compiled(sa.select(webhooks.c.id, _STATUS, _FIFO).where(scoped(webhooks), _LIVE_OUTBOUND))
# A publish aimed at one webhook: whether it matches, and what routing.check_publish_target judges.
_TARGET = compiled(
    sa.select(
        webhooks.c.id,
        _STATUS,
        _FIFO,
        _LIVE_OUTBOUND,
        webhooks.c.deleted_at.is_not(None),
        webhooks.c.direction == Direction.INBOUND.value,
    ).where(scoped(webhooks), webhooks.c.id == param("target_webhook_id"))
)
# The status of the targets found paused, read again under a share lock on their rows (in id order, as
# the recorder locks them): the target lookup takes no lock, and a resume that committed after it
# released only the held deliveries it could see, not the ones this publish is about to insert. The
# lock makes a resume that has not yet written the row wait for this publish's commit, and one that
# has is seen (the row as it committed), so no delivery stays held for a webhook that is not paused.
_PAUSED_AGAIN = compiled(
    sa.select(webhooks.c.id, _STATUS)
    .where(scoped(webhooks), webhooks.c.id == sa.func.any(param("paused_ids", TEXT_ARRAY)))
    .order_by(webhooks.c.id)
    .with_for_update(read=True)
)
# A new pending delivery is due at the database's time, not the publishing process's: the claim
# compares with the database's `now()`, so a process clock ahead of the database's by a few
# milliseconds would hold every new delivery back by as long (created_at stays the event's time).
_INSERT_DELIVERIES = compiled(
    sa.text(
        f"""
INSERT INTO deliveries ({", ".join(_DELIVERY_COLUMNS)})
SELECT d.id, :tenant_id, :app_id, :event_id, d.webhook_id, d.status, 0,
    CASE WHEN d.status = '{_PENDING}' THEN now() END, :now, :now
FROM unnest(CAST(:ids AS text[]), CAST(:webhook_ids AS text[]), CAST(:statuses AS text[])) AS d(id, webhook_id, status)
"""
    )
)
# Deliveries to FIFO webhooks also carry the publish's place in the order: one number per publish,
# taken from delivery_fifo_seq only when a FIFO webhook is among the targets.
_INSERT_ORDERED_DELIVERIES = compiled(
    sa.text(
        f"""
WITH seq AS MATERIALIZED (SELECT nextval('delivery_fifo_seq') AS value)
INSERT INTO deliveries ({", ".join(_DELIVERY_COLUMNS)}, fifo_seq)
SELECT d.id, :tenant_id, :app_id, :event_id, d.webhook_id, d.status, 0,
    CASE WHEN d.status = '{_PENDING}' THEN now() END, :now, :now,
    CASE WHEN d.fifo THEN seq.value END
FROM unnest(CAST(:ids AS text[]), CAST(:webhook_ids AS text[]), CAST(:statuses AS text[]), CAST(:fifos AS boolean[]))
    AS d(id, webhook_id, status, fifo),
    seq
"""
    )
)
_NEXT_FIFO_SEQ = "SELECT nextval('delivery_fifo_seq')"
_DATABASE_NOW = "SELECT now()"
_COPY_DELIVERIES = f"COPY deliveries ({', '.join(_DELIVERY_COLUMNS)}) FROM STDIN"
_COPY_ORDERED_DELIVERIES = f"COPY deliveries ({', '.join(_DELIVERY_COLUMNS)}, fifo_seq) FROM STDIN"


class EventStore:
    """ports.EventRepository in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def publish(self, scope: Scope, event: NewEvent, matching_filters: list[str]) -> Published:
        values = scope_params(scope) | {
            "id": event.id,
            "event_type": event.event_type,
            "body": event.body,
            "idempotency_key": event.idempotency_key,
            "target_webhook_id": event.target_webhook_id,
            "created_at": event.created_at,
            "filters": array_literal(matching_filters),
            "channels": array_literal(event.channels),
        }

        async def write(connection: Connection) -> Published:
            try:
                return await _publish(connection, scope, event, values)
            except BaseException:
                await rollback(connection)
                raise

        return await self._db.run(write)


async def _publish(connection: Connection, scope: Scope, event: NewEvent, values: dict[str, Any]) -> Published:
    once = event.idempotency_key is not None
    for _ in range(KEY_CLAIM_TRIES):
        async with connection.pipeline():
            await connection.execute(BEGIN)
            inserted = await connection.execute(_INSERT_EVENT_ONCE if once else _INSERT_EVENT, values)
            found = await connection.execute(_TARGET if event.target_webhook_id else _TARGETS, values)
            earlier = await inserted.fetchone() if once else None  # round trip 1
            targets = await found.fetchall()
            if once and earlier is None:
                # Another publish took the key and committed after this statement began: ON CONFLICT saw
                # its row, the statement's snapshot cannot. Nothing was written; a new statement sees it.
                await connection.execute(COMMIT)
                continue
            if earlier is not None and earlier[1] is not None:
                earlier_id, created_at, queued, held, skipped, *what = earlier
                if remembered(created_at, event.created_at):
                    await connection.execute(COMMIT)
                    if not same_event(event, *what):
                        raise Invalid.field("idempotency_key", KEY_REUSED)
                    return Published(
                        earlier_id, queued, duplicate=True, deliveries_held=held, deliveries_skipped=skipped
                    )
                # The earlier event is outside the window: it keeps its history, the key moves on.
                await connection.execute(_RELEASE_KEY, {"id": earlier_id})
                await connection.execute(COMMIT)
                continue
            chosen = await _settled(connection, scope, _targets_of(event, targets))
            webhook_ids = [webhook_id for webhook_id, _, _ in chosen]
            statuses = [status for _, status, _ in chosen]
            fifos = [fifo for _, _, fifo in chosen]
            delivery_ids = ids.new_ids(ids.DELIVERY_PREFIX, len(webhook_ids))
            if len(webhook_ids) <= COPY_THRESHOLD:
                if webhook_ids:
                    rows = {
                        "ids": array_literal(delivery_ids),
                        "webhook_ids": array_literal(webhook_ids),
                        "statuses": array_literal(statuses),
                    }
                    event_values = {"event_id": event.id, "now": event.created_at}
                    values = scope_params(scope) | event_values | rows
                    if any(fifos):
                        await connection.execute(_INSERT_ORDERED_DELIVERIES, values | {"fifos": array_literal(fifos)})
                    else:
                        await connection.execute(_INSERT_DELIVERIES, values)
                await connection.execute(COMMIT)  # round trip 2, when the pipeline ends
                return await _woken(connection, _published(event, webhook_ids, statuses))
        # COPY cannot run inside a pipeline.
        await _copy_deliveries(connection, scope, event, delivery_ids, webhook_ids, statuses, fifos)
        await connection.execute(COMMIT)
        return await _woken(connection, _published(event, webhook_ids, statuses))
    raise Aborted(
        f"idempotency key was contended by concurrent publishes {KEY_CLAIM_TRIES} times: retry the publish",
        reason="IDEMPOTENCY_KEY_CONTENDED",
    )


async def _settled(
    connection: Connection, scope: Scope, chosen: list[tuple[str, str, bool]]
) -> list[tuple[str, str, bool]]:
    """`chosen` with the status of each target found paused read again under its row's lock
    (_PAUSED_AGAIN); a round trip only for a publish that holds deliveries."""
    paused = [webhook_id for webhook_id, status, _ in chosen if status == _HELD]
    if not paused:
        return chosen
    found = await connection.execute(_PAUSED_AGAIN, scope_params(scope) | {"paused_ids": paused})
    now = {webhook_id: status for webhook_id, status in await found.fetchall()}
    return [(webhook_id, now.get(webhook_id, status), fifo) for webhook_id, status, fifo in chosen]


async def _woken(connection: Connection, published: Published) -> Published:
    """Wakes the workers for the deliveries just committed: right after the COMMIT, in its round trip
    when pipelined."""
    if published.queued_for:
        await connection.execute(NOTIFY, (Topic.DELIVERIES.value, new_deliveries_payload(published.queued_for)))
    return published


def _targets_of(event: NewEvent, rows: list[Any]) -> list[tuple[str, str, bool]]:
    """(webhook id, the status its delivery starts in, whether it delivers in publish order) for each
    target."""
    if event.target_webhook_id is None:
        return [(row[0], row[1], row[2]) for row in rows]
    row = rows[0] if rows else None
    check_publish_target(
        event.target_webhook_id, found=row is not None, deleted=bool(row and row[4]), inbound=bool(row and row[5])
    )
    return [(row[0], row[1], row[2]) for row in rows if row[3]]


def _published(event: NewEvent, webhook_ids: list[str], statuses: list[str]) -> Published:
    return Published(
        event.id,
        statuses.count(_PENDING),
        duplicate=False,
        deliveries_held=statuses.count(_HELD),
        deliveries_skipped=statuses.count(_SKIPPED),
        queued_for=tuple(webhook for webhook, status in zip(webhook_ids, statuses, strict=True) if status == _PENDING),
    )


async def _copy_deliveries(
    connection: Connection,
    scope: Scope,
    event: NewEvent,
    delivery_ids: list[str],
    webhook_ids: list[str],
    statuses: list[str],
    fifos: list[bool],
) -> None:
    """The rows in COPY's text format, written here: every row shares all but its id, webhook and
    status, so the shared part is formatted once (psycopg's write_row formats every value of every
    row: 12 µs a row here, 120 ms of a 10,000-webhook fan-out, against under 10 ms for this)."""
    fifo_seq = None
    if any(fifos):
        fifo_seq = (await (await connection.execute(_NEXT_FIFO_SEQ)).fetchone() or (None,))[0]
    statement = _COPY_DELIVERIES if fifo_seq is None else _COPY_ORDERED_DELIVERIES
    shared = "\t".join(_copy_field(value) for value in (scope.tenant_id, scope.app_id, event.id))
    at = _copy_field(event.created_at)
    now = await (await connection.execute(_DATABASE_NOW)).fetchone()
    assert now is not None  # one row, always
    due = _copy_field(now[0])
    # attempts, next_attempt_at (a delivery not pending waits for no attempt), created_at, updated_at
    pending_tail, waiting_tail = f"\t0\t{due}\t{at}\t{at}", f"\t0\t\\N\t{at}\t{at}"
    fifo_tails = ("\t\\N", f"\t{fifo_seq}") if fifo_seq is not None else ("", "")
    # Statuses are DeliveryStatus words: nothing in them to escape.
    rows = list(zip(_copy_column(delivery_ids), _copy_column(webhook_ids), statuses, fifos, strict=True))
    async with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, len(rows), _COPY_CHUNK_ROWS):
            lines = [
                f"{delivery_id}\t{shared}\t{webhook_id}\t{status}"
                f"{pending_tail if status == _PENDING else waiting_tail}{fifo_tails[fifo]}\n"
                for delivery_id, webhook_id, status, fifo in rows[start : start + _COPY_CHUNK_ROWS]
            ]
            await copy.write("".join(lines))


# Rows per write: PostgreSQL takes in one chunk while the next is formatted.
_COPY_CHUNK_ROWS = 1000
# What COPY's text format escapes in a value: the column and row delimiters and its escape character.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: str | datetime | None) -> str:
    """`value` as a field of COPY's text format: NULL as \\N, a time in ISO 8601 with its offset."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    return value.translate(_COPY_ESCAPES)


def _copy_column(values: list[str]) -> list[str]:
    """Each of `values` as a field of COPY's text format, escaped in one pass over them all (joined by
    NUL, which no value holds: PostgreSQL text cannot)."""
    return "\0".join(values).translate(_COPY_ESCAPES).split("\0") if values else []
