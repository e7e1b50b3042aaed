"""How long a dead child process waits before the supervisor starts it again.

A child that keeps dying (its port taken, a fault that a restart does not cure) was started again
every second for ever, each time with its log lines. As systemd's burst limits and Kubernetes'
CrashLoopBackOff do, each death in a row doubles the wait, up to a cap; a child that has stayed up
`healthy_after` seconds is well again, and its next death waits the first delay only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DELAY_SECONDS = 1.0
LONGEST_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0


@dataclass
class RestartBackoff:
    """The restart schedule of one child: told when the child is ready, asked for the delay when it
    has died. `clock` is monotonic seconds (a wall clock set back would make a crash loop look well)."""

    first_delay: float = FIRST_DELAY_SECONDS
    longest_delay: float = LONGEST_DELAY_SECONDS
    healthy_after: float = HEALTHY_AFTER_SECONDS
    clock: Callable[[], float] = time.monotonic
    crashes_in_a_row: int = 0
    # When the child last said it was ready; None once it has died, until it is ready again, so a
    # start-up that fails counts as one more crash in a row.
    _ready_at: float | None = None

    def ready(self) -> None:
        self._ready_at = self.clock()

    def delay_after_exit(self) -> float:
        """The seconds to wait before starting the child that has just died."""
        if self._ready_at is not None and self.clock() - self._ready_at >= self.healthy_after:
            self.crashes_in_a_row = 0
        self._ready_at = None
        # The exponent is bounded: a crash loop of days would otherwise overflow a float.
        delay = min(self.longest_delay, self.first_delay * 2.0 ** min(self.crashes_in_a_row, 64))
        self.crashes_in_a_row += 1
        return delay
