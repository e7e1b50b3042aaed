"""Helpers shared by tests: the test JWT secret, fresh tenants and authenticated stubs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import grpc
import psycopg
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import create_async_engine
from ulid import ULID

from webhookd.app import Backends, open_service
from webhookd.auth.tokens import mint
from webhookd.config import Settings
from webhookd.ports import Topic
from webhookd.store.conninfo import conninfo
from webhookd.store.notifications import PostgresNotifications

JWT_SECRET = "test-secret-test-secret-test-secret!"
# The report property a fault test's figures travel under, to the process that prints them (conftest.py).
FAULT_FIGURES_PROPERTY = "fault_figures"
# What `webhookd serve` prints once every server and worker process is ready (cli.py).
SERVING_LINE = "webhookd serving gRPC on "
# Metadata asking GetWebhook to read the database rather than its cache: for a test that has just
# changed a row behind the service's back, or observed a worker's write before its notification.
FRESH_READ = ("cache-control", "no-cache")


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


async def in_schema_of_its_own(database_url: str, schema: str) -> str:
    """Creates `schema` in the database and returns its URL with a search_path naming it (the URL's
    `options`, which reach every connection webhookd makes: store/conninfo.py)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as connection:
        await connection.execute(f"CREATE SCHEMA {schema}")
    return f"{database_url}&options={quote(f'-c search_path={schema}')}"


def make_caller(channel: grpc.aio.Channel, tenant_id: str | None = None, **claims: str) -> AuthedStub:
    tenant = tenant_id or new_tenant_id()
    return AuthedStub(channel, tenant, mint(JWT_SECRET, tenant_id=tenant, **claims))


class Database:
    """Plain SQL against a test database: reading what the service wrote, and moving the queue's clock."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, pool_size=2, max_overflow=4)
        # The service's own notification path, so a write made here wakes workers and followers as
        # one of the service's writes does.
        self._notifications = PostgresNotifications(url)

    def notify(self, topic: Topic, payload: str = "") -> None:
        self._notifications.start()
        self._notifications.notify(topic, payload)

    async def rows(self, statement: str, **params: Any) -> list[RowMapping]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(text(statement), params)).mappings())

    async def value(self, statement: str, **params: Any) -> Any:
        async with self.engine.connect() as connection:
            return await connection.scalar(text(statement), params)

    async def execute(self, statement: str, **params: Any) -> int:
        """Runs one statement and wakes the workers, as a publish does; returns the rows it touched."""
        async with self.engine.begin() as connection:
            result = await connection.execute(text(statement), params)
        self.notify(Topic.DELIVERIES)
        return result.rowcount

    async def make_due(self, *delivery_ids: str) -> int:
        """What time passing does to a scheduled retry: it is due now. Leased deliveries are left alone."""
        return await self.execute(
            "UPDATE deliveries SET next_attempt_at = now(), retry_at = now()"
            " WHERE id = ANY(:ids) AND status = 'pending' AND lease_token IS NULL",
            ids=list(delivery_ids),
        )

    async def wait_for(
        self, statement: str, until: Callable[[list[RowMapping]], bool], *, within: float = 15.0, **params: Any
    ) -> list[RowMapping]:
        """Polls `statement` until `until(rows)` holds; fails with the last rows after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            found = await self.rows(statement, **params)
            if until(found):
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"not reached within {within}s; last rows: {[dict(r) for r in found]}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self._notifications.close()
        await self.engine.dispose()


@asynccontextmanager
async def running_service(settings: Settings, backends: Backends) -> AsyncIterator[AuthedStub]:
    """A gRPC service of its own (no workers) on `backends`, and a fresh tenant's stub for it."""
    service = await open_service(settings, backends)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            yield make_caller(channel, subject="person_1")
    finally:
        await service.stop(grace=1.0)


# -- the REST gateway in front of the session service, as `webhookd serve` runs it -----------------
