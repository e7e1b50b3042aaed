"""api/interceptor.py: the warning an outage's failed calls log is rate-limited per kind."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from webhookd.api.interceptor import CallInterceptor
from webhookd.domain.errors import Unavailable
from webhookd.observability.log_throttle import ThrottledLog

PUBLIC_METHOD = "/grpc.health.v1.Health/Check"  # no token to verify


class FakeContext:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort_with_status(self, status: Any) -> None:
        raise grpc.aio.AbortError()


async def test_an_outage_logs_its_first_failure_and_then_one_line_an_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    interceptor = CallInterceptor(
        verifier=None, failures=ThrottledLog(logging.getLogger("webhookd.api"), clock=lambda: now[0])
    )  # type: ignore[arg-type]

    async def behaviour(request: Any, context: Any) -> Any:
        raise Unavailable("could not connect to 10.0.0.5:5432", dependency="database")

    handler = interceptor.wrap(PUBLIC_METHOD, grpc.unary_unary_rpc_method_handler(behaviour))
    caplog.set_level(logging.WARNING, "webhookd.api")

    async def call() -> None:
        with pytest.raises(grpc.aio.AbortError):
            await handler.unary_unary(health_pb2.HealthCheckRequest(), FakeContext())

    for _ in range(100):
        await call()
    now[0] += 60.0
    await call()

    logged = [(record.getMessage(), record.__dict__.get("suppressed")) for record in caplog.records]
    assert logged == [("rpc failed", 0), ("rpc failed", 99)]
