"""Shared fixtures: one embedded PostgreSQL and one OpenBao per test session, a fresh tenant per test."""

from __future__ import annotations

import os

# Before grpc loads, which reads it: the tests start processes (embedded PostgreSQL's initdb, servers)
# while gRPC's threads live, by fork and exec. gRPC's fork handlers are not needed for that, and in a CI
# run a forked child (initdb, about to exec) died of SIGSEGV after gRPC's poller logged "epoll_wait error:
# Bad file descriptor" in it. The benchmarks' harness sets the same (bench/harness/__init__.py).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from ulid import ULID

from receivers import Receiver
from support import FAULT_FIGURES_PROPERTY, JWT_SECRET, AuthedStub, Database, make_caller
from webhookd.app import Backends, DeliveryWorkers, Gateway, Service, open_service
from webhookd.config import Settings
from webhookd.observability import Metrics
from webhookd.secrets.embedded import EmbeddedOpenBao
from webhookd.store.database import Database as Pool
from webhookd.store.deliveries import DeliveryStore
from webhookd.store.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="webhookd-test-") as directory:
        yield Path(directory)


@pytest.fixture(scope="session")
def backends(data_dir: Path) -> Iterator[Backends]:
    postgres = EmbeddedPostgres(data_dir)
    postgres.start()
    vault = EmbeddedOpenBao(data_dir, mode="ephemeral")
    try:
        vault_addr, vault_token = vault.start()
        database_url = postgres.create_database(f"webhookd_{str(ULID()).lower()}")
        yield Backends(database_url, vault_addr, vault_token, [postgres, vault])
    finally:
        vault.stop()
        postgres.stop()


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return Settings(
        grpc_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        public_url="http://127.0.0.1:8080",
        data_dir=data_dir,
        jwt_secret=JWT_SECRET,
        allow_insecure_urls=True,
        allow_private_targets=True,
        shutdown_grace_seconds=1.0,
        workers=16,
        pause_after_failures=5,
    )


@pytest.fixture(scope="session")
async def service(settings: Settings, backends: Backends) -> AsyncIterator[Service]:
    running = await open_service(settings, backends)
    yield running
    await running.stop(grace=1.0)


@pytest.fixture(scope="session")
async def channel(service: Service) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(service.grpc_target) as open_channel:
        yield open_channel


@pytest.fixture
def caller(channel: grpc.aio.Channel) -> AuthedStub:
    return make_caller(channel, subject="person_1")


@pytest.fixture(scope="session")
async def workers(settings: Settings, backends: Backends, service: Service) -> AsyncIterator[DeliveryWorkers]:
    """The delivery pool, in-process; loopback targets allowed (settings.allow_private_targets)."""
    pool = DeliveryWorkers(settings, backends, metrics=service.metrics)  # one registry, as in `webhookd serve`
    await pool.start()
    yield pool
    await pool.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


# -- delivery tests: SQL access, the queue's clock, and databases the session pool never sees ----------


@pytest.fixture(scope="session")
async def database(backends: Backends) -> AsyncIterator[Database]:
    """The session database, for what the RPCs do not show (attempt rows, retry times, leases)."""
    opened = Database(backends.database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def pool(backends: Backends) -> AsyncIterator[Pool]:
    """The store's own pool (2 connections, a 10 s bound) on the session database, for tests of
    `Database` itself: how it runs work, and what its failures become."""
    opened = Pool(backends.database_url, size=2, timeout_seconds=10.0)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def own_database(backends: Backends) -> AsyncIterator[str]:
    """A new empty database on the session's PostgreSQL; `running_service` migrates it.

    The session `workers` never see it, so a test can run its own pool (or worker process) on it.
    """
    postgres = next(server for server in backends.embedded if isinstance(server, EmbeddedPostgres))
    name = f"webhookd_own_{str(ULID()).lower()}"
    url = await asyncio.to_thread(postgres.create_database, name)
    yield url
    await asyncio.to_thread(postgres.drop_database, name)


@pytest.fixture
async def delivery_store(own_database: str) -> AsyncIterator[DeliveryStore]:
    """The delivery queue's SQL on `own_database`, for tests that claim and record by hand."""
    pool = Pool(own_database, size=2)
    await pool.open()
    yield DeliveryStore(pool, pause_after_failures=25)
    await pool.close()


@dataclass(frozen=True)
class RunningGateway:
    url: str  # http://127.0.0.1:<port>
    metrics: Metrics  # the session service's registry, which the gateway's /metrics serves


@pytest.fixture(scope="session")
async def gateway(settings: Settings, service: Service) -> AsyncIterator[RunningGateway]:
    running = Gateway(settings, service.local_channel(), extra_routes=service.http_routes(), metrics=service.metrics)
    await running.start()
    yield RunningGateway(f"http://127.0.0.1:{running.port}", service.metrics)
    await running.stop()


# The fault tests' figures (tests/faults/conftest.py puts them on each report under this name), printed
# at the end of the run and written beside the screenshots; gathered from the reports, which reach
# this process from every pytest-xdist worker.
FAULT_FIGURES_FILE = Path(__file__).resolve().parents[1] / "test-artifacts" / "fault-figures.json"
FAULT_FIGURES: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == FAULT_FIGURES_PROPERTY and isinstance(value, dict):
            FAULT_FIGURES.update(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FAULT_FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for name, figures in FAULT_FIGURES.items():
        shown = ", ".join(f"{key} {value}" for key, value in figures.items())
        terminalreporter.write_line(f"{name}: {shown}")
    FAULT_FIGURES_FILE.parent.mkdir(exist_ok=True)
    FAULT_FIGURES_FILE.write_text(json.dumps(FAULT_FIGURES, indent=2) + "\n")
