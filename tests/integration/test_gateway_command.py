"""`webhookd gateway`: the REST gateway alone, in its own process, in front of a gRPC target; its
/readyz is the target's grpc.health.v1 answer."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from rest_calls import WEBHOOKS, create, rest_caller

from receivers import closed_port_url
from webhookd.gateway.operations import grpc_serving_check

WEBHOOKD = Path(sys.executable).with_name("webhookd")
STARTED = re.compile(rb"serving HTTP on port (\d+)")

pytestmark = pytest.mark.slow


@asynccontextmanager
async def gateway_process(*args: str) -> AsyncIterator[str]:
    """Runs `webhookd gateway *args` on a free loopback port; yields its base URL; stops it with SIGTERM."""
    env = {**os.environ, "WEBHOOKD_HTTP_ADDR": "127.0.0.1:0", "WEBHOOKD_LOG_LEVEL": "WARNING"}
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


async def test_the_gateway_alone_serves_rest_for_the_grpc_target(service) -> None:
    async with gateway_process("--grpc-target", service.grpc_target) as url:
        async with rest_caller(url) as rest:
            created = (await create(rest))["webhook"]
            fetched = await rest.get(f"{WEBHOOKS}/{created['id']}")
        async with httpx.AsyncClient(base_url=url) as anonymous:
            ready = await anonymous.get("/readyz")
            metrics = await anonymous.get("/metrics")

    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": {"grpc": "ok"}})
    assert fetched.status_code == 200
    assert fetched.json()["id"] == created["id"]
    assert metrics.status_code == 200
    assert 'route="/api/v1/integration/webhooks/{id}",status="200"' in metrics.text


async def test_the_target_defaults_to_webhookd_grpc_addr(service, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOKD_GRPC_ADDR", service.grpc_target)

    async with gateway_process() as url, httpx.AsyncClient(base_url=url) as anonymous:
        ready = await anonymous.get("/readyz")

    assert ready.status_code == 200


async def test_readyz_is_503_while_the_target_is_unreachable() -> None:
    dead_target = closed_port_url().removeprefix("http://").removesuffix("/hook")

    async with gateway_process("--grpc-target", dead_target) as url, httpx.AsyncClient(base_url=url) as anonymous:
        ready = await anonymous.get("/readyz")
        health_check = await anonymous.get("/healthz")

    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"grpc": "unreachable: UNAVAILABLE"}}
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
