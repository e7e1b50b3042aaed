"""The delivery queue: claim due deliveries under a lease, record attempts, release on shutdown.

A claim moves `next_attempt_at` to the lease's end, so a worker that dies simply lets the delivery
come due again and another worker reclaims it. Each claim carries a fresh `lease_token`; a worker
whose lease was taken over can still log its attempt but no longer changes the delivery.

Both hot statements are one round trip each: the claim pipelines BEGIN, the advisory lock, the
claim and COMMIT; recording a batch of attempts pipelines BEGIN, the attempt rows with their
deliveries (one statement over the batch as JSON), the webhooks' statistics (one over arrays) and
COMMIT. Both run on generic plans, planned once per connection: planning them over every partition
costs more than running them.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
import psycopg
import sqlalchemy as sa

from webhookd.domain import ids
from webhookd.domain.deliveries import AttemptRecord, Backlog, ClaimedDelivery, RecordedBatch
from webhookd.domain.errors import Unavailable
from webhookd.domain.lifecycle import PAUSED_AFTER_FAILURES, PAUSED_GONE
from webhookd.domain.routing import FIFO_PARK_MAX, RATE_SLOT_HORIZON
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import DeliveryStatus, LogKind, Outcome
from webhookd.domain.webhooks import Backoff, Ordering, RetryPolicy, SignatureScheme
from webhookd.store.database import BEGIN, COMMIT, Connection, Database, rollback
from webhookd.store.lifecycle import LIFECYCLE_WRITES, lifecycle_filters
from webhookd.store.sql import array_literal, compiled, is_storable, param, scope_params, storable_text
from webhookd.store.tables import deliveries

log = logging.getLogger("webhookd.deliveries")

# One claimer at a time makes the per-webhook concurrency cap exact across processes; a claim is a
# single short statement, so serialising it costs little.
CLAIM_LOCK_ID = 7_202_611_27
# Claims of the whole queue first take turns on this lock among themselves, then take the claim lock:
# so at most one of them waits for the claim lock at a time, and an express claim (claim_named) or a
# hold-back waits for the claim running and no more, not behind every worker process's next claim.
QUEUE_CLAIM_LOCK_ID = 7_202_611_28
# Attempts of unanswered batches remembered for their next write; more are ones given up on long ago.
UNANSWERED_ATTEMPTS_MAX = 100_000
# Beyond the HTTP timeout, how long a claimed delivery may take to be recorded before reclaim.
LEASE_MARGIN = timedelta(seconds=30)
# How stale a healthy webhook's last_delivery_at may get before a success writes it again.
STATS_RESOLUTION = timedelta(seconds=1)
# A claim of the queue looks at this many times the deliveries asked for among the oldest due, and as
# many among the newest. Twice, not four times: ranking the candidates is most of a claim's work, and
# the claim lock is held meanwhile. In 8 alternating pairs of bench/delivery.py, e2e throughput was
# higher in all 8 with twice (medians 0.287 against 0.269 with 1 worker process, 0.288 against 0.273
# with 2); the fairness tests (test_delivery_fairness.py, the noisy-tenant fault test) pass with it.
SCAN_FACTOR = 2
_PENDING = DeliveryStatus.PENDING.value
_SUCCEEDED = Outcome.SUCCEEDED.value
_FIFO = Ordering.FIFO.value
# When a delivery that is not leased would be due but for the claimer holding it back: now, or its
# retry's time when that is later (greatest() skips a NULL retry_at: one never retried, or queued again).
_OWN_TIME = "greatest(now(), d.retry_at)"

# With the lock, nested loops for the claim's joins. deliveries is partitioned: the planner prices a
# join into it as a probe of every partition (it narrows the probe to one partition only at run time),
# so up to a few hundred thousand rows it would rather hash a scan of all of them. The claim joins a
# few dozen rows at each step, for which nested loops are right at any size of the table. And one
# generic plan, kept by the connection's prepared statement: planning this statement over every
# partition costs more than running it (2-3 ms against 1-2), and its best plan does not depend on
# the parameters. The plan is made again whenever a table it reads is analyzed (store/statistics.py).
# And index scans wherever there is an index: with weekly partitions of a few hundred rows each, the
# generic plan reached the claimed rows by a sequential scan of every partition, once per row claimed
# (a claim of 32 took 124 ms on 8,000 deliveries over 21 weeks, 4.2 ms with this; bench/partitions.py).
#
# And a claim commits without waiting for its WAL to reach the disk. Its lock is held until the commit
# ends, so every claim, express ones included, queued behind the one before's fsync (1 ms at p50, 4 ms
# at p90 on the benchmark machine). Leases are safe to lose: a crash that loses a claim only leaves
# its deliveries due again, to be sent again (at least once), and any later durable commit (a
# publish, a recorded result) writes the claim's WAL out before its own.
_SETTINGS = (
    "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),"
    " set_config('enable_seqscan', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),"
    " set_config('synchronous_commit', 'off', true)"
)
_LOCK = f"SELECT pg_advisory_xact_lock({CLAIM_LOCK_ID}), {_SETTINGS}"
# A select list is evaluated in order: the queue's turn first, then the claim lock.
_QUEUE_AND_LOCK = (
    f"SELECT pg_advisory_xact_lock({QUEUE_CLAIM_LOCK_ID}), pg_advisory_xact_lock({CLAIM_LOCK_ID}), {_SETTINGS}"
)
# Recording a batch: a generic plan (see Database.fetch_all) that reaches the batch's deliveries by
# index. Left to choose, the plan for small partitions hashed a sequential scan of every one of them:
# a batch of 32 took 10.6 ms on 8,000 deliveries over 21 weeks against 5.8 ms on 2,000,000
# (bench/partitions.py).
_RECORD_SETTINGS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)"
)
# The same lock alone, for the few writes that must not interleave with a claim (a FIFO head's end).
_LOCK_ONLY = f"SELECT pg_advisory_xact_lock({CLAIM_LOCK_ID})"
# Runs after the lock in the same transaction, so its snapshot sees every claim committed before.
#
# Fair by webhook and capped by webhook and by tenant, exactly across processes (one claimer at a
# time). Candidates are the oldest and the newest due deliveries of active webhooks (`scan` each):
# the oldest so nothing waits forever, the newest so a delivery just published to a quiet webhook
# does not wait behind another webhook's backlog (whose webhook is at its cap anyway); and the
# oldest due one of each webhook a publish just named (`fresh_webhooks`), which a busy publisher's
# stream of newer deliveries would otherwise push out of the newest. They are
# ranked within their webhook, and chosen by their webhook's load first (that rank plus what the
# webhook has in flight), then by age: the least busy webhooks first, so a quiet webhook's new
# delivery goes before the next one of a webhook already busy. A delivery goes only while its
# webhook stays under `per_webhook` in flight and its tenant under `per_tenant`, so one tenant's
# hanging endpoints cannot take every worker.
#
# Two webhook settings refine this, each behind a test a webhook without it stops at:
# - ordering 'fifo': a delivery goes only if it is its webhook's head (no delivery published before
#   it is still pending: webhookd_fifo_head, migration 0010) and none of the webhook's is in flight
#   (its cap is 1). So one goes at a time, in publish order, and a head waiting for its retry holds
#   back the ones behind it.
# - rate_limit_per_second: each delivery claimed gets a send slot, 1/limit apart, from the webhook's
#   next free slot on (webhookd_next_slot: 1/limit after the last slot given, which each claimed
#   delivery keeps in send_slot_at; migration 0011), while the slot is within RATE_SLOT_HORIZON; the
#   worker sends at its slot (domain/routing.py). Slots are on the database's clock, read after the
#   lock (statement_timestamp()).
# What these hold back stays due; _HOLD_BACK moves it out of the scan's way when the claimer finds
# due deliveries it cannot take.
#
# What each webhook and tenant has in flight is looked up in two jsonb maps built once (in_flight):
# with hash joins off, joining the candidates to the in-flight rows was a nested loop over both (34
# of 45 ms of a claim of 100 with 1,000 webhooks in flight). Each map is read by an uncorrelated
# subquery, an InitPlan that PostgreSQL runs at its first use, so the maps are built only when there
# are candidates, and a candidate's lookup is an expression, not a subquery scan of its own (those
# cost ~0.2 ms of a claim's 2.2; bench/claim.py: 1.035-1.060 of the claim before routing, now 1.01-1.02).
_CLAIM = compiled(
    sa.text(
        f"""
