"""How much a worker process keeps claimed: its workers plus a queue that follows the pace of the last
window, between one and seven times the workers."""

from __future__ import annotations

from webhookd.delivery.claim_ahead import ClaimAhead


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finish(claim_ahead: ClaimAhead, count: int) -> None:
    for _ in range(count):
        claim_ahead.finished()


def test_it_starts_with_a_queue_as_long_as_the_workers() -> None:
    assert ClaimAhead(32, clock=FakeClock()).capacity == 64


def test_a_fast_pace_lengthens_the_queue_to_what_the_workers_finish_within_the_horizon() -> None:
    clock = FakeClock()
    claim_ahead = ClaimAhead(32, horizon_seconds=0.5, window_seconds=0.25, clock=clock)
    finish(claim_ahead, 100)  # 400 a second
    clock.now += 0.25

    assert claim_ahead.capacity == 32 + 200


def test_the_queue_is_at_most_seven_times_the_workers() -> None:
    clock = FakeClock()
    claim_ahead = ClaimAhead(32, horizon_seconds=0.5, window_seconds=0.25, clock=clock)
    finish(claim_ahead, 10_000)
    clock.now += 0.25

    assert claim_ahead.capacity == 32 * 8


def test_slow_endpoints_keep_it_at_its_least() -> None:
    clock = FakeClock()
    claim_ahead = ClaimAhead(32, horizon_seconds=0.5, window_seconds=0.25, clock=clock)
    finish(claim_ahead, 10_000)
    clock.now += 0.25
    assert claim_ahead.capacity == 256
    finish(claim_ahead, 3)  # 12 a second: a queue of 6 would do, the workers' own number stays
    clock.now += 0.25

    assert claim_ahead.capacity == 64


def test_the_pace_is_measured_once_a_window_has_passed() -> None:
    clock = FakeClock()
    claim_ahead = ClaimAhead(32, horizon_seconds=0.5, window_seconds=0.25, clock=clock)
    finish(claim_ahead, 10_000)
    clock.now += 0.1

    assert claim_ahead.capacity == 64  # too soon: the window is not over
    clock.now += 0.15
    assert claim_ahead.capacity == 256


def test_a_quiet_spell_brings_it_back_to_its_least() -> None:
    clock = FakeClock()
    claim_ahead = ClaimAhead(32, horizon_seconds=0.5, window_seconds=0.25, clock=clock)
    finish(claim_ahead, 10_000)
    clock.now += 0.25
    assert claim_ahead.capacity == 256
    clock.now += 60  # nothing finished for a minute

    assert claim_ahead.capacity == 64
