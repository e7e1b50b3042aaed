"""Token buckets kept in PostgreSQL, one row per key, shared by every process: the inbound rate
limits (store/inbound.py: a webhook's, keyed by its id, and its refusals') and SendTestEvent's
(store/ping_buckets.py).

Taking a token is one upsert: the row's lock (ON CONFLICT DO UPDATE locks it, updated or not) orders
the calls of every process, so the limit holds for the fleet. Time is clock_timestamp(), read once
the lock is held: a call that waited for the lock must not count time backwards from a later
writer's update. A refused call writes nothing.

A key is a webhook's id, or its id, a colon and what the bucket counts (ids never hold a colon).
Nothing tells a missing row from a full one: `take` makes a missing row a full bucket less one token.
So a row refilled to its burst, or of a webhook that no longer exists, can go (store/retention.py),
and the tables hold only the buckets of webhooks used within a refill.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """A bucket table and the rate and burst every process takes from its buckets at."""

    table: str
    per_second: float
    burst: int


def refilled(rate: str) -> str:
    """SQL for the tokens bucket `b` gained since its last write, at the parameter `rate` per second."""
    return f"greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at)) * :{rate}"


def take(table: str, *, webhook_id: str, rate: str, source: str = "") -> str:
    """SQL that takes one token from `webhook_id`'s bucket in `table` (bursts of the parameter
    `burst`), writing its row only when it holds one; `source` is the FROM of the webhook id, if any."""
    return f"""
    INSERT INTO {table} AS b (webhook_id, tokens, updated_at)
    SELECT {webhook_id}, :burst - 1, clock_timestamp() {source}
    ON CONFLICT (webhook_id) DO UPDATE SET
        tokens = least(:burst, b.tokens + {refilled(rate)}) - 1,
        updated_at = clock_timestamp()
    WHERE least(:burst, b.tokens + {refilled(rate)}) >= 1"""


def held(table: str, *, webhook_id: str, rate: str) -> str:
    """SQL for the tokens `webhook_id`'s bucket in `table` holds now."""
    return f"SELECT least(:burst, b.tokens + {refilled(rate)}) FROM {table} b WHERE b.webhook_id = {webhook_id}"


def forgettable(*, rate: str) -> str:
    """SQL true of bucket `b` when its row is as good as absent: refilled to the parameter `burst`
    at `rate`, or its webhook gone."""
    return (
        f"(b.tokens + {refilled(rate)} >= :burst"
        " OR NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = split_part(b.webhook_id, ':', 1)))"
    )


def seconds_until_a_token(tokens: float, per_second: float) -> float:
    """How long a bucket holding `tokens` takes to hold one, at `per_second`."""
    return max(0.0, (1.0 - tokens) / per_second)