WITH inflight AS (
    SELECT webhook_id, tenant_id, count(*) AS n FROM deliveries
    WHERE status = '{_PENDING}' AND lease_token IS NOT NULL AND lease_expires_at > now()
    GROUP BY webhook_id, tenant_id
), in_flight AS (
    SELECT
        coalesce((SELECT jsonb_object_agg(webhook_id, n) FROM
            (SELECT webhook_id, sum(n) AS n FROM inflight GROUP BY webhook_id) AS by_webhook), '{{}}') AS by_webhook,
        coalesce((SELECT jsonb_object_agg(tenant_id, n) FROM
            (SELECT tenant_id, sum(n) AS n FROM inflight GROUP BY tenant_id) AS by_tenant), '{{}}') AS by_tenant
), candidates AS (
    (SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at,
        w.rate_limit_per_second AS rate, w.ordering = '{_FIFO}' AS fifo
     FROM deliveries d
     JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = '{_PENDING}' AND d.next_attempt_at <= now()
       AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
     ORDER BY d.next_attempt_at LIMIT :scan)
    UNION
    (SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at,
        w.rate_limit_per_second AS rate, w.ordering = '{_FIFO}' AS fifo
     FROM deliveries d
     JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = '{_PENDING}' AND d.next_attempt_at <= now()
       AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
     ORDER BY d.next_attempt_at DESC LIMIT :scan)
    UNION
    (SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at,
        w.rate_limit_per_second AS rate, w.ordering = '{_FIFO}' AS fifo
     FROM unnest(CAST(:fresh_webhooks AS text[])) AS f(webhook_id)
     JOIN webhooks w ON w.id = f.webhook_id AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
     CROSS JOIN LATERAL (
         SELECT d.id, d.webhook_id, d.tenant_id, d.next_attempt_at FROM deliveries d
         WHERE d.webhook_id = f.webhook_id AND d.status = '{_PENDING}' AND d.next_attempt_at <= now()
         ORDER BY d.created_at LIMIT 1) d)
), ranked AS (
    SELECT c.*, row_number() OVER by_webhook AS webhook_rank,
        CASE WHEN c.rate > 0 THEN greatest(statement_timestamp(),
            webhookd_next_slot(c.webhook_id, c.rate))
            + make_interval(secs => (row_number() OVER by_webhook - 1) / c.rate::float8) END AS slot
    FROM candidates c
    WHERE NOT c.fifo OR webhookd_fifo_head(c.id)
    WINDOW by_webhook AS (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id)
), under_webhook_cap AS (
    SELECT r.*, wl.webhook_load,
        row_number() OVER (PARTITION BY r.tenant_id ORDER BY wl.webhook_load, r.next_attempt_at, r.id) AS tenant_rank
    FROM ranked r CROSS JOIN LATERAL (
        SELECT r.webhook_rank + coalesce(((SELECT by_webhook FROM in_flight) ->> r.webhook_id)::bigint, 0)
            AS webhook_load
    ) wl
    WHERE wl.webhook_load <= CASE WHEN r.fifo THEN 1 ELSE :per_webhook END
      AND (r.slot IS NULL OR r.slot < statement_timestamp() + make_interval(secs => :horizon))
), chosen AS MATERIALIZED (
    SELECT u.id, u.slot, u.fifo FROM under_webhook_cap u
    WHERE u.tenant_rank + coalesce(((SELECT by_tenant FROM in_flight) ->> u.tenant_id)::bigint, 0) <= :per_tenant
    ORDER BY u.webhook_load, u.next_attempt_at, u.id
    LIMIT :limit
)
UPDATE deliveries d SET
    lease_token = :token,
    lease_expires_at = coalesce(chosen.slot, now()) + make_interval(secs => w.retry_timeout_ms / 1000.0 + :margin),
    next_attempt_at = coalesce(chosen.slot, now()) + make_interval(secs => w.retry_timeout_ms / 1000.0 + :margin),
    send_slot_at = chosen.slot,
    updated_at = now()
