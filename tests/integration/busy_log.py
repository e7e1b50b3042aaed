"""Rows of one busy tenant's log, written in bulk by SQL (not through the API), for the plan tests of
log reads: one inbound webhook of TENANT's app_a, its attempts and its rejected inbound receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from webhookd.store.sql import LOG_SCAN_ROWS

TENANT = "tnt_busy"
# A read of 200 entries of the whole tenant from the log's start.
FROM_THE_START = {
    "tenant_id": TENANT,
    "app_id": None,
    "limit": 200,
    "scan": LOG_SCAN_ROWS,
    "after_txid": 0,
    "after_seq": 0,
}
WEBHOOK = """
INSERT INTO webhooks (id, tenant_id, app_id, name, direction, url, event_types, signature_scheme, headers, enabled,
    retry_max_attempts, retry_backoff, retry_timeout_ms, connector_id, application_id, tags, source, source_type,
    vault_path, secret_fingerprint, created_at, updated_at, schema_version, version, consecutive_failures, channels,
    rate_limit_per_second, ordering)
VALUES ('whk_a', %(tenant)s, 'app_a', 'push', 'inbound', '', '{}', 'hmac-sha256', '{}', true, 5, 'exponential',
    10000, '', '', '{}', 'github', 'hmac-sha256', 'webhookd/whk_a', '', now(), now(), 1, 1, 0, '{}', 0, 'unordered')
"""
ATTEMPTS = """
INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
    http_status, latency_ms, error, response_excerpt, occurred_at)
SELECT 'att_' || n, %(tenant)s, 'app_a', 'dlv_' || n, 'evt_' || n, 'order.created', 'whk_a', 1, 'succeeded',
    200, 5, '', '', coalesce(%(occurred_at)s::timestamptz, now())
FROM generate_series(1, %(rows)s) AS n
"""
RECEIPTS = """
INSERT INTO inbound_events (id, tenant_id, app_id, webhook_id, message_id, status, reason, event_type,
    content_type, body, received_at)
SELECT 'ibe_' || n, %(tenant)s, 'app_a', 'whk_a', 'msg_' || n, 'rejected', 'signature', 'push',
    'application/json', NULL, now()
FROM generate_series(1, %(rows)s) AS n
"""


def write_busy_log(writer: psycopg.Connection[Any], rows: int) -> None:
    """TENANT's webhook, `rows` attempts and `rows` rejected inbound receipts, then fresh statistics of both
    tables (the plans under test are chosen from them)."""
    writer.execute(WEBHOOK, {"tenant": TENANT})
    write_attempts(writer, rows)
    writer.execute(RECEIPTS, {"tenant": TENANT, "rows": rows})
    writer.execute("ANALYZE attempts")
    writer.execute("ANALYZE inbound_events")


def write_attempts(writer: psycopg.Connection[Any], rows: int, occurred_at: datetime | None = None) -> None:
    """`rows` attempts of TENANT's webhook, occurred at `occurred_at` (default: now), in one statement."""
    writer.execute(ATTEMPTS, {"tenant": TENANT, "rows": rows, "occurred_at": occurred_at})
