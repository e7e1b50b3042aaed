"""Rows of the history tables written with plain SQL at chosen times, for the partitioning, retention
and migration tests: a delivery made five weeks ago has an id made five weeks ago, as the service
would have given it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from ulid import ULID

from webhookd.domain import ids
from webhookd.domain.inbound import Receipt
from webhookd.store.database import Database

WEBHOOK = """
INSERT INTO webhooks (id, tenant_id, name, direction, url, event_types, signature_scheme, headers, enabled,
    retry_max_attempts, retry_backoff, retry_timeout_ms, connector_id, application_id, tags, source, source_type,
    vault_path, secret_fingerprint, created_at, updated_at, schema_version, version, consecutive_failures, paused_at)
VALUES (%(id)s, %(tenant_id)s, 'history', %(direction)s, 'http://127.0.0.1:9/hook', ARRAY['*'], 'standard-webhooks',
    '{}', true, 3, 'exponential', 5000, '', '', ARRAY[]::text[], '', 'api', 'webhookd/test', 'fp', now(), now(), 1, 1,
    0, %(paused_at)s)
"""
EVENT = """
INSERT INTO events (id, tenant_id, event_type, body, created_at)
VALUES (%(id)s, %(tenant_id)s, 'history.test', '{"n": 1}', %(at)s)
"""
DELIVERY = """
INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, next_attempt_at, created_at, updated_at)
VALUES (%(id)s, %(tenant_id)s, %(event_id)s, %(webhook_id)s, %(status)s, 0, %(due)s, %(at)s, %(at)s)
"""
ATTEMPT = """
INSERT INTO attempts (id, tenant_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome, http_status,
    latency_ms, error, response_excerpt, occurred_at)
VALUES (%(id)s, %(tenant_id)s, %(delivery_id)s, %(event_id)s, 'history.test', %(webhook_id)s, 1, 'succeeded', 200, 5,
    '', 'ok', %(at)s)
RETURNING txid, seq
"""


def id_at(prefix: str, at: datetime) -> str:
    """An id of this type as the service would have made it at `at`."""
    return f"{prefix}{ULID.from_datetime(at)}"


@asynccontextmanager
async def opened(url: str, *, size: int = 4, timeout_seconds: float = 5.0) -> AsyncIterator[Database]:
    database = Database(url, size=size, timeout_seconds=timeout_seconds)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


async def webhook(
    database: Database, tenant_id: str, *, inbound: bool = False, paused_at: datetime | None = None
) -> str:
    webhook_id = ids.new_id(ids.WEBHOOK_PREFIX)
    direction = "inbound" if inbound else "outbound"
    await database.execute(
        WEBHOOK, {"id": webhook_id, "tenant_id": tenant_id, "direction": direction, "paused_at": paused_at}
    )
    return webhook_id


async def event(database: Database, tenant_id: str, at: datetime) -> str:
    event_id = id_at(ids.EVENT_PREFIX, at)
    await database.execute(EVENT, {"id": event_id, "tenant_id": tenant_id, "at": at})
    return event_id


async def delivery(
    database: Database,
    tenant_id: str,
    webhook_id: str,
    event_id: str,
    at: datetime,
    *,
    status: str = "pending",
    due: datetime | None = None,
) -> str:
    """A delivery made at `at`; a pending one is due at `due` (default: `at`)."""
    delivery_id = id_at(ids.DELIVERY_PREFIX, at)
    values = {"id": delivery_id, "tenant_id": tenant_id, "event_id": event_id, "webhook_id": webhook_id}
    await database.execute(DELIVERY, values | {"status": status, "due": due or at, "at": at})
    return delivery_id


async def attempt(
    database: Database, tenant_id: str, webhook_id: str, delivery_id: str, at: datetime
) -> tuple[int, int]:
    """An attempt that occurred at `at`, in a transaction of its own; its (txid, seq)."""
    values = {"tenant_id": tenant_id, "webhook_id": webhook_id, "delivery_id": delivery_id, "at": at}
    row = await database.fetch_one(ATTEMPT, values | {"id": id_at(ids.ATTEMPT_PREFIX, at), "event_id": "evt_x"})
    assert row is not None
    return row[0], row[1]


async def partition_of(database: Database, table: str, key: str, value: Any) -> str:
    """The partition holding the row of `table` whose `key` is `value`."""
    row = await database.fetch_one(f"SELECT tableoid::regclass::text FROM {table} WHERE {key} = %(v)s", {"v": value})
    assert row is not None, f"no {table} row with {key} = {value}"
    return str(row[0])


async def tables(database: Database) -> set[str]:
    rows = await database.fetch_all("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {row[0] for row in rows}


def receipt(message_id: str | None, at: datetime, *, accepted: bool = True) -> Receipt:
    return Receipt(
        message_id=message_id,
        accepted=accepted,
        reason="" if accepted else "bad signature",
        event_type="partner.updated",
        content_type="application/json",
        body=b'{"ok": true}' if accepted else None,
        http_status=200 if accepted else 401,
        latency_ms=1,
        received_at=at,
    )
