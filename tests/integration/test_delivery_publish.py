"""PublishEvent: who gets a delivery, idempotency keys, and what is refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import psycopg
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from webhook_calls import create_webhook, field_violations, rpc_error

from support import make_caller
from webhookd.domain import ids
from webhookd.domain.events import event_body
from webhookd.store import events as store_events
from webhookd.store.conninfo import conninfo

# Events whose deliveries were queued though the event itself was never stored.
PHANTOM_DELIVERIES = (
    "SELECT count(*) FROM deliveries d WHERE d.tenant_id = :t"
    " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)"
)
WAITING_ON_AN_EVENT_INSERT = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO events%'"
)


def request(event_type: str = "rfp.created", **fields) -> pb.PublishEventRequest:
    payload = struct_pb2.Struct()
    payload.update({"rfp_id": 1})
    return pb.PublishEventRequest(event_type=event_type, payload=payload, **fields)


@pytest.mark.slow
async def test_fan_out_reaches_exactly_the_matching_active_outbound_webhooks(
    caller, channel, workers, receiver, database
) -> None:
    other_tenant = make_caller(channel, subject="person_2")
    # (filter, what else, whether rfp.created reaches it): 50 webhooks, one path each.
    kinds = (
        [("rfp.*", {}, True)] * 12
        + [("rfp.created", {}, True)] * 12
        + [("*", {}, True)] * 5
        + [("invoice.*", {}, False)] * 8
        + [("rfp.updated", {}, False)] * 5
        + [("rfp.*", {"enabled": False}, False)] * 5
        + [("rfp.*", {"deleted": True}, False)]
        + [("rfp.*", {"direction": wpb.DIRECTION_INBOUND}, False)]
        + [("rfp.*", {"tenant": other_tenant}, False)]
    )
    assert len(kinds) == 50
    expected = set()
    for n, (event_filter, extra, reached) in enumerate(kinds):
        owner = extra.get("tenant", caller)
        fields = {k: v for k, v in extra.items() if k in ("enabled", "direction")}
        hook = await create_webhook(
            owner, name=f"hook {n}", url=f"{receiver.url}/{n}", event_types=[event_filter], **fields
        )
        if extra.get("deleted"):
            await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id))
        if reached:
            expected.add(f"/hook/{n}")

    published = await caller.PublishEvent(request("rfp.created"))

    assert published.deliveries_queued == len(expected) == 29
    # The disabled ones keep a record of what they missed, for RecoverWebhook once they are enabled.
    assert published.deliveries_skipped == 5
    assert await database.value("SELECT count(*) FROM deliveries WHERE event_id = :e", e=published.event_id) == 34
    # Every delivery succeeded with its first attempt: nothing is left to send, so what arrived is all there is.
    await database.wait_for(
        "SELECT status, attempts FROM deliveries WHERE event_id = :e AND status <> 'skipped'",
        lambda rows: [(row.status, row.attempts) for row in rows] == [("succeeded", 1)] * 29,
        e=published.event_id,
    )
    assert sorted(r.path for r in receiver.received) == sorted(expected)
    assert {r.headers["webhook-id"] for r in receiver.received} == {published.event_id}


async def test_same_idempotency_key_returns_the_first_event_and_queues_once(caller, channel, database) -> None:
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])
    await create_webhook(caller, url="http://127.0.0.1:9/other", event_types=["*"])

    first = await caller.PublishEvent(request(idempotency_key="order-42"))
    again = await caller.PublishEvent(request(idempotency_key="order-42"))

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.event_id == first.event_id
    assert first.deliveries_queued == again.deliveries_queued == 2
    counts = await database.rows(
        "SELECT (SELECT count(*) FROM events WHERE tenant_id = :t) AS events,"
        " (SELECT count(*) FROM deliveries WHERE tenant_id = :t) AS deliveries",
        t=caller.tenant_id,
    )
    assert (counts[0].events, counts[0].deliveries) == (1, 2)

    other_tenant = make_caller(channel, subject="person_2")
    theirs = await other_tenant.PublishEvent(request(idempotency_key="order-42"))
    assert not theirs.duplicate
    assert theirs.event_id != first.event_id
    assert theirs.deliveries_queued == 0


async def test_a_retried_keyed_publish_answers_the_first_publishs_counts(caller, database) -> None:
    await create_webhook(caller, url="http://127.0.0.1:9/active", event_types=["rfp.*"])
    paused = await create_webhook(caller, url="http://127.0.0.1:9/paused", event_types=["rfp.*"])
    assert await database.execute(
        "UPDATE webhooks SET paused_at = now(), version = version + 1 WHERE id = :id", id=paused.id
    )
    await create_webhook(caller, url="http://127.0.0.1:9/off", event_types=["rfp.*"], enabled=False)

    first = await caller.PublishEvent(request(idempotency_key="order-44"))
    again = await caller.PublishEvent(request(idempotency_key="order-44"))

    def counts(answer: pb.PublishEventResponse) -> tuple[int, int, int]:
        return answer.deliveries_queued, answer.deliveries_held, answer.deliveries_skipped

    assert counts(first) == (1, 1, 1)
    assert (again.event_id, again.duplicate, counts(again)) == (first.event_id, True, counts(first))


async def test_a_publish_that_loses_the_race_for_its_key_answers_the_winners_event(caller, database, backends) -> None:
    """The loser's insert waits for the winner's transaction, then finds the key taken; the row holding it
    committed after the loser's statement began, so that statement cannot see it. It used to go on as if
    it had inserted its event: deliveries queued for an event that was never stored."""
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])
    winner_id = ids.new_id(ids.EVENT_PREFIX)
    body = event_body("rfp.created", datetime.now(UTC), '{"rfp_id": 1}')
    async with (
        await psycopg.AsyncConnection.connect(conninfo(backends.database_url)) as winner,
        await psycopg.AsyncConnection.connect(conninfo(backends.database_url), autocommit=True) as looking,
    ):
        # The winner's transaction, between its event insert and its commit.
        await winner.execute(
            "INSERT INTO events (id, tenant_id, event_type, body, idempotency_key, created_at, channels)"
            " VALUES (%s, %s, 'rfp.created', %s, 'order-race', now(), '{}')",
            (winner_id, caller.tenant_id, body),
        )
        losing = asyncio.ensure_future(caller.PublishEvent(request(idempotency_key="order-race")))
        for _ in range(1000):
            if losing.done() or (await (await looking.execute(WAITING_ON_AN_EVENT_INSERT)).fetchone())[0]:
                break
            await asyncio.sleep(0.01)
        assert not losing.done(), "the publish did not wait for the winner's key"
        await winner.commit()
        lost = await losing

    assert (lost.event_id, lost.duplicate) == (winner_id, True)
    assert await database.value(PHANTOM_DELIVERIES, t=caller.tenant_id) == 0


async def test_concurrent_publishes_with_one_key_store_one_event_and_all_answer_it(caller, database) -> None:
    hook = await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["rfp.*"])

    for round_ in range(5):
        answers = await asyncio.gather(
            *(caller.PublishEvent(request(idempotency_key=f"order-crowd-{round_}")) for _ in range(8))
        )

        assert len({answer.event_id for answer in answers}) == 1
        assert sorted(answer.duplicate for answer in answers) == [False] + [True] * 7
        assert {answer.deliveries_queued for answer in answers} == {1}
    # Counted by type and webhook: the session's workers may pause the hook, which publishes an event of its own.
    stored = "SELECT count(*) FROM events WHERE tenant_id = :t AND event_type = 'rfp.created'"
    assert await database.value(stored, t=caller.tenant_id) == 5
    assert await database.value("SELECT count(*) FROM deliveries WHERE webhook_id = :w", w=hook.id) == 5
    assert await database.value(PHANTOM_DELIVERIES, t=caller.tenant_id) == 0


async def test_an_idempotency_key_reused_for_another_event_is_refused(caller, database) -> None:
    """A retry repeats its event; another event under the same key was answered as if published."""
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["*"])
    first = await caller.PublishEvent(request(idempotency_key="order-43"))
    # The same data written with other spacing and key order is the same event.
    retried = await caller.PublishEvent(
        pb.PublishEventRequest(event_type="rfp.created", payload_json='{ "rfp_id" : 1.0 }', idempotency_key="order-43")
    )

    other_type = await rpc_error(caller.PublishEvent(request("rfp.closed", idempotency_key="order-43")))
    other_data = await rpc_error(
        caller.PublishEvent(
            pb.PublishEventRequest(event_type="rfp.created", payload_json='{"rfp_id": 2}', idempotency_key="order-43")
        )
    )
    other_channels = await rpc_error(caller.PublishEvent(request(idempotency_key="order-43", channels=["eu"])))

    assert (retried.duplicate, retried.event_id) == (True, first.event_id)
    for refused in (other_type, other_data, other_channels):
        assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "another event" in field_violations(refused)["idempotency_key"]
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id) == 1


async def test_bad_event_type_is_invalid_argument(caller) -> None:
    error = await rpc_error(caller.PublishEvent(request("RFP Created")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "event_type" in field_violations(error)


async def test_payload_over_the_limit_is_invalid_argument(caller, settings, database) -> None:
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["*"])
    payload = struct_pb2.Struct()
    payload.update({"blob": "x" * settings.max_payload_bytes})

    error = await rpc_error(caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload=payload)))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"limit is {settings.max_payload_bytes} bytes" in field_violations(error)["payload"]
    assert await database.value("SELECT count(*) FROM events WHERE tenant_id = :t", t=caller.tenant_id) == 0


async def test_a_payload_of_exactly_the_limit_publishes_and_one_byte_more_is_refused(caller, settings) -> None:
    """The limit is on the payload's JSON as the caller sends it, not on the envelope delivered around it."""
    await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["*"])
    at_the_limit = '{"blob":"' + "x" * (settings.max_payload_bytes - len('{"blob":""}')) + '"}'

    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=at_the_limit))
    error = await rpc_error(
        caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=at_the_limit + " "))
    )

    assert published.deliveries_queued == 1
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    limit = settings.max_payload_bytes
    assert field_violations(error)["payload"] == f"is {limit + 1} bytes of JSON; the limit is {limit} bytes"


