"""Optimistic concurrency: a version is a precondition only one concurrent writer can meet."""

from __future__ import annotations

import asyncio

import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create_webhook

WRITERS = 12


async def test_concurrent_updates_with_the_same_version_let_exactly_one_win(caller) -> None:
    webhook = await create_webhook(caller)
    requests = [
        pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=webhook.version, name=f"writer {n}"))
        for n in range(WRITERS)
    ]

    results = await asyncio.gather(*(caller.UpdateWebhook(r) for r in requests), return_exceptions=True)

    winners = [r for r in results if isinstance(r, pb.UpdateWebhookResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1, results
    assert len(losers) == WRITERS - 1
    assert {error.code() for error in losers} == {grpc.StatusCode.ABORTED}
    got = (await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))).webhook
    assert got.version == webhook.version + 1
    assert got.name == winners[0].webhook.name


async def test_concurrent_deletes_with_the_same_version_let_exactly_one_win(caller) -> None:
    webhook = await create_webhook(caller)
    await caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name="v2")))
    racers = [
        caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, version=2, name="racer"))),
        caller.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook.id, version=2)),
    ]
    results = await asyncio.gather(*racers, return_exceptions=True)
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) == 1
    assert errors[0].code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION)
    assert (await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))).webhook.version == 3


async def test_concurrent_updates_without_a_version_all_apply(caller) -> None:
    webhook = await create_webhook(caller)
    names = [f"writer {n}" for n in range(4)]
    await asyncio.gather(
        *(caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, name=n))) for n in names)
    )
    got = (await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))).webhook
    assert got.version == 1 + len(names)
    assert got.name in names
