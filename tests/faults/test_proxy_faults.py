"""The delivery proxy (WEBHOOKD_DELIVERY_PROXY) killed (SIGKILL, its whole process group, then started
again on the same port) or frozen (SIGSTOP, then SIGCONT) under `webhookd serve` while events are
published.

While it is away nothing counts against the receiver: a connection through it that breaks or goes
quiet is told from the receiver's doing by asking the proxy afresh, and the worker gives the delivery
back without an attempt (no failure recorded, no step towards the webhook's auto-pause). Once the
proxy is back every acknowledged event arrives through it: exactly once after a kill; after a freeze
an event in flight may arrive twice under its one webhook-id (at least once).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from harness import (
    CALL_DEADLINE_SECONDS,
    FaultBackends,
    Ledger,
    all_settled,
    assert_delivered,
    record,
    serving,
    until,
)
from ports import free_port
from proxies import running_proxy
from receivers import Receiver
from support import Database, make_caller

pytestmark = pytest.mark.slow
CREDENTIALS = "relay:fault-relay-password"
EVENTS_WHILE_DOWN = 5
ATTEMPT_TIMEOUT_MS = 1000  # a frozen proxy is noticed once an attempt through it times out
POSTPONED = "no way out; delivery postponed"  # the worker's warning as it gives a delivery back


async def publish(caller, n: int) -> str:
    payload = struct_pb2.Struct()
    payload.update({"n": n})
    request = pb.PublishEventRequest(event_type="proxy.fault", payload=payload)
    published: pb.PublishEventResponse = await caller.PublishEvent(request, timeout=CALL_DEADLINE_SECONDS)
    return published.event_id


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
async def test_a_proxy_away_postpones_deliveries_without_attempts_and_they_arrive_once_it_is_back(
    fault_backends: FaultBackends, tmp_path: Path, fault: str
) -> None:
    port = free_port()
    receiver = await Receiver().start()
    database = Database(fault_backends.database_url)
    acknowledged: dict[int, str] = {}
    try:
        with running_proxy(tmp_path, CREDENTIALS, port) as (address, group):
            settings = {"WEBHOOKD_DELIVERY_PROXY": f"http://{CREDENTIALS}@{address}"}
            async with (
                serving(fault_backends, f"proxy-faults-{fault}", **settings) as running,
                grpc.aio.insecure_channel(running.grpc_target) as channel,
            ):
                caller = make_caller(channel)
                webhook = wpb.Webhook(
                    name="through the proxy",
                    url=receiver.url,
                    event_types=["proxy.*"],
                    retry_policy=wpb.RetryPolicy(timeout_ms=ATTEMPT_TIMEOUT_MS),
                )
                created = await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook))
                webhook_id = created.webhook.id
                acknowledged[0] = await publish(caller, 0)
                # Recorded, not only received: a fault while its answer is on the way back would make
                # it an attempt in flight, given back and sent again (at least once).
                await until(lambda: all_settled(database, caller.tenant_id), "the first event delivered")

                os.killpg(group, getattr(signal, fault))
                for n in range(1, EVENTS_WHILE_DOWN + 1):
                    acknowledged[n] = await publish(caller, n)
                await until(lambda: POSTPONED in running.log.read_text(), "a delivery given back", within=30)
                failed = await database.rows(
                    "SELECT outcome, error FROM attempts WHERE webhook_id = :w AND outcome <> 'succeeded'", w=webhook_id
                )
                assert failed == [] and len(receiver.received) == 1, failed

                returned = datetime.now(UTC)  # the workers' clock: attempts are stamped with it
                if fault == "SIGSTOP":
                    os.killpg(group, signal.SIGCONT)
                back_at = time.monotonic()
                with running_proxy(tmp_path, CREDENTIALS, port) if fault == "SIGKILL" else contextlib.nullcontext():
                    await until(lambda: all_settled(database, caller.tenant_id), "every event delivered", within=60)
                    recovered_in = time.monotonic() - back_at
                    # While it was away, nothing was counted against the receiver. (Once back, a proxy
                    # working through what it held while frozen is judged like any slow receiver.)
                    failed_while_away = await database.rows(
                        "SELECT outcome, error FROM attempts"
                        " WHERE webhook_id = :w AND outcome <> 'succeeded' AND occurred_at < :returned",
                        w=webhook_id,
                        returned=returned,
                    )
                    [webhook_row] = await database.rows("SELECT paused_at FROM webhooks WHERE id = :w", w=webhook_id)
        assert failed_while_away == [] and webhook_row.paused_at is None, failed_while_away
        # A frozen proxy holds the requests it had read; resumed, it may still pass them on, after
        # webhookd gave those deliveries back: they may arrive twice, under the same webhook-id.
        in_flight = set(range(1, EVENTS_WHILE_DOWN + 1)) if fault == "SIGSTOP" else set()
        assert_delivered(Ledger.of(receiver.received), acknowledged, repeatable=in_flight)
        record(
            f"delivery proxy {fault}",
            events_while_away=EVENTS_WHILE_DOWN,
            all_recorded_after_its_return_s=round(recovered_in, 2),
        )
    finally:
        await receiver.stop()
        await database.close()