async def test_targeting_another_tenants_webhook_is_not_found(caller, channel, database) -> None:
    theirs = await create_webhook(
        make_caller(channel, subject="person_2"), url="http://127.0.0.1:9/hook", event_types=["*"]
    )

    error = await rpc_error(caller.PublishEvent(request(webhook_id=theirs.id)))

    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert await database.value("SELECT count(*) FROM deliveries WHERE webhook_id = :w", w=theirs.id) == 0


async def test_targeting_a_deleted_webhook_is_not_found_like_an_unknown_one(caller, database) -> None:
    deleted = await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["*"])
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=deleted.id))

    error = await rpc_error(caller.PublishEvent(request(webhook_id=deleted.id)))
    unknown = await rpc_error(caller.PublishEvent(request(webhook_id=ids.new_id(ids.WEBHOOK_PREFIX))))

    assert error.code() is unknown.code() is grpc.StatusCode.NOT_FOUND
    assert deleted.id in error.details()
    assert await database.value("SELECT count(*) FROM events WHERE target_webhook_id = :w", w=deleted.id) == 0


async def test_targeting_an_inbound_webhook_is_a_failed_precondition(caller, database) -> None:
    inbound = await create_webhook(
        caller, url="http://127.0.0.1:9/hook", event_types=["*"], direction=wpb.DIRECTION_INBOUND
    )

    error = await rpc_error(caller.PublishEvent(request(webhook_id=inbound.id)))

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "inbound webhooks receive" in error.details()
    assert await database.value("SELECT count(*) FROM events WHERE target_webhook_id = :w", w=inbound.id) == 0


