"""The claim: what the rate-limit and FIFO checks cost webhooks that use neither, and what they cost those
that do. Figures are the claim's round trip (lock and claim, pipelined, as the store sends them).

Run: `.venv/bin/python bench/claim.py`. Three databases, migrated to the head and filled alike in SQL: WEEKS
weeks of history in their weekly partitions (HISTORY deliveries, succeeded) and DUE deliveries due now,
spread over WEBHOOKS webhooks of TENANTS tenants. In `plain` no webhook limits its rate or orders its
deliveries; in `routed` a fifth of them do (a tenth rate-limited, a tenth FIFO); `busy` is `plain` with
one more delivery of each webhook leased to a worker (IN_FLIGHT), as under load. A load generator process
(bench/load/claim.py) times, in turns, each round rolled back so every turn claims from the same rows:

- main's claim (before issue 15), on plain: the baseline; and main's claim once more on a connection of
  its own, the noise floor: what a statement measures against itself;
- the claim as the store runs it now, on plain: the cost of the checks to webhooks that use neither
  (target: none measurable, <= 1.05);
- the claim as the store runs it, on routed, against the same on plain;
- the claim as the store runs it and main's, on busy: what the webhooks and tenants in flight cost.
"""

from __future__ import annotations

from typing import Any

import psycopg

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import Backends, backends
from harness.report import Row, main, ratio_row
from harness.run import Run
from webhookd.store import migrate
from webhookd.store.conninfo import conninfo

WEEKS = 4
HISTORY = 200_000
DUE = 1_000
IN_FLIGHT = 1_000  # in the busy database: one delivery leased to a worker per webhook, besides the due ones
TENANTS = 100
WEBHOOKS = 1_000
CLAIM_LIMIT = 32
REPS = 600
LIMIT = 600.0

# The 10 time characters of a ULID made at `ms` (as ids.time_floor writes them), so rows land in their week.
ULID_TIME = (
    "CREATE FUNCTION bench_ulid_time(ms bigint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT "
    + " || ".join(
        f"substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> {5 * (9 - i)}) & 31)::int + 1, 1)" for i in range(10)
    )
    + " $$"
)
WEBHOOK_ROWS = """
INSERT INTO webhooks (id, tenant_id, name, direction, url, event_types, signature_scheme, headers, enabled,
    retry_max_attempts, retry_backoff, retry_timeout_ms, connector_id, application_id, tags, source, source_type,
    vault_path, secret_fingerprint, created_at, updated_at, schema_version, version, consecutive_failures,
    rate_limit_per_second, ordering)
SELECT 'whk_bench_' || lpad(w::text, 5, '0'), 'tnt_bench_' || (w %% %(tenants)s), 'bench', 'outbound',
    'http://127.0.0.1:9/hook', ARRAY['*'], 'standard-webhooks', '{}'::jsonb, true, 8, 'exponential', 5000, '', '',
    ARRAY[]::text[], '', 'api', 'webhookd/bench', 'fp', now(), now(), 1, 1, 0,
    CASE WHEN %(routed)s AND w %% 10 = 1 THEN 50 ELSE 0 END,
    CASE WHEN %(routed)s AND w %% 10 = 2 THEN 'fifo' ELSE 'unordered' END
FROM generate_series(0, %(webhooks)s - 1) AS w
"""
# One event per delivery, made at evenly spread instants over the weeks; ids carry their instant.
EVENT_ROWS = """
INSERT INTO events (id, tenant_id, event_type, body, created_at)
SELECT 'evt_' || bench_ulid_time(ms) || lpad(n::text, 16, '0'), 'tnt_bench_' || (n %% %(tenants)s), 'bench.event',
    convert_to(repeat('x', 200), 'UTF8'), to_timestamp(ms / 1000.0)
FROM generate_series(0, %(count)s - 1) AS n,
    LATERAL (SELECT (extract(epoch FROM now() - %(weeks)s * interval '1 week') * 1000)::bigint
        + n * ((%(weeks)s::bigint * 7 * 86400000 - 600000) / %(count)s) AS ms) AS t
"""
DELIVERY_ROWS = """
INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, status, attempts, next_attempt_at, last_outcome,
    last_http_status, last_error, created_at, updated_at, completed_at, fifo_seq)
SELECT 'dlv_' || substr(e.id, 5), e.tenant_id, e.id,
    'whk_bench_' || lpad((n %% %(webhooks)s)::text, 5, '0'),
    CASE WHEN n >= %(count)s - %(due)s THEN 'pending' ELSE 'succeeded' END,
    CASE WHEN n >= %(count)s - %(due)s THEN 0 ELSE 1 END,
    CASE WHEN n >= %(count)s - %(due)s THEN now() - interval '1 minute' END,
    CASE WHEN n >= %(count)s - %(due)s THEN NULL ELSE 'succeeded' END, 200, '', e.created_at, e.created_at,
    CASE WHEN n >= %(count)s - %(due)s THEN NULL ELSE e.created_at END,
    CASE WHEN %(routed)s AND n %% %(webhooks)s %% 10 = 2 THEN n END
FROM events e, LATERAL (SELECT substr(e.id, 15)::bigint AS n) AS number
"""
# One pending delivery of each webhook leased, as the workers hold them under load.
LEASE_ONE_PER_WEBHOOK = """
UPDATE deliveries SET lease_token = 'bench', lease_expires_at = now() + interval '1 hour',
    next_attempt_at = now() + interval '1 hour'
WHERE id IN (SELECT DISTINCT ON (webhook_id) id FROM deliveries WHERE status = 'pending' ORDER BY webhook_id, id)
"""


