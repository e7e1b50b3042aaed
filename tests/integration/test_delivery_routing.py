"""Delivery past the event type, on the real service and workers: channels, ed25519 signatures, FIFO order
and rate limits. The processes-across-a-fleet versions of the last two are in e2e/test_routing_processes.py."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import grpc
from aiohttp import web
from cpod.integration.v1 import public_key_pb2 as kpb
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2
from rest_calls import WEBHOOKS, rest_caller, violated_fields
from webhook_calls import create, create_webhook, field_violations, rpc_error

from receivers import Received, failing_first


async def publish(caller, n: int = 0, *channels: str, event_type: str = "rfp.created") -> pb.PublishEventResponse:
    payload = struct_pb2.Struct()
    payload.update({"n": n})
    return await caller.PublishEvent(pb.PublishEventRequest(event_type=event_type, payload=payload, channels=channels))


async def all_succeeded(database, event_ids: list[str], count: int) -> None:
    """Every delivery of these events has succeeded: no further request can come."""
    await database.wait_for(
        "SELECT status FROM deliveries WHERE event_id = ANY(:e)",
        lambda rows: len(rows) == count and all(row.status == "succeeded" for row in rows),
        e=event_ids,
    )


# -- channels --------------------------------------------------------------------------------------------


async def test_webhooks_on_channels_get_only_their_channels_events_and_one_without_gets_all(
    caller, workers, receiver, database
) -> None:
    await create_webhook(caller, url=f"{receiver.url}/eu", event_types=["rfp.*"], channels=["eu"])
    await create_webhook(caller, url=f"{receiver.url}/us", event_types=["rfp.*"], channels=["us", "global"])
    await create_webhook(caller, url=f"{receiver.url}/all", event_types=["rfp.*"])

    published = [
        await publish(caller, 1, "eu"),
        await publish(caller, 2, "us"),
        await publish(caller, 3, "eu", "global"),
        await publish(caller, 4),
    ]

    assert [event.deliveries_queued for event in published] == [2, 2, 3, 1]
    await all_succeeded(database, [event.event_id for event in published], 8)
    seen: dict[str, list[int]] = {}
    for request in receiver.received:
        seen.setdefault(request.path, []).append(json.loads(request.body)["data"]["n"])
    assert {path: sorted(ns) for path, ns in seen.items()} == {
        "/hook/eu": [1, 3],
        "/hook/us": [2, 3],
        "/hook/all": [1, 2, 3, 4],
    }


async def test_channels_are_checked_on_the_webhook_and_on_the_event(caller) -> None:
    bad_webhook = await rpc_error(create(caller, channels=["ok", "not ok"]))
    bad_event = await rpc_error(publish(caller, 0, "*"))

    assert set(field_violations(bad_webhook)) == {"webhook.channels[1]"}
    assert set(field_violations(bad_event)) == {"channels[0]"}


async def test_a_queued_delivery_stays_when_the_filters_change_and_goes_to_the_url_the_webhook_has_then(
    caller, workers, receiver, database
) -> None:
    receiver.respond = failing_first(1)
    hook = await create_webhook(caller, url=f"{receiver.url}/old", event_types=["rfp.*"], channels=["eu"])
    event = await publish(caller, 1, "eu")
    [delivery] = await database.wait_for(
        "SELECT id FROM deliveries WHERE event_id = :e AND attempts = 1 AND lease_token IS NULL", bool, e=event.event_id
    )

    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=hook.id, url=f"{receiver.url}/new", event_types=["other.thing"], channels=["us"]),
            update_mask=field_mask_pb2.FieldMask(paths=["url", "event_types", "channels"]),
        )
    )
    assert await database.make_due(delivery.id) == 1

    await all_succeeded(database, [event.event_id], 1)
    assert [request.path for request in receiver.received] == ["/hook/old", "/hook/new"]


# -- inbound webhooks --------------------------------------------------------------------------------------

# What only deliveries use: an inbound webhook is delivered nothing, so each would be stored and do nothing.
OUTBOUND_ONLY = {
    "channels": ["eu"],
    "rate_limit_per_second": 5,
    "ordering": wpb.ORDERING_FIFO,
    "headers": {"X-Team": "crm"},
    "retry_policy": wpb.RetryPolicy(max_attempts=3),
}


async def test_an_inbound_webhook_refuses_what_only_deliveries_use_over_grpc_and_rest(caller, gateway) -> None:
    on_create = await rpc_error(create(caller, direction=wpb.DIRECTION_INBOUND, **OUTBOUND_ONLY))
    inbound = await create_webhook(caller, direction=wpb.DIRECTION_INBOUND)
    masked = await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(
                webhook=wpb.Webhook(id=inbound.id, ordering=wpb.ORDERING_FIFO),
                update_mask=field_mask_pb2.FieldMask(paths=["ordering", "rate_limit_per_second"]),
            )
        )
    )
    unmasked = await rpc_error(
        caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=inbound.id, rate_limit_per_second=2)))
    )
    async with rest_caller(gateway.url, caller.tenant_id) as rest:
        posted = await rest.post(
            WEBHOOKS, json={"name": "in", "direction": "inbound", "channels": ["eu"], "rateLimitPerSecond": 2}
        )
        patched = await rest.patch(
            f"{WEBHOOKS}/{inbound.id}", params={"update_mask": "channels"}, json={"channels": ["eu"]}
        )
    # Naming them at their defaults changes nothing that matters, and is how a webhook is put right.
    cleared = (
        await caller.UpdateWebhook(
            pb.UpdateWebhookRequest(
                webhook=wpb.Webhook(id=inbound.id),
                update_mask=field_mask_pb2.FieldMask(
                    paths=["channels", "rate_limit_per_second", "ordering", "headers"]
                ),
            )
        )
    ).webhook

    assert on_create.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(on_create)) == {f"webhook.{name}" for name in OUTBOUND_ONLY}
    assert "inbound" in field_violations(on_create)["webhook.ordering"]
    assert set(field_violations(masked)) == {"webhook.ordering"}
    assert set(field_violations(unmasked)) == {"webhook.rate_limit_per_second"}
    assert (posted.status_code, violated_fields(posted)) == (
        400,
        {"webhook.channels", "webhook.rate_limit_per_second"},
    )
    assert (patched.status_code, violated_fields(patched)) == (400, {"webhook.channels"})
    assert cleared.version == inbound.version + 1  # the refused updates changed nothing
    assert (list(cleared.channels), cleared.rate_limit_per_second, cleared.ordering) == (
        [],
        0,
        wpb.ORDERING_UNORDERED,
    )


# -- ed25519 ---------------------------------------------------------------------------------------------


def signed_content(request: Received) -> bytes:
    return f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body


def v1a_signatures(request: Received) -> list[bytes]:
    entries = request.headers["webhook-signature"].split()
    assert all(entry.startswith("v1a,") for entry in entries), entries
    return [base64.b64decode(entry.removeprefix("v1a,")) for entry in entries]


def verifies(public_key: str, signature: bytes, content: bytes) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    try:
        key.verify(signature, content)
    except InvalidSignature:
        return False
    return True


async def test_an_ed25519_delivery_verifies_with_the_public_key_from_create(
    caller, workers, receiver, database
) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.*"], signature_scheme="ed25519")
    key = (await caller.GetWebhookPublicKey(kpb.GetWebhookPublicKeyRequest(id=created.webhook.id))).public_key

    await publish(caller, 1)
    [request] = await receiver.wait_for(1)

    assert created.signing_secret == "" and created.public_key.startswith("whpk_") and key == created.public_key
    assert len(base64.b64decode(created.public_key.removeprefix("whpk_"))) == 32
    [signature] = v1a_signatures(request)
    assert verifies(created.public_key, signature, signed_content(request))
    assert not verifies(created.public_key, signature, signed_content(request) + b"x")
    # The private key lives in Vault only: neither the row nor any response holds it.
    [row] = await database.rows("SELECT * FROM webhooks WHERE id = :w", w=created.webhook.id)
    assert "whsk_" not in json.dumps({k: str(v) for k, v in row.items()})
    assert "whsk_" not in str(created) + str(key)


async def test_during_an_ed25519_rotation_either_key_verifies_the_delivery(caller, workers, receiver) -> None:
    created = await create(caller, url=receiver.url, event_types=["rfp.*"], signature_scheme="ed25519")
    rotated = await caller.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=3600))
    )
    keys = await caller.GetWebhookPublicKey(kpb.GetWebhookPublicKeyRequest(id=created.webhook.id))

    await publish(caller, 2)
    [request] = await receiver.wait_for(1)

    assert (keys.public_key, keys.previous_public_key) == (rotated.public_key, created.public_key)
    assert rotated.signing_secret == "" and keys.HasField("previous_public_key_expires_at")
    content = signed_content(request)
    new_signature, old_signature = v1a_signatures(request)
    assert verifies(rotated.public_key, new_signature, content)
    assert verifies(created.public_key, old_signature, content)


async def test_every_key_that_still_signs_is_listed_with_its_expiry_newest_first(
    caller, workers, receiver, gateway
) -> None:
    """Three rotations within each other's overlaps: four signatures on a delivery, four keys listed."""
    created = await create(caller, url=receiver.url, event_types=["rfp.*"], signature_scheme="ed25519")
    keys = [created.public_key]
    for hours in (5, 4, 3):
        rotated = await caller.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=hours * 3600))
        )
        keys.append(rotated.public_key)

    listed = await caller.GetWebhookPublicKey(kpb.GetWebhookPublicKeyRequest(id=created.webhook.id))
    async with rest_caller(gateway.url, caller.tenant_id) as rest:
        over_rest = (await rest.get(f"/api/v1/integration/webhooks/{created.webhook.id}/public-key")).json()
    await publish(caller, 3)
    [request] = await receiver.wait_for(1)

    previous = [key.public_key for key in listed.previous_public_keys]
    assert (listed.public_key, previous) == (keys[3], [keys[2], keys[1], keys[0]])
    expiries = [key.expires_at.ToDatetime() for key in listed.previous_public_keys]
    assert expiries[0] < expiries[1] < expiries[2]  # each overlap runs from its own rotation
    # The single field of older clients still holds the key replaced last.
    assert listed.previous_public_key == keys[2]
    assert listed.previous_public_key_expires_at == listed.previous_public_keys[0].expires_at
    assert [key["public_key"] for key in over_rest["previous_public_keys"]] == previous
    assert all(key["expires_at"] for key in over_rest["previous_public_keys"])
    signatures = v1a_signatures(request)
    assert len(signatures) == 4
    assert all(
        verifies(key, signature, signed_content(request)) for key, signature in zip(keys[::-1], signatures, strict=True)
    )


