"""observability/log_throttle.py: a warning repeated on every call of an outage is logged once an
interval per kind, the next line counting those left out."""

from __future__ import annotations

import logging

import pytest

from webhookd.observability.log_throttle import ThrottledLog

log = logging.getLogger("webhookd.test_log_throttle")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[tuple[str, object, object]]:
    return [(r.getMessage(), getattr(r, "reason", None), getattr(r, "suppressed", None)) for r in caplog.records]


def test_the_first_of_a_kind_is_logged_at_once_then_one_line_an_interval_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    failures = ThrottledLog(log, interval_seconds=10.0, clock=clock)
    caplog.set_level(logging.WARNING, log.name)

    for n in range(1_000):
        failures.warning(("UNAVAILABLE", "database"), "rpc failed", {"reason": f"down {n}"})
    assert warnings_of(caplog) == [("rpc failed", "down 0", 0)]

    clock.now += 9.9
    failures.warning(("UNAVAILABLE", "database"), "rpc failed", {"reason": "still down"})
    clock.now += 0.1
    failures.warning(("UNAVAILABLE", "database"), "rpc failed", {"reason": "down again"})
    failures.warning(("UNAVAILABLE", "database"), "rpc failed", {"reason": "and again"})

    assert warnings_of(caplog) == [("rpc failed", "down 0", 0), ("rpc failed", "down again", 1_000)]


def test_each_kind_has_its_own_interval(caplog: pytest.LogCaptureFixture) -> None:
    failures = ThrottledLog(log, interval_seconds=10.0, clock=FakeClock())
    caplog.set_level(logging.WARNING, log.name)

    for _ in range(3):
        failures.warning(("UNAVAILABLE", "database"), "rpc failed", {"reason": "database down"})
        failures.warning(("UNAVAILABLE", "vault"), "rpc failed", {"reason": "vault down"})

    assert warnings_of(caplog) == [("rpc failed", "database down", 0), ("rpc failed", "vault down", 0)]
