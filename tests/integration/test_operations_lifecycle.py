"""Every change of a webhook is observable: a lifecycle entry on the DeliveryLog, in the same order and
cursor as attempts, and a signed `webhookd.webhook.<change>` event to the tenant's webhooks that ask."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2, timestamp_pb2
from webhook_calls import create, create_webhook

from log_streams import Tail
from webhookd.domain import signing
from webhookd.domain.webhooks import SignatureScheme

OPS_PATH = "/hook/ops"


def failing_but_others(code: int):
    """Answers `code` to the failing webhook (`/hook`), 200 to the others."""

    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        return web.Response(status=code if request.path == "/hook" else 200, text="noted")

    return respond


async def publish(caller, n: int = 1) -> pb.PublishEventResponse:
    return await caller.PublishEvent(pb.PublishEventRequest(event_type="rfp.created", payload_json=f'{{"n": {n}}}'))


def kinds_of(entries) -> list[str]:
    return [entry.kind for entry in entries]


@pytest.mark.parametrize(
    ("code", "publishes", "reason"),
    [(500, 5, "5 consecutive failures"), (410, 1, "the endpoint answered 410 Gone")],
    ids=["after-failures", "after-410"],
)
async def test_an_auto_pause_is_a_log_entry_on_an_open_stream_and_a_signed_event_to_subscribers(
    caller, workers, receiver, database, settings, code, publishes, reason
) -> None:
    assert settings.pause_after_failures == 5
    receiver.respond = failing_but_others(code)
    # The failing webhook subscribes to the service's events too: it must never be sent its own.
    failing = await create_webhook(caller, url=receiver.url, event_types=["rfp.*", "webhookd.*"])
    ops = await create(caller, name="alerts", url=f"{receiver.url}/ops", event_types=["webhookd.webhook.*"])
    catch_all = await create_webhook(caller, url=f"{receiver.url}/all", event_types=["*"])
    tail = Tail(caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=failing.id, follow=True)))
    try:
        for n in range(publishes):
            await publish(caller, n)

        entries = await tail.wait_for(publishes + 1)
        paused = next(entry for entry in entries if entry.kind == "webhook.paused")
        assert (paused.webhook_id, paused.reason, paused.event_type) == (failing.id, reason, "webhookd.webhook.paused")
        assert paused.outcome == "" and paused.delivery_id == ""
        # In the log's order: after the attempts that caused it.
        assert kinds_of(entries) == ["attempt"] * publishes + ["webhook.paused"]
    finally:
        await tail.close()

    [request] = [r for r in await receiver.wait_for(publishes * 2 + 1) if r.path == OPS_PATH]
    assert {r.path for r in receiver.received} == {"/hook", "/hook/all", OPS_PATH}
    assert request.headers["webhook-id"] == paused.event_id
    signing.verify(
        SignatureScheme.STANDARD_WEBHOOKS, [ops.signing_secret], request.headers, request.body, int(time.time())
    )
    event = json.loads(request.body)
    assert event["type"] == "webhookd.webhook.paused"
    assert event["data"] == {
        "id": failing.id,
        "name": failing.name,
        "url": failing.url,
        "reason": reason,
        "time": event["timestamp"],
    }
    # One delivery of it: to the subscriber, neither to the webhook it is about nor to a `*` subscriber.
    rows = await database.rows("SELECT webhook_id FROM deliveries WHERE event_id = :e", e=paused.event_id)
    assert [row.webhook_id for row in rows] == [ops.webhook.id]
    assert catch_all.id not in {row.webhook_id for row in rows}


async def test_owner_changes_are_log_entries_in_order_filterable_by_kind(caller, database) -> None:
    hook = await create_webhook(caller, event_types=["rfp.*"])
    mask = field_mask_pb2.FieldMask(paths=["enabled"])
    since = timestamp_pb2.Timestamp()
    since.FromDatetime(datetime.now(UTC) - timedelta(hours=1))

    await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=hook.id, enabled=False), update_mask=mask)
    )
    await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=hook.id, enabled=True), update_mask=mask))
    await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=hook.id))
    await caller.SetWebhookCredential(
        pb.SetWebhookCredentialRequest(id=hook.id, header_name="Authorization", header_value="Bearer t0ken")
    )
    await caller.RecoverWebhook(pb.RecoverWebhookRequest(id=hook.id, since=since))
    await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id))  # not paused: a resume changes nothing
    await database.execute("UPDATE webhooks SET paused_at = now(), version = version + 1 WHERE id = :id", id=hook.id)
    await caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id))
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id))
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id))  # a repeated delete changes nothing
    await caller.UndeleteWebhook(pb.UndeleteWebhookRequest(id=hook.id))

    entries = await Tail(caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=hook.id))).ended()
    assert kinds_of(entries) == [
        "webhook.disabled",
        "webhook.enabled",
        "webhook.secret_rotated",
        "webhook.credential_changed",
        "webhook.recovered",
        "webhook.resumed",
        "webhook.deleted",
        "webhook.undeleted",
    ]
    assert entries[3].reason == "Authorization is sent with every delivery"  # the header, never its value
    recovered = entries[4]
    assert recovered.delivery_count == 0 and recovered.reason.startswith("0 deliveries queued again since ")
    assert entries[0].reason == "disabled by its owner"
    only = pb.DeliveryLogRequest(webhook_id=hook.id, kinds=["webhook.deleted", "webhook.undeleted"])
    assert kinds_of(await Tail(caller.DeliveryLog(only)).ended()) == ["webhook.deleted", "webhook.undeleted"]
    # Continuing after a lifecycle entry's cursor, like after an attempt's.
    after = pb.DeliveryLogRequest(webhook_id=hook.id, after_cursor=entries[5].cursor)
    assert kinds_of(await Tail(caller.DeliveryLog(after)).ended()) == ["webhook.deleted", "webhook.undeleted"]


@pytest.mark.parametrize("change", ["delete", "disable", "rotate", "credential", "resume"])
async def test_a_change_whose_log_entry_cannot_be_written_is_not_made(caller, database, change) -> None:
    # The change and its lifecycle entry commit together: a failing entry leaves the webhook as it was.
    hook = await create_webhook(caller, event_types=["rfp.*"])
    if change == "resume":
        await database.execute(
            "UPDATE webhooks SET paused_at = now(), version = version + 1 WHERE id = :id", id=hook.id
        )
    before = (
        await caller.GetWebhook(
            pb.GetWebhookRequest(id=hook.id), metadata=(*caller.metadata, ("cache-control", "no-cache"))
        )
    ).webhook
    function, trigger = f"refuse_{hook.id.lower()}", f"refuse_{hook.id.lower()}_entries"
    await database.execute(
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'the log refuses this entry'; END $$"
    )
    await database.execute(
        f"CREATE TRIGGER {trigger} BEFORE INSERT ON attempts FOR EACH ROW"
        f" WHEN (NEW.webhook_id = '{hook.id}') EXECUTE FUNCTION {function}()"
    )
    try:
        calls = {
            "delete": lambda: caller.DeleteWebhook(pb.DeleteWebhookRequest(id=hook.id)),
            "disable": lambda: caller.UpdateWebhook(
                pb.UpdateWebhookRequest(
                    webhook=wpb.Webhook(id=hook.id, enabled=False),
                    update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
                )
            ),
            "rotate": lambda: caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=hook.id)),
            "credential": lambda: caller.SetWebhookCredential(
                pb.SetWebhookCredentialRequest(id=hook.id, header_name="Authorization", header_value="Bearer t")
            ),
            "resume": lambda: caller.ResumeWebhook(pb.ResumeWebhookRequest(id=hook.id)),
        }
        with pytest.raises(grpc.aio.AioRpcError):
            await calls[change]()
    finally:
        await database.execute(f"DROP TRIGGER {trigger} ON attempts")
        await database.execute(f"DROP FUNCTION {function}()")

    after = (
        await caller.GetWebhook(
            pb.GetWebhookRequest(id=hook.id), metadata=(*caller.metadata, ("cache-control", "no-cache"))
        )
    ).webhook
    assert after == before