async def test_ed25519_refuses_a_chosen_secret_a_family_switch_and_shared_secret_webhooks_have_no_key(caller) -> None:
    chosen = await rpc_error(create(caller, signature_scheme="ed25519", signing_secret="whsec_" + "a" * 40))
    hmac = await create(caller, signature_scheme="hmac-sha256")
    switch = await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=hmac.webhook.id, signature_scheme="ed25519"))
        )
    )
    no_key = await rpc_error(caller.GetWebhookPublicKey(kpb.GetWebhookPublicKeyRequest(id=hmac.webhook.id)))
    inbound = await rpc_error(create(caller, direction=wpb.DIRECTION_INBOUND, signature_scheme="ed25519"))

    assert set(field_violations(chosen)) == {"signing_secret"}
    assert set(field_violations(switch)) == {"webhook.signature_scheme"}
    assert no_key.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert set(field_violations(inbound)) == {"webhook.signature_scheme"}


# -- FIFO and rate limits, in one process ----------------------------------------------------------------


async def test_a_fifo_webhook_retrying_its_head_holds_back_the_rest_then_sends_them_in_order(
    caller, workers, receiver, database
) -> None:
    receiver.respond = failing_first(2)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], ordering=wpb.ORDERING_FIFO)
    events = [await publish(caller, n) for n in range(1, 6)]
    [head] = await database.rows("SELECT id FROM deliveries WHERE event_id = :e", e=events[0].event_id)

    for attempts in (1, 2):  # each failure is retried on its schedule; moving the retry to now is that wait
        await database.wait_for(
            "SELECT 1 FROM deliveries WHERE id = :d AND attempts = :n AND lease_token IS NULL",
            bool,
            d=head.id,
            n=attempts,
        )
        assert await database.make_due(head.id) == 1

    await all_succeeded(database, [event.event_id for event in events], 5)
    assert [json.loads(request.body)["data"]["n"] for request in receiver.received] == [1, 1, 1, 2, 3, 4, 5]
    assert hook.ordering == wpb.ORDERING_FIFO


