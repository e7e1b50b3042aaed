"""Lifecycle changes of webhooks: the DeliveryLog entry, and the operational event published about it.

A change writes, in the transaction that makes it (the webhook store's, or the recorder's for an
automatic pause), so a change is never committed without its entry nor an entry without its change:
- a row of `attempts` whose `kind` is the change (`webhook.paused` ...), so it takes its place in the
  log's (txid, seq) order and cursor like any attempt; it carries the operational event's id and type;
- the operational event, `webhookd.webhook.<change>`, whose data is the webhook's id, name and url,
  the reason and the time;
- its deliveries: one per outbound webhook of the same scope that subscribes to it (by name or a
  `webhookd` wildcard: domain.event_types keeps `*` from matching), never to the webhook it is about,
  nor to a webhook that lists channels (the event has none), starting pending, held or skipped as a
  publish's would, in a FIFO webhook's publish order (store/events.py).

`LIFECYCLE_WRITES` is that as common table expressions over a CTE named `lifecycle_changes` (log_id,
event_id, webhook_id, kind, reason, delivery_count, at) which the statement defines before it: the
attempt recorder appends them to the statement that pauses webhooks (store/deliveries.py), and
`record_change` to one that names a single webhook, on the connection of the caller's transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from webhookd.domain import event_types, ids
from webhookd.domain.lifecycle import HeldSettled, LifecycleChange, resumed_reason
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, LogKind
from webhookd.domain.webhooks import Direction, Ordering
from webhookd.store.database import Connection, Database
from webhookd.store.events import new_delivery_status
from webhookd.store.sql import array_literal, compiled, scope_params

_PENDING = DeliveryStatus.PENDING.value
_HELD = DeliveryStatus.HELD.value
# The body is the Standard Webhooks shape domain.events.event_body builds in Python, `{"type",
# "timestamp", "data"}` with no spaces before `data` (domain.events.event_data finds it there); it is
# built here because a pause is decided inside the recorder's statement, with the failure count.
_STAMP = """to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
LIFECYCLE_WRITES = f"""
lifecycle_subjects AS (
    SELECT c.log_id, c.event_id, c.webhook_id, c.kind, c.reason, c.delivery_count, c.at,
        w.tenant_id, w.app_id, w.name, w.url, 'webhookd.' || c.kind AS event_type, {_STAMP} AS stamp
    FROM lifecycle_changes c JOIN webhooks w ON w.id = c.webhook_id
), lifecycle_events AS (
    INSERT INTO events (id, tenant_id, app_id, event_type, body, idempotency_key, target_webhook_id, created_at)
    SELECT s.event_id, s.tenant_id, s.app_id, s.event_type,
        convert_to('{{"type":' || to_json(s.event_type)::text || ',"timestamp":' || to_json(s.stamp)::text
            || ',"data":' || json_build_object('id', s.webhook_id, 'name', s.name, 'url', s.url,
                                               'reason', s.reason, 'time', s.stamp)::text || '}}', 'UTF8'),
        NULL, NULL, s.at
    FROM lifecycle_subjects s
    RETURNING id
), lifecycle_log AS (
    INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
        http_status, latency_ms, error, response_excerpt, next_attempt_at, occurred_at, kind, reason, delivery_count)
    SELECT s.log_id, s.tenant_id, s.app_id, '', s.event_id, s.event_type, s.webhook_id, 0, '', NULL, 0, '', '', NULL,
        s.at, s.kind, s.reason, s.delivery_count
    FROM lifecycle_subjects s
    RETURNING id
), lifecycle_targets AS (
    SELECT s.event_id, s.tenant_id, s.app_id, s.at, t.id AS webhook_id, {new_delivery_status("t")} AS status,
        t.ordering = '{Ordering.FIFO.value}' AS fifo
    FROM lifecycle_subjects s
    JOIN webhooks t ON t.tenant_id = s.tenant_id AND (s.app_id IS NULL OR t.app_id = s.app_id)
    WHERE t.id <> s.webhook_id AND t.direction = '{Direction.OUTBOUND.value}' AND t.deleted_at IS NULL
      AND t.event_types && CAST(:lifecycle_filters AS text[])
      -- Operational events carry no channels: a webhook that lists channels does not get them.
      AND t.channels = '{{}}'
), lifecycle_deliveries AS (
    -- The id is a ULID of the event's time (its first ten characters), so it lands in the event's week.
    -- A FIFO webhook's delivery takes its place in the publish order, and is due at the database's time
    -- (store/events.py).
    INSERT INTO deliveries (id, tenant_id, app_id, event_id, webhook_id, status, attempts, next_attempt_at,
        created_at, updated_at, fifo_seq)
    SELECT 'dlv_' || substr(t.event_id, 5, 10) || upper(substr(md5(random()::text || t.webhook_id), 1, 16)),
        t.tenant_id, t.app_id, t.event_id, t.webhook_id, t.status, 0,
        CASE WHEN t.status = '{_PENDING}' THEN now() END, t.at, t.at,
        CASE WHEN t.fifo THEN nextval('delivery_fifo_seq') END
    FROM lifecycle_targets t
    RETURNING status
)"""