FROM chosen, webhooks w, events e
-- The join alone: one key probe per claimed delivery, in the one partition its id falls in (pruned
-- at each probe). With the claimed ids also as = ANY(array), PostgreSQL 16 walked the array on every
-- probe: 2,080 probes for a claim of 64, 4% of the claim's CPU (6% for 100). `chosen` stays
-- MATERIALIZED (read twice, it was before): the choice runs once, whichever side of the join it is on.
WHERE d.id = chosen.id AND w.id = d.webhook_id AND e.id = d.event_id
RETURNING d.id, d.attempts + 1, d.tenant_id, d.app_id, d.event_id, e.event_type, e.body, d.webhook_id,
    w.url, w.headers::text, w.signature_scheme, w.retry_max_attempts, w.retry_backoff, w.retry_timeout_ms,
    w.vault_path, w.secret_fingerprint, chosen.fifo, extract(epoch FROM chosen.slot - statement_timestamp())::float8,
    w.credential_id, w.version
"""
    )
)
# Due deliveries the claim cannot take because of their webhook's settings, moved out of its scan (a
# backlog left due would fill the oldest-and-newest candidates and crowd out other webhooks'): behind
# a FIFO head until the head is due (its retry, or its lease's end; at most `park` seconds: recording
# the head's end makes the next one due at once), and a rate-limited one whose slot lies past the
# horizon until its slot would come. Under the claim's lock, so no claim runs in between. At most
# `limit` per webhook a round; the claimer runs it when it finds due deliveries it cannot take.
_HOLD_BACK = compiled(
    sa.text(
        f"""
WITH routed AS (
    SELECT w.id AS webhook_id, w.rate_limit_per_second AS rate, w.ordering = '{_FIFO}' AS fifo
    FROM webhooks w
    WHERE (w.rate_limit_per_second > 0 OR w.ordering = '{_FIFO}')
      AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
), behind_head AS (
    SELECT queued.id, least(statement_timestamp() + make_interval(secs => :park),
        greatest(statement_timestamp(), head.next_attempt_at)) AS until
    FROM routed r
    CROSS JOIN LATERAL (
        SELECT p.fifo_seq, p.next_attempt_at FROM deliveries p
        WHERE p.webhook_id = r.webhook_id AND p.status = '{_PENDING}' AND p.fifo_seq IS NOT NULL
        ORDER BY p.fifo_seq LIMIT 1
    ) head
    CROSS JOIN LATERAL (
        SELECT p.id FROM deliveries p
        WHERE p.webhook_id = r.webhook_id AND p.status = '{_PENDING}' AND p.fifo_seq > head.fifo_seq
          AND p.next_attempt_at <= now()
        ORDER BY p.fifo_seq LIMIT :limit
    ) queued
    WHERE r.fifo
), past_horizon AS (
    SELECT slotted.id, slotted.slot AS until
    FROM routed r
    CROSS JOIN LATERAL (
        SELECT due.id, greatest(statement_timestamp(),
                webhookd_next_slot(r.webhook_id, r.rate))
            + make_interval(secs => (row_number() OVER (ORDER BY due.next_attempt_at, due.id) - 1) / r.rate::float8)
            AS slot
        FROM (
            SELECT p.id, p.next_attempt_at FROM deliveries p
            WHERE p.webhook_id = r.webhook_id AND p.status = '{_PENDING}' AND p.next_attempt_at <= now()
            ORDER BY p.next_attempt_at, p.id LIMIT :limit
        ) due
    ) slotted
    WHERE r.rate > 0 AND NOT r.fifo AND slotted.slot >= statement_timestamp() + make_interval(secs => :horizon)
), held AS (
    SELECT id, until FROM behind_head UNION ALL SELECT id, until FROM past_horizon
)
UPDATE deliveries d SET next_attempt_at = held.until
FROM held
WHERE d.id = ANY(ARRAY(SELECT id FROM held)) AND d.id = held.id
RETURNING d.id
"""
    )
)
# A webhook's ordering or rate limit changed: what _HOLD_BACK moved out of the way under the old
# settings is due again, and the next claim holds back what the new ones still keep waiting. Retries
# too, but never before their own time (retry_at): one waiting for its retry is not held back.
_HELD_BACK_DUE = compiled(
    sa.text(
        f"""
