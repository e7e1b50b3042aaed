"""`webhookd gateway`: the REST gateway alone, in its own process, in front of a gRPC target. It
serves the inbound receiver itself (on the configured database and Vault), and its /readyz is
those and the target's grpc.health.v1 answer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from rest_calls import WEBHOOKS, create, rest_caller
from standardwebhooks.webhooks import Webhook as StandardWebhook

from receivers import closed_port_url
from webhookd.app import Backends
from webhookd.http.operations import grpc_serving_check

WEBHOOKD = Path(sys.executable).with_name("webhookd")
STARTED = re.compile(rb"serving HTTP on port (\d+)")

pytestmark = pytest.mark.slow


@asynccontextmanager
async def gateway_process(backends: Backends, *args: str) -> AsyncIterator[str]:
    """Runs `webhookd gateway *args` on a free loopback port, on the session's database and Vault;
    yields its base URL; stops it with SIGTERM."""
    env = {
        **os.environ,
        "WEBHOOKD_HTTP_ADDR": "127.0.0.1:0",
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        "WEBHOOKD_DATABASE_URL": backends.database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
    }
    process = await asyncio.create_subprocess_exec(
        str(WEBHOOKD), "gateway", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        started = STARTED.search(line)
        assert started, line
        yield f"http://127.0.0.1:{int(started.group(1))}"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), 15)
    assert exit_code == 0


async def test_the_gateway_alone_serves_rest_for_the_grpc_target(service, backends) -> None:
    async with gateway_process(backends, "--grpc-target", service.grpc_target) as url:
        async with rest_caller(url) as rest:
            created = (await create(rest))["webhook"]
            fetched = await rest.get(f"{WEBHOOKS}/{created['id']}")
        async with httpx.AsyncClient(base_url=url) as anonymous:
            ready = await anonymous.get("/readyz")
            metrics = await anonymous.get("/metrics")

    checks = {"database": "ok", "vault": "ok", "schema": "ok", "grpc": "ok"}
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": checks})
    assert fetched.status_code == 200
    assert fetched.json()["id"] == created["id"]
    assert metrics.status_code == 200
    assert 'route="/api/v1/integration/webhooks/{id}",status="200"' in metrics.text


async def test_the_target_defaults_to_webhookd_grpc_addr(service, backends, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOKD_GRPC_ADDR", service.grpc_target)

    async with gateway_process(backends) as url, httpx.AsyncClient(base_url=url) as anonymous:
        ready = await anonymous.get("/readyz")

    assert ready.status_code == 200


async def test_readyz_is_503_while_the_target_is_unreachable(backends) -> None:
    dead_target = closed_port_url().removeprefix("http://").removesuffix("/hook")

    async with (
        gateway_process(backends, "--grpc-target", dead_target) as url,
        httpx.AsyncClient(base_url=url) as anonymous,
    ):
        ready = await anonymous.get("/readyz")
        health_check = await anonymous.get("/healthz")

    assert ready.status_code == 503
    checks = {"database": "ok", "vault": "ok", "schema": "ok", "grpc": "unreachable: UNAVAILABLE"}
    assert ready.json() == {"status": "unavailable", "checks": checks}
    assert health_check.status_code == 200


async def test_a_target_that_is_not_serving_is_not_ready() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = grpc_serving_check(channel)
            not_serving = await check()
            await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            serving = await check()
    finally:
        await server.stop(None)

    assert (not_serving, serving) == ("not serving: NOT_SERVING", None)


async def test_the_gateway_alone_receives_inbound_webhooks(service, backends, caller, database) -> None:
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND))
    )
    body = json.dumps({"type": "order.paid"})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_gateway_command",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": StandardWebhook(created.signing_secret).sign("msg_gateway_command", now, body),
        "content-type": "application/json",
    }
    path = urlsplit(created.webhook.url).path

    async with (
        gateway_process(backends, "--grpc-target", service.grpc_target) as url,
        httpx.AsyncClient(base_url=url) as sender,
    ):
        received = await sender.post(path, content=body, headers=headers)

    assert (received.status_code, received.json()["status"]) == (200, "accepted")
    stored = await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=created.webhook.id)
    assert stored == 1
