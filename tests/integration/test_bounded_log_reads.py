"""A log read goes through a bounded number of rows (store/sql.py LOG_SCAN_ROWS) and says how far it went;
the stream (services/tailing.py) goes on from there. Whatever that bound, the batch's size and the
reader's filters, the reads together return exactly what one unbounded read returns, on the real SQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from history_rows import opened

from fakes import FakeNotifications
from webhookd.domain.history import LogEntry, LogFilter, LogPosition, LogRead
from webhookd.domain.inbound import InboundEvent
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import LogKind, Outcome
from webhookd.ports import Topic
from webhookd.services import tailing
from webhookd.store import migrate
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database
from webhookd.store.history import HistoryStore
from webhookd.store.inbound import InboundStore

T = TypeVar("T", bound=Any)
TENANT = "tnt_scan"
NOW = datetime.now(UTC)
WEBHOOKS = """
INSERT INTO webhooks (id, tenant_id, app_id, name, direction, url, event_types, signature_scheme, headers, enabled,
    retry_max_attempts, retry_backoff, retry_timeout_ms, connector_id, application_id, tags, source, source_type,
    vault_path, secret_fingerprint, created_at, updated_at, schema_version, version, consecutive_failures, channels,
    rate_limit_per_second, ordering)
SELECT id, %(tenant)s, 'app_a', 'push', 'inbound', '', '{}', 'hmac-sha256', '{}', true, 5, 'exponential',
    10000, '', '', '{}', 'github', 'hmac-sha256', 'webhookd/' || id, '', now(), now(), 1, 1, 0, '{}', 0, 'unordered'
FROM unnest(ARRAY['whk_1', 'whk_2']) AS id
"""
ATTEMPTS = """
INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
    http_status, latency_ms, error, response_excerpt, occurred_at, kind)
SELECT 'att_' || row.n, %(tenant)s, row.app, 'dlv_' || row.n, 'evt_' || row.n, row.event_type, row.webhook, 1,
    row.outcome, 200, 5, '', '', row.at, row.kind
FROM unnest(%(n)s::text[], %(app)s::text[], %(event_type)s::text[], %(webhook)s::text[], %(outcome)s::text[],
    %(at)s::timestamptz[], %(kind)s::text[]) AS row (n, app, event_type, webhook, outcome, at, kind)
"""
RECEIPTS = """
INSERT INTO inbound_events (id, tenant_id, app_id, webhook_id, message_id, status, reason, event_type,
    content_type, body, received_at)
SELECT 'ibe_' || row.n, %(tenant)s, row.app, row.webhook, 'msg_' || row.n, row.status, '', 'push',
    'application/json', '\\x7b7d'::bytea, now()
FROM unnest(%(n)s::text[], %(app)s::text[], %(webhook)s::text[], %(status)s::text[]) AS row (n, app, webhook, status)
"""


def written(chance: random.Random, batch: int) -> tuple[dict[str, object], dict[str, object]]:
    """A transaction's worth of attempts and receipts, of two apps and webhooks, most of them not wanted."""
    count = chance.randint(1, 60)
    numbers = [f"{batch}_{n}" for n in range(count)]
    apps = [chance.choice(["app_a", "app_b", None]) for _ in numbers]
    webhooks = [chance.choice(["whk_1", "whk_2"]) for _ in numbers]
    kinds = [chance.choices(["attempt", "webhook.paused"], [9, 1])[0] for _ in numbers]
    attempts = {
        "tenant": TENANT,
        "n": numbers,
        "app": apps,
        "event_type": [chance.choice(["order.created", "order.paid", "user.created"]) for _ in numbers],
        "webhook": webhooks,
        "outcome": ["" if kind != "attempt" else chance.choices(["succeeded", "failed"], [8, 1])[0] for kind in kinds],
        "at": [NOW - timedelta(minutes=chance.randint(0, 600)) for _ in numbers],
        "kind": kinds,
    }
    statuses = [chance.choices(["accepted", "rejected"], [1, 4])[0] for _ in numbers]
    receipts = {"tenant": TENANT, "n": numbers, "app": apps, "webhook": webhooks, "status": statuses}
    return attempts, receipts