UPDATE deliveries d SET next_attempt_at = {_OWN_TIME}
WHERE d.webhook_id = :webhook_id AND d.status = '{_PENDING}' AND d.lease_token IS NULL
  AND d.next_attempt_at > {_OWN_TIME}
  AND d.tenant_id = :tenant_id AND (CAST(:app_id AS text) IS NULL OR d.app_id = :app_id)
"""
    )
)
_BACKLOG = compiled(
    sa.text(
        f"""
SELECT
    (SELECT count(*) FROM deliveries WHERE status = '{_PENDING}'),
    (SELECT extract(epoch FROM now() - d.next_attempt_at)
       FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
      WHERE d.status = '{_PENDING}' AND d.next_attempt_at <= now()
        AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
      ORDER BY d.next_attempt_at
      LIMIT 1)
"""
    )
)
# On the database's clock, as the claim judges what is due: the process's may differ from it.
_NEXT_DUE_IN = compiled(
    sa.select(sa.func.min(deliveries.c.next_attempt_at) - sa.func.now()).where(deliveries.c.status == _PENDING)
)
# Due again after the given delay on the database's clock, for the same reason.
_RELEASED_DUE = sa.func.now() + param("after", sa.Interval)
_RELEASE = compiled(
    deliveries.update()
    .where(deliveries.c.id == param("id"), deliveries.c.lease_token == param("lease_token"))
    .values(next_attempt_at=_RELEASED_DUE, retry_at=_RELEASED_DUE, lease_token=None, lease_expires_at=None)
)
# Claims that got no answer (a frozen server): they may have committed all the same, leasing
# deliveries to no worker until the leases ran out (their timeout and 30 s). Given back by token.
_GIVE_BACK_UNANSWERED = compiled(
    sa.text(
        f"""
UPDATE deliveries SET lease_token = NULL, lease_expires_at = NULL, next_attempt_at = now()
WHERE status = '{_PENDING}' AND lease_token IS NOT NULL AND lease_token = ANY(CAST(:tokens AS text[]))
"""
    )
)
# A batch of attempts travels as one JSON array of objects (read by _RECORD_ATTEMPTS): psycopg
# dumps each element of an array parameter in Python, which cost about 100 µs per attempt over the
# 19 arrays this took before; writing the batch's JSON costs ~5 (attempt_batch_json).
_BATCH_COLUMNS = """
    id text, tenant_id text, app_id text, delivery_id text, lease_token text, event_id text, event_type text,
    webhook_id text, attempt integer, status text, outcome text, http_status integer, latency_ms integer,
    error text, response_excerpt text, next_attempt_at timestamptz, occurred_at timestamptz,
    completed_at timestamptz, request_headers jsonb, response_headers jsonb"""
# The batch's attempts logged and their deliveries moved on, in one statement that reads the batch's
# JSON once: json_to_recordset takes PostgreSQL ~16 µs an attempt to read all its columns (idle
# machine, batches of 64), and read by two statements (the update reading it twice) it took ~40 µs
# an attempt, about an eighth of PostgreSQL's CPU per delivery under the e2e load. Deliveries change
# only where the lease still holds; the ids that changed come back. An attempt already logged is not
# logged again: the recorder writes a batch again when the database did not answer in time, and the
# first write may have committed all the same (a frozen server carries it out when it resumes). A
# delivery's attempt number and time name one attempt (`attempt_logged`, pruned to its week). Only a
# batch written again (`again`) looks: the probe cost a first write, which cannot find one, about a
# twentieth of the e2e rate.
# A retry is due its backoff after the database's now (`due_at`), the clock the claim compares with:
# taken from the worker's clock, a worker behind the database's made a failing endpoint's retries due
# at once, and one ahead held them back by as long. The log shows that time too.


async def held_back_due(connection: Connection, scope: Scope, webhook_id: str) -> int:
    """Makes due again the webhook's deliveries held back under its old ordering or rate limit, in the
    transaction open on `connection` (the one changing them); how many."""
    result = await connection.execute(_HELD_BACK_DUE, scope_params(scope) | {"webhook_id": webhook_id})
    return result.rowcount


def _attempt_logged(delivery_id: str, attempt: str, occurred_at: str, *, before: bool = False) -> str:
    """SQL for the attempts row of that delivery's attempt, when it is logged (by an earlier transaction
    than this one, when `before`). OFFSET 0 keeps it a subplan run per row, one index probe of the
    attempt's week; pulled up into a join, it was planned as a hash of every partition's attempts."""
    earlier = " AND x.txid <> pg_current_xact_id()::text::bigint" if before else ""
    return (
        f"SELECT 1 FROM attempts x WHERE x.delivery_id = {delivery_id} AND x.attempt = {attempt}"
        f" AND x.occurred_at = {occurred_at}{earlier} OFFSET 0"
    )


_RECORD_ATTEMPTS = compiled(
    sa.text(
        f"""
