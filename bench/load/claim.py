"""Load generator: the claim statement, timed in turns with the one it replaced.

Runs REPS rounds on the databases given; each round times every `--case` once, in an order shuffled
anew each round (seeded), each in its own transaction rolled back afterwards (so every turn sees the
same due deliveries), after WARMUP rounds. Besides each case's median, it reports each case's median
ratio to the first case within a round: turns of one round are moments apart, so load that comes and
goes on the machine weighs on both sides of each ratio alike. Statements run the way the store runs
them: pipelined after their lock statement, and prepared by psycopg after a few runs.

A case is `name=statement@database`: statement `main` is the claim as main shipped it, `new` the claim as
the store runs it now. Prints one JSON line: each case's median and quartiles in ms, its median per-round
ratio to the first case, and the rows it claimed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import psycopg

from load.loop import emit
from webhookd.store import deliveries

# The claim as main had it before issue 15 merged (b39e80b: fair by webhook load, with the webhooks a
# publish names), with its lock (nested loops, a generic plan): the baseline.
MAIN_LOCK = (
    f"SELECT pg_advisory_xact_lock({deliveries.CLAIM_LOCK_ID}),"
    " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),"
    " set_config('plan_cache_mode', 'force_generic_plan', true)"
)
MAIN_CLAIM = """
WITH inflight AS (
    SELECT webhook_id, tenant_id, count(*) AS n FROM deliveries
    WHERE status = 'pending' AND lease_token IS NOT NULL AND lease_expires_at > now()
    GROUP BY webhook_id, tenant_id
), webhook_inflight AS (
    SELECT webhook_id, sum(n) AS n FROM inflight GROUP BY webhook_id
), tenant_inflight AS (
    SELECT tenant_id, sum(n) AS n FROM inflight GROUP BY tenant_id
), candidates AS (
    (SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at FROM deliveries d
     JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = 'pending' AND d.next_attempt_at <= now()
       AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
     ORDER BY d.next_attempt_at LIMIT %(scan)s)
    UNION
    (SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at FROM deliveries d
     JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = 'pending' AND d.next_attempt_at <= now()
       AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
     ORDER BY d.next_attempt_at DESC LIMIT %(scan)s)
    UNION
    (SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at
     FROM unnest(CAST(%(fresh_webhooks)s AS text[])) AS f(webhook_id)
     JOIN webhooks w ON w.id = f.webhook_id AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
     CROSS JOIN LATERAL (
         SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at FROM deliveries d
         WHERE d.webhook_id = f.webhook_id AND d.status = 'pending' AND d.next_attempt_at <= now()
         ORDER BY d.created_at LIMIT 1) d)
), ranked AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id) AS webhook_rank
    FROM candidates c
), under_webhook_cap AS (
    SELECT r.*, r.webhook_rank + coalesce(wi.n, 0) AS webhook_load,
        row_number() OVER (
            PARTITION BY r.tenant_id ORDER BY r.webhook_rank + coalesce(wi.n, 0), r.next_attempt_at, r.id
        ) AS tenant_rank
    FROM ranked r LEFT JOIN webhook_inflight wi USING (webhook_id)
    WHERE r.webhook_rank + coalesce(wi.n, 0) <= %(per_webhook)s
), chosen AS (
    SELECT u.id FROM under_webhook_cap u LEFT JOIN tenant_inflight ti USING (tenant_id)
    WHERE u.tenant_rank + coalesce(ti.n, 0) <= %(per_tenant)s
    ORDER BY u.webhook_load, u.next_attempt_at, u.id
    LIMIT %(limit)s
)
UPDATE deliveries d SET
    lease_token = %(token)s,
    lease_expires_at = now() + make_interval(secs => w.retry_timeout_ms / 1000.0 + %(margin)s),
    next_attempt_at = now() + make_interval(secs => w.retry_timeout_ms / 1000.0 + %(margin)s),
    updated_at = now()
FROM chosen, webhooks w, events e
WHERE d.id = ANY(ARRAY(SELECT id FROM chosen)) AND d.id = chosen.id AND w.id = d.webhook_id AND e.id = d.event_id
RETURNING d.id, d.attempts + 1, d.tenant_id, d.app_id, d.event_id, e.event_type, e.body, d.webhook_id,
    w.url, w.headers, w.signature_scheme, w.retry_max_attempts, w.retry_backoff, w.retry_timeout_ms,
    w.vault_path, w.secret_fingerprint
"""
STATEMENTS = {
    "main": (MAIN_LOCK, MAIN_CLAIM),
    "new": (deliveries._QUEUE_AND_LOCK, deliveries._CLAIM),
}


def once(connection: psycopg.Connection[Any], lock: str, claim: str, values: dict[str, Any]) -> tuple[float, int]:
    """Seconds the lock and the claim took (one round trip, as the store sends them), and rows claimed."""
    started = time.perf_counter()
    with connection.pipeline():
        connection.execute("BEGIN")
        connection.execute(lock)
        cursor = connection.execute(claim, values)
    rows = len(cursor.fetchall())
    elapsed = time.perf_counter() - started
    connection.execute("ROLLBACK")
    return elapsed, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", action="append", required=True, help="name=statement@database-url")
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--limit", type=int, default=32)
    args = parser.parse_args()
    values = {
        "token": "bench",
        "fresh_webhooks": [],
        "limit": args.limit,
        "scan": args.limit * 4,
        "per_webhook": 4,
        "per_tenant": args.limit,
        "margin": deliveries.LEASE_MARGIN.total_seconds(),
        "horizon": 1.0,
    }
    cases = []
    for spec in args.case:
        name, _, rest = spec.partition("=")
        statement, _, url = rest.partition("@")
        cases.append((name, *STATEMENTS[statement], psycopg.connect(url, autocommit=True)))
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    claimed: dict[str, int] = {}
    order = random.Random(15)
    for rep in range(args.warmup + args.reps):
        for name, lock, claim, connection in order.sample(cases, len(cases)):
            elapsed, rows = once(connection, lock, claim, values)
            claimed[name] = rows
            if rep >= args.warmup:
                times[name].append(elapsed * 1000)
    for *_, connection in cases:
        connection.close()
    first = times[cases[0][0]]
    result = {}
    for name, measured in times.items():
        quartiles = statistics.quantiles(measured, n=4)
        result[name] = {"median": statistics.median(measured), "q1": quartiles[0], "q3": quartiles[2]}
        ratios = [mine / theirs for mine, theirs in zip(measured, first, strict=True)]
        result[name]["paired_ratio"] = statistics.median(ratios)
        result[name]["claimed"] = claimed[name]
    emit(result)


if __name__ == "__main__":
    main()
