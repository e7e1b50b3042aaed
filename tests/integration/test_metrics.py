"""Prometheus /metrics on the real gateway, with the session's service and workers reporting to the
same registry as in `webhookd serve`: gRPC calls per method and code, HTTP requests per route
template and status, deliveries by outcome with attempt latency, claims and recorded batches with
their sizes, the queue's backlog, open streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rest_calls import EVENTS, WEBHOOKS, RestCaller, create, rest_caller
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from receivers import Receiver, status
from support import make_caller
from webhookd.app import Backends, open_service
from webhookd.http.media_types import NDJSON_MEDIA_TYPE
from webhookd.http.operations import ObservedApp
from webhookd.observability import Metrics
from webhookd.observability.queue import BacklogGauges
from webhookd.store.database import Database
from webhookd.store.deliveries import DeliveryStore

SERVICE = "cpod.integration.v1.WebhookService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def scrape(gateway) -> AsyncIterator[Callable[[], Awaitable[Samples]]]:
    """Reads the gateway's /metrics, without a token."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as anonymous:

        async def read() -> Samples:
            response = await anonymous.get("/metrics")
            assert response.status_code == 200
            return parse(response.text)

        yield read


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


async def wait_until(scrape, holds: Callable[[Samples], bool], within: float = 15.0) -> Samples:
    deadline = time.monotonic() + within
    while True:
        samples = await scrape()
        if holds(samples):
            return samples
        assert time.monotonic() < deadline, "metrics never reached the expected values"
        await asyncio.sleep(0.1)


async def test_metrics_need_no_token_and_are_prometheus_text(gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        response = await anonymous.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "webhookd_grpc_requests",
        "webhookd_grpc_request_duration_seconds",
        "webhookd_http_requests",
        "webhookd_http_request_duration_seconds",
        "webhookd_delivery_attempts",
        "webhookd_delivery_attempt_duration_seconds",
        "webhookd_deliveries",
        "webhookd_delivery_claim_size",
        "webhookd_delivery_record_batch_size",
        "webhookd_delivery_queue_depth",
        "webhookd_delivery_oldest_due_age_seconds",
        "webhookd_open_streams",
        "process_cpu_seconds",
    } <= names


async def test_grpc_calls_are_counted_per_method_and_code(scrape, rest) -> None:
    labels = {"service": SERVICE, "method": "GetWebhook"}
    before = await scrape()

    await rest.get(f"{WEBHOOKS}/whk_01J0000000000000000000000")
    await rest.get(f"{WEBHOOKS}/{(await create(rest))['webhook']['id']}")

    after = await scrape()
    for code in ("NOT_FOUND", "OK"):
        for name in ("webhookd_grpc_requests_total", "webhookd_grpc_request_duration_seconds_count"):
            assert value(after, name, **labels, code=code) == value(before, name, **labels, code=code) + 1
    assert value(after, "webhookd_grpc_request_duration_seconds_sum", **labels, code="OK") > value(
        before, "webhookd_grpc_request_duration_seconds_sum", **labels, code="OK"
    )


async def test_a_grpc_call_without_the_gateway_is_counted_too(scrape, channel) -> None:
    caller = make_caller(channel)
    labels = {"service": SERVICE, "method": "ListWebhooks", "code": "OK"}
    before = value(await scrape(), "webhookd_grpc_requests_total", **labels)

    await caller.ListWebhooks(pb.ListWebhooksRequest())

    assert value(await scrape(), "webhookd_grpc_requests_total", **labels) == before + 1


async def test_an_unauthenticated_call_is_counted_with_its_code(scrape, gateway) -> None:
    labels = {"service": SERVICE, "method": "ListWebhooks", "code": "UNAUTHENTICATED"}
    before = value(await scrape(), "webhookd_grpc_requests_total", **labels)

    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        assert (await anonymous.get(WEBHOOKS)).status_code == 401

    assert value(await scrape(), "webhookd_grpc_requests_total", **labels) == before + 1


async def test_http_requests_are_counted_per_route_template_and_status(scrape, rest) -> None:
    labels = {"method": "GET", "route": f"{WEBHOOKS}/{{id}}", "status": "404"}
    before = await scrape()

    await rest.get(f"{WEBHOOKS}/whk_01J0000000000000000000001")
    await rest.get(f"{WEBHOOKS}/whk_01J0000000000000000000002")
    await rest.get("/no/such/path/3f9a")

    after = await scrape()
    assert (
        value(after, "webhookd_http_requests_total", **labels)
        == value(before, "webhookd_http_requests_total", **labels) + 2
    )
    assert value(after, "webhookd_http_request_duration_seconds_count", **labels) >= 2
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "webhookd_http_requests_total", **unmatched) >= 1
    every_label_value = {v for (_, labels_of) in after for _, v in labels_of}
    assert not any("whk_01J000000000000000000000" in v or "3f9a" in v for v in every_label_value)


async def test_a_delivery_is_counted_by_outcome_with_its_attempt_latency(scrape, rest, workers, receiver) -> None:
    await create(rest, url=receiver.url)
    before = await scrape()

    await rest.post(EVENTS, json={"event_type": "rfp.created"})
    await receiver.wait_for(1)

    def counted(samples: Samples) -> bool:
        return value(samples, "webhookd_deliveries_total", outcome="succeeded") > value(
            before, "webhookd_deliveries_total", outcome="succeeded"
        )

    after = await wait_until(scrape, counted)
    for name in ("webhookd_delivery_attempts_total", "webhookd_delivery_attempt_duration_seconds_count"):
        assert value(after, name, outcome="succeeded") >= value(before, name, outcome="succeeded") + 1
    assert value(after, "webhookd_delivery_attempt_duration_seconds_bucket", outcome="succeeded", le="+Inf") >= 1