WITH batch AS MATERIALIZED (
    SELECT a.*, now() + (a.next_attempt_at - a.occurred_at) AS due_at
    FROM json_to_recordset(CAST(:batch AS json)) AS a({_BATCH_COLUMNS})
), logged AS (
    INSERT INTO attempts (id, tenant_id, app_id, delivery_id, event_id, event_type, webhook_id, attempt, outcome,
        http_status, latency_ms, error, response_excerpt, next_attempt_at, occurred_at, request_headers,
        response_headers)
    SELECT a.id, a.tenant_id, a.app_id, a.delivery_id, a.event_id, a.event_type, a.webhook_id, a.attempt, a.outcome,
        a.http_status, a.latency_ms, a.error, a.response_excerpt, a.due_at, a.occurred_at,
        a.request_headers, a.response_headers
    FROM batch a
    WHERE NOT (CAST(:again AS boolean) AND EXISTS ({_attempt_logged("a.delivery_id", "a.attempt", "a.occurred_at")}))
)
UPDATE deliveries d SET
    status = u.status, attempts = u.attempt, next_attempt_at = u.due_at, retry_at = u.due_at,
    lease_token = NULL, lease_expires_at = NULL, last_outcome = u.outcome, last_http_status = u.http_status,
    last_error = u.error, updated_at = u.occurred_at, completed_at = u.completed_at
FROM batch u
-- = ANY on the key (an array computed once): a lookup per delivery in each partition, however stale
-- the planner's idea of the table's size; a join alone would be priced against every partition.
WHERE d.id = ANY(ARRAY(SELECT k.delivery_id FROM batch k))
  AND d.id = u.delivery_id AND d.lease_token = u.lease_token
RETURNING d.id
"""
    )
)
# Each webhook once per batch: `reset` when the batch holds a success (failures then counts those
# after the last one), `gone` when a receiver answered 410. A success on a healthy webhook skips the
# write while last_delivery_at is under STATS_RESOLUTION old, so writers do not queue on its row lock.
# A batch whose last attempt is older than the row's (another process recorded a later one first) is
# `behind`: the row keeps the later attempt's time and outcome, and the batch's attempts count towards
# the run of failures only when that later attempt failed too.
# A webhook paused here gets its `webhook.paused` log entry and operational event in this same
# statement (store/lifecycle.py), so no pause goes unrecorded; the ids those rows take are handed in,
# one pair per webhook of the batch, and used only by those paused. A batch written again after its
# answer was lost (_RECORD_ATTEMPTS) was counted when it committed: its webhooks are left as they are.
_UPDATE_WEBHOOKS = compiled(
    sa.text(
        f"""
