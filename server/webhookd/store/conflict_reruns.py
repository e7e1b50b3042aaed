"""Running a unit of work again when PostgreSQL rolled it back to settle a conflict (a deadlock's
victim, a serialization failure), as APIs of this kind do before they answer ABORTED.

The server settles the conflict by ending one of the transactions, and the other has usually gone
through by the time the victim learns it: the same work, run again after a short pause, mostly
succeeds. So a caller is told TransactionConflict only when conflicts keep coming, after ATTEMPTS
runs. The pause is jittered, so two victims of one conflict do not meet again in step.

Only work that a conflict rolls back entirely may run again: one transaction (or one statement) with
no effect outside it, its results built inside it and returned (store/database.py `run`).
"""

from __future__ import annotations

import asyncio
import logging
import random as randomness
from collections.abc import Awaitable, Callable
from typing import TypeVar

from webhookd.domain.errors import TransactionConflict
from webhookd.observability.log_throttle import ThrottledLog

T = TypeVar("T")
ATTEMPTS = 3
# The first pause is drawn from [FIRST_PAUSE_SECONDS / 2, FIRST_PAUSE_SECONDS), each later one from twice
# the last's range: a few tens of milliseconds in all, short beside the second PostgreSQL waits before it
# looks for a deadlock (deadlock_timeout).
FIRST_PAUSE_SECONDS = 0.02
# A settled conflict is no failure: a line an interval, at INFO, so a rate of them still shows.
_reruns = ThrottledLog(logging.getLogger("webhookd.database"))
_pause = asyncio.sleep


def pause_before(rerun: int, *, random: Callable[[], float] = randomness.random) -> float:
    """Seconds to wait before the `rerun`-th run again (1 for the second run)."""
    ceiling = FIRST_PAUSE_SECONDS * 2.0 ** (rerun - 1)
    return ceiling * (1 + random()) / 2


async def rerun_on_conflict(work: Callable[[], Awaitable[T]], *, attempts: int = ATTEMPTS) -> T:
    """`work()`'s result, run again while it ends in TransactionConflict, at most `attempts` runs in all;
    the last run's conflict is raised. Any other error ends it at once."""
    for rerun in range(1, attempts):
        try:
            return await work()
        except TransactionConflict as conflict:
            _reruns.info(
                ("database", "rerun"),
                "transaction rolled back to settle a conflict; running it again",
                {"reason": conflict.message, "attempt": rerun},
            )
        await _pause(pause_before(rerun))
    return await work()
