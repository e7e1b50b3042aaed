"""A webhook's secret-change lease whose take PostgreSQL carried out after its caller was told
UNAVAILABLE is given back once the database answers: the next change goes ahead at once, instead of
being refused (ABORTED) until the lease lapses.

Triggers of this tenant's only stand in for a frozen PostgreSQL. The take's COMMIT waits on an advisory
lock the test holds, past the service's database timeout, and commits when it is cancelled: what its
caller gave up on is carried out all the same, as a frozen server does when it resumes with the COMMIT
queued. Releases wait on the same lock (and are refused at the timeout) until the test lets them by.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import grpc
import psycopg
from cpod.integration.v1 import webhook_service_pb2 as pb
from psycopg import sql
from webhook_calls import create, rpc_error

from support import Database, running_service
from webhookd.domain.scope import Scope
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database as Pool
from webhookd.store.webhooks import WebhookStore

# The service's database timeout here: the take is given up on after it.
DATABASE_TIMEOUT_SECONDS = 1.0
LEASE = "SELECT secret_change_token FROM webhooks WHERE id = :id"
_TAKEN = "OLD.secret_change_token IS NULL AND NEW.secret_change_token IS NOT NULL"
_RELEASED = "OLD.secret_change_token IS NOT NULL AND NEW.secret_change_token IS NULL"


@contextlib.asynccontextmanager
async def lease_writes_held(database_url: str, tenant_id: str) -> AsyncIterator[psycopg.AsyncConnection[object]]:
    """Until the block ends (or the yielded connection unlocks `hashtext(tenant_id)`), this tenant's lease
    takes wait at their COMMIT and commit once cancelled, and its releases wait and fail when cancelled."""
    triggers = [sql.Identifier(f"{kind}_{tenant_id.lower()}") for kind in ("take", "release")]
    async with await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as connection:
        await connection.execute(
            "CREATE OR REPLACE FUNCTION test_commit_when_cancelled() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_advisory_xact_lock_shared(hashtext(NEW.tenant_id)); RETURN NULL;"
            " EXCEPTION WHEN query_canceled THEN RETURN NULL; END $$"
        )
        await connection.execute(
            "CREATE OR REPLACE FUNCTION test_wait_for_the_gate() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_advisory_xact_lock_shared(hashtext(NEW.tenant_id)); RETURN NEW; END $$"
        )
        await connection.execute(
            sql.SQL(
                "CREATE CONSTRAINT TRIGGER {} AFTER UPDATE ON webhooks DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                " WHEN (NEW.tenant_id = {} AND {}) EXECUTE FUNCTION test_commit_when_cancelled()"
            ).format(triggers[0], sql.Literal(tenant_id), sql.SQL(_TAKEN))
        )
        await connection.execute(
            sql.SQL(
                "CREATE TRIGGER {} BEFORE UPDATE ON webhooks FOR EACH ROW"
                " WHEN (NEW.tenant_id = {} AND {}) EXECUTE FUNCTION test_wait_for_the_gate()"
            ).format(triggers[1], sql.Literal(tenant_id), sql.SQL(_RELEASED))
        )
        await connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (tenant_id,))
        try:
            yield connection
        finally:
            await connection.execute("SELECT pg_advisory_unlock_all()")
            for trigger in triggers:
                await connection.execute(sql.SQL("DROP TRIGGER {} ON webhooks").format(trigger))


async def test_a_lease_whose_take_was_answered_unavailable_but_committed_is_given_back_for_the_next_change(
    settings, backends, database: Database
) -> None:
    short = replace(settings, database_timeout_seconds=DATABASE_TIMEOUT_SECONDS)
    async with running_service(short, backends) as caller:
        created = await create(caller)
        webhook_id = created.webhook.id

        async with lease_writes_held(backends.database_url, caller.tenant_id) as gate:
            refused = await rpc_error(caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook_id)))
            # The take committed after its caller gave up on it: the lease is held, by nobody that answers.
            await database.wait_for(LEASE, lambda rows: rows[0].secret_change_token is not None, id=webhook_id)
            await gate.execute("SELECT pg_advisory_unlock(hashtext(%s))", (caller.tenant_id,))
            await database.wait_for(LEASE, lambda rows: rows[0].secret_change_token is None, id=webhook_id)

        rotated = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=webhook_id))

    assert refused.code() is grpc.StatusCode.UNAVAILABLE
    assert rotated.webhook.secret_fingerprint != created.webhook.secret_fingerprint


async def lock_waits(connection: psycopg.AsyncConnection[object], query_part: str) -> bool:
    cursor = await connection.execute(
        "SELECT count(*) > 0 FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE %s",
        (f"%{query_part}%",),
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


async def test_a_release_sent_while_its_takes_commit_is_pending_waits_for_it_and_releases(
    caller, backends, database: Database
) -> None:
    """The take answered UNAVAILABLE, its COMMIT still on its way: the release must not find "no lease"
    and return, leaving the lease to be committed behind it."""
    webhook_id = (await create(caller)).webhook.id
    token = uuid4()
    pool = Pool(backends.database_url, size=1)
    await pool.open()
    async with await psycopg.AsyncConnection.connect(conninfo(backends.database_url)) as take:
        try:
            await take.execute(  # the take, up to its COMMIT
                "UPDATE webhooks SET secret_change_token = %s, secret_change_until = clock_timestamp() + %s"
                " WHERE id = %s",
                (token, timedelta(hours=1), webhook_id),
            )
            releasing = asyncio.ensure_future(
                WebhookStore(pool).release_secret_lease(Scope(caller.tenant_id), webhook_id, token)
            )
            async with await psycopg.AsyncConnection.connect(
                conninfo(backends.database_url), autocommit=True
            ) as watcher:
                for _ in range(500):
                    if releasing.done() or await lock_waits(watcher, "FROM webhooks"):
                        break
                    await asyncio.sleep(0.01)
            await take.commit()
            await releasing
        finally:
            await pool.close()

    [lease] = await database.rows(LEASE, id=webhook_id)
    assert lease.secret_change_token is None
