"""Nothing silently dropped: events published while a webhook is paused are held, while it is disabled
skipped, and both can be sent later (ResumeWebhook, RecoverWebhook) or kept as history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2, timestamp_pb2
from psycopg import sql
from trigger_ddl import trigger_ddl
from webhook_calls import create_webhook, rpc_error

from log_streams import Tail
from support import Database, running_service
from webhookd.app import Backends
from webhookd.store.conninfo import conninfo
from webhookd.store.database import Database as Pool
from webhookd.store.deliveries import CLAIM_LOCK_ID
from webhookd.store.stranded_held import release_stranded

PAUSE = "UPDATE webhooks SET paused_at = now(), version = version + 1 WHERE id = :id"
STATUSES = "SELECT id, status, next_attempt_at FROM deliveries WHERE webhook_id = :w ORDER BY created_at, id"


async def publish(caller, n: int, event_type: str = "rfp.created") -> pb.PublishEventResponse:
    return await caller.PublishEvent(pb.PublishEventRequest(event_type=event_type, payload_json=f'{{"n": {n}}}'))


async def held_webhook(caller, database, receiver) -> wpb.Webhook:
    """An outbound webhook paused as the recorder pauses one (paused_at set, a new version)."""
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    assert await database.execute(PAUSE, id=hook.id) == 1
    return hook


async def test_publish_while_paused_holds_the_deliveries_and_posts_nothing(caller, workers, receiver, database) -> None:
    hook = await held_webhook(caller, database, receiver)

    published = [await publish(caller, n) for n in range(3)]

    assert [(p.deliveries_queued, p.deliveries_held) for p in published] == [(0, 1)] * 3
    rows = await database.rows(STATUSES, w=hook.id)
    assert [(row.status, row.next_attempt_at) for row in rows] == [("held", None)] * 3
    listed = await caller.ListDeliveries(pb.ListDeliveriesRequest(webhook_id=hook.id, status="held"))
    assert {d.event_id for d in listed.deliveries} == {p.event_id for p in published}
    # Another webhook's delivery, published after them: a claim that could take held ones takes them first.
    await create_webhook(caller, url=f"{receiver.url}/active", event_types=["other.*"])
    after = await publish(caller, 9, "other.ping")
    await database.wait_for(
        "SELECT status FROM deliveries WHERE event_id = :e", lambda r: r[0].status == "succeeded", e=after.event_id
    )
    assert [request.path for request in receiver.received] == ["/hook/active"]


@contextlib.asynccontextmanager
async def claims_held_off(database_url: str) -> AsyncIterator[None]:
    """No claim takes anything meanwhile: this holds the lock every claim takes first."""
    async with await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as connection:
        await connection.execute("SELECT pg_advisory_lock(%s)", (CLAIM_LOCK_ID,))
        try:
            yield
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", (CLAIM_LOCK_ID,))


async def test_resume_releases_the_held_deliveries_in_publish_order(
    caller, workers, receiver, database, backends
) -> None:
    hook = await held_webhook(caller, database, receiver)
    published = [await publish(caller, n) for n in range(4)]

    # Read before a worker claims any: a claim moves next_attempt_at to its lease's end.
    async with claims_held_off(backends.database_url):
        resumed = await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id))
        released = await database.rows(
            "SELECT d.event_id FROM deliveries d WHERE d.webhook_id = :w ORDER BY d.next_attempt_at", w=hook.id
        )

    assert resumed.deliveries_released == 4 and resumed.deliveries_discarded == 0
    # Released due one after the other in publish order: the claim takes the oldest due first.
    assert [row.event_id for row in released] == [p.event_id for p in published]
    await database.wait_for(STATUSES, lambda rows: [r.status for r in rows] == ["succeeded"] * 4, w=hook.id)
    assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(p.event_id for p in published)
    assert next(r.body for r in receiver.received if r.headers["webhook-id"] == published[0].event_id).endswith(
        b'"data":{"n": 0}}'
    )


async def test_resume_with_discard_held_keeps_them_in_history_as_discarded(caller, workers, receiver, database) -> None:
    hook = await held_webhook(caller, database, receiver)
    held = [await publish(caller, n) for n in range(2)]

    resumed = await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id, discard_held=True))

    assert (resumed.deliveries_released, resumed.deliveries_discarded) == (0, 2)
    listed = await caller.ListDeliveries(pb.ListDeliveriesRequest(webhook_id=hook.id, status="discarded"))
    assert {d.event_id for d in listed.deliveries} == {p.event_id for p in held}
    assert all(d.HasField("completed_at") and not d.HasField("next_attempt_at") for d in listed.deliveries)
    # The webhook is active again: the next event is sent, and it is the only one the receiver ever gets.
    fresh = await publish(caller, 7)
    assert fresh.deliveries_queued == 1
    await database.wait_for(
        "SELECT status FROM deliveries WHERE event_id = :e", lambda r: r[0].status == "succeeded", e=fresh.event_id
    )
    assert [r.headers["webhook-id"] for r in receiver.received] == [fresh.event_id]


class Gate:
    """Holds back the inserts of one tenant's deliveries until it opens: a publish can be stopped after it
    read its targets and before it commits, so another call's transaction can run in between."""

    def __init__(self, connection: psycopg.AsyncConnection[object], tenant_id: str) -> None:
        self.connection = connection
        self._tenant_id = tenant_id
        self._open = False

    async def open(self) -> None:
        """Lets the held inserts go on. The trigger stays until the block ends: dropping it locks every
        partition of `deliveries`, and calls still under way would queue behind that (and behind its
        retries after a deadlock, a second each) past their database timeout."""
        if not self._open:
            await self.connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self._tenant_id,))
            self._open = True

    async def waiting(self, query_part: str, wait_event: str) -> bool:
        """Whether some backend's statement holding `query_part` is waiting on a lock of `wait_event`."""
        cursor = await self.connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = %s AND query LIKE %s",
            (wait_event, f"%{query_part}%"),
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def until_waiting(self, query_part: str, wait_event: str, *, unless_done: asyncio.Future[object]) -> None:
        for _ in range(1000):
            if unless_done.done() or await self.waiting(query_part, wait_event):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{query_part!r} neither finished nor waited on a {wait_event} lock")


