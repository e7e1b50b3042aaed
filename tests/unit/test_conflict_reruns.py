"""A unit of work PostgreSQL rolled back to settle a conflict runs again, a bounded number of times,
after a short jittered pause (store/conflict_reruns.py); nothing else is run again."""

from __future__ import annotations

import logging

import pytest

from webhookd.domain.errors import TransactionConflict, Unavailable
from webhookd.store import conflict_reruns
from webhookd.store.conflict_reruns import ATTEMPTS, pause_before, rerun_on_conflict

DEADLOCK = "transaction rolled back to settle a conflict: deadlock (SQLSTATE 40P01, DeadlockDetected)"


class Work:
    """A unit of work that meets `conflicts` conflicts (or `error`) before it goes through."""

    def __init__(self, conflicts: int, error: Exception | None = None) -> None:
        self.conflicts = conflicts
        self.error = error
        self.runs = 0

    async def __call__(self) -> str:
        self.runs += 1
        if self.error is not None:
            raise self.error
        if self.runs <= self.conflicts:
            raise TransactionConflict(DEADLOCK)
        return f"done in run {self.runs}"


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses taken between runs, instead of waiting them out."""
    taken: list[float] = []

    async def pause(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(conflict_reruns, "_pause", pause)
    return taken


async def test_a_conflict_is_settled_by_running_the_work_again(pauses: list[float]) -> None:
    work = Work(conflicts=ATTEMPTS - 1)

    assert await rerun_on_conflict(work) == f"done in run {ATTEMPTS}"
    assert work.runs == ATTEMPTS
    assert len(pauses) == ATTEMPTS - 1


async def test_conflicts_that_keep_coming_end_in_the_conflict_after_the_last_attempt(pauses: list[float]) -> None:
    work = Work(conflicts=100)

    with pytest.raises(TransactionConflict):
        await rerun_on_conflict(work)

    assert work.runs == ATTEMPTS == 3
    assert len(pauses) == ATTEMPTS - 1  # none after the last


async def test_work_that_may_not_run_again_meets_its_conflict_once(pauses: list[float]) -> None:
    work = Work(conflicts=1)

    with pytest.raises(TransactionConflict):
        await rerun_on_conflict(work, attempts=1)

    assert work.runs == 1
    assert pauses == []


@pytest.mark.parametrize(
    "error", [Unavailable("database unavailable: no answer in time", dependency="database"), ValueError("a bug")]
)
async def test_other_failures_are_not_run_again(pauses: list[float], error: Exception) -> None:
    work = Work(conflicts=0, error=error)

    with pytest.raises(type(error)):
        await rerun_on_conflict(work)

    assert work.runs == 1
    assert pauses == []


async def test_a_settled_conflict_logs_no_failure(pauses: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="webhookd.database")

    await rerun_on_conflict(Work(conflicts=1))

    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_pauses_are_short_grow_and_are_jittered() -> None:
    for rerun in (1, 2):
        low, high = pause_before(rerun, random=lambda: 0.0), pause_before(rerun, random=lambda: 0.999)
        assert 0 < low < high <= 0.1
    assert pause_before(2, random=lambda: 0.0) > pause_before(1, random=lambda: 0.0)
