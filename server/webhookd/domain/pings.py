"""How often SendTestEvent may POST to one webhook: the limit, and what a caller past it is told.

Each test is a real request to the customer's endpoint, sent by the server at once, outside the
queue: a script or a stuck button calling in a loop would flood our server and the customer's
endpoint alike. So every webhook has a token bucket of tests, shared by every process (a row in
PostgreSQL, store/ping_buckets.py): bursts of PING_BURST, refilled at PINGS_PER_MINUTE. As a send
takes at most 30 s (the longest timeout_ms), no more than PING_BURST + 5 are ever in flight for one
webhook.
"""

from __future__ import annotations

import math

from webhookd.domain.errors import ResourceExhausted

PING_BURST = 5
PINGS_PER_MINUTE = 10
PINGS_PER_SECOND = PINGS_PER_MINUTE / 60
TOO_MANY_PINGS = "TEST_EVENT_RATE_EXCEEDED"


def too_many_pings(retry_after_seconds: float) -> ResourceExhausted:
    """The refusal of a test past the webhook's limit, saying which limit and when to come back."""
    wait = max(1, math.ceil(retry_after_seconds))
    return ResourceExhausted(
        f"too many test events for this webhook: at most {PING_BURST} in a row and {PINGS_PER_MINUTE} a minute; "
        f"try again in {wait} s",
        retry_after_seconds=wait,
        reason=TOO_MANY_PINGS,
    )
