"""A `webhookd worker` process killed with SIGKILL mid-batch loses no event, and repeats only what was in flight.

The service and the worker processes share a database of their own, so the session's in-process pool never
claims these deliveries. The receiver answers each request after 20 ms, so the first worker is always
mid-delivery when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook

from receivers import slow
from support import Database, running_service
from webhookd.app import Backends

EVENTS = 1000
KILL_AFTER = 200
WORKERS = 16
PUBLISH_CONCURRENCY = 50


def worker_environment(backends: Backends, database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOKD_WORKERS": str(WORKERS),
        "WEBHOOKD_PER_WEBHOOK_CONCURRENCY": str(WORKERS),
        "WEBHOOKD_DATA_DIR": str(data_dir),
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        # No metrics server: on its default port it met another test's worker process and could not start.
        "WEBHOOKD_METRICS_ADDR": "",
    }


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "webhookd"),
            "worker",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


async def end(process: asyncio.subprocess.Process, signum: int) -> None:
    """Sends `signum` to the worker (unless it already exited) and waits, bounded, for it to exit."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()


async def publish_all(caller) -> dict[int, str]:
    """Publishes events n = 0..EVENTS-1; returns n -> event id."""
    semaphore = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def one(n: int) -> tuple[int, str]:
        payload = struct_pb2.Struct()
        payload.update({"n": n})
        async with semaphore:
            published = await caller.PublishEvent(pb.PublishEventRequest(event_type="load.tick", payload=payload))
        assert published.deliveries_queued == 1
        return n, published.event_id

    return dict(await asyncio.gather(*(one(n) for n in range(EVENTS))))


@pytest.mark.slow
async def test_killed_worker_loses_nothing_and_repeats_only_in_flight_deliveries(
    settings, backends, own_database, receiver, tmp_path
) -> None:
    receiver.respond = slow(0.02)
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    env = worker_environment(backends, own_database, tmp_path)
    log = tmp_path / "workers.log"
    database = Database(own_database)
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with running_service(settings, isolated) as caller:
            policy = wpb.RetryPolicy(timeout_ms=1000)
            created = await caller.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(name="load", url=receiver.url, event_types=["load.*"], retry_policy=policy)
                )
            )
            event_ids = await publish_all(caller)

        processes.append(await start_worker(env, log))
        try:
            await receiver.wait_for(KILL_AFTER, within=30)
        except TimeoutError:
            pytest.fail(f"the first worker delivered too little; its log:\n{log.read_text()}")
        await end(processes[0], signal.SIGKILL)
        assert processes[0].returncode == -signal.SIGKILL
        in_flight = {
            row.event_id
            for row in await database.rows(
                "SELECT event_id FROM deliveries WHERE status = 'pending' AND lease_token IS NOT NULL"
            )
        }
        assert 0 < len(in_flight) <= WORKERS
        # The dead worker's leases would run out after timeout_ms + 30 s (LEASE_MARGIN); ending them now is
        # exactly what that time passing does, and spares the test the wait.
        await database.execute(
            "UPDATE deliveries SET next_attempt_at = now(), lease_expires_at = now()"
            " WHERE lease_token IS NOT NULL AND status = 'pending'"
        )

        processes.append(await start_worker(env, log))
        await database.wait_for(
            "SELECT count(*) AS n FROM deliveries WHERE status = 'succeeded'",
            lambda rows: rows[0].n == EVENTS,
            within=90,
        )
        await end(processes[1], signal.SIGTERM)
        assert processes[1].returncode == 0, log.read_text()
    finally:
        for process in processes:
            await end(process, signal.SIGKILL)
        await database.close()

    requests_by_n: dict[int, list[str]] = defaultdict(list)
    for request in receiver.received:
        data = StandardWebhook(created.signing_secret).verify(request.body, request.headers)["data"]
        requests_by_n[int(data["n"])].append(request.headers["webhook-id"])
    assert sorted(requests_by_n) == list(range(EVENTS))
    for n, webhook_ids in requests_by_n.items():
        assert set(webhook_ids) == {event_ids[n]}
    repeated = {event_ids[n]: len(ids) for n, ids in requests_by_n.items() if len(ids) > 1}
    assert set(repeated) <= in_flight
    assert set(repeated.values()) <= {2}
    assert len(receiver.received) == EVENTS + len(repeated)
    assert json.loads(receiver.received[0].body)["type"] == "load.tick"