async def test_claims_and_recorded_batches_are_counted_with_their_sizes(scrape, rest, workers, receiver) -> None:
    await create(rest, url=receiver.url)
    before = await scrape()

    await rest.post(EVENTS, json={"event_type": "rfp.created"})
    await receiver.wait_for(1)

    def grew(samples: Samples, name: str) -> float:
        return value(samples, name) - value(before, name)

    after = await wait_until(scrape, lambda samples: grew(samples, "webhookd_delivery_record_batch_size_sum") >= 1)
    assert grew(after, "webhookd_delivery_record_batch_size_count") >= 1
    claimed = {
        claim: value(after, "webhookd_delivery_claim_size_sum", claim=claim)
        - value(before, "webhookd_delivery_claim_size_sum", claim=claim)
        for claim in ("queue", "express")
    }
    assert sum(claimed.values()) >= 1  # the delivery's claim, whichever took it


async def test_a_delivery_out_of_attempts_is_counted_failed(scrape, rest, workers) -> None:
    failing = await Receiver(respond=status(500)).start()
    try:
        await create(rest, url=failing.url, retry_policy={"maxAttempts": 1})
        before = await scrape()

        await rest.post(EVENTS, json={"event_type": "rfp.created"})
        await failing.wait_for(1)

        def counted(samples: Samples) -> bool:
            return value(samples, "webhookd_deliveries_total", outcome="failed") > value(
                before, "webhookd_deliveries_total", outcome="failed"
            )

        after = await wait_until(scrape, counted)
    finally:
        await failing.stop()
    assert value(after, "webhookd_delivery_attempts_total", outcome="failed") >= 1


async def test_queue_depth_and_oldest_due_age_are_read_on_scrape(settings, backends, own_database) -> None:
    # A database of its own with no workers on it, so what is queued stays queued.
    service = await open_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token))
    engine = create_async_engine(own_database)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            caller = make_caller(channel)
            webhook = wpb.Webhook(name="q", url="http://127.0.0.1:9/hook", event_types=["*"])
            await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook))
            empty = parse((await service.metrics.render(None))[0].decode())
            for _ in range(3):
                await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created"))
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "UPDATE deliveries SET next_attempt_at = now() - interval '90 seconds'"
                " WHERE id = (SELECT min(id) FROM deliveries)"
            )

        samples = parse((await service.metrics.render(None))[0].decode())
    finally:
        await engine.dispose()
        await service.stop(grace=1.0)

    assert value(empty, "webhookd_delivery_queue_depth") == 0
    assert value(empty, "webhookd_delivery_oldest_due_age_seconds") == 0
    assert value(samples, "webhookd_delivery_queue_depth") == 3
    assert 90 <= value(samples, "webhookd_delivery_oldest_due_age_seconds") < 120


async def test_an_unreadable_backlog_leaves_its_gauges_out() -> None:
    gauges = BacklogGauges(timeout_seconds=2.0)
    database = Database("postgresql://nobody@127.0.0.1:1/none", size=1, timeout_seconds=1.0)
    await database.open()
    gauges.watch(DeliveryStore(database, pause_after_failures=1).backlog)
    try:
        await gauges.refresh()
    finally:
        await database.close()

    assert list(gauges.collect()) == []


async def test_open_streams_count_http_streams_while_they_run() -> None:
    metrics = Metrics()

    def open_now() -> float:
        return value(parse(_render_sync(metrics)), "webhookd_open_streams", transport="http")

    async def stream(_: Request) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield f'{{"open": {open_now()}}}\n'.encode()

        return StreamingResponse(lines(), media_type=NDJSON_MEDIA_TYPE)

    app = ObservedApp(Starlette(routes=[Route("/stream", stream)]), metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        response = await client.get("/stream")

    assert response.json() == {"open": 1.0}
    assert open_now() == 0.0


async def test_grpc_streams_are_counted_with_the_exported_helper() -> None:
    metrics = Metrics()

    with metrics.streams.open("grpc"):
        during = value(parse(_render_sync(metrics)), "webhookd_open_streams", transport="grpc")

    assert (during, value(parse(_render_sync(metrics)), "webhookd_open_streams", transport="grpc")) == (1.0, 0.0)


def _render_sync(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


async def test_a_following_delivery_log_stream_counts_as_an_open_grpc_stream(settings, backends) -> None:
    # A service of its own: the session's registry also sees other tests' streams come and go.
    service = await open_service(settings, backends)

    def open_grpc_streams() -> float:
        return value(parse(_render_sync(service.metrics)), "webhookd_open_streams", transport="grpc")

    async def until(expected: float) -> None:
        for _ in range(200):  # 10 s at most
            if open_grpc_streams() == expected:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"open gRPC streams stayed {open_grpc_streams()}, expected {expected}")

    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stream = make_caller(channel).DeliveryLog(pb.DeliveryLogRequest(follow=True))
            reading = asyncio.create_task(stream.read())
            await until(1.0)
            stream.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            await until(0.0)
    finally:
        await service.stop(grace=1.0)