@contextlib.asynccontextmanager
async def delivery_inserts_gated(database_url: str, tenant_id: str) -> AsyncIterator[Gate]:
    """A trigger (this tenant's only) makes each delivery insert wait for an advisory lock the gate holds
    until the block ends."""
    trigger = sql.Identifier(f"gate_{tenant_id.lower()}")
    async with await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as connection:
        await connection.execute(
            "CREATE OR REPLACE FUNCTION test_gate_delivery_insert() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_advisory_xact_lock_shared(hashtext(NEW.tenant_id)); RETURN NEW; END $$"
        )
        await trigger_ddl(
            connection,
            sql.SQL(
                "CREATE TRIGGER {} BEFORE INSERT ON deliveries FOR EACH ROW WHEN (NEW.tenant_id = {})"
                " EXECUTE FUNCTION test_gate_delivery_insert()"
            ).format(trigger, sql.Literal(tenant_id)),
        )
        await connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (tenant_id,))
        gate = Gate(connection, tenant_id)
        try:
            yield gate
        finally:
            await gate.open()
            await trigger_ddl(connection, sql.SQL("DROP TRIGGER {} ON deliveries").format(trigger))


async def test_a_resume_between_a_publishs_read_of_the_paused_webhook_and_its_commit_still_releases_it(
    caller, workers, receiver, database, backends
) -> None:
    hook = await held_webhook(caller, database, receiver)

    async with delivery_inserts_gated(backends.database_url, caller.tenant_id) as gate:
        # The publish reads its target paused, then waits to insert the delivery it will hold.
        publishing = asyncio.ensure_future(publish(caller, 1))
        await gate.until_waiting("INSERT INTO deliveries", "advisory", unless_done=publishing)
        assert not publishing.done()
        # The resume runs meanwhile: to its end, or until it waits for the publish.
        resuming = asyncio.ensure_future(caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id)))
        await gate.until_waiting("UPDATE webhooks", "transactionid", unless_done=resuming)
        await gate.open()
        published, resumed = await publishing, await resuming

    # Held or not, the event is not left waiting on a webhook that is no longer paused.
    [row] = await database.rows(STATUSES, w=hook.id)
    assert row.status != "held"
    assert (published.deliveries_queued + resumed.deliveries_released, published.deliveries_held) == (1, 1)
    [request] = await receiver.wait_for(1)
    assert request.headers["webhook-id"] == published.event_id


