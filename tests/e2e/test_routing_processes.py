"""Rate limits and FIFO order hold across processes: the server and several `webhookd worker` processes
claim from one database, and the receiver sees what the webhook's settings promise.

The server runs in the test's process on a database of its own (the session's workers never see it);
the workers are processes, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2

from ports import free_port
from receivers import Receiver, failing_first
from support import Database, running_service
from webhookd.app import Backends
from webhookd.domain.routing import RATE_SLOT_TOLERANCE

pytestmark = pytest.mark.slow
LIMIT = 5
EVENTS = 60


@contextlib.asynccontextmanager
async def worker_processes(backends: Backends, database_url: str, tmp_path: Path, count: int) -> AsyncIterator[None]:
    env = {
        **os.environ,
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOKD_WORKERS": "8",
        "WEBHOOKD_PER_WEBHOOK_CONCURRENCY": "8",
        "WEBHOOKD_DATA_DIR": str(tmp_path),
        "WEBHOOKD_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "workers.log"
    processes = []
    with log.open("ab") as out:
        for _ in range(count):
            processes.append(
                await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).parent / "webhookd"),
                    "worker",
                    env=env | {"WEBHOOKD_METRICS_ADDR": f"127.0.0.1:{free_port()}"},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
    try:
        # Every worker is up (it prints "running" once it is) before the test publishes.
        deadline = time.monotonic() + 60
        while log.read_text().count("webhookd worker running") < count:
            assert time.monotonic() < deadline and all(p.returncode is None for p in processes), log.read_text()
            await asyncio.sleep(0.05)
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
    assert all(process.returncode == 0 for process in processes), log.read_text()


def publish(caller, n: int) -> pb.PublishEventRequest:
    payload = struct_pb2.Struct()
    payload.update({"n": n})
    return caller.PublishEvent(pb.PublishEventRequest(event_type="load.tick", payload=payload))


def most_in_a_second(arrivals: list[float]) -> int:
    """The most arrivals in any one-second window: each window starts at an arrival, where a maximum is."""
    return max(sum(1 for other in arrivals if start <= other < start + 1.0) for start in arrivals)


async def test_two_workers_together_keep_a_webhook_to_its_rate_limit(
    settings, backends, own_database, receiver, tmp_path
) -> None:
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    database = Database(own_database)
    try:
        async with running_service(settings, isolated) as caller, worker_processes(backends, own_database, tmp_path, 2):
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(
                        name="limited", url=receiver.url, event_types=["load.*"], rate_limit_per_second=LIMIT
                    )
                )
            )
            published = await asyncio.gather(*(publish(caller, n) for n in range(EVENTS)))
            assert all(event.deliveries_queued == 1 for event in published)

            await database.wait_for(
                "SELECT count(*) AS n FROM deliveries WHERE status = 'succeeded'",
                lambda rows: rows[0].n == EVENTS,
                within=60,
            )
            held = await database.value("SELECT count(*) FROM attempts")
    finally:
        await database.close()

    arrivals = sorted(request.arrived_at for request in receiver.received)
    assert sorted(json.loads(request.body)["data"]["n"] for request in receiver.received) == list(range(EVENTS))
    assert held == EVENTS  # every delivery went once: waiting for a slot is not an attempt
    # Slots are 1/LIMIT apart; a worker may send up to RATE_SLOT_TOLERANCE late: the documented burst.
    burst = LIMIT
    assert most_in_a_second(arrivals) <= LIMIT + burst
    assert most_in_a_second(arrivals) <= int(LIMIT * (1 + RATE_SLOT_TOLERANCE.total_seconds())) + 1
    assert arrivals[-1] - arrivals[0] >= (EVENTS - LIMIT - burst) / LIMIT


async def test_a_fifo_webhook_is_in_order_across_worker_processes_through_a_failing_head(
    settings, backends, own_database, tmp_path
) -> None:
    receiver = await Receiver(respond=failing_first(2)).start()
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    database = Database(own_database)
    try:
        async with running_service(settings, isolated) as caller, worker_processes(backends, own_database, tmp_path, 3):
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(
                        name="ordered", url=receiver.url, event_types=["load.*"], ordering=wpb.ORDERING_FIFO
                    )
                )
            )
            events = [await publish(caller, n) for n in range(1, 6)]
            [head] = await database.rows("SELECT id FROM deliveries WHERE event_id = :e", e=events[0].event_id)
            for attempts in (1, 2):  # the retry schedule's wait, moved to now once each failure is recorded
                await database.wait_for(
                    "SELECT 1 FROM deliveries WHERE id = :d AND attempts = :n AND lease_token IS NULL",
                    bool,
                    d=head.id,
                    n=attempts,
                    within=30,
                )
                assert await database.make_due(head.id) == 1
            await database.wait_for(
                "SELECT count(*) AS n FROM deliveries WHERE status = 'succeeded'",
                lambda rows: rows[0].n == 5,
                within=30,
            )
    finally:
        await database.close()
        await receiver.stop()

    assert [json.loads(request.body)["data"]["n"] for request in receiver.received] == [1, 1, 1, 2, 3, 4, 5]
