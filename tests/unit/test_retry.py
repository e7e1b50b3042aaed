from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from webhookd.domain.retry import base_delay, clamp_retry_after, next_delay, parse_retry_after
from webhookd.domain.webhooks import Backoff, RetryPolicy

EXPONENTIAL = RetryPolicy()  # 8 attempts, exponential
FIXED = RetryPolicy(max_attempts=8, backoff=Backoff.FIXED)
NOW = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC)


def test_default_policy_schedule_before_jitter() -> None:
    delays = [base_delay(EXPONENTIAL, attempt) for attempt in range(1, 8)]
    assert delays == [5.0, 40.0, 320.0, 2560.0, 20480.0, 36000.0, 36000.0]
    assert sum(d for d in delays if d is not None) == 26 * 3600 + 30 * 60 + 5  # about a day


def test_no_delay_once_attempts_are_exhausted() -> None:
    assert next_delay(EXPONENTIAL, 8) is None
    assert next_delay(EXPONENTIAL, 9) is None
    assert next_delay(RetryPolicy(max_attempts=1), 1) is None
    assert next_delay(EXPONENTIAL, 7) is not None


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        next_delay(EXPONENTIAL, 0)


def test_long_policies_stay_at_the_cap() -> None:
    policy = RetryPolicy(max_attempts=20)
    assert [base_delay(policy, n) for n in range(6, 20)] == [36000.0] * 14
    assert base_delay(RetryPolicy(max_attempts=10**9), 10**8) == 36000.0


@pytest.mark.parametrize("seed", range(200))
def test_exponential_jitter_stays_within_twenty_percent(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(1, 8):
        base = base_delay(EXPONENTIAL, attempt)
        delay = next_delay(EXPONENTIAL, attempt, rng)
        assert base is not None and delay is not None
        assert 0.8 * base <= delay <= 1.2 * base


def test_jitter_spreads_retries_that_failed_together() -> None:
    rng = random.Random(7)
    delays = [next_delay(EXPONENTIAL, 3, rng) for _ in range(100)]
    assert len(set(delays)) == 100
    values = [d for d in delays if d is not None]
    assert max(values) - min(values) > 0.3 * 320


def test_seeded_rng_makes_the_schedule_reproducible() -> None:
    first = [next_delay(EXPONENTIAL, n, random.Random(42)) for n in range(1, 8)]
    second = [next_delay(EXPONENTIAL, n, random.Random(42)) for n in range(1, 8)]
    assert first == second


@pytest.mark.parametrize("seed", range(50))
def test_fixed_backoff_is_a_minute_with_small_jitter(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(1, 8):
        assert base_delay(FIXED, attempt) == 60.0
        delay = next_delay(FIXED, attempt, rng)
        assert delay is not None and 54.0 <= delay <= 66.0
    assert next_delay(FIXED, 8, rng) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 28 * 60.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 28 * 60.0),  # RFC 850
        ("Wed Oct 21 07:28:00 2015", 28 * 60.0),  # asctime
        ("Wed, 21 Oct 2015 06:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("١٢", None),  # non-ASCII digits are not delta-seconds
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_parse_retry_after_with_other_or_naive_now() -> None:
    header = "Wed, 21 Oct 2015 07:28:00 GMT"
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    assert parse_retry_after(header, plus_two) == 28 * 60.0
    assert parse_retry_after(header, NOW.replace(tzinfo=None)) == 28 * 60.0


def test_huge_delta_seconds_parse_and_clamp_to_the_maximum() -> None:
    seconds = parse_retry_after("9" * 400, NOW)
    assert seconds is not None
    assert clamp_retry_after(seconds) == 3600.0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, 1.0), (0.2, 1.0), (30.0, 30.0), (3600.0, 3600.0), (86400.0, 3600.0), (math.nan, 1.0)],
)
def test_clamp_retry_after(seconds: float, expected: float) -> None:
    assert clamp_retry_after(seconds) == expected


def test_clamp_retry_after_with_custom_bounds() -> None:
    assert clamp_retry_after(5.0, minimum=10.0, maximum=20.0) == 10.0
    assert clamp_retry_after(50.0, minimum=10.0, maximum=20.0) == 20.0
