"""The delivery backlog as two gauges, read from PostgreSQL when /metrics is scraped.

    webhookd_delivery_queue_depth             pending deliveries: in flight, due, waiting to retry,
                                              or held by a paused or disabled webhook
    webhookd_delivery_oldest_due_age_seconds  how long the oldest delivery a worker could claim now
                                              has been due (0 when none is due): workers falling
                                              behind show here first

One query, on the partial index the claim scan uses (`deliveries_due`), under a statement timeout.
A read that fails or times out leaves both gauges out of that scrape rather than reporting stale values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from webhookd.domain.statuses import DeliveryStatus

log = logging.getLogger("webhookd.observability")
DEFAULT_TIMEOUT_SECONDS = 1.0

_BACKLOG = text(
    f"""
SELECT
    (SELECT count(*) FROM deliveries WHERE status = '{DeliveryStatus.PENDING}') AS depth,
    (SELECT extract(epoch FROM now() - d.next_attempt_at)
       FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
      WHERE d.status = '{DeliveryStatus.PENDING}' AND d.next_attempt_at <= now()
        AND w.enabled AND w.paused_at IS NULL AND w.deleted_at IS NULL
      ORDER BY d.next_attempt_at
      LIMIT 1) AS oldest_due_age
"""
)


@dataclass(frozen=True)
class Backlog:
    depth: int
    oldest_due_age_seconds: float


async def read_backlog(engine: AsyncEngine, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Backlog:
    """Across all tenants: this is the operator's view of the queue, not a caller's."""
    async with asyncio.timeout(timeout_seconds), engine.connect() as connection:
        await connection.execute(text(f"SET LOCAL statement_timeout = {int(timeout_seconds * 1000)}"))
        row = (await connection.execute(_BACKLOG)).one()
    return Backlog(int(row.depth), max(0.0, float(row.oldest_due_age or 0.0)))


class BacklogGauges(Collector):
    """A custom collector: `refresh()` (async, before a scrape) reads; `collect()` reports the read."""

    def __init__(self, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._engine: AsyncEngine | None = None
        self._timeout_seconds = timeout_seconds
        self._last: Backlog | None = None

    def watch(self, engine: AsyncEngine) -> None:
        """The database whose queue to report; a process without one (`webhookd gateway`) reports none."""
        self._engine = engine

    async def refresh(self) -> None:
        if self._engine is None:
            return
        try:
            self._last = await read_backlog(self._engine, timeout_seconds=self._timeout_seconds)
        except (TimeoutError, OSError, SQLAlchemyError) as error:
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
