"""Lines every call of an outage (or every request of a hostile client) would repeat, logged at most
once an interval per kind.

When a dependency is down every call fails the same way: thousands of identical lines a second bury
everything else and cost the disk when it is needed most. The first failure of a kind (a status code
and the dependency) is logged at once, so an operator sees the outage start; later ones within the
interval are only counted, and the next line of that kind once it has passed carries how many were
left out (`suppressed`). A count still pending when the outage ends is not logged: the metrics count
every failed call. The same holds for clients the HTTP server refuses (http/request_bounds.py), logged
at INFO: a client sending thousands of broken requests costs a line an interval per kind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

INTERVAL_SECONDS = 10.0
# Kinds are few (a code and a dependency): the cap only keeps a kind made of free text from growing the map.
MAX_KINDS = 256


@dataclass
class _Kind:
    logged_at: float
    suppressed: int = 0


class ThrottledLog:
    """`logger.warning` (or `info`), at most once an interval per kind."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_seconds: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        self._kinds: dict[Hashable, _Kind] = {}
        self._lock = threading.Lock()  # the gateway and the server may log from threads too

    def warning(self, kind: Hashable, message: str, extra: Mapping[str, object]) -> None:
        """Log `message` with `extra` and `suppressed` (the lines of this kind left out since the last one),
        unless a line of this kind was logged less than the interval ago: then only count it."""
        self._log(logging.WARNING, kind, message, extra)

    def info(self, kind: Hashable, message: str, extra: Mapping[str, object]) -> None:
        """`warning`, at INFO."""
        self._log(logging.INFO, kind, message, extra)

    def _log(self, level: int, kind: Hashable, message: str, extra: Mapping[str, object]) -> None:
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen.logged_at < self._interval:
                seen.suppressed += 1
                return
            suppressed = 0 if seen is None else seen.suppressed
            if seen is None and len(self._kinds) >= MAX_KINDS:
                del self._kinds[next(iter(self._kinds))]
            self._kinds[kind] = _Kind(now)
        self._logger.log(level, message, extra={**extra, "suppressed": suppressed})