def lifecycle_filters(kind: LogKind) -> str:
    """The subscriptions that receive the operational event of `kind`, as the array literal
    LIFECYCLE_WRITES reads (store/sql.py array_literal)."""
    return array_literal(event_types.matching_filters(f"{event_types.SERVICE_NAMESPACE}.{kind.value}"))


# One change of one webhook of the caller's scope: how many of its operational deliveries were queued.
_RECORD = compiled(
    sa.text(
        f"""
WITH lifecycle_changes AS (
    SELECT CAST(:log_id AS text) AS log_id, CAST(:event_id AS text) AS event_id, w.id AS webhook_id,
        CAST(:kind AS text) AS kind, CAST(:reason AS text) AS reason,
        CAST(:delivery_count AS integer) AS delivery_count, CAST(:at AS timestamptz) AS at
    FROM webhooks w
    WHERE w.id = :webhook_id AND w.tenant_id = :tenant_id AND (CAST(:app_id AS text) IS NULL OR w.app_id = :app_id)
), {LIFECYCLE_WRITES}
SELECT count(*) FROM lifecycle_deliveries WHERE status = '{_PENDING}'
"""
    )
)
# Held deliveries of a webhook, released in publish order: each due a microsecond after the one
# published before it, so the claim (oldest due first, then id) takes them in that order.
_RELEASE_HELD = compiled(
    sa.text(
        f"""
WITH held AS (
    SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM deliveries
    WHERE webhook_id = :webhook_id AND status = '{_HELD}'
      AND tenant_id = :tenant_id AND (CAST(:app_id AS text) IS NULL OR app_id = :app_id)
)
UPDATE deliveries d SET status = '{_PENDING}',
    next_attempt_at = now() + held.n * interval '1 microsecond', updated_at = :now
FROM held
WHERE d.id = ANY(ARRAY(SELECT id FROM held)) AND d.id = held.id AND d.status = '{_HELD}'
"""
    )
)
_DISCARD_HELD = compiled(
    sa.text(
        f"""
UPDATE deliveries SET status = '{DeliveryStatus.DISCARDED.value}', next_attempt_at = NULL, completed_at = :now,
    updated_at = :now
WHERE webhook_id = :webhook_id AND status = '{_HELD}'
  AND tenant_id = :tenant_id AND (CAST(:app_id AS text) IS NULL OR app_id = :app_id)
"""
    )
)


def change_values(scope: Scope, change: LifecycleChange) -> dict[str, Any]:
    return scope_params(scope) | {
        "log_id": ids.new_id(ids.ATTEMPT_PREFIX),
        "event_id": ids.new_id(ids.EVENT_PREFIX),
        "webhook_id": change.webhook_id,
        "kind": change.kind.value,
        "reason": change.reason,
        "delivery_count": change.delivery_count,
        "at": change.at,
        "lifecycle_filters": lifecycle_filters(change.kind),
    }


class LifecycleStore:
    """ports.LifecycleRepository in PostgreSQL, for changes that are not a webhook write of their own
    (a recovery); the webhook store records its changes itself, in their own transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, scope: Scope, change: LifecycleChange) -> int:
        """Writes the change's log entry and publishes its operational event; how many of the
        event's deliveries were queued (pending)."""

        async def write(connection: Connection) -> int:
            return await record_change(connection, scope, change)

        return await self._db.transaction(write)


async def record_change(connection: Connection, scope: Scope, change: LifecycleChange) -> int:
    """`change`'s log entry and operational event, in the transaction open on `connection`; how many
    of the event's deliveries are pending."""
    row = await (await connection.execute(_RECORD, change_values(scope, change))).fetchone()
    return int(row[0]) if row else 0


async def settle_held(connection: Connection, scope: Scope, change: LifecycleChange, *, discard: bool) -> HeldSettled:
    """Releases (or discards) the webhook's held deliveries and records `change` with their count, in
    the transaction open on `connection`."""
    keys = scope_params(scope) | {"webhook_id": change.webhook_id, "now": change.at}
    settled = await connection.execute(_DISCARD_HELD if discard else _RELEASE_HELD, keys)
    count = settled.rowcount
    done = HeldSettled(released=0 if discard else count, discarded=count if discard else 0)
    await record_change(
        connection, scope, LifecycleChange(change.kind, change.webhook_id, change.at, resumed_reason(done), count)
    )
    return done