async def test_a_redelivered_delivery_going_first_leaves_a_head_waiting_for_its_retry_waiting(
    caller, workers, receiver, database
) -> None:
    """The redelivered delivery was published first, so it goes before the head; its end must not make
    the head due before its retry (the receiver got [1, 2, 3, 4, 1, 4], the second 4 an hour early)."""
    answered_four = False

    async def four_fails_once_asking_for_an_hour(request: web.Request, count: int) -> web.StreamResponse:
        nonlocal answered_four
        if json.loads(await request.read())["data"]["n"] == 4 and not answered_four:
            answered_four = True
            return web.Response(status=503, headers={"Retry-After": "3600"}, text="later")
        return web.Response(text="ok")

    receiver.respond = four_fails_once_asking_for_an_hour
    await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], ordering=wpb.ORDERING_FIFO)
    events = [await publish(caller, n) for n in range(1, 5)]
    [first, _, _, head] = [
        (await database.rows("SELECT id FROM deliveries WHERE event_id = :e", e=event.event_id))[0].id
        for event in events
    ]
    await database.wait_for(
        "SELECT 1 FROM deliveries WHERE id = :d AND attempts = 1 AND lease_token IS NULL", bool, d=head
    )

    await caller.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=first))
    await database.wait_for(  # the redelivered one's end is recorded, and with it what it made due
        "SELECT 1 FROM deliveries WHERE id = :d AND status = 'succeeded' AND attempts = 2", bool, d=first
    )
    [waiting] = await database.rows(
        "SELECT attempts, next_attempt_at > now() + interval '50 minutes' AS later FROM deliveries WHERE id = :d",
        d=head,
    )
    assert (waiting.attempts, waiting.later) == (1, True)

    assert await database.make_due(head) == 1  # its hour passing
    await all_succeeded(database, [event.event_id for event in events], 4)
    assert [json.loads(request.body)["data"]["n"] for request in receiver.received] == [1, 2, 3, 4, 1, 4]


