"""How many deliveries a worker process keeps claimed: its busy workers plus a queue that follows the pace.

A claim is the costliest statement and runs one at a time, so while it runs the workers live on what
is queued. With a queue of one batch per worker, fast endpoints drain it before the next claim
returns and the workers wait on the claim, not on the endpoints (measured: a claim of 100 took
~45 ms under load while 32 workers finished 100 local POSTs in less). So the queue holds what the
workers finish in `horizon` seconds at the pace of the last window, between one and `most` times the
number of workers. Slow endpoints keep it at its least: a queued delivery's lease runs while it
waits, and waiting about `horizon` is far inside the lease's margin (store/deliveries.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

HORIZON_SECONDS = 0.5
MOST = 7  # the queue's longest, in workers: with the busy ones, eight times the workers claimed
WINDOW_SECONDS = 0.25  # how often the pace is measured


class ClaimAhead:
    def __init__(
        self,
        workers: int,
        *,
        horizon_seconds: float = HORIZON_SECONDS,
        most: int = MOST,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._horizon = horizon_seconds
        self._most = most
        self._window = window_seconds
        self._clock = clock
        self._window_started = clock()
        self._finished = 0
        self._queue = workers

    def finished(self) -> None:
        """A delivery was attempted: counts towards the pace."""
        self._finished += 1

    def capacity(self) -> int:
        """Deliveries to hold, queued or running: the workers and the queue the pace calls for (a
        window that has passed is closed here, so the pace is measured as it is asked for)."""
        now = self._clock()
        elapsed = now - self._window_started
        if elapsed >= self._window:
            pace = self._finished / elapsed
            self._queue = min(self._most * self._workers, max(self._workers, int(pace * self._horizon)))
            self._window_started, self._finished = now, 0
        return self._workers + self._queue
