"""restart_backoff.py: how long a dead child waits before it is started again."""

from __future__ import annotations

from webhookd.restart_backoff import RestartBackoff


class Seconds:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crash_after(backoff: RestartBackoff, clock: Seconds, uptime: float) -> float:
    """The child gets ready, runs `uptime` seconds and dies: the delay before it starts again."""
    backoff.ready()
    clock.now += uptime
    return backoff.delay_after_exit()


def test_a_single_crash_is_restarted_after_a_second() -> None:
    clock = Seconds()
    assert crash_after(RestartBackoff(clock=clock), clock, 3600) == 1.0


def test_crashes_in_a_row_double_the_delay_up_to_the_cap() -> None:
    clock = Seconds()
    backoff = RestartBackoff(clock=clock)

    delays = [crash_after(backoff, clock, 2) for _ in range(8)]

    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_crash_loop_of_days_stays_at_the_cap() -> None:
    clock = Seconds()
    backoff = RestartBackoff(clock=clock)

    delays = {crash_after(backoff, clock, 2) for _ in range(5000)}

    assert max(delays) == 30 and backoff.crashes_in_a_row == 5000


def test_restarts_that_never_get_ready_keep_backing_off() -> None:
    """A child that fails in its start-up (its port taken) never says ready: each failure is one more
    crash in a row, however long ago it last ran well."""
    clock = Seconds()
    backoff = RestartBackoff(clock=clock)
    crash_after(backoff, clock, 3600)
    delays = []
    for _ in range(4):
        clock.now += 120  # the time a start-up takes to fail does not count as running
        delays.append(backoff.delay_after_exit())

    assert delays == [2, 4, 8, 16]


def test_a_child_that_stays_up_long_enough_starts_the_schedule_again() -> None:
    clock = Seconds()
    backoff = RestartBackoff(clock=clock)
    for _ in range(6):
        crash_after(backoff, clock, 1)

    assert crash_after(backoff, clock, 60) == 1.0
    assert crash_after(backoff, clock, 59) == 2.0


def test_the_schedule_is_set_by_its_first_delay_cap_and_healthy_uptime() -> None:
    clock = Seconds()
    backoff = RestartBackoff(first_delay=0.5, longest_delay=3, healthy_after=10, clock=clock)

    delays = [crash_after(backoff, clock, 9) for _ in range(5)]

    assert delays == [0.5, 1, 2, 3, 3]
    assert crash_after(backoff, clock, 10) == 0.5