async def test_turning_fifo_off_sends_at_once_what_waited_behind_a_head_that_retries_later(
    caller, workers, receiver, database
) -> None:
    receiver.respond = failing_first(1)
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], ordering=wpb.ORDERING_FIFO)
    first = await publish(caller, 1)
    [head] = await database.wait_for(
        "SELECT id FROM deliveries WHERE event_id = :e AND attempts = 1 AND lease_token IS NULL", bool, e=first.event_id
    )
    await database.execute(  # its retry an hour away
        "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour', retry_at = now() + interval '1 hour'"
        " WHERE id = :d",
        d=head.id,
    )
    rest = [await publish(caller, n) for n in range(2, 5)]
    await database.wait_for(  # the claimer moved them out of its way until the head is due
        "SELECT 1 FROM deliveries WHERE event_id = ANY(:e) AND next_attempt_at > now() + interval '1 minute'",
        lambda rows: len(rows) == 3,
        e=[event.event_id for event in rest],
    )

    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=hook.id), update_mask=field_mask_pb2.FieldMask(paths=["ordering"])
        )
    )

    await all_succeeded(database, [event.event_id for event in rest], 3)
    assert sorted(json.loads(request.body)["data"]["n"] for request in receiver.received) == [1, 2, 3, 4]


async def test_lifting_a_rate_limit_sends_at_once_what_waited_for_its_slot(caller, workers, receiver, database) -> None:
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], rate_limit_per_second=1)
    events = [await publish(caller, n) for n in range(5)]
    ids = [event.event_id for event in events]
    await database.wait_for(  # the claimer moved some out of its way until their slot
        "SELECT 1 FROM deliveries WHERE event_id = ANY(:e) AND attempts = 0 AND lease_token IS NULL"
        " AND next_attempt_at > now() + interval '0.5 seconds'",
        bool,
        e=ids,
    )
    # What a backlog of an hour at 1/s would do to their slots.
    await database.execute(
        "UPDATE deliveries SET next_attempt_at = next_attempt_at + interval '1 hour'"
        " WHERE event_id = ANY(:e) AND attempts = 0 AND lease_token IS NULL AND next_attempt_at > now()",
        e=ids,
    )

    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=hook.id, rate_limit_per_second=0),
            update_mask=field_mask_pb2.FieldMask(paths=["rate_limit_per_second"]),
        )
    )

    await all_succeeded(database, ids, 5)


