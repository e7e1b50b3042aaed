"""Prometheus metrics: one registry per process, and a small recorder for each room that reports.

    webhookd_grpc_requests_total / _request_duration_seconds     {service, method, code}
    webhookd_http_requests_total / _request_duration_seconds     {method, route, status}
    webhookd_delivery_attempts_total / _attempt_duration_seconds {outcome}
    webhookd_deliveries_total                                    {outcome}  finished: succeeded | failed
    webhookd_delivery_claim_size                                 {claim}  queue | express: deliveries per claim
    webhookd_delivery_record_batch_size                          attempts per batch the recorder wrote
    webhookd_delivery_queue_depth, webhookd_delivery_oldest_due_age_seconds  (queue.py, read on scrape)
    webhookd_open_streams                                        {transport}  http | grpc

Recording is on every call's path, so label children are looked up once and cached.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

from webhookd.delivery.batch_observer import CLAIMS
from webhookd.domain.statuses import DeliveryStatus
from webhookd.observability.queue import BacklogGauges

# prometheus_client's own variable: where the processes of one `webhookd serve` share their metrics.
MULTIPROCESS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Claims of the queue are at most pool.CLAIM_BATCH (50), express claims pool.FRESH_WEBHOOKS_MAX (64), and
# batches recorder.MAX_BATCH (200); bucket le="0.0" counts empty claims.
CLAIM_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100)
RECORD_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200)
TRANSPORTS = ("http", "grpc")


class _Requests:
    """A request counter and a latency histogram over the same labels."""

    def __init__(self, registry: CollectorRegistry, prefix: str, what: str, labels: tuple[str, ...]) -> None:
        self._count = Counter(f"{prefix}_requests", f"{what} handled", labels, registry=registry)
        self._seconds = Histogram(
            f"{prefix}_request_duration_seconds",
            f"{what}: time from arrival to the last byte of the answer",
            labels,
            registry=registry,
            buckets=REQUEST_BUCKETS,
        )
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}

    def _observe(self, labels: tuple[str, ...], seconds: float) -> None:
        children = self._children.get(labels)
        if children is None:
            children = (self._count.labels(*labels), self._seconds.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)


class GrpcMetrics(_Requests):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, "webhookd_grpc", "gRPC calls", ("service", "method", "code"))
        self._names: dict[str, tuple[str, str]] = {}

    def observe(self, full_method: str, code: str, seconds: float) -> None:
        """full_method: '/cpod.integration.v1.WebhookService/GetWebhook'; code: a grpc.StatusCode name."""
        names = self._names.get(full_method)
        if names is None:
            service, _, method = full_method.lstrip("/").rpartition("/")
            names = self._names[full_method] = (service, method)
        self._observe((*names, code), seconds)


class HttpMetrics(_Requests):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, "webhookd_http", "HTTP gateway requests", ("method", "route", "status"))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """route: the path template (`/api/v1/integration/webhooks/{id}`), never the raw path."""
        self._observe((method, route, str(status)), seconds)


class DeliveryMetrics:
    """What delivery/attempt.py's Deliverer reports after each POST (its AttemptObserver), and the pool
    and the recorder after each claim and batch written (their BatchObserver)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._attempts = Counter(
            "webhookd_delivery_attempts", "Delivery attempts by outcome", ("outcome",), registry=registry
        )
        self._seconds = Histogram(
            "webhookd_delivery_attempt_duration_seconds",
            "Time a delivery attempt's POST took, by outcome",
            ("outcome",),
            registry=registry,
            buckets=ATTEMPT_BUCKETS,
        )
        self._finished = Counter(
            "webhookd_deliveries",
            "Deliveries finished: succeeded, or failed after their last attempt",
            ("outcome",),
            registry=registry,
        )
        self._succeeded = self._finished.labels(DeliveryStatus.SUCCEEDED.value)
        self._failed = self._finished.labels(DeliveryStatus.FAILED.value)
        # Each outcome's counter and histogram, looked up once: labels() costs more than the update.
        self._by_outcome: dict[str, tuple[Counter, Histogram]] = {}
        claim_size = Histogram(
            "webhookd_delivery_claim_size",
            "Deliveries each claim took (one transaction each), by claim: the claimer's of the whole queue,"
            " or an express claim of named quiet webhooks; the le='0.0' bucket counts claims that took none",
            ("claim",),
            registry=registry,
            buckets=CLAIM_BUCKETS,
        )
        self._claims = {claim: claim_size.labels(claim) for claim in CLAIMS}
        self._record_batches = Histogram(
            "webhookd_delivery_record_batch_size",
            "Attempts each batch the recorder wrote held (one transaction each)",
            registry=registry,
            buckets=RECORD_BATCH_BUCKETS,
        )

    def attempted(self, outcome: str, latency_ms: int, *, finished: bool, succeeded: bool) -> None:
        children = self._by_outcome.get(outcome)
        if children is None:
            children = self._by_outcome[outcome] = (self._attempts.labels(outcome), self._seconds.labels(outcome))
        children[0].inc()
        children[1].observe(latency_ms / 1000)
        if finished:
            (self._succeeded if succeeded else self._failed).inc()

    def claimed(self, claim: str, deliveries: int) -> None:
        self._claims[claim].observe(deliveries)

    def recorded(self, attempts: int) -> None:
        self._record_batches.observe(attempts)


class StreamMetrics:
    """Open server streams, HTTP (the gateway's NDJSON/SSE responses) and gRPC (streaming servicers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._open = Gauge(
            "webhookd_open_streams",
            "Server streams open now",
            ("transport",),
            registry=registry,
            multiprocess_mode="livesum",  # summed over the processes still running
        )
        self._by_transport = {transport: self._open.labels(transport) for transport in TRANSPORTS}

    @contextmanager
    def open(self, transport: str) -> Iterator[None]:
        """Counts one stream while the block runs: `with metrics.streams.open("grpc"): ...`."""
        gauge = self._by_transport[transport]
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()


class Metrics:
    """Every webhookd metric on one registry; build one per process and hand its parts out.

    Under `webhookd serve` the processes share a directory (prometheus_client's multiprocess mode,
    `PROMETHEUS_MULTIPROC_DIR`, set by the supervisor): each writes its counts there, and a scrape of
    any server process reports the sum over all of them, workers included, whichever process the
    port's load balancing picked.
    """

    def __init__(self) -> None:
        # The `_created` timestamp series double every family's size and nothing here reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        self.registry = CollectorRegistry(auto_describe=True)
        self.grpc = GrpcMetrics(self.registry)
        self.http = HttpMetrics(self.registry)
        self.deliveries = DeliveryMetrics(self.registry)
        self.streams = StreamMetrics(self.registry)
        self.backlog = BacklogGauges()
        shared_directory = os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)
        if shared_directory:
            # The families above write to the shared directory; scrapes read it.
            self._scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scraped, path=shared_directory)  # type: ignore[no-untyped-call]
        else:
            self._scraped = self.registry
            for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                # Already on prometheus_client's global registry; sharing them here keeps the
                # process_* and python_* series without a second set of readers.
                self._scraped.register(standard)
        self._scraped.register(self.backlog)

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for a scrape: the scrape-time gauges are read first."""
        await self.backlog.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._scraped), content_type
