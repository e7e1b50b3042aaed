"""The claim's and the batch record's generic plans on small weekly partitions: they reach deliveries
by index, never by a sequential scan (the claim once scanned every partition once per row claimed:
124 ms for a claim of 32 on 8,000 deliveries over 21 weeks; the record hashed a scan of every one:
10.6 ms for 32; store/deliveries.py, `_SETTINGS` and `_RECORD_SETTINGS`). A plan's shape, not a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from plans import generic_plan, nodes

from support import running_service
from webhookd.app import Backends
from webhookd.domain import ids
from webhookd.store import deliveries, partitions
from webhookd.store.conninfo import conninfo

PAST_WEEKS = 8
ROWS_PER_WEEK = 300
DUE = 40
# A past week's deliveries, copied from a delivery just published: ids of that week, finished.
PAST_DELIVERIES = """
INSERT INTO deliveries (id, tenant_id, app_id, event_id, webhook_id, status, attempts, created_at, updated_at,
    completed_at, last_outcome, last_http_status, last_error)
SELECT CAST(%(time)s AS text) || lpad(n::text, 16, '0'), d.tenant_id, d.app_id, d.event_id, d.webhook_id,
    'succeeded', 1, at, at, at, 'succeeded', 200, ''
FROM (SELECT * FROM deliveries LIMIT 1) d, generate_series(1, %(rows)s) AS n,
    CAST(%(at)s AS timestamptz) AS at
"""
_TYPES = {"fresh_webhooks": "text[]", "token": "text", "limit": "int", "scan": "int", "per_webhook": "int"}
_TYPES |= {"per_tenant": "int", "margin": "float8", "horizon": "float8"}


async def small_partitions(settings, backends, own_database: str) -> str:
    """DUE deliveries due now, and PAST_WEEKS weekly partitions of ROWS_PER_WEEK finished ones each,
    analyzed; one delivery id that is due."""
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as caller:
        created = await caller.CreateWebhook(
            pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url="http://127.0.0.1:9/hook", event_types=["a.*"]))
        )
        for n in range(DUE):
            payload = struct_pb2.Struct()
            payload.update({"n": n})
            await caller.PublishEvent(
                pb.PublishEventRequest(event_type="a.b", payload=payload, webhook_id=created.webhook.id)
            )
    now = datetime.now(UTC)
    weeks_ago = now - timedelta(weeks=PAST_WEEKS)
    await partitions.ensure_at(own_database, now=weeks_ago, ahead=PAST_WEEKS + 1)
    with psycopg.connect(conninfo(own_database), autocommit=True) as connection:
        for week in range(PAST_WEEKS):
            at = weeks_ago + timedelta(weeks=week, days=1)
            rows = {"time": ids.time_floor(ids.DELIVERY_PREFIX, at), "at": at, "rows": ROWS_PER_WEEK}
            connection.execute(PAST_DELIVERIES, rows)
        connection.execute("ANALYZE deliveries")
        [due] = connection.execute("SELECT id FROM deliveries WHERE status = 'pending' LIMIT 1").fetchone()
    return str(due)


def assert_deliveries_read_by_index(plan: dict[str, Any]) -> None:
    scanned = [node.get("Relation Name", "") for node in nodes(plan) if node["Node Type"] == "Seq Scan"]
    assert not [name for name in scanned if name.startswith("deliveries")], scanned
    assert any(node.get("Relation Name", "").startswith("deliveries_p") for node in nodes(plan))  # it did plan them


async def test_the_claim_reaches_deliveries_by_index_on_small_partitions(settings, backends, own_database) -> None:
    await small_partitions(settings, backends, own_database)
    values = {"fresh_webhooks": [], "token": "t", "limit": 32, "scan": 128, "per_webhook": 10, "per_tenant": 100}
    values |= {"margin": 30.0, "horizon": 1.0}

    plan = generic_plan(own_database, deliveries._QUEUE_AND_LOCK, deliveries._CLAIM, _TYPES, values)

    assert_deliveries_read_by_index(plan)


async def test_a_batch_record_reaches_deliveries_by_index_on_small_partitions(settings, backends, own_database) -> None:
    due = await small_partitions(settings, backends, own_database)
    batch = [{"delivery_id": due, "lease_token": "t", "status": "succeeded", "attempt": 1, "outcome": "succeeded"}]
    batch[0]["occurred_at"] = datetime.now(UTC).isoformat()

    plan = generic_plan(
        own_database,
        deliveries._RECORD_SETTINGS,
        deliveries._RECORD_ATTEMPTS,
        {"batch": "text", "again": "boolean"},
        {"batch": json.dumps(batch), "again": True},
    )

    assert_deliveries_read_by_index(plan)
    # Whether an attempt is logged already (a batch written again) is a probe by the attempt's own
    # values, never a read of every partition's attempts to hash.
    probes = [node for node in nodes(plan) if node.get("Relation Name", "").startswith("attempts_")]
    assert probes and all("Index Cond" in node for node in probes), [node["Node Type"] for node in probes]


async def test_the_claim_reaches_each_claimed_delivery_by_one_key_probe(settings, backends, own_database) -> None:
    # The claimed ids also given as `id = ANY(array)` next to the join made each delivery's probe
    # walk the whole array (PostgreSQL 16 descends the index once per element): a claim of 64 took
    # 2,080 probes of the primary key instead of 64.
    await small_partitions(settings, backends, own_database)
    values = {"fresh_webhooks": [], "token": "t", "limit": 32, "scan": 128, "per_webhook": 10, "per_tenant": 100}
    values |= {"margin": 30.0, "horizon": 1.0}

    plan = generic_plan(own_database, deliveries._QUEUE_AND_LOCK, deliveries._CLAIM, _TYPES, values)

    probes = [
        node["Index Cond"]
        for node in nodes(plan)
        if node.get("Relation Name", "").startswith("deliveries_p") and "chosen.id" in node.get("Index Cond", "")
    ]
    assert probes, "the claimed deliveries are not reached by a key probe"
    assert not [condition for condition in probes if "ANY" in condition], probes