# Those of the deliveries that are not (or no longer) waiting an hour.
NOT_WAITING_AN_HOUR = (
    "SELECT id FROM deliveries WHERE id = ANY(:d)"
    " AND NOT (attempts = 1 AND status = 'pending' AND lease_token IS NULL"
    " AND next_attempt_at > now() + interval '50 minutes')"
)


async def test_lifting_a_rate_limit_sends_at_once_the_retries_that_waited_for_a_slot_and_no_retry_early(
    caller, workers, receiver, database
) -> None:
    receiver.respond = failing_first(4)  # fewer than the 5 in a row that pause a webhook in these tests
    hook = await create_webhook(caller, url=receiver.url, event_types=["rfp.*"])
    events = [await publish(caller, n) for n in range(4)]
    failed = await database.wait_for(
        "SELECT id FROM deliveries WHERE event_id = ANY(:e) AND attempts = 1 AND lease_token IS NULL",
        lambda rows: len(rows) == 4,
        e=[event.event_id for event in events],
    )
    [later, *retries] = [row.id for row in failed]
    # Their retries an hour away, and the slot given last an hour away: a backlog of an hour at 1/s.
    await database.execute(
        "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour', retry_at = now() + interval '1 hour',"
        " send_slot_at = CASE WHEN id = :l THEN now() + interval '1 hour' END WHERE id = ANY(:d)",
        l=later,
        d=[later, *retries],
    )
    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=hook.id, rate_limit_per_second=1),
            update_mask=field_mask_pb2.FieldMask(paths=["rate_limit_per_second"]),
        )
    )
    assert await database.rows(NOT_WAITING_AN_HOUR, d=[later, *retries]) == []  # none held back, none due
    assert await database.make_due(*retries) == 3  # three retries' hour passes
    # The claimer moves them out of its way until their slots, after the backlog.
    await database.wait_for(NOT_WAITING_AN_HOUR, lambda rows: rows == [], d=retries)

    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(
            webhook=wpb.Webhook(id=hook.id, rate_limit_per_second=0),
            update_mask=field_mask_pb2.FieldMask(paths=["rate_limit_per_second"]),
        )
    )
    # The update made due, in its own transaction, what it would: the retry an hour away is not among them.
    early = await database.rows(NOT_WAITING_AN_HOUR, d=[later])

    await database.wait_for(
        "SELECT status FROM deliveries WHERE id = ANY(:d)",
        lambda rows: len(rows) == 3 and all(row.status == "succeeded" for row in rows),
        d=retries,
    )
    assert early == []


async def test_a_rate_limited_webhooks_sends_are_spaced_by_its_limit(caller, workers, receiver, database) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["rfp.*"], rate_limit_per_second=20)
    events = [await publish(caller, n) for n in range(30)]

    await all_succeeded(database, [event.event_id for event in events], 30)

    arrivals = sorted(request.arrived_at for request in receiver.received)
    assert len(arrivals) == 30
    assert most_in_a_second(arrivals) <= 2 * 20
    assert arrivals[-1] - arrivals[0] >= timedelta(seconds=1).total_seconds()  # 30 at 20/s take over a second


def most_in_a_second(arrivals: list[float]) -> int:
    """The most arrivals in any one-second window (each window starting at an arrival)."""
    return max(sum(1 for other in arrivals if start <= other < start + 1.0) for start in arrivals)
