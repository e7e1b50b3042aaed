"""When to try a failed delivery again.

Exponential backoff: the n-th retry (after attempt n) waits `5s * 8**(n-1)`, capped at 10 hours, then
multiplied by a uniform jitter in [0.8, 1.2] so deliveries that failed together do not retry together.
Before jitter the default policy's 8 attempts (7 retries) wait

    5s, 40s, 5m20s, 42m40s, 5h41m20s, 10h, 10h        (total 26h30m05s)

which follows the Standard Webhooks / Svix schedule (5s, 5m, 30m, 2h, 5h, 10h, 10h): quick first retries
for blips, then spread over about a day for outages. Every later retry (max_attempts up to 20) stays at the
10h cap, so with jitter a single wait is never longer than 12h.

Fixed backoff: every retry waits 60s * [0.9, 1.1].

A receiver's `Retry-After` (delta-seconds or HTTP-date) is parsed by `parse_retry_after`, bounded by
`clamp_retry_after`; the delivery code takes the later of it and `next_delay`.
"""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from webhookd.domain.webhooks import Backoff, RetryPolicy

FIRST_DELAY_SECONDS = 5.0
GROWTH_FACTOR = 8.0
MAX_DELAY_SECONDS = 10 * 3600.0
EXPONENTIAL_JITTER = 0.2
FIXED_DELAY_SECONDS = 60.0
FIXED_JITTER = 0.1
RETRY_AFTER_MIN_SECONDS = 1.0
RETRY_AFTER_MAX_SECONDS = 3600.0

# 5 * 8**5 already exceeds the cap; stop growing there so huge attempt numbers stay cheap.
_MAX_EXPONENT = 16
_DELTA_SECONDS = re.compile(r"[0-9]+")


def base_delay(policy: RetryPolicy, attempt: int) -> float | None:
    """The un-jittered wait after `attempt` attempts (1-based), or None when none remain."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    if attempt >= policy.max_attempts:
        return None
    if policy.backoff is Backoff.FIXED:
        return FIXED_DELAY_SECONDS
    exponent = min(attempt - 1, _MAX_EXPONENT)
    return min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * GROWTH_FACTOR**exponent)


def next_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float | None:
    """Seconds to wait before the next attempt, after `attempt` attempts were made (1-based).

    None when the policy's attempts are exhausted (`attempt >= max_attempts`). Pass a seeded `rng` for
    reproducible jitter; the default uses the module's shared generator.
    """
    base = base_delay(policy, attempt)
    if base is None:
        return None
    spread = FIXED_JITTER if policy.backoff is Backoff.FIXED else EXPONENTIAL_JITTER
    source = rng if rng is not None else random
    return base * source.uniform(1.0 - spread, 1.0 + spread)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks us to wait, or None when absent or unparseable.

    Accepts delta-seconds (`120`) and an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, also the obsolete
    RFC 850 and asctime forms); a date in the past gives 0. A naive `now` is taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def clamp_retry_after(
    seconds: float, minimum: float = RETRY_AFTER_MIN_SECONDS, maximum: float = RETRY_AFTER_MAX_SECONDS
) -> float:
    """Bound a receiver-chosen wait, so a hostile or broken header can neither hammer nor stall us."""
    if math.isnan(seconds):
        return minimum
    return max(minimum, min(maximum, seconds))
