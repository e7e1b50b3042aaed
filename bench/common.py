"""What every benchmark shares: a private webhookd stack on loopback, a bounded load loop, and the output.

`stack()` starts an embedded PostgreSQL in a fresh temp dir, an ephemeral OpenBao, runs the
migrations and serves `webhookd.app.Service` on 127.0.0.1:0; callers get a channel and a tenant's
bearer metadata. Every figure is printed next to a baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pgserver forks pg_ctl while gRPC threads live; gRPC's fork handlers are not needed here and would
# log a warning. gRPC reads this when it loads, so benchmarks import this module before grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import grpc
import psycopg
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from psycopg import sql
from sqlalchemy.engine import make_url
from ulid import ULID

from webhookd.app import Backends, Service, open_service
from webhookd.auth.tokens import mint
from webhookd.config import Settings
from webhookd.secrets.embedded import EmbeddedOpenBao
from webhookd.store.embedded import EmbeddedPostgres

HOST = "127.0.0.1"
JWT_SECRET = "bench-secret-bench-secret-bench-secret!"


@dataclass
class Stack:
    settings: Settings
    backends: Backends
    service: Service
    channel: grpc.aio.Channel
    stub: rpc.WebhookServiceStub
    tenant_id: str
    metadata: tuple[tuple[str, str], ...]

    @property
    def libpq_url(self) -> str:
        """The database as a plain postgresql:// URL, for psycopg connections of the benchmark's own."""
        return _libpq(self.backends.database_url)


def new_tenant() -> tuple[str, tuple[tuple[str, str], ...]]:
    tenant_id = f"tnt_{ULID()}"
    token = mint(JWT_SECRET, tenant_id=tenant_id, subject="person_bench")
    return tenant_id, (("authorization", f"Bearer {token}"),)


def _libpq(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _allow_connections(postgres: EmbeddedPostgres, count: int) -> None:
    """Raise max_connections (initdb's default is 100) and restart the server to apply it."""
    with psycopg.connect(_libpq(postgres.url()), autocommit=True) as connection:
        connection.execute(sql.SQL("ALTER SYSTEM SET max_connections = {}").format(sql.Literal(count)))
    postgres.stop()
    postgres.start()


@asynccontextmanager
async def stack(*, max_connections: int | None = None, **overrides: Any) -> AsyncIterator[Stack]:
    """The running service on loopback; everything it started is stopped and its temp dir removed.
    `overrides` are Settings fields; `max_connections` raises PostgreSQL's limit before anything connects."""
    data_dir = Path(tempfile.mkdtemp(prefix="webhookd-bench-"))
    postgres = EmbeddedPostgres(data_dir)
    vault = EmbeddedOpenBao(data_dir, mode="ephemeral")
    settings = Settings(
        grpc_addr=f"{HOST}:0",
        http_addr=f"{HOST}:0",
        data_dir=data_dir,
        jwt_secret=JWT_SECRET,
        allow_insecure_urls=True,
        shutdown_grace_seconds=1.0,
        log_level="WARNING",
    ).with_overrides(**overrides)
    try:
        await asyncio.to_thread(postgres.start)
        if max_connections is not None:
            await asyncio.to_thread(_allow_connections, postgres, max_connections)
        vault_addr, vault_token = await asyncio.to_thread(vault.start)
        database_url = await asyncio.to_thread(postgres.create_database, "webhookd_bench")
        backends = Backends(database_url, vault_addr, vault_token)
        service = await open_service(settings, backends)
        try:
            async with grpc.aio.insecure_channel(service.grpc_target) as channel:
                tenant_id, metadata = new_tenant()
                yield Stack(settings, backends, service, channel, rpc.WebhookServiceStub(channel), tenant_id, metadata)
        finally:
            await service.stop(grace=1.0)
    finally:
        await asyncio.to_thread(vault.stop)
        await asyncio.to_thread(postgres.stop)
        shutil.rmtree(data_dir, ignore_errors=True)


async def closed_loop(
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    max_ops: int,
) -> tuple[int, float]:
    """(completions, seconds) of `call` kept `concurrency` deep: after `warmup` s, completions are
    counted for `duration` s or until `max_ops` have completed, whichever comes first."""
    counted = 0
    measuring = False
    stopping = False
    budget_spent = asyncio.Event()

    async def worker() -> None:
        nonlocal counted
        while not stopping:
            await call()
            if measuring:
                counted += 1
                if counted >= max_ops:
                    budget_spent.set()

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        measuring = True
        started = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(budget_spent.wait(), duration)
        measuring = False
        elapsed = time.perf_counter() - started
        stopping = True
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return counted, elapsed


async def alternating(
    loads: dict[str, Callable[[], Awaitable[object]]],
    *,
    rounds: int,
    concurrency: int,
    warmup: float,
    seconds: float,
    max_ops: int,
) -> dict[str, float]:
    """Ops/s of each load, measured in `rounds` short turns taken in order, so that whatever else the
    machine is doing meanwhile weighs on the figure and its baseline alike."""
    totals = {name: [0, 0.0] for name in loads}
    for _ in range(rounds):
        for name, call in loads.items():
            count, elapsed = await closed_loop(
                call, concurrency=concurrency, warmup=warmup, duration=seconds, max_ops=max_ops // rounds
            )
            totals[name][0] += count
            totals[name][1] += elapsed
    return {name: count / elapsed for name, (count, elapsed) in totals.items()}


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def header(title: str, note: str) -> None:
    print(f"== {title} ==  ({note})")


def rate_line(name: str, ops: float, baseline: float) -> None:
    print(f"{name}: {ops:,.0f} ops/s vs baseline {baseline:,.0f} ops/s = ratio {ops / baseline:.2f}")


def time_line(name: str, ms: float, baseline_ms: float, unit: str = "ms") -> None:
    print(f"{name}: {ms:,.2f} {unit} vs baseline {baseline_ms:,.2f} {unit} = ratio {ms / baseline_ms:.2f}")