async def test_targeting_a_webhook_not_subscribed_to_the_type_stores_the_event_and_queues_nothing(
    caller, database
) -> None:
    """Its filters are the webhook owner's to choose: the event is published, to no one, and the
    response's counts say so."""
    other = await create_webhook(caller, url="http://127.0.0.1:9/hook", event_types=["invoice.*"])

    published = await caller.PublishEvent(request(webhook_id=other.id))

    assert (published.deliveries_queued, published.deliveries_held, published.deliveries_skipped) == (0, 0, 0)
    assert await database.value("SELECT count(*) FROM deliveries WHERE event_id = :e", e=published.event_id) == 0


async def test_targeted_publish_queues_only_for_that_webhook(caller, database) -> None:
    chosen = await create_webhook(caller, url="http://127.0.0.1:9/a", event_types=["rfp.*"])
    await create_webhook(caller, url="http://127.0.0.1:9/b", event_types=["rfp.*"])

    published = await caller.PublishEvent(request(webhook_id=chosen.id))

    assert published.deliveries_queued == 1
    rows = await database.rows("SELECT webhook_id FROM deliveries WHERE event_id = :e", e=published.event_id)
    assert [row.webhook_id for row in rows] == [chosen.id]


async def test_a_fan_out_by_copy_writes_the_rows_a_pipelined_insert_does(caller, database, monkeypatch) -> None:
    """Wide fan-outs go by COPY, whose rows the store formats itself: the same rows either way. (The
    columns compared are those no worker changes: the session's pool may already be trying these.)"""
    hooks = {
        "plain": await create_webhook(caller, url="http://127.0.0.1:9/plain", event_types=["rfp.*"]),
        "fifo": await create_webhook(
            caller, url="http://127.0.0.1:9/fifo", event_types=["rfp.*"], ordering=wpb.ORDERING_FIFO
        ),
        "disabled": await create_webhook(caller, url="http://127.0.0.1:9/off", event_types=["rfp.*"], enabled=False),
    }
    by_insert = await caller.PublishEvent(request())
    monkeypatch.setattr(store_events, "COPY_THRESHOLD", 0)

    by_copy = await caller.PublishEvent(request())

    async def rows_of(published: pb.PublishEventResponse) -> dict[str, dict[str, object]]:
        rows = await database.rows(
            "SELECT d.*, e.created_at AS published_at FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.event_id = :e",
            e=published.event_id,
        )
        named = {hook.id: name for name, hook in hooks.items()}
        return {
            named[row.webhook_id]: {
                "tenant_id": row.tenant_id,
                "app_id": row.app_id,
                "status": row.status,
                "waits_for_nothing": row.next_attempt_at is None,
                "created_at_publish": row.created_at == row.published_at,
                "in_order": row.fifo_seq is not None,
                "id_shape": row.id.startswith("dlv_"),
            }
            for row in rows
        }

    inserted, copied = await rows_of(by_insert), await rows_of(by_copy)
    assert copied == inserted
    assert set(copied) == set(hooks)
    assert copied["plain"]["status"] == "pending" and not copied["plain"]["waits_for_nothing"]
    assert copied["disabled"]["status"] == "skipped" and copied["disabled"]["waits_for_nothing"]
    assert copied["fifo"]["in_order"] and not copied["plain"]["in_order"]
    assert (by_copy.deliveries_queued, by_copy.deliveries_skipped) == (2, 1)
    fifo_seqs = await database.rows(
        "SELECT event_id, fifo_seq FROM deliveries WHERE webhook_id = :w ORDER BY fifo_seq", w=hooks["fifo"].id
    )
    assert [row.event_id for row in fifo_seqs] == [by_insert.event_id, by_copy.event_id]  # publish order kept