WITH u AS (
    SELECT * FROM unnest(
        CAST(:webhook_ids AS text[]), CAST(:last_ats AS timestamptz[]), CAST(:last_statuses AS text[]),
        CAST(:resets AS boolean[]), CAST(:failures AS integer[]), CAST(:gones AS boolean[]),
        CAST(:last_delivery_ids AS text[]), CAST(:last_attempts AS integer[]))
        AS u(webhook_id, last_at, last_status, reset, failures, gone, last_delivery_id, last_attempt)
    WHERE NOT (CAST(:again AS boolean)
        AND EXISTS ({_attempt_logged("u.last_delivery_id", "u.last_attempt", "u.last_at", before=True)}))
), locked AS (
    SELECT w.id, w.paused_at, w.last_delivery_at, w.last_delivery_status, u.*,
        -- Another process recorded a later attempt first: the row keeps saying what that one did.
        u.last_at < w.last_delivery_at AS behind,
        CASE WHEN u.last_at < w.last_delivery_at THEN
                 -- Failures before a success already recorded are no run; a success before a failure ends none.
                 CASE WHEN w.last_delivery_status = '{_SUCCEEDED}' THEN w.consecutive_failures
                      ELSE w.consecutive_failures + u.failures END
             WHEN u.reset THEN u.failures
             ELSE w.consecutive_failures + u.failures END AS consecutive
    FROM webhooks w JOIN u ON w.id = u.webhook_id
    -- coalesce: a webhook never attempted has no last status, and NOT of NULL would skip its first write.
    WHERE NOT coalesce(u.last_status = '{_SUCCEEDED}' AND u.reset AND u.failures = 0 AND w.consecutive_failures = 0
               AND w.last_delivery_status = '{_SUCCEEDED}'
               AND w.last_delivery_at >= u.last_at - make_interval(secs => :resolution), false)
    ORDER BY w.id
    -- Read under the row lock, in id order: two batches for one webhook (two worker processes) must
    -- each add to the count the other wrote, and only one of them may pause it.
    FOR NO KEY UPDATE OF w
), changes AS (
    SELECT locked.*,
        CASE WHEN behind THEN locked.last_delivery_at ELSE locked.last_at END AS newest_at,
        CASE WHEN behind THEN locked.last_delivery_status ELSE locked.last_status END AS newest_status,
        locked.paused_at IS NULL AND (locked.gone OR (locked.failures > 0 AND locked.consecutive >= :pause_after))
            AS pause_now
    FROM locked
), updated AS (
    UPDATE webhooks w SET
        last_delivery_at = changes.newest_at,
        last_delivery_status = changes.newest_status,
        consecutive_failures = changes.consecutive,
        paused_at = CASE WHEN changes.pause_now THEN changes.newest_at ELSE w.paused_at END,
        -- Pausing changes is_active, a state callers see: it is a new version.
        version = CASE WHEN changes.pause_now THEN w.version + 1 ELSE w.version END
    FROM changes WHERE w.id = changes.id
    RETURNING w.id, changes.pause_now, changes.gone, changes.consecutive, changes.newest_at AS last_at
), lifecycle_changes AS (
    SELECT p.log_id, p.event_id, updated.id AS webhook_id, '{LogKind.PAUSED.value}' AS kind,
        CASE WHEN updated.gone THEN :gone_reason
             ELSE replace(:failures_reason, '{{n}}', updated.consecutive::text) END AS reason,
        0 AS delivery_count, updated.last_at AS at
    FROM updated
    JOIN unnest(CAST(:webhook_ids AS text[]), CAST(:pause_log_ids AS text[]), CAST(:pause_event_ids AS text[]))
        AS p(webhook_id, log_id, event_id) ON p.webhook_id = updated.id
    WHERE updated.pause_now
), {LIFECYCLE_WRITES}
SELECT id, pause_now, (SELECT count(*) FROM lifecycle_deliveries WHERE status = '{_PENDING}') FROM updated
"""
    )
)


# A FIFO webhook whose head has finished (succeeded, or out of attempts): its next delivery in publish
# order, held back behind the head by the claim (`waiting`), is due at once, or at its retry's time
# (`retry_at`) when that is later: the next one may be a head waiting for its retry, behind a delivery
# queued again that was published before it. Run under the claim's lock, after the head's row is
# written: a claim either saw the head finished, or held back the next one before this runs and sees
# it due afterwards; the next one can never be held back after this.
_NEXT_IN_ORDER_DUE = compiled(
    sa.text(
        f"""
UPDATE deliveries d SET next_attempt_at = {_OWN_TIME}
WHERE d.id = ANY(ARRAY(
    SELECT (SELECT p.id FROM deliveries p
            WHERE p.webhook_id = f.webhook_id AND p.status = '{_PENDING}' AND p.fifo_seq IS NOT NULL
            ORDER BY p.fifo_seq LIMIT 1)
    FROM unnest(CAST(:webhook_ids AS text[])) AS f(webhook_id)))
  AND d.next_attempt_at > {_OWN_TIME} AND d.lease_token IS NULL
