"""A database URL's own libpq parameters reach every connection the service opens: here `options`
setting a search_path, so everything webhookd keeps lives in a schema of its own, as on a database
shared with other services. (The pool used to replace the URL's `options` with its statement
timeout, and the listeners' connection string turned the option's space into a `+`.)"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from support import in_schema_of_its_own, running_service
from webhookd.app import Backends
from webhookd.domain.topics import Topic
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database
from webhookd.store.notifications import PostgresNotifications

SCHEMA = "webhookd_own"
HEARD_WITHIN_SECONDS = 10.0


@pytest.fixture
async def schema_url(own_database: str) -> str:
    return await in_schema_of_its_own(own_database, SCHEMA)


async def test_pooled_connections_keep_the_urls_options_and_add_the_statement_timeout(schema_url: str) -> None:
    database = Database(schema_url, size=1, timeout_seconds=3.0)
    await database.open()
    try:
        settings = await database.fetch_one(
            "SELECT current_setting('search_path'), current_setting('statement_timeout')"
        )
    finally:
        await database.close()
    assert settings == (SCHEMA, "3s")


async def test_notifications_are_sent_and_heard_on_connections_made_from_the_url(schema_url: str) -> None:
    notifications = PostgresNotifications(schema_url)
    notifications.start()
    heard: asyncio.Queue[str | None] = asyncio.Queue()
    try:
        async with notifications.follow(Topic.DELIVERIES, heard.put_nowait):
            # None says listening has started: a notification sent from then on is heard.
            assert await asyncio.wait_for(heard.get(), HEARD_WITHIN_SECONDS) is None
            notifications.notify(Topic.DELIVERIES, "wh_1")
            assert await asyncio.wait_for(heard.get(), HEARD_WITHIN_SECONDS) == "wh_1"
    finally:
        await notifications.close()


async def test_the_service_keeps_its_tables_and_rows_in_the_urls_schema(settings, backends, schema_url: str) -> None:
    async with running_service(settings, Backends(schema_url, backends.vault_addr, backends.vault_token)) as caller:
        created = await caller.CreateWebhook(
            pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url="http://127.0.0.1:9/hook", event_types=["a.*"]))
        )
        assert (await caller.GetWebhook(pb.GetWebhookRequest(id=created.webhook.id))).webhook.name == "w"
        await caller.PublishEvent(pb.PublishEventRequest(event_type="a.b", webhook_id=created.webhook.id))
    own_database = schema_url.partition("&options=")[0]
    async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as connection:
        found = await (
            await connection.execute(
                f"SELECT to_regclass('public.webhooks') IS NULL, (SELECT count(*) FROM {SCHEMA}.webhooks),"
                f" (SELECT count(*) FROM {SCHEMA}.deliveries), (SELECT count(*) FROM {SCHEMA}.alembic_version)"
            )
        ).fetchone()
    assert found == (True, 1, 1, 1)