async def test_the_held_round_releases_an_operational_event_held_past_its_webhooks_resume_and_no_other(
    settings, backends, own_database
) -> None:
    # A database of its own: the session workers' held round would release the stranded delivery first.
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as caller:
        rows = Database(own_database)
        pool = Pool(own_database, size=1)
        await pool.open()
        try:
            stranded = await create_webhook(caller, url="http://127.0.0.1:9/a", event_types=["webhookd.webhook.*"])
            paused = await create_webhook(caller, url="http://127.0.0.1:9/b", event_types=["webhookd.webhook.*"])
            for hook in (stranded, paused):
                assert await rows.execute(PAUSE, id=hook.id) == 1
            subject = await create_webhook(caller, url="http://127.0.0.1:9/c", event_types=["rfp.*"])
            disabled = wpb.Webhook(id=subject.id, enabled=False)
            disable = pb.UpdateWebhookRequest(webhook=disabled, update_mask=field_mask_pb2.FieldMask(paths=["enabled"]))
            await caller.UpdateWebhook(disable)  # its webhookd.webhook.disabled event: held for both
            # What the race leaves: `stranded`'s resume committed before that event's write, so it released
            # nothing of it, and the delivery committed held for a webhook no longer paused.
            unpause = "UPDATE webhooks SET paused_at = NULL, version = version + 1 WHERE id = :id"
            assert await rows.execute(unpause, id=stranded.id) == 1
            assert [r.status for r in await rows.rows(STATUSES, w=stranded.id)] == ["held"]

            released = await release_stranded(pool, now=datetime.now(UTC))

            assert released == {stranded.id: 1}
            [row] = await rows.rows(STATUSES, w=stranded.id)
            assert row.status == "pending" and row.next_attempt_at is not None
            assert [(r.status, r.next_attempt_at) for r in await rows.rows(STATUSES, w=paused.id)] == [("held", None)]
            assert await release_stranded(pool, now=datetime.now(UTC)) == {}
        finally:
            await pool.close()
            await rows.close()


async def test_publish_while_disabled_is_skipped_and_recover_requeues_it_after_enabling(
    caller, workers, receiver, database
) -> None:
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], enabled=False)
    since = timestamp_pb2.Timestamp()
    since.FromDatetime(datetime.now(UTC) - timedelta(minutes=5))

    missed = await publish(caller, 1)

    assert (missed.deliveries_queued, missed.deliveries_held, missed.deliveries_skipped) == (0, 0, 1)
    assert [row.status for row in await database.rows(STATUSES, w=hook.id)] == ["skipped"]
    refused = await rpc_error(caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=since)))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION

    enable = pb.UpdateWebhookRequest(
        webhook=wpb.Webhook(id=hook.id, enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
    )
    await caller.UpdateWebhook(enable)
    recovered = await caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=since))

    assert recovered.deliveries_queued == 1
    [request] = await receiver.wait_for(1)
    assert request.headers["webhook-id"] == missed.event_id
    await database.wait_for(STATUSES, lambda rows: [r.status for r in rows] == ["succeeded"], w=hook.id)


async def test_resuming_a_webhook_that_is_not_paused_changes_nothing_and_discards_nothing_owed(
    settings, backends, own_database
) -> None:
    # A database of its own: the session workers' held round would release the held delivery first.
    async with running_service(settings, Backends(own_database, backends.vault_addr, backends.vault_token)) as caller:
        rows = Database(own_database)
        try:
            hook = await create_webhook(caller, url="http://127.0.0.1:9/a", event_types=["rfp.*"])
            assert await rows.execute(PAUSE, id=hook.id) == 1
            assert (await publish(caller, 1)).deliveries_held == 1
            # What a resume racing that publish leaves: the delivery held for a webhook no longer paused,
            # owed (the held round sends it), since it was published once the webhook was live.
            unpause = "UPDATE webhooks SET paused_at = NULL, version = version + 1 WHERE id = :id"
            assert await rows.execute(unpause, id=hook.id) == 1
            fresh = (*caller.metadata, ("cache-control", "no-cache"))
            before = (await caller.GetWebhook(pb.GetWebhookRequest(id=hook.id), metadata=fresh)).webhook

            resumed = await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id, discard_held=True))

            assert (resumed.deliveries_released, resumed.deliveries_discarded) == (0, 0)
            assert resumed.webhook == before
            assert [row.status for row in await rows.rows(STATUSES, w=hook.id)] == ["held"]
            resumes = pb.DeliveryLogRequest(webhook_id=hook.id, kinds=["webhook.resumed"])
            assert await Tail(caller.DeliveryLog(resumes)).ended() == []
        finally:
            await rows.close()
