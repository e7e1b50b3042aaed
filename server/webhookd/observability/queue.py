"""The delivery backlog as two gauges, read from PostgreSQL when /metrics is scraped.

    webhookd_delivery_queue_depth             pending deliveries: in flight, due, waiting to retry,
                                              or held by a paused or disabled webhook
    webhookd_delivery_oldest_due_age_seconds  how long the oldest delivery a worker could claim now
                                              has been due (0 when none is due): workers falling
                                              behind show here first

One query (store/deliveries.py), on the partial index the claim scan uses (`deliveries_due`), bounded
in time. A read that fails or times out leaves both gauges out of that scrape rather than reporting
stale values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhookd.domain.deliveries import Backlog
from webhookd.domain.errors import Unavailable

log = logging.getLogger("webhookd.observability")
DEFAULT_TIMEOUT_SECONDS = 1.0
BacklogReader = Callable[[], Awaitable[Backlog]]


class BacklogGauges(Collector):
    """A custom collector: `refresh()` (async, before a scrape) reads; `collect()` reports the read."""

    def __init__(self, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._read: BacklogReader | None = None
        self._timeout_seconds = timeout_seconds
        self._last: Backlog | None = None

    def watch(self, read: BacklogReader) -> None:
        """How to read the queue to report; a process without a database reports none."""
        self._read = read

    async def refresh(self) -> None:
        if self._read is None:
            return
        try:
            async with asyncio.timeout(self._timeout_seconds):
                self._last = await self._read()
        except (TimeoutError, Unavailable) as error:
            self._last = None
            log.warning("could not read the delivery backlog for /metrics", extra={"error": type(error).__name__})

    def describe(self) -> Iterator[Metric]:
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        if self._last is not None:
            yield from self._families(self._last)

    @staticmethod
    def _families(backlog: Backlog | None) -> Iterator[Metric]:
        depth = GaugeMetricFamily("webhookd_delivery_queue_depth", "Pending deliveries")
        age = GaugeMetricFamily(
            "webhookd_delivery_oldest_due_age_seconds", "Seconds since the oldest claimable delivery fell due"
        )
        if backlog is not None:
            depth.add_metric([], backlog.depth)
            age.add_metric([], backlog.oldest_due_age_seconds)
        yield depth
        yield age
