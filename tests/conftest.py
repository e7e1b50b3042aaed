"""Shared fixtures: one embedded PostgreSQL and one OpenBao per test session, a fresh tenant per test."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from ulid import ULID

from receivers import Receiver
from webhookd.app import Backends, DeliveryWorkers, Service, open_service
from webhookd.auth.tokens import mint
from webhookd.config import Settings
from webhookd.secrets.embedded import EmbeddedOpenBao
from webhookd.store.embedded import EmbeddedPostgres

JWT_SECRET = "test-secret-test-secret-test-secret!"


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
        secret_cache_seconds=0.5,
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


def new_tenant_id() -> str:
    return f"tnt_{ULID()}"


class AuthedStub:
    """The real generated stub, with one tenant's bearer token attached to every call."""

    def __init__(self, channel: grpc.aio.Channel, tenant_id: str, token: str) -> None:
        self.tenant_id = tenant_id
        self.token = token
        self.metadata = (("authorization", f"Bearer {token}"),)
        self._stub = rpc.WebhookServiceStub(channel)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", self.metadata)
            return method(request, **kwargs)

        return call


def make_caller(channel: grpc.aio.Channel, tenant_id: str | None = None, **claims: str) -> AuthedStub:
    tenant = tenant_id or new_tenant_id()
    return AuthedStub(channel, tenant, mint(JWT_SECRET, tenant_id=tenant, **claims))


@pytest.fixture
def caller(channel: grpc.aio.Channel) -> AuthedStub:
    return make_caller(channel, subject="person_1")


@pytest.fixture(scope="session")
async def workers(settings: Settings, backends: Backends, service: Service) -> AsyncIterator[DeliveryWorkers]:
    """The delivery pool, in-process; loopback targets allowed (settings.allow_private_targets)."""
    pool = DeliveryWorkers(settings, backends)
    await pool.start()
    yield pool
    await pool.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()