def fill(database: str, *, routed: bool, in_flight: bool) -> None:
    values: dict[str, Any] = {
        "tenants": TENANTS,
        "webhooks": WEBHOOKS,
        "routed": routed,
        "count": HISTORY,
        "due": DUE + (IN_FLIGHT if in_flight else 0),
        "weeks": WEEKS,
    }
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute(ULID_TIME)
        for statement in (WEBHOOK_ROWS, EVENT_ROWS, DELIVERY_ROWS):
            connection.execute(statement, values)
        if in_flight:
            connection.execute(LEASE_ONE_PER_WEBHOOK)
        connection.execute("DROP FUNCTION bench_ulid_time")
        connection.execute("VACUUM ANALYZE")


def database(run: Run, servers: Backends, label: str, *, routed: bool, in_flight: bool = False) -> str:
    url = servers.new_database(label)
    run.defer(f"drop database of {label}", servers.drop_database, url)
    migrate.upgrade_sync(url)
    fill(conninfo(url), routed=routed, in_flight=in_flight)
    return conninfo(url)


def measure(run: Run) -> list[Row]:
    servers = backends(run)
    plain = database(run, servers, "claim_plain", routed=False)
    routed = database(run, servers, "claim_routed", routed=True)
    busy = database(run, servers, "claim_busy", routed=False, in_flight=True)
    run.progress(f"three databases of {HISTORY:,} deliveries over {WEEKS} weeks, {DUE:,} due, ready")
    cases = [f"main=main@{plain}", f"new=new@{plain}", f"again=main@{plain}", f"routed=new@{routed}"]
    cases += [f"busy_main=main@{busy}", f"busy_new=new@{busy}"]
    args = [arg for case in cases for arg in ("--case", case)]
    result = run.load("claims", "load.claim", [*args, "--reps", str(REPS), "--limit", str(CLAIM_LIMIT)], timeout=LIMIT)
    ms = {name: float(figures["median"]) for name, figures in result.items()}
    paired = {name: float(figures["paired_ratio"]) for name, figures in result.items()}
    spread = {name: f"{figures['q1']:.2f}-{figures['q3']:.2f} ms" for name, figures in result.items()}
    claimed = {name: int(figures["claimed"]) for name, figures in result.items()}
    common = f"{CLAIM_LIMIT} of {DUE:,} due deliveries, medians of {REPS} turns"
    return [
        ratio_row(
            "claim, webhooks without rate limit or order",
            ms["new"],
            ms["main"],
            "ms",
            at_most=1.05,
            notes=[
                f"the claim as the store runs it now vs main's, {common}; quartiles {spread['new']}"
                f" vs {spread['main']}; median of the rounds' own ratios {paired['new']:.3f};"
                f" claimed {claimed['new']} and {claimed['main']}"
            ],
        ),
        ratio_row(
            "  noise floor: main's claim against itself",
            ms["again"],
            ms["main"],
            "ms",
            notes=[
                f"main's claim on a second connection, in the same rounds; quartiles {spread['again']};"
                f" median of the rounds' own ratios {paired['again']:.3f}"
            ],
        ),
        ratio_row(
            "claim, a fifth of the webhooks rate-limited or FIFO",
            ms["routed"],
            ms["new"],
            "ms",
            notes=[
                f"against the same claim with no such webhook; quartiles {spread['routed']};"
                f" rounds' own ratio {paired['routed'] / paired['new']:.3f};"
                f" claimed {claimed['routed']} (FIFO webhooks one at a time)"
            ],
        ),
        ratio_row(
            f"claim with {IN_FLIGHT:,} webhooks in flight, vs main's",
            ms["busy_new"],
            ms["busy_main"],
            "ms",
            notes=[
                f"each of the {WEBHOOKS:,} webhooks has one delivery leased besides the due ones: main's claim"
                f" joined each candidate to every webhook in flight; quartiles {spread['busy_new']} vs"
                f" {spread['busy_main']}; claimed {claimed['busy_new']} and {claimed['busy_main']}"
            ],
        ),
    ]


if __name__ == "__main__":
    main("claim", measure)
