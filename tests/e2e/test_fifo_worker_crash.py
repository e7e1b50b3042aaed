"""A `webhookd worker` SIGKILLed while it holds the lease of a FIFO webhook's delivery that went before a
head waiting an hour for its retry (deliveries.retry_at, migration 0019).

Events 1-4 are delivered in order, 4 answered 503 with Retry-After: 3600, and 5 waits behind it. Event 1
is redelivered: it goes first, and the worker dies while the receiver holds its request. Once the dead
lease has run out another worker sends 1 again; its end must leave 4 waiting for its hour (not make it
due at once), and 5 behind 4. When the hour passes, 4 and then 5 arrive: nothing lost, nothing early,
the order kept.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from test_worker_crash import end, start_worker, worker_environment

from support import Database, running_service
from webhookd.app import Backends

pytestmark = pytest.mark.slow
LEASED = "SELECT 1 FROM deliveries WHERE id = :d AND lease_token IS NOT NULL"
RECORDED = "SELECT 1 FROM deliveries WHERE id = :d AND attempts = :n AND lease_token IS NULL"


async def test_a_worker_killed_holding_a_redelivery_leaves_the_fifo_head_waiting_for_its_retry(
    settings, backends, own_database, receiver, tmp_path
) -> None:
    answered_four = False
    redelivery_arrived, released = asyncio.Event(), asyncio.Event()

    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        nonlocal answered_four
        n = json.loads(await request.read())["data"]["n"]
        if n == 4 and not answered_four:
            answered_four = True
            return web.Response(status=503, headers={"Retry-After": "3600"}, text="later")
        if n == 1 and count == 5:  # the redelivery, held until its worker is dead
            redelivery_arrived.set()
            await released.wait()
        return web.Response(text="ok")

    receiver.respond = respond
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    env = worker_environment(backends, own_database, tmp_path)
    log = tmp_path / "workers.log"
    database = Database(own_database)
    workers: list[asyncio.subprocess.Process] = []
    try:
        async with running_service(settings, isolated) as caller:
            policy = wpb.RetryPolicy(timeout_ms=30_000)
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(
                        name="fifo",
                        url=receiver.url,
                        event_types=["fifo.*"],
                        ordering=wpb.ORDERING_FIFO,
                        retry_policy=policy,
                    )
                )
            )

            async def publish(n: int) -> str:
                payload = struct_pb2.Struct()
                payload.update({"n": n})
                published = await caller.PublishEvent(pb.PublishEventRequest(event_type="fifo.tick", payload=payload))
                [row] = await database.rows("SELECT id FROM deliveries WHERE event_id = :e", e=published.event_id)
                return str(row.id)

            ids = {n: await publish(n) for n in range(1, 5)}
            workers.append(await start_worker(env, log))
            await database.wait_for(RECORDED, bool, d=ids[4], n=1, within=30)  # 4 waits for its retry
            ids[5] = await publish(5)

            await caller.RedeliverDelivery(pb.RedeliverDeliveryRequest(id=ids[1]))
            await asyncio.wait_for(redelivery_arrived.wait(), 30)
            await database.wait_for(LEASED, bool, d=ids[1])
            await end(workers[0], signal.SIGKILL)
            assert workers[0].returncode == -signal.SIGKILL
            released.set()
            # The dead worker's lease would run out after timeout_ms + 30 s (LEASE_MARGIN): ending it now
            # is what that time passing does.
            await database.execute(
                "UPDATE deliveries SET next_attempt_at = now(), lease_expires_at = now()"
                " WHERE id = :d AND lease_token IS NOT NULL",
                d=ids[1],
            )

            workers.append(await start_worker(env, log))
            await database.wait_for(
                "SELECT 1 FROM deliveries WHERE id = :d AND status = 'succeeded' AND lease_token IS NULL",
                bool,
                d=ids[1],
                within=60,
            )
            [head] = await database.rows(
                "SELECT attempts, status, lease_token, next_attempt_at > now() + interval '50 minutes' AS later,"
                " retry_at > now() + interval '50 minutes' AS retry_later FROM deliveries WHERE id = :d",
                d=ids[4],
            )
            [behind] = await database.rows("SELECT attempts, status FROM deliveries WHERE id = :d", d=ids[5])
            sent_before_the_hour = [json.loads(r.body)["data"]["n"] for r in receiver.received]
            # 4 still waits for its hour, unleased, and 5 behind it; 1, in flight at the kill, went twice.
            assert (head.attempts, head.status, head.lease_token) == (1, "pending", None)
            assert (head.later, head.retry_later) == (True, True)
            assert (behind.attempts, behind.status) == (0, "pending")
            assert sent_before_the_hour == [1, 2, 3, 4, 1, 1]

            assert await database.make_due(ids[4]) == 1  # its hour passing
            await database.wait_for(
                "SELECT count(*) AS n FROM deliveries WHERE id = ANY(:ids) AND status = 'succeeded'",
                lambda rows: rows[0].n == 5,
                ids=list(ids.values()),
                within=60,
            )
        await end(workers[1], signal.SIGTERM)
    finally:
        released.set()
        for process in workers:
            await end(process, signal.SIGKILL)
        await database.close()

    assert [json.loads(r.body)["data"]["n"] for r in receiver.received] == [1, 2, 3, 4, 1, 1, 4, 5]