@pytest.fixture
async def log(own_database: str) -> AsyncIterator[Database]:
    """TENANT's log: a few hundred attempts and receipts written by 12 transactions."""
    await migrate.upgrade(own_database)
    chance = random.Random(7)
    with psycopg.connect(conninfo(own_database), autocommit=True) as writer:
        writer.execute(WEBHOOKS, {"tenant": TENANT})
        for batch in range(12):
            attempts, receipts = written(chance, batch)
            writer.execute(ATTEMPTS, attempts)
            writer.execute(RECEIPTS, receipts)
    async with opened(own_database) as database:
        yield database


async def backlog(
    read: Callable[[LogPosition | None, int], Awaitable[LogRead[T]]], after: LogPosition | None
) -> list[T]:
    """The stream without following, read by `read`."""
    entries = tailing.tail(
        read,
        lambda entry: entry.position,
        after=after,
        follow=False,
        notifications=FakeNotifications(),
        topic=Topic.ATTEMPTS,
        key=TENANT,
        closing=asyncio.Event(),
    )
    return [entry async for entry in entries]


def a_filter(chance: random.Random) -> LogFilter:
    return LogFilter(
        webhook_id=chance.choice([None, None, "whk_1"]),
        outcomes=tuple(chance.sample([Outcome.SUCCEEDED, Outcome.FAILED], chance.randint(0, 1))),
        event_types=tuple(chance.sample(["order.*", "user.created", "order.paid"], chance.randint(0, 2))),
        kinds=tuple(chance.sample([LogKind.ATTEMPT, LogKind.PAUSED], chance.randint(0, 1))),
    )


async def test_bounded_delivery_log_reads_return_what_one_unbounded_read_returns(
    log: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = await HistoryStore(log, scan_rows=1_000_000).read_log(
        Scope(TENANT), LogFilter(), after=None, since=None, limit=1_000_000
    )
    for seed in range(40):
        await same_delivery_log(log, random.Random(seed), [entry.position for entry in everything.entries], monkeypatch)


async def same_delivery_log(
    log: Database, chance: random.Random, positions: list[LogPosition], monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = Scope(TENANT, chance.choice([None, "app_a"]))
    query = a_filter(chance)
    after = chance.choice(positions) if chance.random() < 0.5 else None
    since = chance.choice([None, NOW - timedelta(minutes=chance.randint(0, 600))])
    bounded = HistoryStore(log, scan_rows=chance.randint(1, 9))
    monkeypatch.setattr(tailing, "BATCH", chance.randint(1, 7))

    async def read(position: LogPosition | None, batch: int) -> LogRead[LogEntry]:
        return await bounded.read_log(scope, query, after=position, since=since, limit=batch)

    unbounded = await HistoryStore(log, scan_rows=1_000_000).read_log(
        scope, query, after=after, since=since, limit=1_000_000
    )
    assert not unbounded.cut_short
    assert await backlog(read, after) == unbounded.entries, (scope, query, after, since)


async def test_bounded_inbound_reads_return_what_one_unbounded_read_returns(
    log: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = await InboundStore(log, scan_rows=1_000_000).read(
        Scope(TENANT), webhook_id=None, after=None, limit=1_000_000
    )
    for seed in range(30):
        await same_inbound_events(
            log, random.Random(seed), [event.position for event in everything.entries], monkeypatch
        )


async def same_inbound_events(
    log: Database, chance: random.Random, positions: list[LogPosition], monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = Scope(TENANT, chance.choice([None, "app_a", "app_b"]))
    webhook_id = chance.choice([None, "whk_1"])
    after = chance.choice(positions) if chance.random() < 0.5 else None
    bounded = InboundStore(log, scan_rows=chance.randint(1, 9))
    monkeypatch.setattr(tailing, "BATCH", chance.randint(1, 7))

    async def read(position: LogPosition | None, batch: int) -> LogRead[InboundEvent]:
        return await bounded.read(scope, webhook_id=webhook_id, after=position, limit=batch)

    unbounded = await InboundStore(log, scan_rows=1_000_000).read(
        scope, webhook_id=webhook_id, after=after, limit=1_000_000
    )
    assert await backlog(read, after) == unbounded.entries, (scope, webhook_id, after)
