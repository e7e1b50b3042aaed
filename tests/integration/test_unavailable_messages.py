"""What gRPC and REST callers read while a dependency cannot be reached: the real service with its
database (or Vault) pointed at a loopback port nothing listens on, behind the real gateway.

A caller is told which dependency is away and to retry later, with a RetryInfo (Retry-After over
REST), and nothing of how it failed (hosts, ports, libpq's words); the server logs the reason."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.rpc import error_details_pb2, status_pb2
from webhook_calls import create

from ports import closed_port
from support import AuthedStub, make_caller
from webhookd.app import Backends, Gateway, Service
from webhookd.config import Settings
from webhookd.observability.log_throttle import ThrottledLog

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclasses.dataclass(frozen=True)
class Down:
    service: Service
    caller: AuthedStub
    rest: httpx.AsyncClient
    port: int  # where the dependency that does not answer was to be


async def _down(settings: Settings, backends: Backends, port: int) -> AsyncIterator[Down]:
    service = Service(dataclasses.replace(settings, database_timeout_seconds=1.0, vault_timeout_seconds=1.0), backends)
    await service.start()
    gateway = Gateway(settings, service.local_channel())
    await gateway.start()
    channel = grpc.aio.insecure_channel(service.grpc_target)
    caller = make_caller(channel, subject="person_1")
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.port}", headers=dict(caller.metadata), timeout=30.0
        ) as rest:
            yield Down(service, caller, rest, port)
    finally:
        await channel.close()
        await gateway.stop()
        await service.stop(grace=0)


@pytest.fixture(scope="module")
async def database_down(settings: Settings, backends: Backends) -> AsyncIterator[Down]:
    port = closed_port()
    url = f"postgresql://webhookd@127.0.0.1:{port}/webhookd"
    async for down in _down(settings, Backends(url, backends.vault_addr, backends.vault_token), port):
        yield down


@pytest.fixture(scope="module")
async def vault_down(settings: Settings, backends: Backends, service: Service) -> AsyncIterator[Down]:
    """`service` (the session's) has migrated the session database this one uses."""
    port = closed_port()
    async for down in _down(settings, Backends(backends.database_url, f"http://127.0.0.1:{port}", "x"), port):
        yield down


def _status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    raise AssertionError("no rich status")


def _retry_seconds(status: status_pb2.Status) -> int:
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds
    raise AssertionError("no RetryInfo")


def _reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "reason", "")) for r in caplog.records if r.levelno == logging.WARNING]


async def _grpc_error(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


async def test_a_grpc_caller_reads_database_unavailable_and_nothing_of_why(
    database_down: Down, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # A fresh throttle: the module's earlier calls logged this kind already (observability/log_throttle.py).
    database_down.service.interceptor._failures = ThrottledLog(logging.getLogger("webhookd.api"))

    error = await _grpc_error(database_down.caller.ListWebhooks(pb.ListWebhooksRequest()))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "database unavailable: retry later"
    status = _status(error)
    assert status.message == "database unavailable: retry later"
    assert _retry_seconds(status) >= 1
    assert str(database_down.port) not in str(status)
    assert any("database" in reason for reason in _reasons(caplog)), _reasons(caplog)


async def test_a_rest_caller_reads_database_unavailable_and_nothing_of_why(
    database_down: Down, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    response = await database_down.rest.get("/api/v1/integration/webhooks")

    assert response.status_code == 503
    assert response.json()["error"]["message"] == "database unavailable: retry later"
    assert int(response.headers["retry-after"]) >= 1
    assert str(database_down.port) not in response.text
    assert "127.0.0.1" not in response.text


async def test_the_log_keeps_what_the_caller_is_not_told(database_down: Down, caplog: pytest.LogCaptureFixture) -> None:
    database = database_down.service.core.database
    if database.reachable:  # the probe has not yet found it away: a call sets it going
        changed = asyncio.ensure_future(database.reachability_changed())
        await _grpc_error(database_down.caller.ListWebhooks(pb.ListWebhooksRequest()))
        await asyncio.wait_for(changed, 30)
    caplog.set_level(logging.WARNING)
    # A fresh throttle: the module's earlier calls logged this kind already (observability/log_throttle.py).
    database_down.service.interceptor._failures = ThrottledLog(logging.getLogger("webhookd.api"))

    error = await _grpc_error(database_down.caller.ListWebhooks(pb.ListWebhooksRequest()))

    logged = [str(getattr(r, "reason", "")) for r in caplog.records if r.name == "webhookd.api"]
    assert len(logged) == 1, logged
    assert logged[0].startswith("database unavailable: ") and str(database_down.port) in logged[0]
    assert str(database_down.port) not in error.details()


async def test_a_caller_reads_vault_unavailable_and_nothing_of_why(vault_down: Down) -> None:
    error = await _grpc_error(create(vault_down.caller, url="http://127.0.0.1:1/hook"))
    response = await vault_down.rest.post(
        "/api/v1/integration/webhooks",
        json={"name": "hook", "url": "http://127.0.0.1:1/hook"},
    )

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "vault unavailable: retry later"
    assert _retry_seconds(_status(error)) >= 1
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "vault unavailable: retry later"
    assert int(response.headers["retry-after"]) >= 1


async def test_a_gateway_whose_server_is_away_names_no_address(settings: Settings) -> None:
    """`webhookd gateway` calling a gRPC server that does not answer: gRPC's own words name its address."""
    port = closed_port()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        gateway = Gateway(settings, channel)
        await gateway.start()
        try:
            caller = make_caller(channel)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30.0) as rest:
                response = await rest.get("/api/v1/integration/webhooks", headers=dict(caller.metadata))
        finally:
            await gateway.stop()

    assert response.status_code == 503
    assert response.json()["error"]["message"] == "server unavailable: retry later"
    assert int(response.headers["retry-after"]) >= 1
    assert str(port) not in response.text