RETURNING d.id
"""
    )
)


# A claim decodes every row: a dict lookup costs a fifth of the enum's own.
_SCHEMES: Final = {scheme.value: scheme for scheme in SignatureScheme}


@functools.lru_cache(maxsize=256)
def _retry_policy(max_attempts: int, backoff: str, timeout_ms: int) -> RetryPolicy:
    """One (immutable) policy per setting, not one per claimed row."""
    return RetryPolicy(max_attempts, Backoff(backoff), timeout_ms)


def _claimed(row: Sequence[Any], token: str) -> ClaimedDelivery:
    return ClaimedDelivery(
        delivery_id=row[0],
        lease_token=token,
        attempt=row[1],
        tenant_id=row[2],
        app_id=row[3],
        event_id=row[4],
        event_type=row[5],
        body=bytes(row[6]),
        webhook_id=row[7],
        url=row[8],
        # A JSON object of strings (validation.py), which orjson reads exactly in a tenth of json.loads's time.
        headers=orjson.loads(row[9]),
        signature_scheme=_SCHEMES.get(row[10]) or SignatureScheme(row[10]),
        retry_policy=_retry_policy(row[11], row[12], row[13]),
        vault_path=row[14],
        secret_fingerprint=row[15],
        fifo=row[16],
        # The slot comes as a delay from the database's clock, so skew between clocks does not move it.
        send_at=None if row[17] is None else datetime.now(UTC) + timedelta(seconds=max(0.0, float(row[17]))),
        credential_id=row[18],
        webhook_version=row[19],
    )


def attempt_batch_json(batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> str:
    """The batch as the JSON _RECORD_ATTEMPTS reads (_BATCH_COLUMNS). orjson writes it in a third of
    json.dumps's time (5 against 14 µs an attempt, batches of 64), times included. Text it will not
    write (a lone surrogate where storable_text does not look) goes through json.dumps instead, whose
    escape PostgreSQL refuses: the batch falls back to one attempt at a time, and only that one fails."""
    rows = [
        {
            "id": attempt_id,
            "tenant_id": claimed.tenant_id,
            "app_id": claimed.app_id,
            "delivery_id": claimed.delivery_id,
            "lease_token": claimed.lease_token,
            "event_id": claimed.event_id,
            "event_type": claimed.event_type,
            "webhook_id": claimed.webhook_id,
            "attempt": claimed.attempt,
            "status": record.delivery_status.value,
            "outcome": record.outcome.value,
            "http_status": record.http_status,
            "latency_ms": record.latency_ms,
            "error": storable_text(record.error),
            "response_excerpt": storable_text(record.response_excerpt),
            "next_attempt_at": record.next_attempt_at,
            "occurred_at": record.occurred_at,
            "completed_at": record.occurred_at if record.finished else None,
            "request_headers": storable_pairs(record.request_headers),
            "response_headers": storable_pairs(record.response_headers),
        }
        for attempt_id, (claimed, record) in zip(ids.new_ids(ids.ATTEMPT_PREFIX, len(batch)), batch, strict=True)
    ]
    try:
        return orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, separators=(",", ":"), default=datetime.isoformat)


def storable_pairs(headers: tuple[tuple[str, str], ...]) -> Sequence[tuple[str, str]]:
    """Headers as [name, value] pairs of storable text (store/sql.py storable_text): order and
    repeated names are kept. Nearly always they are plain ASCII already, which one look at them all
    tells (a third of the time of looking at each name and value on its own)."""
    if is_storable("".join(itertools.chain.from_iterable(headers))):
        return headers
    return [(storable_text(name), storable_text(value)) for name, value in headers]


def headers_json(headers: tuple[tuple[str, str], ...]) -> str:
    """Headers as a JSON array of [name, value] pairs (storable_pairs)."""
    return orjson.dumps(storable_pairs(headers)).decode()


def _webhook_arrays(batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> dict[str, str]:
    """One entry per webhook, in id order (the order rows are locked in), from its attempts in order;
    each array as a literal (store/sql.py array_literal)."""
    by_webhook: dict[str, list[tuple[ClaimedDelivery, AttemptRecord]]] = {}
    for claimed, record in batch:
        by_webhook.setdefault(claimed.webhook_id, []).append((claimed, record))
    arrays: dict[str, list[Any]] = {name: [] for name in ("webhook_ids", "last_ats", "last_statuses", "resets")}
    arrays |= {"failures": [], "gones": [], "last_delivery_ids": [], "last_attempts": []}
    for webhook_id in sorted(by_webhook):
        last_claimed, _ = by_webhook[webhook_id][-1]
        records = [record for _, record in by_webhook[webhook_id]]
        last_success = max((i for i, record in enumerate(records) if record.succeeded), default=None)
        tail = records if last_success is None else records[last_success + 1 :]
        arrays["webhook_ids"].append(webhook_id)
        arrays["last_ats"].append(records[-1].occurred_at)
        arrays["last_statuses"].append(records[-1].outcome.value)
        arrays["resets"].append(last_success is not None)
        arrays["failures"].append(len(tail))
        arrays["gones"].append(any(record.gone for record in records))
        arrays["last_delivery_ids"].append(last_claimed.delivery_id)
        arrays["last_attempts"].append(last_claimed.attempt)
    # Ids for the pause's log entry and operational event, should this batch pause the webhook.
    arrays["pause_log_ids"] = ids.new_ids(ids.ATTEMPT_PREFIX, len(arrays["webhook_ids"]))
    arrays["pause_event_ids"] = ids.new_ids(ids.EVENT_PREFIX, len(arrays["webhook_ids"]))
    return {name: array_literal(values) for name, values in arrays.items()}


class DeliveryStore:
    """The delivery queue (ports.DeliveryQueue) in PostgreSQL."""

    def __init__(self, database: Database, *, pause_after_failures: int) -> None:
        self._db = database
        self._pause_after_failures = pause_after_failures
        self._unanswered: set[str] = set()  # lease tokens of claims that got no answer
        self._unanswered_attempts: set[tuple[str, int]] = set()  # (delivery, attempt) of batches likewise

    async def claim(
        self, limit: int, *, per_webhook: int, per_tenant: int, fresh_webhooks: Sequence[str] = ()
    ) -> list[ClaimedDelivery]:
        return await self._claim(_QUEUE_AND_LOCK, limit, limit * SCAN_FACTOR, per_webhook, per_tenant, fresh_webhooks)

    async def claim_named(
        self, webhook_ids: Sequence[str], *, per_webhook: int, per_tenant: int
    ) -> list[ClaimedDelivery]:
        # The claim without its scans of the oldest and newest due: only the named webhooks' oldest.
        return await self._claim(_LOCK, len(webhook_ids), 0, per_webhook, per_tenant, webhook_ids)

    async def _claim(
        self, lock: str, limit: int, scan: int, per_webhook: int, per_tenant: int, fresh_webhooks: Sequence[str]
    ) -> list[ClaimedDelivery]:
        token = secrets.token_hex(12)
        values = {
            "fresh_webhooks": array_literal(fresh_webhooks),
            "token": token,
            "limit": limit,
            "scan": scan,
            "per_webhook": per_webhook,
            "per_tenant": per_tenant,
            "margin": LEASE_MARGIN.total_seconds(),
            "horizon": RATE_SLOT_HORIZON.total_seconds(),
        }

        if self._unanswered:
            tokens = sorted(self._unanswered)
            await self._db.execute(_GIVE_BACK_UNANSWERED, {"tokens": array_literal(tokens)})
            self._unanswered.difference_update(tokens)
        try:
            rows = await self._db.fetch_all_after(lock, _CLAIM, values)
        except Unavailable:
            # Sent whole (BEGIN to COMMIT), it may commit once a frozen server resumes: its leases
            # are given back before the next claim, not left to run out.
            self._unanswered.add(token)
            raise
        return [_claimed(row, token) for row in rows]

    async def hold_back(self, limit: int) -> int:
        """Moves due deliveries that their webhook's order or rate limit keep from being claimed out
        of the claim's way, at most `limit` per webhook; how many moved."""
        values = {
            "limit": limit,
            "horizon": RATE_SLOT_HORIZON.total_seconds(),
            "park": FIFO_PARK_MAX.total_seconds(),
        }

        return len(await self._db.fetch_all_after(_LOCK, _HOLD_BACK, values))

    async def next_due_in(self) -> timedelta | None:
        row = await self._db.fetch_one(_NEXT_DUE_IN)
        return None if row is None else row[0]

    async def record(self, batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]]) -> RecordedBatch:
        """Logs each attempt and moves its delivery and webhook on, in one transaction; for each,
        whether its lease still held. When the batch fails, each attempt is written on its own, so
        one bad row cannot fail the others (a row that still fails is left to its lease's expiry,
        which brings the delivery round again: at least once)."""
        attempts = {(claimed.delivery_id, claimed.attempt) for claimed, _ in batch}
        again = not self._unanswered_attempts.isdisjoint(attempts)
        try:
            recorded = await self._record(batch, again=again)
        except Unavailable:
            # The write may commit all the same: written again, it must skip what it logged.
            if len(self._unanswered_attempts) > UNANSWERED_ATTEMPTS_MAX:
                self._unanswered_attempts.clear()  # batches long given up on; their leases ran out
            self._unanswered_attempts |= attempts
            raise
        except psycopg.Error:
            if len(batch) == 1:
                raise
            log.warning("recording a batch of attempts failed; recording them one by one", exc_info=True)
        else:
            self._unanswered_attempts -= attempts
            return recorded
        kept: list[bool] = []
        changed: list[str] = []
        paused: list[str] = []
        queued = 0
        woken = 0
        for one in batch:
            try:
                recorded = await self._record([one], again=again)
            except psycopg.Error:
                log.exception("could not record an attempt", extra={"delivery_id": one[0].delivery_id})
                kept.append(False)
                continue
            kept.extend(recorded.kept)
            changed.extend(recorded.changed_webhooks)
            paused.extend(recorded.paused_webhooks)
            queued += recorded.operational_queued
            woken += recorded.fifo_next_due
        return RecordedBatch(kept, changed, paused, queued, woken)

    async def _record(self, batch: Sequence[tuple[ClaimedDelivery, AttemptRecord]], *, again: bool) -> RecordedBatch:
        attempt_values = {"batch": attempt_batch_json(batch), "again": again}
        webhook_values = _webhook_arrays(batch) | {
            "again": again,
            "pause_after": self._pause_after_failures,
            "resolution": STATS_RESOLUTION.total_seconds(),
            "gone_reason": PAUSED_GONE,
            "failures_reason": PAUSED_AFTER_FAILURES,
            "lifecycle_filters": lifecycle_filters(LogKind.PAUSED),
        }
        # Only batches that end a FIFO head take the claim's lock: others never wait on claims.
        heads_done = sorted({claimed.webhook_id for claimed, record in batch if claimed.fifo and record.finished})

        async def write(connection: Connection) -> tuple[set[str], list[Any], int]:
            try:
                async with connection.pipeline():
                    await connection.execute(BEGIN)
                    if heads_done:
                        await connection.execute(_LOCK_ONLY)
                    await connection.execute(_RECORD_SETTINGS)
                    updated = await connection.execute(_RECORD_ATTEMPTS, attempt_values)
                    stats = await connection.execute(_UPDATE_WEBHOOKS, webhook_values)
                    if heads_done:
                        next_due = await connection.execute(
                            _NEXT_IN_ORDER_DUE, {"webhook_ids": array_literal(heads_done)}
                        )
                    await connection.execute(COMMIT)
                kept = {row[0] for row in await updated.fetchall()}
                woken = len(await next_due.fetchall()) if heads_done else 0
                return kept, list(await stats.fetchall()), woken
            except BaseException:
                await rollback(connection)
                raise

        kept, changed, woken = await self._db.run(write)
        return RecordedBatch(
            [claimed.delivery_id in kept for claimed, _ in batch],
            [row[0] for row in changed],
            paused_webhooks=[row[0] for row in changed if row[1]],
            operational_queued=int(changed[0][2]) if changed else 0,
            fifo_next_due=woken,
        )

    async def backlog(self) -> Backlog:
        """Across all tenants: the operator's view of the queue, not a caller's."""
        row = await self._db.fetch_one(_BACKLOG)
        assert row is not None
        return Backlog(int(row[0]), max(0.0, float(row[1] or 0.0)))

    async def release(self, claimed: ClaimedDelivery, *, after: timedelta) -> None:
        """Gives a claimed delivery back without an attempt (shutdown, or no secret to sign with)."""
        values = {"id": claimed.delivery_id, "lease_token": claimed.lease_token, "after": after}
        await self._db.execute(_RELEASE, values)
