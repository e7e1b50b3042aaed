"""grpc.health.v1 for the server: it says what /readyz says (services/readiness.py), for the server as a
whole ("") and each of its services, so an operator's grpcurl and a balancer's health check see a
dependency down (the database or Vault) as NOT_SERVING, and SERVING again once it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from grpc_health.v1 import health, health_pb2

from webhookd.services.readiness import Readiness


async def show(servicer: health.aio.HealthServicer, services: Sequence[str], *, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in services:
        await servicer.set(service, status)


async def follow_readiness(
    servicer: health.aio.HealthServicer,
    readiness: Readiness,
    services: Sequence[str],
    *,
    every_seconds: float,
    wake: Callable[[], Awaitable[object]],
) -> None:
    """Shows `readiness` on `servicer` until cancelled. An idle server runs a round every
    `every_seconds` (no /readyz may come to ask); `wake` completing (the database found gone by a
    call, or back) runs one at once, and a /readyz round that changes the answer is shown at once."""
    shown: bool | None = None
    while True:
        if readiness.ready != shown:
            shown = readiness.ready
            await show(servicer, services, serving=shown)
        changed = asyncio.ensure_future(readiness.ready_changed())
        woken = asyncio.ensure_future(wake())
        try:
            done, _ = await asyncio.wait({changed, woken}, timeout=every_seconds, return_when=asyncio.FIRST_COMPLETED)
            if changed not in done:
                await readiness.probe()
        finally:
            changed.cancel()
            woken.cancel()
