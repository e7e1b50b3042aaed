"""How much a worker process keeps claimed: its workers plus a queue that follows the pace of the last
window, between one and seven times the workers."""

from __future__ import annotations

from webhookd.delivery.claim_ahead import ClaimAhead

WORKERS = 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def after_a_window(claim_ahead: ClaimAhead, clock: FakeClock, attempts: int) -> int:
    """The capacity once `attempts` finished within one window (a quarter of a second)."""
    for _ in range(attempts):
        claim_ahead.finished()
    clock.now += 0.25
    return claim_ahead.capacity()


def paced(clock: FakeClock) -> ClaimAhead:
    return ClaimAhead(WORKERS, horizon_seconds=0.5, window_seconds=0.25, clock=clock)


def test_it_starts_with_a_queue_as_long_as_the_workers() -> None:
    assert ClaimAhead(WORKERS, clock=FakeClock()).capacity() == 64


def test_a_fast_pace_lengthens_the_queue_to_what_the_workers_finish_within_the_horizon() -> None:
    clock = FakeClock()

    assert after_a_window(paced(clock), clock, 100) == WORKERS + 200  # 400 a second, for half a second


def test_the_queue_is_at_most_seven_times_the_workers() -> None:
    clock = FakeClock()

    assert after_a_window(paced(clock), clock, 10_000) == WORKERS * 8


def test_slow_endpoints_keep_it_at_its_least() -> None:
    clock = FakeClock()
    claim_ahead = paced(clock)
    assert after_a_window(claim_ahead, clock, 10_000) == 256

    # 12 a second: a queue of 6 would do, the workers' own number stays.
    assert after_a_window(claim_ahead, clock, 3) == 64


def test_the_pace_is_measured_once_a_window_has_passed() -> None:
    clock = FakeClock()
    claim_ahead = paced(clock)
    for _ in range(10_000):
        claim_ahead.finished()
    clock.now += 0.1

    assert claim_ahead.capacity() == 64  # too soon: the window is not over
    clock.now += 0.15
    assert claim_ahead.capacity() == 256


def test_a_quiet_spell_brings_it_back_to_its_least() -> None:
    clock = FakeClock()
    claim_ahead = paced(clock)
    assert after_a_window(claim_ahead, clock, 10_000) == 256
    clock.now += 60  # nothing finished for a minute

    assert claim_ahead.capacity() == 64
