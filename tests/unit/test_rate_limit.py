from __future__ import annotations

import pytest

from webhookd.domain.rate_limit import RateLimiter


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(rate: float = 2.0, burst: int = 4, **kwargs: int) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(rate, burst, clock=clock, **kwargs), clock


def test_a_full_burst_is_allowed_at_once_then_the_next_waits_one_token() -> None:
    limit, _ = limiter(rate=2.0, burst=4)

    assert [limit.acquire("whk_a") for _ in range(4)] == [None] * 4
    assert limit.acquire("whk_a") == pytest.approx(0.5)


def test_tokens_come_back_at_the_rate() -> None:
    limit, clock = limiter(rate=2.0, burst=4)
    for _ in range(4):
        limit.acquire("whk_a")

    clock.advance(0.25)
    assert limit.acquire("whk_a") == pytest.approx(0.25)  # half a token back: half the wait left
    clock.advance(0.25)
    assert limit.acquire("whk_a") is None
    assert limit.acquire("whk_a") == pytest.approx(0.5)


def test_refused_requests_do_not_push_the_wait_further_out() -> None:
    limit, clock = limiter(rate=2.0, burst=1)
    limit.acquire("whk_a")

    waits = [limit.acquire("whk_a") for _ in range(5)]

    assert waits == [pytest.approx(0.5)] * 5
    clock.advance(0.5)
    assert limit.acquire("whk_a") is None


def test_an_idle_key_saves_up_no_more_than_the_burst() -> None:
    limit, clock = limiter(rate=2.0, burst=4)
    limit.acquire("whk_a")

    clock.advance(3600)

    assert [limit.acquire("whk_a") for _ in range(4)] == [None] * 4
    assert limit.acquire("whk_a") is not None


def test_each_key_has_its_own_bucket() -> None:
    limit, _ = limiter(rate=2.0, burst=2)
    for _ in range(2):
        limit.acquire("whk_a")

    assert limit.acquire("whk_a") is not None
    assert limit.acquire("whk_b") is None


def test_the_least_recently_used_key_is_forgotten_first() -> None:
    limit, _ = limiter(rate=2.0, burst=1, max_keys=2)
    limit.acquire("whk_a")
    limit.acquire("whk_b")
    assert limit.acquire("whk_a") is not None  # used again: now the most recent

    limit.acquire("whk_c")  # a third key: whk_b, the least recent, is dropped

    assert limit.acquire("whk_a") is not None  # remembered, still empty
    assert limit.acquire("whk_b") is None  # forgotten: starts again with a full burst


def test_a_slow_rate_gives_a_long_wait() -> None:
    limit, _ = limiter(rate=0.1, burst=1)
    limit.acquire("whk_a")

    assert limit.acquire("whk_a") == pytest.approx(10.0)
